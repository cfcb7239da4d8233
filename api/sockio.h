/* sockio.h: non-blocking reads and writes on an accepted socket, plain or through an OpenSSL
 * SSL (tls_server.h), with the one rule both of ws-api's servers (gRPC, HTTP/1.1) need: what
 * the socket must become before the same call can go on (a TLS read may have to write first,
 * a TLS write may have to read first). Loop thread only; one sockio per connection. */
#ifndef WSGW_API_SOCKIO_H
#define WSGW_API_SOCKIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tls_server.h"

enum {
    SOCKIO_AGAIN = -1,  /* wait: readable (or writable when rd_wants_write / not wr_wants_read) */
    SOCKIO_CLOSED = -2, /* the peer closed, or a socket error */
    SOCKIO_FAILED = -3, /* TLS protocol error */
};

typedef struct sockio {
    int fd;
    SSL *ssl;            /* NULL: plain socket */
    bool rd_wants_write; /* the last TLS read needs the socket writable before its retry */
    bool wr_wants_read;  /* the last TLS write needs the socket readable before its retry */
} sockio_t;

/* sockio_recv: up to len bytes into buf: the count (> 0), SOCKIO_AGAIN, SOCKIO_CLOSED or
 * SOCKIO_FAILED (why says which). */
ssize_t sockio_recv(sockio_t *io, void *buf, size_t len, char why[TLS_SERVER_ERR_LEN]);

/* sockio_send: writes a prefix of p (len > 0): the count, SOCKIO_AGAIN (call again with the
 * same first byte once the socket allows: tls_server.h's retry rule), SOCKIO_CLOSED or
 * SOCKIO_FAILED (why says which). */
ssize_t sockio_send(sockio_t *io, const void *p, size_t len, char why[TLS_SERVER_ERR_LEN]);
/* sockio_sendv: sockio_send of n iovecs in order (plain sockets only: io->ssl is NULL). */
struct iovec;
ssize_t sockio_sendv(sockio_t *io, const struct iovec *iov, int n, char why[TLS_SERVER_ERR_LEN]);

#endif
