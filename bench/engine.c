/* engine.c: epoll load engine, one loop per thread (see engine.h): the threads' loop, the
 * open-loop schedule, the phases, connect timeouts and the public engine_* calls. A
 * connection's own side (connect, handshake, frames, sends, its end) is engine_conn.c; what
 * the two share, engine_priv.h.
 *
 * Open loop (--interval > 0) times each round trip from the message's due time (its place in
 * the schedule), not from when it was written: when the bench itself falls behind (a busy
 * core, a stall), the sends it owes go out late and that delay stays in the percentiles
 * instead of vanishing (coordinated omission; wrk2's correction). How late each send was is
 * kept too (send_lag), and the round trip from the actual send (latency_sent). With --tick T
 * the due times are rounded up to a grid of period T shared by every thread and process
 * (from t0): the sends of each T go out together, the offered load the bench had when it slept
 * in whole milliseconds; they are timed from the grid point, where the schedule put them.
 *
 * Phases of a thread: connect (paced) -> ready (all connections open or failed) -> run
 * (message: send/receive until every connection has sent its messages; conn/push: hold until
 * the stop fd fires) -> drain (wait for replies, --drain) -> close (close frame 1000, wait for
 * the server's close up to close_wait, then reset: SO_LINGER 0, no TIME_WAIT).
 *
 * Threads: the loop, schedule and phases run on each engine thread (its own connections);
 * the public calls (engine_start .. engine_join, engine_rss_*) on the process's main thread. */
#include "engine_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "buf.h"
#include "clock.h"
#include "log.h"
#include "recov.h"
#include "sched.h"
#include "tsq.h"
#include "ws_frame.h"

#define EV_BATCH 512
#define SWEEP_NS 100000000LL /* connect-timeout sweep period */
#define STOP_TAG UINT64_MAX
/* push mode: deliveries are over after this long without one (a loaded gateway may stall) */
#define PUSH_QUIET_NS 2000000000LL

/* ---- small helpers (engine thread) ------------------------------------------------------- */

static void notify(struct engine *e)
{
    uint64_t one = 1;
    if (write(e->notify_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_warn("notify failed", "errno=%d", errno);
}

/* ---- phases -------------------------------------------------------------------------------- */

static void start_connects(ethread_t *t)
{
    while (t->started < t->n && t->pending < t->max_pending && !t->stopping) {
        if (t->connect_gap_ns) {
            if (t->now < t->next_connect)
                break;
            t->next_connect += t->connect_gap_ns;
            /* after a stall do not burst more than 10 ms worth */
            if (t->next_connect < t->now - 10000000)
                t->next_connect = t->now - 10000000;
        }
        engine__conn_start(t, t->started++);
    }
}

static void sweep_timeouts(ethread_t *t)
{
    int64_t tmo = t->e->cfg->timeout_ns;
    while (t->first_pending < t->started) {
        uint8_t s = t->conns[t->first_pending].state;
        if (s == C_CONNECTING || s == C_HANDSHAKE)
            break;
        t->first_pending++;
    }
    for (uint32_t j = t->first_pending; j < t->started; j++) {
        bconn_t *c = &t->conns[j];
        if ((c->state == C_CONNECTING || c->state == C_HANDSHAKE) &&
            t->now - c->t_connect > tmo)
            engine__conn_end(t, c, ERR_CONNECT_TIMEOUT);
    }
}

/* Open loop: when a message scheduled for `due` is sent: due rounded up to the --tick grid. */
static int64_t tick_due(const ethread_t *t, int64_t due)
{
    int64_t tick = t->e->cfg->tick_ns, t0 = t->e->t0;
    if (tick <= 0 || due <= t0)
        return due;
    return t0 + (due - t0 + tick - 1) / tick * tick;
}

/* Open loop: c sends its next message at `due`. Out of memory ends the connection (counted)
 * rather than leaving it silent. */
void engine__schedule(ethread_t *t, bconn_t *c, int64_t due)
{
    if (sched_push(&t->sched, due, (uint32_t)(c - t->conns)) < 0) {
        log_rl_error("out of memory", "what=%s", "schedule");
        engine__conn_end(t, c, ERR_CLOSED);
    }
}

static void run_schedule(ethread_t *t)
{
    const bench_cfg_t *cfg = t->e->cfg;
    int64_t due;
    while (sched_peek(&t->sched, &due) && tick_due(t, due) <= t->now) {
        sched_item_t s = sched_pop(&t->sched);
        bconn_t *c = &t->conns[s.id];
        if (c->state != C_OPEN || c->send_done)
            continue;
        if (engine__send_msgs(t, c, 1, tick_due(t, s.due)) < 0)
            continue;
        if (c->state == C_OPEN && !c->send_done)
            engine__schedule(t, c, s.due + cfg->interval_ns); /* from the due time: no drift */
        else
            engine__maybe_finish(t, c);
    }
}

/* Enters the final phase: no more sends; open connections are closed (what they still wait
 * for is counted unanswered), pending ones dropped; close_wait later the rest is reset. */
static void enter_final(ethread_t *t)
{
    if (t->final)
        return;
    t->final = true;
    t->final_deadline = t->now + t->e->cfg->close_wait_ns;
    t->started = t->n; /* no new connections */
    for (uint32_t j = 0; j < t->n; j++) {
        bconn_t *c = &t->conns[j];
        if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
            engine__conn_end(t, c, -1);
        } else if (c->state == C_OPEN) {
            t->rep.errors[ERR_UNANSWERED] += tsq_len(c->fifo);
            tsq_clear(c->fifo);
            engine__conn_start_close(t, c);
        }
    }
}

static void on_stop(ethread_t *t)
{
    t->stopping = true;
    t->stop_at = t->now;
    epoll_ctl(t->ep, EPOLL_CTL_DEL, t->e->stop_fd, NULL);
    if (bench_pushes(t->e->cfg) && t->ready) {
        /* deliveries may still be on their way: wait until none came for PUSH_QUIET_NS,
         * at most --drain */
        t->drained = true;
        t->drain_deadline = t->now + t->e->cfg->drain_ns;
        return;
    }
    enter_final(t);
}

/* push mode, stopping: the time the quiet wait ends */
static int64_t push_quiet_end(const ethread_t *t)
{
    int64_t last = t->rep.t_last_recv > t->stop_at ? t->rep.t_last_recv : t->stop_at;
    int64_t q = last + PUSH_QUIET_NS;
    return q < t->drain_deadline ? q : t->drain_deadline;
}

static void recover_phases(ethread_t *t);

static void check_phases(ethread_t *t)
{
    const bench_cfg_t *cfg = t->e->cfg;
    if (!t->ready && t->started == t->n && t->pending == 0) {
        t->ready = true;
        t->rep.conns_ready = t->open;
        t->rep.t_ready = t->now;
        atomic_fetch_add(&t->e->open_at_ready, t->open);
        if (atomic_fetch_add(&t->e->nready, 1) + 1 == t->e->nth)
            notify(t->e);
    }
    if (cfg->mode == MODE_MESSAGE && !t->final) {
        if (t->send_deadline && t->now >= t->send_deadline && !t->send_over) {
            t->send_over = true;
            /* --duration is over: nobody sends any more */
            for (uint32_t j = 0; j < t->started; j++) {
                bconn_t *c = &t->conns[j];
                if (c->state == C_OPEN) {
                    engine__mark_send_done(t, c);
                    engine__maybe_finish(t, c);
                }
            }
        }
        if (t->ready && t->senders == 0 && !t->drained) {
            t->drained = true;
            t->drain_deadline = t->now + cfg->drain_ns;
        }
        if (t->drained && t->now >= t->drain_deadline)
            enter_final(t);
    }
    if (bench_pushes(cfg) && t->stopping && !t->final && t->now >= push_quiet_end(t))
        enter_final(t);
    if (cfg->mode == MODE_RECOVER && t->ready && !t->stopping)
        recover_phases(t);
    if (t->final && t->now >= t->final_deadline) {
        for (uint32_t j = 0; j < t->n; j++)
            if (t->conns[j].state == C_CLOSING)
                engine__conn_end(t, &t->conns[j], -1);
    }
}

/* recover mode: every open connection goes away at *drop_at (its position kept), and comes
 * back offline_ns later (reconnects, all at once: the storm a gateway restart or a network
 * blip makes) with recover=<its position>. */
static void recover_phases(ethread_t *t)
{
    const bench_cfg_t *cfg = t->e->cfg;
    int64_t at = atomic_load_explicit(cfg->drop_at, memory_order_relaxed);
    if (!t->dropped && at && t->now >= at) {
        t->dropped = true;
        t->back_at = at + cfg->offline_ns;
        uint8_t body[2];
        ws_close_payload(body, 1000, NULL);
        for (uint32_t j = 0; j < t->n; j++) {
            bconn_t *c = &t->conns[j];
            if (c->state != C_OPEN || !c->rc)
                continue;
            recov_drop(c->rc);
            c->state = C_CLOSING;
            t->open--;
            t->closing++;
            t->tx.len = 0;
            if (engine__tx_frame(t, WS_OP_CLOSE, body, 2) < 0 ||
                engine__conn_write(c, t->tx.data, t->tx.len) < 0)
                engine__conn_end(t, c, -1);
        }
    }
    if (t->dropped && !t->back && t->now >= t->back_at) {
        t->back = true;
        for (uint32_t j = 0; j < t->n; j++) {
            bconn_t *c = &t->conns[j];
            if (!c->rc || c->rc->phase != RC_AWAY)
                continue;
            if (c->state == C_CLOSING)
                engine__conn_end(t, c, -1); /* the server did not answer our close: gone anyway */
            if (c->state == C_DONE)
                engine__conn_start(t, j);
        }
    }
}

static bool finished(const ethread_t *t)
{
    if (!t->ready || t->pending)
        return false;
    if (t->e->cfg->mode == MODE_MESSAGE)
        return (t->final || t->drained) && t->open == 0 && t->closing == 0;
    /* conn/push: hold until stopped, or until no connection is left to hold; recover: the
     * connections are away on purpose, hold until stopped */
    if (t->e->cfg->mode == MODE_RECOVER && !t->stopping)
        return false;
    return t->open == 0 && t->closing == 0;
}

/* How long the loop may sleep, in ns (0: not at all). */
static int64_t wait_ns(const ethread_t *t)
{
    int64_t next = t->now + 1000000000LL;
    if (t->started < t->n && t->connect_gap_ns && t->pending < t->max_pending &&
        t->next_connect < next)
        next = t->next_connect;
    if (t->pending && t->next_sweep < next)
        next = t->next_sweep;
    int64_t due;
    if (sched_peek(&t->sched, &due) && tick_due(t, due) < next)
        next = tick_due(t, due);
    if (t->send_deadline && !t->send_over && !t->final && t->send_deadline < next)
        next = t->send_deadline;
    if (t->drained && !t->final && t->drain_deadline < next)
        next = t->drain_deadline;
    if (bench_pushes(t->e->cfg) && t->stopping && !t->final && push_quiet_end(t) < next)
        next = push_quiet_end(t);
    if (t->e->cfg->mode == MODE_RECOVER && !t->stopping) {
        int64_t at = atomic_load_explicit(t->e->cfg->drop_at, memory_order_relaxed);
        if (!t->dropped && at && at < next)
            next = at;
        if (t->dropped && !t->back && t->back_at < next)
            next = t->back_at;
    }
    if (t->final && t->final_deadline < next)
        next = t->final_deadline;
    int64_t d = next - t->now;
    return d > 0 ? d : 0;
}

/* epoll_wait with a nanosecond timeout (epoll_pwait2, Linux 5.11): a millisecond timeout
 * rounded up made open-loop sends 0.5 ms late on average, which the latency (timed from the
 * schedule) would include. Falls back to milliseconds where the kernel lacks it. */
static int wait_events(ethread_t *t, struct epoll_event *evs, int64_t ns)
{
    if (!t->no_pwait2) {
        struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
        int n = epoll_pwait2(t->ep, evs, EV_BATCH, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        t->no_pwait2 = true;
    }
    return epoll_wait(t->ep, evs, EV_BATCH, (int)((ns + 999999) / 1000000));
}

static void *thread_main(void *arg)
{
    ethread_t *t = arg;
    struct epoll_event evs[EV_BATCH];
    /* open loop: wake on time (the default timer slack of 50 us would be part of every
     * send's lag, and so of the latency timed from the schedule) */
    if (t->e->cfg->interval_ns > 0)
        prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    t->now = clock_mono_ns();
    t->next_connect = t->now;
    t->next_sweep = t->now + SWEEP_NS;
    for (;;) {
        start_connects(t);
        if (t->now >= t->next_sweep) {
            sweep_timeouts(t);
            t->next_sweep = t->now + SWEEP_NS;
        }
        run_schedule(t);
        check_phases(t);
        if (finished(t))
            break;
        int n = wait_events(t, evs, wait_ns(t));
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait failed", "errno=%d", errno);
            break;
        }
        t->now = clock_mono_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == STOP_TAG) {
                if (!t->stopping)
                    on_stop(t);
                continue;
            }
            engine__conn_event(t, (uint32_t)evs[i].data.u64, evs[i].events);
        }
    }
    /* whatever is left (epoll failure): release it */
    for (uint32_t j = 0; j < t->n; j++) {
        if (t->conns[j].state >= C_CONNECTING && t->conns[j].state <= C_CLOSING)
            engine__conn_end(t, &t->conns[j], -1);
        free(t->conns[j].rc);
        t->conns[j].rc = NULL;
    }
    t->rep.t_end = clock_mono_ns();
    if (!t->ready) { /* stopped before the connect phase ended */
        t->ready = true;
        if (atomic_fetch_add(&t->e->nready, 1) + 1 == t->e->nth)
            notify(t->e);
    }
    if (atomic_fetch_add(&t->e->nfinished, 1) + 1 == t->e->nth)
        notify(t->e);
    return NULL;
}

/* ---- public (main thread) ----------------------------------------------------------------- */

engine_t *engine_start(const bench_cfg_t *cfg, uint64_t first, uint64_t count, int stop_fd,
                       int64_t t0, char err[ENGINE_ERR_LEN])
{
    engine_t *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, ENGINE_ERR_LEN, "out of memory");
        return NULL;
    }
    e->cfg = cfg;
    e->first = first;
    e->count = count;
    e->stop_fd = stop_fd;
    e->t0 = t0;
    e->nth = cfg->threads < 1 ? 1 : cfg->threads;
    if ((uint64_t)e->nth > count && count > 0)
        e->nth = (int)count;
    e->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    e->th = calloc((size_t)e->nth, sizeof *e->th);
    if (e->notify_fd < 0 || !e->th) {
        snprintf(err, ENGINE_ERR_LEN, "eventfd/calloc: %s", strerror(errno));
        goto out_free;
    }
    uint64_t seed[1];
    if (RAND_bytes((unsigned char *)seed, sizeof seed) != 1)
        seed[0] = (uint64_t)clock_wall_ns();
    int started = 0;
    for (int i = 0; i < e->nth; i++) {
        ethread_t *t = &e->th[i];
        t->e = e;
        t->idx = i;
        t->n = (uint32_t)(count / (uint64_t)e->nth + ((uint64_t)i < count % (uint64_t)e->nth));
        t->max_pending = cfg->max_pending / (uint32_t)e->nth;
        if (t->max_pending < 1)
            t->max_pending = 1;
        if (cfg->connect_rate > 0)
            t->connect_gap_ns = (int64_t)(1e9 * e->nth / cfg->connect_rate);
        if (cfg->duration_ns && cfg->mode == MODE_MESSAGE) /* push: the pusher's business */
            t->send_deadline = t0 + cfg->duration_ns;
        t->rng = (seed[0] ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1) + first)) | 1;
        report_init(&t->rep);
        t->rep.open_loop = cfg->mode == MODE_MESSAGE && cfg->interval_ns > 0;
        t->rep.late_threshold_ns = cfg->late_threshold_ns;
        t->rep.conns_target = t->n;
        t->rep.t_start = t0;
        /* untouched calloc pages cost no RSS until a connection uses its slot */
        t->conns = t->n ? calloc(t->n, sizeof *t->conns) : NULL;
        t->rxbuf = malloc(RX_BUF_SIZE);
        if (t->rxbuf)
            memset(t->rxbuf, 0, RX_BUF_SIZE);
        if (buf_reserve(&t->tx, 64 * 1024 + 16 * (cfg->payload_len + 14)) == 0)
            memset(t->tx.data, 0, t->tx.cap);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        if ((t->n && !t->conns) || !t->rxbuf || t->ep < 0) {
            snprintf(err, ENGINE_ERR_LEN, "thread %d set-up: %s", i, strerror(errno));
            goto out_stop;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STOP_TAG};
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, stop_fd, &ev) < 0) {
            snprintf(err, ENGINE_ERR_LEN, "epoll_ctl(stop): %s", strerror(errno));
            goto out_stop;
        }
    }
    /* the baseline for memory per connection: every per-thread buffer is touched already */
    e->rss_base_kb = engine_rss_kb();
    for (int i = 0; i < e->nth; i++) {
        int rv = pthread_create(&e->th[i].tid, NULL, thread_main, &e->th[i]);
        if (rv) {
            snprintf(err, ENGINE_ERR_LEN, "pthread_create: %s", strerror(rv));
            goto out_stop;
        }
        started++;
    }
    return e;

out_stop:
    if (started) {
        /* threads already running: make them stop, then join */
        uint64_t one = 1;
        if (write(stop_fd, &one, sizeof one) < 0)
            log_error("stop failed", "errno=%d", errno);
        for (int i = 0; i < started; i++)
            pthread_join(e->th[i].tid, NULL);
    }
    for (int i = 0; i < e->nth; i++) {
        free(e->th[i].conns);
        free(e->th[i].rxbuf);
        if (e->th[i].ep > 0)
            close(e->th[i].ep);
    }
out_free:
    if (e->notify_fd >= 0)
        close(e->notify_fd);
    free(e->th);
    free(e);
    return NULL;
}

int engine_notify_fd(const engine_t *e) { return e->notify_fd; }

int64_t engine_rss_base_kb(const engine_t *e) { return e->rss_base_kb; }

bool engine_ready(const engine_t *e) { return atomic_load(&e->nready) == e->nth; }

uint64_t engine_open_at_ready(const engine_t *e) { return atomic_load(&e->open_at_ready); }

bool engine_finished(const engine_t *e) { return atomic_load(&e->nfinished) == e->nth; }

void engine_join(engine_t *e, report_t *out)
{
    for (int i = 0; i < e->nth; i++) {
        ethread_t *t = &e->th[i];
        pthread_join(t->tid, NULL);
        report_merge(out, &t->rep);
        free(t->conns);
        free(t->rxbuf);
        sched_free(&t->sched);
        buf_free(&t->tx);
        close(t->ep);
    }
    out->threads = (uint32_t)e->nth;
    close(e->notify_fd);
    free(e->th);
    free(e);
}

int64_t engine_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    long long size = 0, res = 0;
    if (fscanf(f, "%lld %lld", &size, &res) != 2)
        res = 0;
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

int64_t engine_rss_peak_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}
