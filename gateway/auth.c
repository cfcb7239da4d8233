/* auth.c: HS256 JWT verification with libjwt (see auth.h). */
#include "auth.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <stdbool.h>
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

gw_auth_result_t gw_auth_check(const char *token, const char *secret, int64_t now, char *user,
                               size_t usercap)
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
    if (jwt_get_alg(j) != JWT_ALG_HS256) {
        r = GW_AUTH_ALG;
        goto out;
    }
    errno = 0;
    long exp = jwt_get_grant_int(j, "exp");
    if (errno != 0 && errno != ENOENT) { /* present but not a number */
        r = GW_AUTH_INVALID;
        goto out;
    }
    if (errno == 0 && exp <= now) {
        r = GW_AUTH_EXPIRED;
        goto out;
    }
    errno = 0;
    long nbf = jwt_get_grant_int(j, "nbf");
    if (errno != 0 && errno != ENOENT) {
        r = GW_AUTH_INVALID;
        goto out;
    }
    if (errno == 0 && nbf > now) {
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
    jwt_free(j);
    return r;
}
