/* engine.h: the load engine of one process: `threads` epoll loops, each owning a share of the
 * connections (non-blocking connects paced by a rate, RFC 6455 client handshake and framing,
 * per-connection FIFO of due and send times for round-trip latency; open loop is timed from
 * the schedule, so the bench's own delays are not left out).
 *
 * Threads: engine_start/ready/finished/stop/join are called by the process's main thread; each
 * engine thread owns its connections, buffers and report_t until engine_join merges them. The
 * only shared state is the stop eventfd (written by the main thread or a signal handler) and
 * two atomic counters (threads ready, threads finished). */
#ifndef WSGW_BENCH_ENGINE_H
#define WSGW_BENCH_ENGINE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "report.h"

#define ENGINE_MAX_HOSTS 64
#define ENGINE_MAX_SRC 256
#define ENGINE_ERR_LEN 256

/* MODE_RECOVER: push mode over the subprotocol wsgw.v1.json whose clients go away for a while
 * and come back with their position (recov.h). */
typedef enum { MODE_MESSAGE, MODE_CONN, MODE_PUSH, MODE_RECOVER } bench_mode_t;

typedef struct engine_target {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char name[128]; /* "host:port" as given: the Host header */
} engine_target_t;

/* What every process and thread runs: filled by main, read-only once engine_start is called. */
typedef struct bench_cfg {
    bench_mode_t mode;
    engine_target_t hosts[ENGINE_MAX_HOSTS];
    int nhosts;
    struct sockaddr_storage src[ENGINE_MAX_SRC]; /* source addresses (port 0), may be empty */
    socklen_t src_len[ENGINE_MAX_SRC];
    int nsrc;
    const char *path;       /* request path, may hold a query */
    const char *user_param; /* query parameter carrying "u<i>" (empty: none) */
    const char *extra_headers; /* extra request header lines, each ending in \r\n, or NULL */
    uint64_t users;         /* total connections over all processes */
    int threads;
    double connect_rate;    /* connects per second for this process (0 = unpaced) */
    uint32_t max_pending;   /* connects+handshakes in progress per process */
    int64_t timeout_ns;     /* connect + handshake */
    int64_t close_wait_ns;  /* wait for the server's close frame before resetting */
    /* message mode */
    const uint8_t *payload;
    size_t payload_len;
    int opcode;             /* WS_OP_TEXT or WS_OP_BINARY */
    int64_t interval_ns;    /* 0: closed loop; > 0: open loop, latency timed from due times */
    int64_t late_threshold_ns; /* open loop: a send further behind its schedule counts late */
    int64_t tick_ns;        /* open loop: due times rounded up to this grid (0: none) */
    uint64_t times;         /* messages per connection, 0 = until the duration ends */
    int64_t duration_ns;    /* 0 = no limit */
    uint32_t inflight;      /* closed loop: messages outstanding per connection */
    int64_t drain_ns;       /* wait for replies after the last send */
    /* push mode */
    const char *join_msg;   /* sent by each client once open (e.g. chat join), or NULL */
    /* recover mode: every connection closes at *drop_at (CLOCK_MONOTONIC ns, 0 until the
     * parent sets it in memory shared with the workers; at least 1 s ahead: an idle thread
     * looks at it once a second) and reconnects offline_ns later with its position */
    _Atomic int64_t *drop_at;
    int64_t offline_ns;
} bench_cfg_t;

/* bench_pushes: push and recover modes (a pusher drives, clients hold and count). */
static inline bool bench_pushes(const bench_cfg_t *cfg)
{
    return cfg->mode == MODE_PUSH || cfg->mode == MODE_RECOVER;
}

typedef struct engine engine_t;

/* engine_start: starts cfg->threads threads for the connections with global indices
 * [first, first + count) (user ids u<first>..). stop_fd is an eventfd: once it is readable the
 * threads close their connections and finish (it is never read, so every thread sees it).
 * t0 (CLOCK_MONOTONIC ns) is the common start for --duration.
 * Returns the engine or NULL with a message in err. cfg must outlive the engine. */
engine_t *engine_start(const bench_cfg_t *cfg, uint64_t first, uint64_t count, int stop_fd,
                       int64_t t0, char err[ENGINE_ERR_LEN]);

/* engine_notify_fd: an eventfd that becomes readable when the last thread gets ready and
 * when the last thread finishes (poll it, then ask engine_ready/engine_finished; the caller
 * drains it). */
int engine_notify_fd(const engine_t *e);

/* engine_rss_base_kb: the process's RSS just before the threads started (their buffers
 * allocated and touched): the baseline for memory per connection. */
int64_t engine_rss_base_kb(const engine_t *e);

/* engine_ready: every thread has finished its connect phase (each connection open or failed). */
bool engine_ready(const engine_t *e);

/* engine_open_at_ready: connections open when the connect phase ended (valid once ready). */
uint64_t engine_open_at_ready(const engine_t *e);

/* engine_finished: every thread has left its loop. */
bool engine_finished(const engine_t *e);

/* engine_join: waits for the threads (the caller has made them stop or they finished), merges
 * their reports into out (report_merge) and frees the engine. */
void engine_join(engine_t *e, report_t *out);

/* engine_rss_kb: this process's resident set in KB (/proc/self/statm); peak: VmHWM. */
int64_t engine_rss_kb(void);
int64_t engine_rss_peak_kb(void);

#endif
