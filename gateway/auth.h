/* auth.h: HS256 JWT checks at the WebSocket handshake (libjwt). Any thread (no shared
 * state). */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GW_AUTH_OK = 0,
    GW_AUTH_MISSING,     /* no token in Authorization: Bearer or ?token= */
    GW_AUTH_INVALID,     /* malformed, or the signature does not verify with the secret */
    GW_AUTH_ALG,         /* any algorithm but HS256 (alg none included) */
    GW_AUTH_EXPIRED,     /* exp <= now */
    GW_AUTH_NOT_YET,     /* nbf > now */
    GW_AUTH_NO_SUB,      /* no usable "sub" claim */
    GW_AUTH_NREASONS
} gw_auth_result_t;

/* gw_auth_reason: the metric label of a result ("missing", "invalid", ...). */
const char *gw_auth_reason(gw_auth_result_t r);

/* gw_auth_check: verifies `token` (NUL-terminated) with the HS256 secret at time `now` (unix
 * seconds, with a fraction). On GW_AUTH_OK the "sub" claim is copied into user (NUL-terminated,
 * truncated tokens are refused: sub longer than usercap-1 is GW_AUTH_NO_SUB). exp and nbf are
 * enforced when present (RFC 7519 §4.1.4/4.1.5), integer or fractional NumericDates, each
 * with `leeway` seconds of allowance for clock skew: expired when now >= exp + leeway, not yet
 * valid when now + leeway < nbf; a non-numeric exp or nbf is GW_AUTH_INVALID. */
gw_auth_result_t gw_auth_check(const char *token, const char *secret, double now, double leeway,
                               char *user, size_t usercap);

#endif
