/* acceptor.c: accept loop with back-off on resource errors (see acceptor.h). Loop thread. */
#include "acceptor.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define ACCEPT_BATCH 64
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000

static void on_listen(uv_poll_t *h, int status, int events);

/* unix_path: the path a Unix domain socket is bound to, into path; false for TCP and for
 * abstract or unnamed sockets. */
static bool unix_path(int fd, char path[sizeof ((struct sockaddr_un *)0)->sun_path])
{
    struct sockaddr_un un;
    socklen_t sl = sizeof un;
    memset(&un, 0, sizeof un);
    if (getsockname(fd, (struct sockaddr *)&un, &sl) != 0 || un.sun_family != AF_UNIX ||
        sl <= offsetof(struct sockaddr_un, sun_path) || !un.sun_path[0])
        return false;
    memcpy(path, un.sun_path, sizeof un.sun_path);
    path[sizeof un.sun_path - 1] = 0;
    return true;
}

static void on_backoff(uv_timer_t *t)
{
    acceptor_t *a = t->data;
    if (a->accepting)
        uv_poll_start(&a->poll, UV_READABLE, on_listen);
}

/* Out of descriptors or memory: stop polling the listener for a while. */
static void pause_accepting(acceptor_t *a, int err)
{
    a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (a->backoff_ms > BACKOFF_MAX_MS)
        a->backoff_ms = BACKOFF_MAX_MS;
    metrics_inc(a->metric);
    log_rl_error("accept failed", "listener=%s error=\"%s\" paused_ms=%u", a->name,
                 strerror(err), a->backoff_ms);
    uv_poll_stop(&a->poll);
    uv_timer_start(&a->backoff, on_backoff, a->backoff_ms, 0);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    acceptor_t *a = h->data;
    (void)events;
    if (status < 0 || !a->accepting)
        return;
    for (int i = 0; i < ACCEPT_BATCH && a->accepting; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(a->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(a, errno);
            return; /* EAGAIN: drained */
        }
        a->backoff_ms = 0;
        int one = 1;
        if (ss.ss_family != AF_UNIX)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        a->cb(a->ud, fd, &ss);
    }
}

int acceptor_start(acceptor_t *a, uv_loop_t *loop, int fd, const char *name, int metric,
                   acceptor_cb cb, void *ud)
{
    memset(a, 0, sizeof *a);
    a->loop = loop;
    a->fd = fd;
    a->name = name;
    a->metric = metric;
    a->cb = cb;
    a->ud = ud;
    if (uv_poll_init(loop, &a->poll, fd) != 0)
        return -1;
    uv_timer_init(loop, &a->backoff);
    a->poll.data = a->backoff.data = a;
    a->handles = 2;
    a->accepting = true;
    char path[sizeof ((struct sockaddr_un *)0)->sun_path];
    struct stat st;
    if (unix_path(fd, path) && stat(path, &st) == 0) {
        a->unix_file = true;
        a->unix_dev = st.st_dev;
        a->unix_ino = st.st_ino;
    }
    uv_poll_start(&a->poll, UV_READABLE, on_listen);
    return 0;
}

void acceptor_stop(acceptor_t *a)
{
    if (!a->accepting)
        return;
    a->accepting = false;
    uv_poll_stop(&a->poll);
    uv_timer_stop(&a->backoff);
    /* A Unix domain socket's file goes now, while the process may still drain: a new server
     * can bind the path at once, and new connections go to it. Once only (accepting). Not if
     * the path now names another file (someone removed ours and bound a new socket there):
     * that one is not ours to remove. (A replacement between this stat and the unlink would
     * still go: no call unlinks by inode.) */
    struct stat st;
    char path[sizeof ((struct sockaddr_un *)0)->sun_path];
    if (a->unix_file && unix_path(a->fd, path) && stat(path, &st) == 0 &&
        st.st_dev == a->unix_dev && st.st_ino == a->unix_ino)
        unlink(path);
    close(a->fd);
    a->fd = -1;
}

static void on_handle_closed(uv_handle_t *h)
{
    acceptor_t *a = h->data;
    if (--a->handles == 0 && a->on_closed)
        a->on_closed(a->ud);
}

void acceptor_close(acceptor_t *a, void (*on_closed)(void *ud))
{
    acceptor_stop(a);
    a->on_closed = on_closed;
    uv_close((uv_handle_t *)&a->poll, on_handle_closed);
    uv_close((uv_handle_t *)&a->backoff, on_handle_closed);
}
