/* auth.c: HS256 JWT verification with libjwt (see auth.h). */
#include "auth.h"

#include <errno.h>
#include <jwt.h>
#include <stdbool.h>
#include <string.h>

static const char *const reasons[GW_AUTH_NREASONS] = {
    "ok", "missing", "invalid", "algorithm", "expired", "not_yet_valid", "no_sub"};

const char *gw_auth_reason(gw_auth_result_t r)
{
    return (unsigned)r < GW_AUTH_NREASONS ? reasons[r] : "invalid";
}

/* The "alg" of the token's header, read before libjwt sees the token: an unsigned token
 * ("alg":"none") must never get as far as "decoded". */
static bool header_is_hs256(const char *token)
{
    jwt_t *j = NULL;
    /* without a key libjwt only parses (no signature check) */
    if (jwt_decode(&j, token, NULL, 0) != 0 || !j)
        return false;
    bool ok = jwt_get_alg(j) == JWT_ALG_HS256;
    jwt_free(j);
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
