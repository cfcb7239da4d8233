/* svcpoll.c: wake-up coalescing on a service thread (see svcpoll.h). Service thread only. */
#include "svcpoll.h"

#include <time.h>

#include "clock.h"
#include "gwm.h"
#include "metrics.h"
#include "svc.h"
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

/* uv check: runs once per loop turn, after its I/O callbacks. */
static void on_check(uv_check_t *h)
{
    gw_svc_t *s = h->data;
    gw_svcpoll_t *p = &s->poll;
    metrics_inc(gwm.svc_turns);
    if (s->stopping || !p->window_ns)
        return;
    bool work = p->work != 0;
    p->work = 0;
    if (!p->polling) {
        if (!work)
            return;
        /* Work came while we slept on events: poll from now on. Raising the flag first
         * means writers stop signalling; the drain below sees what they pushed before. */
        p->polling = true;
        p->quiet = 0;
        wake_raise(&s->wake_pending);
        uv_idle_start(&p->idle, on_idle);
        p->turn_ns = clock_mono_ns();
        gw_svc_on_wake(s);
        return;
    }
    sleep_until(p->turn_ns + p->window_ns);
    p->turn_ns = clock_mono_ns();
    gw_svc_on_wake(s); /* counts commands it ran as work of the next turn */
    if (work || p->work) {
        p->quiet = 0;
        return;
    }
    if (++p->quiet < SVCPOLL_QUIET)
        return;
    /* Quiet: back to sleeping until an event. Lower the flag, then drain once more: a
     * command pushed after that raises a fresh wake-up (wake.h). */
    p->polling = false;
    uv_idle_stop(&p->idle);
    wake_lower(&s->wake_pending);
    gw_svc_on_wake(s); /* commands it finds make the next check poll again */
}

void gw_svcpoll_start(gw_svc_t *s, int64_t window_us)
{
    gw_svcpoll_t *p = &s->poll;
    p->window_ns = window_us * 1000;
    /* the check runs without a window too: it counts loop turns (wsgw_service_loop_turns_total) */
    uv_check_init(&s->loop, &p->check);
    uv_idle_init(&s->loop, &p->idle);
    p->check.data = p->idle.data = s;
    uv_check_start(&p->check, on_check);
    p->started = true;
}

void gw_svcpoll_close(gw_svc_t *s)
{
    gw_svcpoll_t *p = &s->poll;
    if (!p->started)
        return;
    p->started = false;
    p->polling = false;
    uv_close((uv_handle_t *)&p->check, NULL);
    uv_close((uv_handle_t *)&p->idle, NULL);
}
