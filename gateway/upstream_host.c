/* upstream_host.c: a writer run by a service thread's uv loop instead of a thread of its own
 * (--inline-writers; upstream.h says what changes and what does not). Host service thread
 * only: the writer's code runs in the writer's recycle role (recycle.h), so what it frees goes
 * home as the writer's would. */
#include <errno.h>

#include "recycle.h"
#include "upstream_priv.h"

static void on_timer(uv_timer_t *t);

/* Runs fn(u) in u's recycle role, then gives the host its own back. */
static void as_writer(gw_up_t *u, void (*fn)(gw_up_t *))
{
    gw_rc_role_t was = gw_recycle_role(GW_RC_WRITER, u->idx, u->rc_peers, u->gw->nsvc);
    fn(u);
    gw_recycle_role_back(was);
}

static void pass(gw_up_t *u)
{
    u->host_due = false; /* a pass takes everything in the rings */
    as_writer(u, upstream__pass);
    if (atomic_load(&u->stop_req) >= 2) {
        gw_up_host_end(u);
        return;
    }
    /* (0 when events wait in the rings: the next loop turn, without sleeping) */
    uv_timer_start(&u->priv->htimer, on_timer, (uint64_t)upstream__timeout_ms(u), 0);
}

/* The writer's epoll fd is readable: its socket, or a wake-up from a service thread. */
static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    gw_up_host_pass(h->data, true);
}

static void on_timer(uv_timer_t *t)
{
    pass(t->data);
}

int gw_up_host_fd(const gw_up_t *u)
{
    return u->priv->hosting ? u->priv->epfd : -1;
}

void gw_up_host_pass(gw_up_t *u, bool readable)
{
    u->host_due = false; /* (an ended writer has nothing to do) */
    if (!u->priv->hosting)
        return;
    u->priv->look = readable ? UP_LOOK_GUESS : UP_LOOK_NONE;
    pass(u);
    u->priv->look = UP_LOOK_WAIT;
}

void gw_up_host(gw_up_t *u, uv_loop_t *loop)
{
    gw_up_priv_t *p = u->priv;
    as_writer(u, upstream__begin);
    uv_poll_init(loop, &p->hpoll, p->epfd);
    uv_timer_init(loop, &p->htimer);
    p->hpoll.data = p->htimer.data = u;
    p->hosting = true;
    uv_poll_start(&p->hpoll, UV_READABLE, on_poll);
    uv_timer_start(&p->htimer, on_timer, 0, 0); /* the first pass: connect */
}

void gw_up_host_end(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    if (p->host_ended)
        return;
    p->host_ended = true;
    if (p->hosting) {
        as_writer(u, upstream__end);
        uv_poll_stop(&p->hpoll);
        uv_timer_stop(&p->htimer);
        uv_close((uv_handle_t *)&p->hpoll, NULL);
        uv_close((uv_handle_t *)&p->htimer, NULL);
        p->hosting = false;
    }
    sem_post(&u->hosted_done); /* gw_up_join */
}
