/* upsock.h: the writer's transport to an API node: a non-blocking TCP socket, optionally
 * wrapped in TLS (OpenSSL; ALPN h2; the node's certificate and host name verified).
 * Writer thread only. */
#ifndef GW_UPSOCK_H
#define GW_UPSOCK_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum { GW_SOCK_AGAIN = -1, GW_SOCK_ERR = -2 };

typedef struct gw_sock {
    int fd;
    SSL *ssl;           /* NULL: plain h2c */
    bool need_write;    /* the last call wants the socket writable before going on */
    char err[160];      /* the last error, for the log */
} gw_sock_t;

/* gw_sock_client_ctx: a TLS client context (TLS 1.2+, ALPN "h2", peer verification with the
 * CA file `ca`, or the system store when ca is empty). NULL with a message in err. */
SSL_CTX *gw_sock_client_ctx(const char *ca, char *err, size_t errlen);

/* gw_sock_tls_begin: wraps the connected socket; host is checked against the certificate
 * (DNS name or IP address) and sent as SNI when it is a name. Returns 0 or GW_SOCK_ERR. */
int gw_sock_tls_begin(gw_sock_t *s, SSL_CTX *ctx, const char *host);
/* gw_sock_handshake: drives the TLS handshake: 0 done (ALPN h2 checked), GW_SOCK_AGAIN, or
 * GW_SOCK_ERR. */
int gw_sock_handshake(gw_sock_t *s);

/* gw_sock_recv / gw_sock_send: bytes moved (> 0), 0 at end of stream (recv), GW_SOCK_AGAIN,
 * or GW_SOCK_ERR (message in s->err). */
ssize_t gw_sock_recv(gw_sock_t *s, void *buf, size_t len);
ssize_t gw_sock_send(gw_sock_t *s, const void *buf, size_t len);
/* gw_sock_sendv: gw_sock_send of n iovecs in order (plain sockets only: s->ssl is NULL). */
struct iovec;
ssize_t gw_sock_sendv(gw_sock_t *s, const struct iovec *iov, int n);

/* gw_sock_close: frees TLS state and closes the descriptor. */
void gw_sock_close(gw_sock_t *s);

#endif
