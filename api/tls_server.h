/* tls_server.h: server-side TLS for ws-api (OpenSSL 3): one SSL_CTX per listener, and the
 * non-blocking per-connection calls the gRPC server drives its nghttp2 session through.
 *
 * Policy (tls_server_new): TLS 1.2 and 1.3 only; TLS 1.2 limited to ECDHE + AEAD suites (the
 * ones RFC 9113 §9.2.2 allows for HTTP/2); no renegotiation (SSL_OP_NO_RENEGOTIATION: a TLS
 * 1.2 client asking for one gets a no_renegotiation alert; TLS 1.3 KeyUpdate is not
 * renegotiation and works both ways); no compression; partial writes with a movable write
 * buffer (SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER); buffers
 * released while idle. With `alpn` set (ws-api's gRPC port: "h2"), a client that offers ALPN
 * without it gets a fatal no_application_protocol alert, and one that offers no ALPN at all
 * fails tls_server_handshake with TLS_IO_ALPN: RFC 9113 §3.2, h2 over TLS is chosen by ALPN.
 * No client certificates are requested; SNI is accepted and ignored (one certificate).
 *
 * Non-blocking use: every call returns TLS_IO_WANT_READ / TLS_IO_WANT_WRITE when the socket
 * must become readable / writable before the same call can make progress. Either can come
 * from any call: a read may have to write (a TLS 1.3 KeyUpdate with update_requested is
 * answered; OpenSSL 3.0 defers that answer to the next write, but callers must not rely on
 * it), a write may have to read. A write that returned WANT_* must be repeated starting at the
 * same first byte with at least as many bytes (they may sit at a different address); its
 * result then counts every byte written since that first byte, including records the failed
 * call already queued. Measured (tests/unit/test_api_tls.c): a call returns after one record
 * when the socket takes it at once.
 *
 * Errors: TLS_IO_* codes below, plus a message in the caller's err[TLS_SERVER_ERR_LEN] (the
 * OpenSSL reason, never key material). The OpenSSL error queue is cleared before each call
 * and after each failure, so one connection's error never shows up on another.
 *
 * Threads: a tls_server_t may be shared read-only once built; each SSL belongs to the thread
 * that drives its socket (ws-api: the loop thread). */
#ifndef WSGW_API_TLS_SERVER_H
#define WSGW_API_TLS_SERVER_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

#define TLS_SERVER_ERR_LEN 256

enum {
    TLS_IO_WANT_READ = -1,  /* wait until the socket is readable, then call again */
    TLS_IO_WANT_WRITE = -2, /* wait until the socket is writable, then call again */
    TLS_IO_CLOSED = -3,     /* the peer closed (close_notify, or EOF / reset without one) */
    TLS_IO_ERROR = -4,      /* TLS protocol error (garbage, bad record, alert, version...) */
    TLS_IO_ALPN = -5,       /* handshake only: the client did not agree on the required ALPN */
};

typedef struct tls_server tls_server_t;

/* tls_server_new: loads a PEM certificate chain and private key and checks they match; `alpn`
 * (e.g. "h2", NULL for none) is then required of every client. Returns the context, or NULL
 * with a message naming the file and the OpenSSL reason in err. The caller owns it
 * (tls_server_free); the strings are not kept. */
tls_server_t *tls_server_new(const char *cert_file, const char *key_file, const char *alpn,
                             char err[TLS_SERVER_ERR_LEN]);

/* tls_server_alpn_optional: a client that offers no ALPN at all is accepted too (ws-api's
 * HTTPS port: HTTP/1.1 clients often send none); one that offers ALPN without our protocol
 * still gets the no_application_protocol alert. Call before the first connection. */
void tls_server_alpn_optional(tls_server_t *t);

/* tls_server_free: frees the context. Call it only after every SSL made from it was freed
 * (their handshakes refer to it). NULL is fine. */
void tls_server_free(tls_server_t *t);

/* tls_server_conn: a server-side SSL over the connected non-blocking socket fd, not yet
 * handshaken. NULL when out of memory. The caller owns the SSL (tls_server_conn_free) and
 * keeps owning fd (the SSL never closes it). */
SSL *tls_server_conn(tls_server_t *t, int fd);

/* tls_server_handshake: advances the handshake. Returns 0 once complete (ALPN checked),
 * TLS_IO_WANT_READ/WRITE, TLS_IO_CLOSED (peer went away), TLS_IO_ERROR or TLS_IO_ALPN with a
 * message in err. */
int tls_server_handshake(SSL *ssl, char err[TLS_SERVER_ERR_LEN]);

/* tls_server_read: up to len decrypted bytes into buf. Returns the count (> 0),
 * TLS_IO_WANT_READ/WRITE, TLS_IO_CLOSED or TLS_IO_ERROR (message in err). */
ssize_t tls_server_read(SSL *ssl, void *buf, size_t len, char err[TLS_SERVER_ERR_LEN]);

/* tls_server_write: writes a prefix of buf (partial writes: at least one record's worth
 * unless it returns WANT_*). Returns the count (> 0), TLS_IO_WANT_READ/WRITE, TLS_IO_CLOSED or
 * TLS_IO_ERROR (message in err). len must be > 0. See the retry rule above. */
ssize_t tls_server_write(SSL *ssl, const void *buf, size_t len, char err[TLS_SERVER_ERR_LEN]);

/* tls_server_pending: whether OpenSSL holds received bytes the socket no longer shows (poll
 * would not report them): keep reading while true. */
int tls_server_pending(const SSL *ssl);

/* tls_server_describe: "TLSv1.3 TLS_AES_128_GCM_SHA256 alpn=h2" into out (for logs). */
void tls_server_describe(const SSL *ssl, char *out, size_t n);

/* tls_server_conn_free: sends close_notify when `notify` and the socket takes it at once
 * (never waits), then frees the SSL. NULL is fine. */
void tls_server_conn_free(SSL *ssl, int notify);

#endif
