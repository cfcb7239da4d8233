/* wbuf.c: write-behind for non-blocking sockets (see wbuf.h). */
#include "wbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Room for `more` bytes after the queued ones: compacts, then grows. Returns 0 or -1. */
static int reserve(wbuf_t **w, size_t more)
{
    wbuf_t *o = *w;
    size_t have = o ? o->len : 0;
    if (have + more > UINT32_MAX / 2)
        return -1;
    if (o && o->off + o->len + more <= o->cap)
        return 0;
    if (o && o->len + more <= o->cap) {
        memmove(o->data, o->data + o->off, o->len);
        o->off = 0;
        return 0;
    }
    uint32_t cap = o ? o->cap : 4096;
    while (cap < have + more)
        cap *= 2;
    wbuf_t *n = malloc(sizeof *n + cap);
    if (!n)
        return -1;
    n->off = 0;
    n->len = (uint32_t)have;
    n->cap = cap;
    if (o) {
        memcpy(n->data, o->data + o->off, o->len);
        free(o);
    }
    *w = n;
    return 0;
}

int wbuf_write(wbuf_t **w, int fd, const uint8_t *p, size_t len)
{
    size_t done = 0;
    if (!wbuf_pending(*w)) {
        while (done < len) {
            ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                done += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            return -1;
        }
        if (done == len)
            return 0;
    }
    /* the rest waits for EPOLLOUT */
    if (reserve(w, len - done) < 0)
        return -1;
    wbuf_t *o = *w;
    memcpy(o->data + o->off + o->len, p + done, len - done);
    o->len += (uint32_t)(len - done);
    return 0;
}

int wbuf_flush(wbuf_t **w, int fd)
{
    wbuf_t *o = *w;
    while (o && o->len) {
        ssize_t n = send(fd, o->data + o->off, o->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            o->off += (uint32_t)n;
            o->len -= (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    free(o);
    *w = NULL;
    return 0;
}
