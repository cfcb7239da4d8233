/* bearer.h: shared-secret bearer tokens ("Authorization: Bearer TOKEN", RFC 6750 §2.1) for
 * ws-api's push API (--push-token: HTTP /v1/... and gRPC wsgw.v1.Push/Push) and for gateways
 * (--gateway-token: gRPC wsgw.v1.Exchange/Stream).
 *
 * The check is constant time: the configured token is kept only as its SHA-256 digest, the
 * presented one is hashed the same way and the digests are compared with CRYPTO_memcmp, so
 * neither the token's bytes nor its length show in the timing. The token itself is never
 * logged; callers log only bearer_result_name().
 *
 * No global state; a bearer_t is read-only after bearer_init, safe to share. */
#ifndef WSGW_API_BEARER_H
#define WSGW_API_BEARER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct bearer {
    bool enabled;        /* false: no token configured, every request passes */
    uint8_t digest[32];  /* SHA-256 of the configured token */
} bearer_t;

typedef enum {
    BEARER_OK = 0,      /* token matches, or no token configured */
    BEARER_MISSING = 1, /* no Authorization value, or not the Bearer scheme, or empty token */
    BEARER_WRONG = 2,   /* a Bearer token that does not match */
} bearer_result_t;

/* bearer_init: remembers `token` (NULL or "" disables the check). Returns 0, or -1 when the
 * digest cannot be computed (OpenSSL failure): the check then stays enabled with an all-zero
 * digest, so a failure never opens the door. The caller keeps `token`; b does not point into
 * it. */
int bearer_init(bearer_t *b, const char *token);

/* bearer_check: judges one Authorization header value (NULL when absent). The scheme "Bearer"
 * is matched case-insensitively (RFC 9110 §11.1), followed by one or more spaces; trailing
 * spaces and tabs are ignored. Does not keep `authorization`. */
bearer_result_t bearer_check(const bearer_t *b, const char *authorization);

/* bearer_result_name: "ok", "missing" or "wrong" (metric label and log value). */
const char *bearer_result_name(bearer_result_t r);

#endif
