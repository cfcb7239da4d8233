/* svcpoll.c: wake-up coalescing on a service thread (see svcpoll.h). Service thread only. */
#include "svcpoll.h"

#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>

#include "clock.h"
#include "flags.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "svc.h"
#include "upstream.h"
#include "wake.h"

static void on_idle(uv_idle_t *h)
{
    (void)h; /* only its being active matters: uv polls without blocking */
}

static void sleep_until(int64_t t_ns)
{
    int64_t d = t_ns - clock_mono_ns();
    if (d <= 0)
        return;
    struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
    nanosleep(&ts, NULL); /* EINTR: the turn is just shorter */
}

/* Rounds of hand-offs within the thread per call of run_local: a hosted writer's pass may
 * give this thread commands, and running them may give the writer events (replies, room). */
#define LOCAL_ROUNDS_MAX 4

/* What this thread handed itself (svcpoll.h): the passes of the writers it hosts that were
 * given events, then the commands they gave it, until neither is due. Still due after
 * LOCAL_ROUNDS_MAX rounds, the loop keeps turning without sleeping (`again`) and the next
 * prepare goes on. */
static bool run_local_round(gw_svc_t *s, bool act)
{
    bool due = false;
    for (int u = 0; u < s->gw->nup; u++) {
        gw_up_t *w = s->gw->up[u];
        /* (host_due is this thread's only for a writer it hosts: another thread's writer must
         * not even be looked at, let alone passed) */
        if (gw_up_hosted_by(w, s->idx) && w->host_due) {
            due = true;
            if (act)
                gw_up_host_pass(w, false); /* (clears host_due) */
        }
    }
    if (s->poll.self_wake) {
        due = true;
        if (act)
            gw_svc_on_wake(s); /* (clears self_wake) */
    }
    return due;
}

static void run_local(gw_svc_t *s)
{
    gw_svcpoll_t *p = &s->poll;
    for (int r = 0; r < LOCAL_ROUNDS_MAX && run_local_round(s, true); r++)
        ;
    bool due = run_local_round(s, false);
    if (due && !uv_is_active((uv_handle_t *)&p->again))
        uv_idle_start(&p->again, on_idle);
    else if (!due && uv_is_active((uv_handle_t *)&p->again))
        uv_idle_stop(&p->again);
}

static void on_prepare(uv_prepare_t *h)
{
    run_local(h->data);
}

/* Early passes of hosted writers in one window, at most: a writer whose epoll fd stayed
 * readable (it could not take what is there) would otherwise turn the wait into a spin. */
#define HOST_PASSES_MAX 8

/* The window's wait on a thread that hosts writers (--inline-writers). Sleeping it out would
 * hold the writers too: what the API node answers, and what the other service threads hand
 * over, would wait for the deadline, and the answers then for the window after (#53 in
 * bench/RESULTS.md: seed-case p50 about 2.5x). So it sleeps until `lag` (where a writer of its
 * own would take what the service threads handed over at the window's start: pace.h R3; the
 * window's start itself when this is the only service thread), then waits on the writers'
 * epoll fds until the deadline: a writer with something to do makes its pass at once, and the
 * commands it gives this thread are run then too. Client reads still wait for the deadline. */
static void wait_until(gw_svc_t *s, int64_t lag, int64_t t_ns)
{
    if (s->host_epfd < 0) {
        sleep_until(t_ns);
        return;
    }
    sleep_until(lag < t_ns ? lag : t_ns);
    run_local(s); /* what this thread handed its writers in this turn */
    for (int passes = 0;;) {
        int64_t d = t_ns - clock_mono_ns();
        if (d <= 0)
            return;
        if (passes == HOST_PASSES_MAX) {
            sleep_until(t_ns);
            return;
        }
        struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
        struct epoll_event evs[8];
        int n = epoll_pwait2(s->host_epfd, evs, 8, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            sleep_until(t_ns);
            return;
        }
        for (int i = 0; i < n; i++) {
            gw_up_t *w = s->gw->up[evs[i].data.u32];
            int fd = gw_up_host_fd(w);
            gw_up_host_pass(w, true);
            if (fd >= 0 && gw_up_host_fd(w) < 0) /* it ended (a stop): watched no more */
                epoll_ctl(s->host_epfd, EPOLL_CTL_DEL, fd, NULL);
        }
        if (n > 0) {
            passes++;
            gw_svc_on_wake(s); /* the commands those passes gave this thread */
        }
    }
}

/* pace's counters into the metrics (deltas; only when polling moved them). */
static void publish(gw_svcpoll_t *p)
{
    const pace_stats_t *st = pace_stats(&p->pace);
    if (st->windows == p->seen.windows && st->spells == p->seen.spells)
        return;
    gwm_pace_publish(GWM_PACE_SERVICE, st, &p->seen);
    p->seen = *st;
}

/* uv check: runs once per loop turn, after its I/O callbacks. */
static void on_check(uv_check_t *h)
{
    gw_svc_t *s = h->data;
    gw_svcpoll_t *p = &s->poll;
    metrics_inc(gwm.svc_turns);
    if (!pace_polling(&p->pace))
        run_local(s); /* (polling: at the writers' lag, in wait_until) */
    if (s->stopping || !pace_on(&p->pace))
        return;
    uint32_t items = p->work;
    p->work = 0;
    if (!items && !pace_polling(&p->pace))
        return; /* a timer or a handshake while sleeping on events: nothing to decide */
    pace_act_t act = pace_turn(&p->pace, clock_mono_ns(), items);
    switch (act) {
    case PACE_SLEEP:
        return;
    case PACE_ENTER:
        /* Raising the flag first means writers stop signalling; the drain sees what they
         * pushed before. */
        wake_raise(&s->wake_pending);
        uv_idle_start(&p->idle, on_idle);
        gw_svc_on_wake(s); /* counts the commands it ran as work of the next turn */
        break;
    case PACE_WAIT: {
        /* the writers' lag waits for the other service threads' hand-over; alone, this
         * thread's own hand-over is all there is, and its writers can go at once */
        int64_t end = pace_deadline(&p->pace), win = pace_window(&p->pace);
        int64_t lag = s->gw->nsvc > 1 ? win * PACE_WRITER_LAG16 / 16 : 0;
        wait_until(s, end - win + lag, end);
        gw_svc_on_wake(s);
        break;
    }
    case PACE_LEAVE:
        /* Back to sleeping until an event. Lower the flag, then drain once more: a command
         * pushed after that raises a fresh wake-up (wake.h). */
        uv_idle_stop(&p->idle);
        wake_lower(&s->wake_pending);
        gw_svc_on_wake(s); /* commands it finds count as work of the next turn */
        break;
    }
    if (act == PACE_ENTER || act == PACE_LEAVE) {
        char who[24];
        snprintf(who, sizeof who, "thread=%d", s->idx);
        gwm_pace_change(GWM_PACE_SERVICE, who, &p->pace, act);
    }
    publish(p);
}

void gw_svcpoll_start(gw_svc_t *s, int64_t window_us)
{
    gw_svcpoll_t *p = &s->poll;
    pace_init(&p->pace, window_us == FLAGS_AUTO ? PACE_AUTO : window_us * 1000);
    /* the check runs without a window too: it counts loop turns (wsgw_service_loop_turns_total) */
    uv_check_init(&s->loop, &p->check);
    uv_idle_init(&s->loop, &p->idle);
    uv_prepare_init(&s->loop, &p->prep);
    uv_idle_init(&s->loop, &p->again);
    p->check.data = p->idle.data = p->prep.data = p->again.data = s;
    uv_check_start(&p->check, on_check);
    uv_prepare_start(&p->prep, on_prepare);
    p->started = true;
}

void gw_svcpoll_close(gw_svc_t *s)
{
    gw_svcpoll_t *p = &s->poll;
    if (!p->started)
        return;
    p->started = false;
    if (pace_polling(&p->pace))
        metrics_gauge_add(gwm.pace_polling[GWM_PACE_SERVICE], -1);
    pace_init(&p->pace, 0); /* not polling: the flag is no longer ours to keep raised */
    uv_close((uv_handle_t *)&p->check, NULL);
    uv_close((uv_handle_t *)&p->idle, NULL);
    uv_close((uv_handle_t *)&p->prep, NULL);
    uv_close((uv_handle_t *)&p->again, NULL);
}
