/* group.c: forked worker processes and their pipes (see group.h). */
#include "group.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

enum { MSG_READY = 1, MSG_RESULT = 2 };

typedef struct msg_hdr {
    uint32_t type, len;
} msg_hdr_t;

typedef struct ready_msg {
    uint64_t open;
} ready_msg_t;

typedef struct worker {
    pid_t pid;
    int ctl_w;   /* parent -> child: stop */
    int res_r;   /* child -> parent: READY, RESULT */
    bool ready, done, stop_sent;
    uint64_t open_at_ready;
    report_t *rep; /* the RESULT once received */
} worker_t;

struct group {
    int n;
    worker_t *w;
};

static volatile sig_atomic_t sig_stop_fd = -1;

static void on_signal(int sig)
{
    (void)sig;
    uint64_t one = 1;
    int saved = errno;
    if (sig_stop_fd >= 0 && write(sig_stop_fd, &one, sizeof one) < 0) {
        /* nothing to do in a signal handler */
    }
    errno = saved;
}

void group_signals(int stop_fd)
{
    sig_stop_fd = stop_fd;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_msg(int fd, uint32_t type, const void *p, uint32_t len)
{
    msg_hdr_t h = {type, len};
    if (write_all(fd, &h, sizeof h) < 0 || write_all(fd, p, len) < 0)
        return -1;
    return 0;
}

/* ---- child ------------------------------------------------------------------------------ */

/* The worker: runs the engine on [first, first+count), reports READY and RESULT. */
static int child_main(const bench_cfg_t *cfg, uint64_t first, uint64_t count, int64_t t0,
                      int ctl_r, int res_w)
{
    int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0) {
        log_error("eventfd failed", "errno=%d", errno);
        return 2;
    }
    group_signals(stop_fd);
    char err[ENGINE_ERR_LEN];
    engine_t *e = engine_start(cfg, first, count, stop_fd, t0, err);
    if (!e) {
        log_error("engine start failed", "err=\"%s\"", err);
        close(stop_fd);
        return 2;
    }
    int64_t rss_base = engine_rss_base_kb(e);
    bool ready_sent = false, stopped = false;
    int64_t rss_ready = 0;
    for (;;) {
        if (!ready_sent && engine_ready(e)) {
            rss_ready = engine_rss_kb();
            ready_msg_t rm = {engine_open_at_ready(e)};
            if (send_msg(res_w, MSG_READY, &rm, sizeof rm) < 0)
                log_warn("ready lost", "errno=%d", errno);
            ready_sent = true;
        }
        if (engine_finished(e))
            break;
        struct pollfd pf[2] = {{engine_notify_fd(e), POLLIN, 0}, {ctl_r, POLLIN, 0}};
        int n = poll(pf, stopped ? 1 : 2, 1000);
        if (n < 0 && errno != EINTR)
            break;
        if (pf[0].revents) {
            uint64_t v;
            if (read(pf[0].fd, &v, sizeof v) < 0 && errno != EAGAIN)
                log_warn("notify read failed", "errno=%d", errno);
        }
        if (!stopped && pf[1].revents) {
            uint64_t one = 1;
            if (write(stop_fd, &one, sizeof one) < 0)
                log_warn("stop failed", "errno=%d", errno);
            stopped = true;
        }
    }
    report_t *rep = malloc(sizeof *rep);
    if (!rep) {
        close(stop_fd);
        return 2;
    }
    report_init(rep);
    engine_join(e, rep);
    rep->procs = 1;
    rep->rss_base_kb = rss_base;
    rep->rss_ready_kb = rss_ready ? rss_ready : engine_rss_kb();
    rep->rss_end_kb = engine_rss_kb();
    rep->rss_peak_kb = engine_rss_peak_kb();
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        rep->cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    int rc = send_msg(res_w, MSG_RESULT, rep, sizeof *rep) < 0 ? 2 : 0;
    free(rep);
    close(stop_fd);
    return rc;
}

/* ---- parent ----------------------------------------------------------------------------- */

group_t *group_start(const bench_cfg_t *cfg, int procs, char err[ENGINE_ERR_LEN])
{
    group_t *g = calloc(1, sizeof *g);
    if (!g || !(g->w = calloc((size_t)procs, sizeof *g->w))) {
        free(g);
        snprintf(err, ENGINE_ERR_LEN, "out of memory");
        return NULL;
    }
    int64_t t0 = clock_mono_ns();
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    uint64_t users = cfg->users;
    for (int i = 0; i < procs; i++) {
        uint64_t first = users * (uint64_t)i / (uint64_t)procs;
        uint64_t last = users * (uint64_t)(i + 1) / (uint64_t)procs;
        int ctl[2], res[2];
        if (pipe2(ctl, O_CLOEXEC) < 0) {
            snprintf(err, ENGINE_ERR_LEN, "pipe: %s", strerror(errno));
            goto out_kill;
        }
        if (pipe2(res, O_CLOEXEC) < 0) {
            snprintf(err, ENGINE_ERR_LEN, "pipe: %s", strerror(errno));
            close(ctl[0]);
            close(ctl[1]);
            goto out_kill;
        }
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(err, ENGINE_ERR_LEN, "fork: %s", strerror(errno));
            close(ctl[0]);
            close(ctl[1]);
            close(res[0]);
            close(res[1]);
            goto out_kill;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(2);
            for (int j = 0; j < i; j++) {
                close(g->w[j].ctl_w);
                close(g->w[j].res_r);
            }
            close(ctl[1]);
            close(res[0]);
            int rc = child_main(cfg, first, last - first, t0, ctl[0], res[1]);
            close(ctl[0]);
            close(res[1]);
            free(g->w);
            free(g);
            exit(rc);
        }
        close(ctl[0]);
        close(res[1]);
        g->w[i].pid = pid;
        g->w[i].ctl_w = ctl[1];
        g->w[i].res_r = res[0];
        g->n++;
    }
    return g;

out_kill:
    for (int j = 0; j < g->n; j++) {
        kill(g->w[j].pid, SIGKILL);
        waitpid(g->w[j].pid, NULL, 0);
        close(g->w[j].ctl_w);
        close(g->w[j].res_r);
    }
    free(g->w);
    free(g);
    return NULL;
}

/* Reads one message of worker w (its pipe is readable). */
static void worker_read(worker_t *w)
{
    msg_hdr_t h;
    if (read_all(w->res_r, &h, sizeof h) < 0) {
        w->done = true; /* EOF: the worker ended (with or without a result) */
        return;
    }
    if (h.type == MSG_READY && h.len == sizeof(ready_msg_t)) {
        ready_msg_t rm;
        if (read_all(w->res_r, &rm, sizeof rm) < 0) {
            w->done = true;
            return;
        }
        w->ready = true;
        w->open_at_ready = rm.open;
    } else if (h.type == MSG_RESULT && h.len == sizeof(report_t)) {
        w->rep = malloc(sizeof *w->rep);
        if (!w->rep || read_all(w->res_r, w->rep, sizeof *w->rep) < 0) {
            free(w->rep);
            w->rep = NULL;
        }
        w->ready = true;
        w->done = true;
    } else {
        log_error("bad message from worker", "pid=%d type=%u len=%u", (int)w->pid, h.type,
                  h.len);
        w->done = true;
    }
}

static void stop_worker(worker_t *w)
{
    if (w->stop_sent)
        return;
    w->stop_sent = true;
    uint8_t b = 1;
    if (write(w->ctl_w, &b, 1) < 0 && errno != EPIPE)
        log_warn("stop to worker failed", "pid=%d errno=%d", (int)w->pid, errno);
}

void group_stop(group_t *g)
{
    for (int i = 0; i < g->n; i++)
        stop_worker(&g->w[i]);
}

static bool drain_stop(int stop_fd)
{
    uint64_t v;
    return read(stop_fd, &v, sizeof v) == sizeof v;
}

/* One poll over the workers not yet `done` (and not yet ready, when want_ready) plus stop_fd.
 * Returns -1 when stop fired, 0 on timeout, 1 when something was read. */
static int poll_workers(group_t *g, int stop_fd, int timeout_ms, bool want_ready)
{
    struct pollfd pf[257];
    int map[257];
    int n = 0;
    pf[n].fd = stop_fd;
    pf[n].events = POLLIN;
    map[n++] = -1;
    for (int i = 0; i < g->n && n < 257; i++) {
        worker_t *w = &g->w[i];
        if (w->done || (want_ready && w->ready))
            continue;
        pf[n].fd = w->res_r;
        pf[n].events = POLLIN;
        map[n++] = i;
    }
    if (n == 1)
        return 1;
    int rv = poll(pf, (nfds_t)n, timeout_ms);
    if (rv <= 0)
        return 0;
    if (pf[0].revents && drain_stop(stop_fd))
        return -1;
    for (int k = 1; k < n; k++)
        if (pf[k].revents)
            worker_read(&g->w[map[k]]);
    return 1;
}

uint64_t group_wait_ready(group_t *g, int stop_fd, int timeout_ms, bool *all_ready)
{
    int64_t deadline = timeout_ms < 0 ? 0 : clock_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        bool all = true;
        for (int i = 0; i < g->n; i++)
            if (!g->w[i].ready && !g->w[i].done)
                all = false;
        if (all)
            break;
        int wait = 1000;
        if (deadline) {
            int64_t left = deadline - clock_mono_ns();
            if (left <= 0)
                break;
            if (left / 1000000 < wait)
                wait = (int)(left / 1000000) + 1;
        }
        if (poll_workers(g, stop_fd, wait, true) < 0)
            break;
    }
    uint64_t open = 0;
    bool all = true;
    for (int i = 0; i < g->n; i++) {
        worker_t *w = &g->w[i];
        if (w->ready)
            open += w->rep ? w->rep->conns_ready : w->open_at_ready;
        else
            all = false;
    }
    *all_ready = all;
    return open;
}

bool group_sleep(group_t *g, int stop_fd, int64_t ms)
{
    int64_t deadline = clock_mono_ns() + ms * 1000000;
    for (;;) {
        bool all_done = true;
        for (int i = 0; i < g->n; i++)
            if (!g->w[i].done)
                all_done = false;
        if (all_done)
            return true; /* nothing left to wait for */
        int64_t left = deadline - clock_mono_ns();
        if (left <= 0)
            return true;
        if (poll_workers(g, stop_fd, (int)(left / 1000000) + 1, false) < 0)
            return false;
    }
}

int group_collect(group_t *g, int stop_fd, report_t *out)
{
    for (;;) {
        bool all = true;
        for (int i = 0; i < g->n; i++)
            if (!g->w[i].done)
                all = false;
        if (all)
            break;
        if (poll_workers(g, stop_fd, 1000, false) < 0)
            group_stop(g); /* Ctrl-C: workers close their connections and report */
    }
    int died = 0;
    for (int i = 0; i < g->n; i++) {
        worker_t *w = &g->w[i];
        int st = 0;
        waitpid(w->pid, &st, 0);
        if (w->rep) {
            report_merge(out, w->rep);
            free(w->rep);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                /* a result, then a crash or a sanitizer report at exit */
                died++;
                log_error("worker exited abnormally", "pid=%d status=%d", (int)w->pid, st);
            }
        } else {
            died++;
            log_error("worker ended without a result", "pid=%d status=%d", (int)w->pid, st);
        }
        close(w->ctl_w);
        close(w->res_r);
    }
    free(g->w);
    free(g);
    return died;
}
