/* svcpoll.h: wake-up coalescing on a service thread (--svc-coalesce: auto, a window, or 0).
 *
 * On this kind of machine every sleep and wake of a thread is expensive (perf in the seed
 * case: a quarter of the gateway's CPU is context switches and wake-ups). When pace.h says
 * so (a fixed window: while messages flow; auto: while it pays), a service thread switches
 * to polling: each loop turn it sleeps until the window's deadline, then takes whatever
 * arrived meanwhile in one turn: every client read that is ready, and the writers' commands.
 * While it polls, its wake flag stays raised, so writers hand commands over without
 * lws_cancel_service(). When pace.h ends polling it lowers the flag, drains once more and
 * sleeps until an event again. Costs up to a window of latency on each of the two passes
 * through the thread (auto: at most PACE_MAX_NS). A thread that hosts writers
 * (--inline-writers) does not sleep them in: from the writers' lag on (none when it is the
 * only service thread) it waits on their epoll fds, and a writer with work makes its pass at
 * once (svcpoll.c).
 *
 * Hand-offs within the thread: a writer it hosts that this thread gave events (its
 * host_due), or commands that such a writer gave this thread (self_wake), are flags rather
 * than an eventfd or lws_cancel_service() pipe write and the read and loop turn that take it
 * (issue 18: per round trip two writes, two reads and three epoll_waits less). The loop runs
 * them before it sleeps (a uv prepare), after each turn's I/O callbacks when not polling (the
 * check), and at the writers' lag in a polling window. Service thread only. */
#ifndef GW_SVCPOLL_H
#define GW_SVCPOLL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "pace.h"

typedef struct gw_svc gw_svc_t;

typedef struct gw_svcpoll {
    uv_check_t check;   /* after each turn's I/O callbacks: ask pace, sleep, drain */
    uv_idle_t idle;     /* active while polling: the loop's poll does not block */
    pace_t pace;        /* when to take (pace.h) */
    pace_stats_t seen;  /* pace's counters already in the metrics */
    uv_prepare_t prep;  /* before the loop sleeps: what this thread handed itself */
    uv_idle_t again;    /* active while that is still due after LOCAL_ROUNDS_MAX rounds */
    uint32_t work;      /* client messages and commands since the last check */
    bool self_wake;     /* commands for this thread came from this thread (gw_svc_wake) */
    bool started;
} gw_svcpoll_t;

/* gw_svcpoll_start: handles on the thread's loop; window_us as --svc-coalesce (0 off,
 * FLAGS_AUTO, or a window: the loop turns are counted either way). */
void gw_svcpoll_start(gw_svc_t *s, int64_t window_us);
/* gw_svcpoll_close: closes the handles (on STOP, before the loop ends). */
void gw_svcpoll_close(gw_svc_t *s);
/* gw_svcpoll_work: the current turn took n items (client messages, commands). */
static inline void gw_svcpoll_work(gw_svcpoll_t *p, uint32_t n) { p->work += n; }
/* gw_svcpoll_polling: the thread polls (its wake flag stays raised). */
static inline bool gw_svcpoll_polling(const gw_svcpoll_t *p) { return pace_polling(&p->pace); }

#endif
