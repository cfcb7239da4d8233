/* svcpoll.h: wake-up coalescing on a service thread (--svc-coalesce W).
 *
 * On this kind of machine every sleep and wake of a thread is expensive (perf in the seed
 * case: a quarter of the gateway's CPU is context switches and wake-ups). With a window W,
 * a service thread that has work switches to polling: each loop turn it sleeps out the rest
 * of W, then takes whatever arrived meanwhile in one turn: every client read that is ready,
 * and the writers' commands. While it polls, its wake flag stays raised, so writers hand
 * commands over without lws_cancel_service(). After SVCPOLL_QUIET turns without work it
 * lowers the flag, drains once more and sleeps until an event again. Costs up to W of latency
 * on each of the two passes through the thread. Service thread only. */
#ifndef GW_SVCPOLL_H
#define GW_SVCPOLL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_svc gw_svc_t;

typedef struct gw_svcpoll {
    uv_check_t check;   /* after each turn's I/O callbacks: sleep, then drain */
    uv_idle_t idle;     /* active while polling: the loop's poll does not block */
    int64_t window_ns;  /* 0 = off */
    int64_t turn_ns;    /* monotonic time the current window began */
    uint32_t work;      /* client reads and commands since the last check */
    int quiet;          /* windows in a row without work */
    bool polling;
    bool started;
} gw_svcpoll_t;

enum { SVCPOLL_QUIET = 4 };

/* gw_svcpoll_start: handles on the thread's loop (window_us 0: only the turn count). */
void gw_svcpoll_start(gw_svc_t *s, int64_t window_us);
/* gw_svcpoll_close: closes the handles (on STOP, before the loop ends). */
void gw_svcpoll_close(gw_svc_t *s);
/* gw_svcpoll_work: the current turn did work (a client read, commands). */
static inline void gw_svcpoll_work(gw_svcpoll_t *p) { p->work++; }

#endif
