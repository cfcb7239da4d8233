/* metrics.h: counters, gauges and histograms rendered as Prometheus text (format 0.0.4).
 *
 * Hot path without locks or shared cache lines: every thread adds into its own shard (a
 * thread-local block of slots, one writer each), and rendering sums the shards. A shard is
 * attached on a thread's first update and survives the thread (counters stay cumulative).
 *
 * Registration (metrics_counter etc.) takes a mutex: call it at start-up, or cache the id when
 * a label value first appears (e.g. a new close code); never per message. */
#ifndef WSGW_METRICS_H
#define WSGW_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "buf.h"

#define METRICS_MAX_SLOTS 8192  /* per shard: 64 KiB */
#define METRICS_MAX_SERIES 2048
#define METRICS_MAX_SHARDS 256

typedef struct metrics_shard {
    _Atomic uint64_t v[METRICS_MAX_SLOTS];
} metrics_shard_t;

extern _Thread_local metrics_shard_t *metrics__tls;
metrics_shard_t *metrics__attach(void);

/* Registration. `labels` is a pre-formatted label list without braces (`code="1000"`) or
 * NULL. Registering the same name+labels again returns the same id. Returns an id >= 0, or -1
 * when out of slots or the name is reused with another type (logged). Any thread. */
int metrics_counter(const char *name, const char *labels, const char *help);
int metrics_gauge(const char *name, const char *labels, const char *help);
/* A histogram over `n` ascending upper bounds given in rendered units (seconds); observations
 * are raw values (e.g. nanoseconds) and rendered * scale (e.g. 1e-9). */
int metrics_histogram(const char *name, const char *labels, const char *help,
                      const double *bounds, int n, double scale);

/* Updates (any thread; each thread writes only its own shard). Ids < 0 are ignored so a failed
 * registration never crashes the hot path. */
static inline void metrics__slot_add(int slot, uint64_t v)
{
    metrics_shard_t *s = metrics__tls;
    if (__builtin_expect(s == NULL, 0))
        s = metrics__attach();
    if (!s)
        return;
    /* Single writer per shard: a plain load+store, atomic only so the renderer may read it. */
    uint64_t cur = atomic_load_explicit(&s->v[slot], memory_order_relaxed);
    atomic_store_explicit(&s->v[slot], cur + v, memory_order_relaxed);
}
static inline void metrics_add(int id, uint64_t v)
{
    if (id >= 0)
        metrics__slot_add(id, v);
}
static inline void metrics_inc(int id) { metrics_add(id, 1); }
/* Gauges: add/sub from any number of threads (the value is the sum), or set from one. */
static inline void metrics_gauge_add(int id, int64_t v) { metrics_add(id, (uint64_t)v); }
void metrics_gauge_set(int id, int64_t v);
/* Histogram observation in raw units. */
void metrics_observe(int id, uint64_t raw);

/* metrics_value: the current sum of a counter or gauge (tests, /readyz-style checks). */
int64_t metrics_value(int id);

/* metrics_render: appends the exposition text of every series, then the process_* metrics
 * (procmetrics.h). Returns 0 or -1 (memory). */
int metrics_render(buf_t *out);

/* Standard latency bounds in seconds: 10 us .. 10 s. */
extern const double metrics_latency_bounds[];
extern const int metrics_latency_nbounds;

#endif
