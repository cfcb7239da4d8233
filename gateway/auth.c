/* auth.c: HS256 JWT verification with libjwt (see auth.h). */
#include "auth.h"

#include <jansson.h>
#include <jwt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char *const reasons[GW_AUTH_NREASONS] = {
    "ok", "missing", "invalid", "algorithm", "expired", "not_yet_valid", "no_sub"};

const char *gw_auth_reason(gw_auth_result_t r)
{
    return (unsigned)r < GW_AUTH_NREASONS ? reasons[r] : "invalid";
}

/* base64url (RFC 4648 §5, no padding) into out; returns the length or -1. */
static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    unsigned v = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i], d;
        if (c >= 'A' && c <= 'Z')
            d = c - 'A';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            d = c - '0' + 52;
        else if (c == '-')
            d = 62;
        else if (c == '_')
            d = 63;
        else
            return -1;
        v = v << 6 | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    return (int)o;
}

/* Is the token's header {"alg":"HS256",...}? Read before libjwt sees the token, so that only
 * HS256 ever gets as far as signature verification (alg none, HS512, RS256... never do). */
static bool header_is_hs256(const char *token)
{
    const char *dot = strchr(token, '.');
    unsigned char hdr[512];
    int n = b64url_decode(token, (size_t)(dot - token), hdr, sizeof hdr);
    if (n <= 0)
        return false;
    json_error_t err;
    json_t *h = json_loadb((const char *)hdr, (size_t)n, 0, &err);
    const char *alg = h ? json_string_value(json_object_get(h, "alg")) : NULL;
    bool ok = alg && strcmp(alg, "HS256") == 0;
    json_decref(h);
    return ok;
}

/* A NumericDate claim (RFC 7519 §2: seconds since the epoch, integer or fractional): 1 with
 * its value in *out, 0 when absent, -1 when present but not a number. */
static int numeric_date(json_t *claims, const char *name, double *out)
{
    json_t *v = json_object_get(claims, name);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return 1;
}

gw_auth_result_t gw_auth_check(const char *token, const char *secret, double now, double leeway,
                               char *user, size_t usercap)
{
    if (!token || !*token)
        return GW_AUTH_MISSING;
    if (strchr(token, '.') == NULL)
        return GW_AUTH_INVALID;
    if (!header_is_hs256(token))
        return GW_AUTH_ALG;
    jwt_t *j = NULL;
    if (jwt_decode(&j, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 || !j)
        return GW_AUTH_INVALID; /* bad signature or malformed */
    gw_auth_result_t r = GW_AUTH_OK;
    json_t *claims = NULL;
    if (jwt_get_alg(j) != JWT_ALG_HS256) {
        r = GW_AUTH_ALG;
        goto out;
    }
    /* exp and nbf read as JSON numbers: libjwt's integer getter reports a fractional date as
     * absent (a future nbf of 1.8e9 + 0.5 was ignored) */
    char *js = jwt_get_grants_json(j, NULL);
    claims = js ? json_loads(js, 0, NULL) : NULL;
    free(js);
    if (!json_is_object(claims)) {
        r = GW_AUTH_INVALID;
        goto out;
    }
    double exp, nbf;
    int has_exp = numeric_date(claims, "exp", &exp);
    int has_nbf = numeric_date(claims, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0) { /* present but not a number */
        r = GW_AUTH_INVALID;
        goto out;
    }
    /* §4.1.4: now must be before exp; §4.1.5: not before nbf; both "MAY provide for some small
     * leeway ... to account for clock skew" */
    if (has_exp && !(now < exp + leeway)) {
        r = GW_AUTH_EXPIRED;
        goto out;
    }
    if (has_nbf && !(now + leeway >= nbf)) {
        r = GW_AUTH_NOT_YET;
        goto out;
    }
    const char *sub = jwt_get_grant(j, "sub");
    if (!sub || !*sub || strlen(sub) >= usercap) {
        r = GW_AUTH_NO_SUB;
        goto out;
    }
    memcpy(user, sub, strlen(sub) + 1);
out:
    json_decref(claims);
    jwt_free(j);
    return r;
}
