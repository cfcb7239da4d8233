/* upstream.c: the writer thread of one API node (see upstream.h): its epoll loop and the TCP
 * (+TLS) connection; the HTTP/2 side is upstream_h2.c, set-up upstream_node.c. What goes out
 * when, acks, replay, resync, liveness and failover are the delivery machine's (delivery.h):
 * these files only turn its actions into I/O and I/O into its events. Every function runs on
 * the writer thread unless its comment says otherwise. */
#include "upstream.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "config.h"
#include "flags.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "pace.h"
#include "recycle.h"
#include "upstream_priv.h"

/* ---- socket I/O --------------------------------------------------------------------------- */

/* Calls epoll_ctl only when EPOLLOUT changes: flush_out runs several times per wake, and an
 * unconditional MOD cost 0.6 syscalls per message in open-loop load. */
static void set_epoll(gw_up_t *u, bool want_out)
{
    gw_up_priv_t *p = u->priv;
    if (p->ep_out == want_out)
        return;
    p->ep_out = want_out;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = 1};
    epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->sock.fd, &ev);
}

/* Sends what nghttp2 has to send. Returns 0, or -1 when the session is over. What the socket
 * does not take is kept as the queue's own bytes (iovq_materialize): the pieces of batches it
 * refers to must not outlive this call (delivery.h, dlv_stream_pieces). */
static int flush_out(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    iovq_t *q = &p->out;
    for (;;) {
        while (iovq_pending(q) < WBUF_HIGH) { /* gather frames: one send(2) for many */
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(p->sess, &data);
            if (n < 0) {
                log_error("nghttp2 send failed", "node=%s err=%s", u->name,
                          nghttp2_strerror((int)n));
                return -1;
            }
            if (n == 0)
                break;
            if (buf_append(&q->buf, data, (size_t)n) < 0)
                return -1;
        }
        if (!iovq_pending(q))
            break;
        ssize_t w;
        if (p->sock.ssl) { /* copied bytes only: on_piece makes no refs under TLS */
            w = gw_sock_send(&p->sock, q->buf.data + q->off, q->buf.len - q->off);
        } else {
            struct iovec iov[64];
            w = gw_sock_sendv(&p->sock, iov, iovq_iov(q, iov, 64));
        }
        if (w > 0)
            iovq_advance(q, (size_t)w);
        if (w == GW_SOCK_AGAIN || (w >= 0 && iovq_pending(q))) {
            if (iovq_materialize(q) < 0)
                return -1;
            metrics_inc(gwm.upstream_blocked);
            set_epoll(u, true); /* (TLS may want a read first: EPOLLIN is always on) */
            dlv_output_blocked(p->d, true);
            return 0;
        }
        if (w < 0) {
            log_warn("send to API node failed", "node=%s err=%s", u->name, p->sock.err);
            return -1;
        }
        iovq_reset(q, OUT_KEEP);
    }
    set_epoll(u, false);
    dlv_flushed(p->d, upstream__now()); /* everything handed over reached the socket */
    if (!nghttp2_session_want_read(p->sess) && !nghttp2_session_want_write(p->sess))
        return -1; /* session over (GOAWAY done) */
    return 0;
}

static int read_in(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = gw_sock_recv(&p->sock, p->rbuf, READ_CHUNK);
        if (n == 0) {
            log_warn("API node closed the connection", "node=%s", u->name);
            return -1;
        }
        if (n == GW_SOCK_AGAIN) {
            p->read_dry = rounds == 0;
            if (p->sock.need_write)
                set_epoll(u, true);
            return 0;
        }
        if (n < 0) {
            log_warn("read from API node failed", "node=%s err=%s", u->name, p->sock.err);
            return -1;
        }
        dlv_heard(p->d, upstream__now());
        ssize_t rv = nghttp2_session_mem_recv(p->sess, p->rbuf, (size_t)n);
        if (rv < 0) {
            log_error("HTTP/2 error from API node", "node=%s err=%s", u->name,
                      nghttp2_strerror((int)rv));
            metrics_inc(gwm.bad_downstream);
            return -1;
        }
        if (n < READ_CHUNK)
            return 0;
    }
    return 0;
}

/* Ends the connection (or the attempt) and tells the machine. */
void upstream__close(gw_up_t *u, const char *why)
{
    gw_up_priv_t *p = u->priv;
    bool lost = iovq_pending(&p->out) > 0;
    if (p->sock.fd >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->sock.fd, NULL);
        gw_sock_close(&p->sock);
    }
    if (p->sess) {
        nghttp2_session_del(p->sess);
        p->sess = NULL;
    }
    for (int i = 0; i < p->nstreams; i++)
        p->st[i].id = 0;
    iovq_reset(&p->out, OUT_KEEP);
    p->tstate = T_NONE;
    dlv_session_down(p->d, why, lost, upstream__now());
}

/* A non-blocking socket of family, its buffers sized, connecting to sa; -1 with errno when
 * it could not begin. */
static int open_connect(int family, const struct sockaddr *sa, socklen_t sl)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, bufsz = (int)gw_cfg.upstream_sndbuf;
    if (family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    /* TCP: EINPROGRESS, finished in on_connecting. A Unix domain socket connects at once or
     * fails (EAGAIN there is a full backlog: a failure, retried after the back-off). */
    if (connect(fd, sa, sl) < 0 && (family == AF_UNIX || errno != EINPROGRESS)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void up_connect(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    dlv_connecting(p->d, upstream__now());
    int fd;
    if (u->unix_path[0]) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        memcpy(un.sun_path, u->unix_path, strlen(u->unix_path) + 1); /* fits: split_addr */
        fd = open_connect(AF_UNIX, (struct sockaddr *)&un, sizeof un);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int rv = getaddrinfo(u->host, u->port, &hints, &res);
        if (rv != 0) {
            log_rl_warn("cannot resolve API node", "node=%s err=%s", u->name, gai_strerror(rv));
            dlv_session_down(p->d, "cannot resolve", false, upstream__now());
            return;
        }
        fd = open_connect(res->ai_family, res->ai_addr, res->ai_addrlen);
        int e = errno;
        freeaddrinfo(res);
        errno = e;
    }
    if (fd < 0) {
        log_rl_warn("connect to API node failed", "node=%s err=%s", u->name, strerror(errno));
        dlv_session_down(p->d, "connect failed", false, upstream__now());
        return;
    }
    p->sock.fd = fd;
    p->tstate = T_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = 1};
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev);
    p->ep_out = true;
}

/* TCP connected, TLS handshake: returns 0 when the session may start, 1 to wait, -1 failed. */
static int on_connecting(gw_up_t *u, uint32_t events)
{
    gw_up_priv_t *p = u->priv;
    if (p->tstate == T_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(p->sock.fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            log_rl_warn("connect to API node failed", "node=%s err=%s", u->name,
                        strerror(err ? err : ECONNREFUSED));
            return -1;
        }
        if (!p->tls)
            return 0;
        if (gw_sock_tls_begin(&p->sock, p->tls, u->tls_name[0] ? u->tls_name : u->host) < 0) {
            log_rl_warn("TLS to API node failed", "node=%s err=%s", u->name, p->sock.err);
            return -1;
        }
        p->tstate = T_TLS;
    }
    int rv = gw_sock_handshake(&p->sock);
    if (rv == GW_SOCK_AGAIN) {
        set_epoll(u, p->sock.need_write);
        return 1;
    }
    if (rv < 0) {
        log_rl_warn("TLS to API node failed", "node=%s err=%s", u->name, p->sock.err);
        return -1;
    }
    return 0;
}

static void on_socket(gw_up_t *u, uint32_t events)
{
    gw_up_priv_t *p = u->priv;
    if (p->tstate == T_CONNECTING || p->tstate == T_TLS) {
        int rv = on_connecting(u, events);
        if (rv < 0)
            upstream__close(u, "connect failed");
        else if (rv == 0 && upstream__session_start(u) < 0)
            upstream__close(u, "nghttp2 session failed");
        return;
    }
    if (p->tstate != T_SESSION)
        return;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && read_in(u) < 0)
        upstream__close(u, "read failed");
}

/* ---- thread ------------------------------------------------------------------------------- */

static bool rings_waiting(gw_up_t *u)
{
    for (int k = 0; k < u->gw->nsvc; k++)
        if (gw_handoff_count(&u->links[k]->up))
            return true;
    return false;
}

/* Whether the writer would connect when the machine says so: it has an address and is in this
 * gateway's subset. */
static bool can_connect(gw_up_t *u)
{
    return u->host[0] && atomic_load_explicit(&u->node->wanted, memory_order_relaxed) != 0;
}

/* epoll timeout: the machine's next timer (at most 1 s); 0 when events wait to be taken. A
 * writer that cannot connect keeps no timer: the machine's "connect now" (it is down) would
 * make it spin, as every unassigned dns:/// slot and every node outside the subset did; a new
 * address or a subset change wakes it. */
int upstream__timeout_ms(gw_up_t *u)
{
    if (!dlv_full(u->priv->d) && rings_waiting(u))
        return 0;
    if (u->priv->tstate == T_NONE && !can_connect(u))
        return 1000;
    int64_t next = dlv_next_timer(u->priv->d);
    if (!next)
        return 1000;
    int64_t ms = (next - upstream__now() + 999999) / 1000000;
    return ms < 0 ? 0 : ms > 1000 ? 1000 : (int)ms;
}

/* Takes events from every service thread while the machine has room; returns how many. */
static uint32_t drain_rings(gw_up_t *u)
{
    uint32_t taken = 0;
    gw_up_priv_t *p = u->priv;
    void *items[RING_BURST];
    bool more = true;
    int64_t now = upstream__now();
    while (more && !dlv_full(p->d)) {
        more = false;
        for (int k = 0; k < u->gw->nsvc; k++) {
            /* (a service thread waiting for room in this ring is woken by the pop) */
            size_t n = gw_handoff_pop(&u->links[k]->up, items, RING_BURST);
            taken += (uint32_t)n;
            for (size_t i = 0; i < n; i++) {
                gw_event_t *e = items[i];
                if (e->type == GW_EV_MESSAGE) /* ingress: read from the client -> batched */
                    metrics_observe(gwm.stage_ingress, (uint64_t)(now - e->t_read));
                dlv_take(p->d, e, now);
            }
            if (n == RING_BURST)
                more = true;
        }
    }
    dlv_flush_events(p->d, now);
    return taken;
}

/* The machine's counters into the metrics (deltas). */
static void publish_stats(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    const dlv_stats_t *s = dlv_stats(p->d);
#define DELTA(field, id)                                                                       \
    if (s->field != p->seen.field)                                                             \
        metrics_add(gwm.id, s->field - p->seen.field);
    DELTA(lost, lost)
    DELTA(refused, refused)
    DELTA(handed_back, handed_back)
    DELTA(batches, batches)
    DELTA(ping_timeouts, ping_timeouts)
    DELTA(resyncs, resyncs)
    DELTA(splits, splits)
#undef DELTA
    p->seen = *s;
}

/* Everything a loop turn does after the socket events. Returns the events it took. */
static uint32_t turn(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    for (int k = 0; k < u->gw->nsvc; k++)
        gw_recycle_drain(u->links[k]->home_cmd);
    upstream__follow_addr(u);
    int64_t now = upstream__now();
    dlv_tick(p->d, now); /* before taking events: it may release some */
    const char *why = dlv_disconnect_wanted(p->d);
    bool wanted = atomic_load_explicit(&u->node->wanted, memory_order_relaxed) != 0;
    if (!why && !wanted && p->tstate != T_NONE)
        why = "not in this gateway's --upstream-subset"; /* (its messages go elsewhere) */
    if (why)
        upstream__close(u, why);
    if (p->tstate == T_NONE && can_connect(u) && dlv_connect_due(p->d, now))
        up_connect(u);
    uint32_t taken = drain_rings(u);
    upstream__flush_cmd_overflow(u);
    if (p->tstate == T_SESSION && flush_out(u) < 0)
        upstream__close(u, "session over");
    upstream__wake_touched(u);
    if (!p->overflowing)
        dlv_resolved_take(p->d, upstream__publish_one, u);
    atomic_store(&u->node->idle, dlv_idle(p->d) && !p->overflowing && !rings_waiting(u));
    publish_stats(u);
    return taken;
}

/* Waits for the socket or the eventfd until pace's deadline (polling). */
static int wait_polling(gw_up_t *u, struct epoll_event *evs, int max)
{
    gw_up_priv_t *p = u->priv;
    int64_t d = pace_deadline(&p->pace) - upstream__now();
    if (d < 0)
        d = 0;
    struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
    int n = p->pwait2_missing ? -1 : epoll_pwait2(p->epfd, evs, max, &ts, NULL);
    if (n < 0 && (p->pwait2_missing || errno == ENOSYS)) {
        p->pwait2_missing = true; /* kernel before 5.11: sleep the window out, then look */
        nanosleep(&ts, NULL);
        n = epoll_wait(p->epfd, evs, max, 0);
    }
    return n;
}

/* Before the first pass (the thread running the writer, registered as its recycle role). */
void upstream__begin(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    for (int k = 0; k < u->gw->nsvc; k++)
        u->rc_peers[k] = u->links[k]->home_ev;
    struct epoll_event wev = {.events = EPOLLIN, .data.u32 = 0};
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, u->wake.fd, &wev);
    /* Coalescing (--coalesce, pace.h): while pace polls, the wake flag stays raised, so
     * service threads push without signalling; the loop wakes at pace's deadline, or earlier
     * when the API node sent something, and takes all ring items in one turn. When pace ends
     * polling, the loop lowers the flag, drains once more (wake.h: an item pushed after that
     * raises a fresh signal) and goes back to sleeping until an event. A hosted writer
     * (--inline-writers) does not pace: it runs once per turn of its host's loop, which
     * paces itself (--svc-coalesce). */
    pace_init(&p->pace, u->hosted                          ? 0
                        : gw_cfg.coalesce_us == FLAGS_AUTO ? PACE_AUTO
                                                           : gw_cfg.coalesce_us * 1000);
    pace_set_lag(&p->pace, PACE_WRITER_LAG16); /* after the service threads' hand-over */
}

/* A hosted writer whose epoll fd its host saw readable (UP_LOOK_GUESS): the socket, the eventfd
 * or room to write. Mostly it is the API node's answers, so it reads the socket at once instead
 * of asking epoll_wait which it is: one system call less per round trip (bench/RESULTS.md #72).
 * Only in session, and only while no wake-up is outstanding: the eventfd is written only by
 * the thread that raised wake.pending (wake.h), so with the flag low it holds nothing. Returns
 * false when the read found nothing: the fd was readable for something else (room to write),
 * and the caller looks. */
static bool guess_socket(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    if (p->tstate != T_SESSION || atomic_load(&u->wake.pending))
        return false;
    p->read_dry = false;
    on_socket(u, EPOLLIN);
    return !p->read_dry;
}

/* One pass of the loop: waits for the socket or a wake-up (at most until the next timer; a
 * hosted writer does not wait, and looks only as p->look says), handles them, then a turn. */
void upstream__pass(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    struct epoll_event evs[8];
    int n = 0;
    if (pace_polling(&p->pace))
        n = wait_polling(u, evs, 8);
    else if (p->look == UP_LOOK_WAIT)
        n = epoll_wait(p->epfd, evs, 8, u->hosted ? 0 : upstream__timeout_ms(u));
    else if (p->look == UP_LOOK_GUESS && !guess_socket(u))
        n = epoll_wait(p->epfd, evs, 8, 0);
    metrics_inc(gwm.writer_wakeups);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u32 == 0) {
            if (pace_polling(&p->pace))
                wake_consume(&u->wake); /* the flag stays raised while polling */
            else
                wake_clear(&u->wake);
        } else if (p->sock.fd >= 0) {
            on_socket(u, evs[i].events);
        }
    }
    upstream__wake_touched(u); /* the commands just read go to the service threads first */
    uint32_t taken = turn(u) + p->carry;
    p->carry = 0;
    if (!pace_on(&p->pace))
        return;
    pace_act_t act = pace_turn(&p->pace, upstream__now(), taken);
    if (act == PACE_ENTER) {
        wake_raise(&u->wake.pending); /* an item pushed since the drain signalled */
    } else if (act == PACE_LEAVE) {
        wake_lower(&u->wake.pending);
        p->carry = turn(u); /* counted with the next turn, as the service threads do */
    }
    if (act == PACE_ENTER || act == PACE_LEAVE) {
        char who[320];
        snprintf(who, sizeof who, "node=%s", u->name);
        gwm_pace_change(GWM_PACE_WRITER, who, &p->pace, act);
    }
    const pace_stats_t *st = pace_stats(&p->pace);
    if (st->windows != p->pace_seen.windows || st->spells != p->pace_seen.spells) {
        gwm_pace_publish(GWM_PACE_WRITER, st, &p->pace_seen);
        p->pace_seen = *st;
    }
}

/* After the last pass: the session ends here (its messages stay in the machine and the links,
 * freed with them). */
void upstream__end(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    if (pace_polling(&p->pace))
        metrics_gauge_add(gwm.pace_polling[GWM_PACE_WRITER], -1);
    pace_init(&p->pace, 0);
    if (p->sock.fd >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->sock.fd, NULL);
        gw_sock_close(&p->sock);
    }
    if (p->sess)
        nghttp2_session_del(p->sess);
    p->sess = NULL;
    atomic_store(&u->node->connected, 0);
    gw_batch_thread_cleanup();
}

/* The writer's own thread (without --inline-writers). */
void *upstream__main(void *arg)
{
    gw_up_t *u = arg;
    char name[16];
    snprintf(name, sizeof name, "gw-up-%d", u->idx);
    pthread_setname_np(pthread_self(), name);
    gw_recycle_register(GW_RC_WRITER, u->idx, u->rc_peers, u->gw->nsvc);
    upstream__begin(u);
    while (atomic_load(&u->stop_req) < 2)
        upstream__pass(u);
    upstream__end(u);
    gw_recycle_register(GW_RC_NONE, 0, NULL, 0);
    return NULL;
}
