/* acceptor.h: accepting connections on a listening socket from ws-api's libuv loop (both the
 * gRPC and the HTTP port).
 *
 * Each readable event accepts up to 64 connections (non-blocking, close-on-exec, TCP_NODELAY
 * on TCP) and hands each to the callback. A Unix domain listener's socket file is removed when
 * it stops, unless another file has taken its path meanwhile (device and inode differ). When
 * accept fails for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener is not
 * polled again for a while instead of spinning on a socket that stays readable: 10 ms,
 * doubling up to 1 s while it keeps failing, back to 10 ms after the next success. Each
 * failure counts in the caller's metric (one counter per listener), and is logged at most once
 * a second (both listeners together) with the number suppressed.
 * Pending connections wait in the kernel's backlog meanwhile and are served once descriptors
 * free up.
 *
 * Loop thread only. */
#ifndef WSGW_API_ACCEPTOR_H
#define WSGW_API_ACCEPTOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

/* Called for every accepted connection: the callee owns fd. */
typedef void (*acceptor_cb)(void *ud, int fd, const struct sockaddr_storage *peer);

typedef struct acceptor {
    uv_loop_t *loop;
    int fd;              /* listening socket (owned; -1 once stopped) */
    const char *name;    /* "grpc" / "http", for logs */
    int metric;          /* counter id for failed accepts */
    acceptor_cb cb;
    void *ud;
    uv_poll_t poll;
    uv_timer_t backoff;
    unsigned backoff_ms; /* next pause after a resource failure (0: none yet) */
    bool accepting;
    bool unix_file;      /* a Unix domain listener with a socket file: its dev and ino */
    dev_t unix_dev;
    ino_t unix_ino;
    int handles;         /* uv handles not yet closed */
    void (*on_closed)(void *ud);
} acceptor_t;

/* acceptor_start: starts accepting on the listening socket fd (takes ownership). Returns 0 or
 * -1 (uv error: nothing started, fd still the caller's). */
int acceptor_start(acceptor_t *a, uv_loop_t *loop, int fd, const char *name, int metric,
                   acceptor_cb cb, void *ud);

/* acceptor_stop: stops accepting and closes the listening socket (handles stay until
 * acceptor_close). Safe to call twice. */
void acceptor_stop(acceptor_t *a);

/* acceptor_close: stops, then closes the uv handles; on_closed(ud) runs once they are gone
 * (from a later loop turn). */
void acceptor_close(acceptor_t *a, void (*on_closed)(void *ud));

#endif
