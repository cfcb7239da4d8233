/* tlspolicy.h: the wss:// policy of ws-gateway: --tls-cert/--tls-key checked with OpenSSL
 * before any thread starts (a missing or junk file is a clear error, not a crash inside lws),
 * and the protocol versions and TLS 1.2 cipher list handed to lws (the same modern policy as
 * ws-api: TLS 1.2+, ECDHE with AEAD on 1.2). Main thread. */
#ifndef GW_TLSPOLICY_H
#define GW_TLSPOLICY_H

#include <stddef.h>

/* TLS 1.2 suites allowed by default: ephemeral key exchange and AEAD only (RFC 9113 §9.2.2
 * asks the same of HTTP/2; ws-api uses this list). TLS 1.3 suites are OpenSSL's, all AEAD. */
#define GW_TLS_DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

/* gw_tls_check: loads cert (PEM chain) and key into a throwaway server context with the policy
 * (min_version "1.2" or "1.3", ciphers an OpenSSL cipher list for TLS 1.2) and checks that the
 * key matches. Returns 0, or -1 with the reason in err (file, OpenSSL's error). */
int gw_tls_check(const char *cert, const char *key, const char *min_version, const char *ciphers,
                 char *err, size_t errlen);

/* gw_tls_options: SSL_OP_* bits lws sets on its server context for min_version (checked by
 * gw_tls_check): the older protocol versions off, no renegotiation, no compression. */
long gw_tls_options(const char *min_version);

#endif
