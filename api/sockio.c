/* sockio.c: plain or TLS non-blocking socket I/O (see sockio.h). Loop thread. */
#include "sockio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

ssize_t sockio_recv(sockio_t *io, void *buf, size_t len, char why[TLS_SERVER_ERR_LEN])
{
    if (io->ssl) {
        io->rd_wants_write = false;
        ssize_t n = tls_server_read(io->ssl, buf, len, why);
        if (n > 0)
            return n;
        if (n == TLS_IO_WANT_WRITE)
            io->rd_wants_write = true;
        if (n == TLS_IO_WANT_READ || n == TLS_IO_WANT_WRITE)
            return SOCKIO_AGAIN;
        return n == TLS_IO_CLOSED ? SOCKIO_CLOSED : SOCKIO_FAILED;
    }
    for (;;) {
        ssize_t n = recv(io->fd, buf, len, 0);
        if (n > 0)
            return n;
        if (n == 0) {
            snprintf(why, TLS_SERVER_ERR_LEN, "peer closed");
            return SOCKIO_CLOSED;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return SOCKIO_AGAIN;
        snprintf(why, TLS_SERVER_ERR_LEN, "%s", strerror(errno));
        return SOCKIO_CLOSED;
    }
}

ssize_t sockio_send(sockio_t *io, const void *p, size_t len, char why[TLS_SERVER_ERR_LEN])
{
    if (io->ssl) {
        io->wr_wants_read = false;
        ssize_t n = tls_server_write(io->ssl, p, len, why);
        if (n > 0)
            return n;
        if (n == TLS_IO_WANT_READ)
            io->wr_wants_read = true;
        if (n == TLS_IO_WANT_READ || n == TLS_IO_WANT_WRITE)
            return SOCKIO_AGAIN;
        return n == TLS_IO_CLOSED ? SOCKIO_CLOSED : SOCKIO_FAILED;
    }
    struct iovec v = {(void *)p, len};
    return sockio_sendv(io, &v, 1, why);
}

ssize_t sockio_sendv(sockio_t *io, const struct iovec *iov, int n, char why[TLS_SERVER_ERR_LEN])
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    for (;;) {
        ssize_t w = sendmsg(io->fd, &m, MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return SOCKIO_AGAIN;
        snprintf(why, TLS_SERVER_ERR_LEN, "%s", strerror(errno));
        return SOCKIO_CLOSED;
    }
}
