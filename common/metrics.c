/* metrics.c: sharded metrics registry and Prometheus text renderer (see metrics.h). */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "procmetrics.h"

enum mtype { M_COUNTER, M_GAUGE, M_HISTOGRAM };

typedef struct family {
    char *name;
    char *help;
    enum mtype type;
} family_t;

typedef struct series {
    int family;
    char *labels;          /* without braces, may be "" */
    int slot;              /* first slot */
    int nbounds;           /* histogram: bounds; slots = nbounds + 1 buckets + 1 sum */
    double *bounds;        /* rendered units */
    uint64_t *raw_bounds;  /* raw units, for observe */
    double scale;
    _Atomic int64_t set;   /* gauge_set value */
} series_t;

_Thread_local metrics_shard_t *metrics__tls;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER; /* registration and attach only */
static family_t families[METRICS_MAX_SERIES];
static int nfamilies;
static series_t series[METRICS_MAX_SERIES];
static _Atomic int nseries;                  /* published with release after init */
static int next_slot;
static series_t *slot_owner[METRICS_MAX_SLOTS]; /* slot -> series, for ids given to callers */
static metrics_shard_t *shards[METRICS_MAX_SHARDS];
static _Atomic int nshards;
/* Shards of exited threads, reused by new threads (their sums stay in the totals). */
static metrics_shard_t *free_shards[METRICS_MAX_SHARDS];
static int nfree;
static pthread_key_t shard_key;
static pthread_once_t shard_once = PTHREAD_ONCE_INIT;

/* Runs on the exiting thread (pthread key destructor). */
static void shard_release(void *p)
{
    pthread_mutex_lock(&reg_lock);
    free_shards[nfree++] = p;
    pthread_mutex_unlock(&reg_lock);
}

static void shard_key_init(void)
{
    pthread_key_create(&shard_key, shard_release);
}

const double metrics_latency_bounds[] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005,   0.01,     0.025,   0.05,   0.1,     0.25,   0.5,   1,     2.5, 5, 10};
const int metrics_latency_nbounds =
    (int)(sizeof metrics_latency_bounds / sizeof metrics_latency_bounds[0]);

metrics_shard_t *metrics__attach(void)
{
    pthread_once(&shard_once, shard_key_init);
    pthread_mutex_lock(&reg_lock);
    int n = atomic_load(&nshards);
    metrics_shard_t *s = NULL;
    if (nfree > 0) {
        s = free_shards[--nfree];
    } else if (n < METRICS_MAX_SHARDS) {
        s = calloc(1, sizeof *s);
        if (s) {
            shards[n] = s;
            atomic_store_explicit(&nshards, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (!s) {
        log_error("metrics shard unavailable", "shards=%d", n);
        return NULL;
    }
    pthread_setspecific(shard_key, s);
    metrics__tls = s;
    return s;
}

static int find_family(const char *name)
{
    for (int i = 0; i < nfamilies; i++)
        if (strcmp(families[i].name, name) == 0)
            return i;
    return -1;
}

static int reg(const char *name, const char *labels, const char *help, enum mtype type,
               const double *bounds, int nb, double scale)
{
    int id = -1;
    if (!labels)
        labels = "";
    pthread_mutex_lock(&reg_lock);
    int fam = find_family(name);
    if (fam >= 0 && families[fam].type != type) {
        log_error("metric type conflict", "name=%s", name);
        goto out;
    }
    int ns = atomic_load_explicit(&nseries, memory_order_relaxed);
    if (fam >= 0) {
        for (int i = 0; i < ns; i++) {
            if (series[i].family == fam && strcmp(series[i].labels, labels) == 0) {
                id = series[i].slot;
                goto out;
            }
        }
    }
    int need = type == M_HISTOGRAM ? nb + 2 : 1;
    if (ns >= METRICS_MAX_SERIES || next_slot + need > METRICS_MAX_SLOTS) {
        log_error("metrics registry full", "name=%s", name);
        goto out;
    }
    if (fam < 0) {
        fam = nfamilies++;
        families[fam].name = strdup(name);
        families[fam].help = strdup(help ? help : name);
        families[fam].type = type;
    }
    series_t *s = &series[ns];
    s->family = fam;
    s->labels = strdup(labels);
    s->slot = next_slot;
    s->nbounds = type == M_HISTOGRAM ? nb : 0;
    s->scale = scale;
    atomic_init(&s->set, 0);
    if (type == M_HISTOGRAM) {
        s->bounds = malloc(sizeof(double) * (size_t)nb);
        s->raw_bounds = malloc(sizeof(uint64_t) * (size_t)nb);
        for (int i = 0; s->bounds && s->raw_bounds && i < nb; i++) {
            s->bounds[i] = bounds[i];
            s->raw_bounds[i] = (uint64_t)llround(bounds[i] / scale);
        }
    }
    slot_owner[next_slot] = s;
    next_slot += need;
    id = s->slot;
    atomic_store_explicit(&nseries, ns + 1, memory_order_release);
out:
    pthread_mutex_unlock(&reg_lock);
    return id;
}

int metrics_counter(const char *name, const char *labels, const char *help)
{
    return reg(name, labels, help, M_COUNTER, NULL, 0, 1);
}

int metrics_gauge(const char *name, const char *labels, const char *help)
{
    return reg(name, labels, help, M_GAUGE, NULL, 0, 1);
}

int metrics_histogram(const char *name, const char *labels, const char *help,
                      const double *bounds, int n, double scale)
{
    return reg(name, labels, help, M_HISTOGRAM, bounds, n, scale);
}

void metrics_gauge_set(int id, int64_t v)
{
    if (id < 0)
        return;
    /* slot_owner[id] was written before the id was handed out (under the registry lock, and
     * the id reached this thread through some synchronised hand-off). */
    atomic_store_explicit(&slot_owner[id]->set, v, memory_order_relaxed);
}

void metrics_observe(int id, uint64_t raw)
{
    if (id < 0)
        return;
    const series_t *s = slot_owner[id];
    int lo = 0, hi = s->nbounds; /* first bound >= raw; nbounds = +Inf bucket */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s->raw_bounds[mid] >= raw)
            hi = mid;
        else
            lo = mid + 1;
    }
    metrics__slot_add(id + lo, 1);
    metrics__slot_add(id + s->nbounds + 1, raw);
}

static uint64_t slot_sum(int slot, int nsh)
{
    uint64_t sum = 0;
    for (int i = 0; i < nsh; i++)
        sum += atomic_load_explicit(&shards[i]->v[slot], memory_order_relaxed);
    return sum;
}

int64_t metrics_value(int id)
{
    if (id < 0)
        return 0;
    int nsh = atomic_load_explicit(&nshards, memory_order_acquire);
    return (int64_t)slot_sum(id, nsh) + atomic_load_explicit(&slot_owner[id]->set,
                                                             memory_order_relaxed);
}

static const char *type_name(enum mtype t)
{
    return t == M_COUNTER ? "counter" : t == M_GAUGE ? "gauge" : "histogram";
}

static void escape_help(buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_append(out, "\\\\", 2);
        else if (*s == '\n')
            buf_append(out, "\\n", 2);
        else
            buf_append(out, s, 1);
    }
}

int metrics_render(buf_t *out)
{
    int ns = atomic_load_explicit(&nseries, memory_order_acquire);
    int nsh = atomic_load_explicit(&nshards, memory_order_acquire);
    int nf;
    pthread_mutex_lock(&reg_lock); /* families may grow concurrently; scrape is not hot */
    nf = nfamilies;
    pthread_mutex_unlock(&reg_lock);

    for (int f = 0; f < nf; f++) {
        const family_t *fam = &families[f];
        bool any = false;
        for (int i = 0; i < ns; i++) {
            const series_t *s = &series[i];
            if (s->family != f)
                continue;
            if (!any) {
                buf_appendf(out, "# HELP %s ", fam->name);
                escape_help(out, fam->help);
                buf_appendf(out, "\n# TYPE %s %s\n", fam->name, type_name(fam->type));
                any = true;
            }
            const char *lb = s->labels;
            const char *lo = *lb ? "{" : "", *lc = *lb ? "}" : "";
            if (fam->type == M_COUNTER) {
                buf_appendf(out, "%s%s%s%s %llu\n", fam->name, lo, lb, lc,
                            (unsigned long long)slot_sum(s->slot, nsh));
            } else if (fam->type == M_GAUGE) {
                int64_t v = (int64_t)slot_sum(s->slot, nsh) +
                            atomic_load_explicit(&s->set, memory_order_relaxed);
                buf_appendf(out, "%s%s%s%s %lld\n", fam->name, lo, lb, lc, (long long)v);
            } else {
                uint64_t cum = 0;
                const char *sep = *lb ? "," : "";
                for (int b = 0; b <= s->nbounds; b++) {
                    cum += slot_sum(s->slot + b, nsh);
                    if (b < s->nbounds)
                        buf_appendf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", fam->name, lb, sep,
                                    s->bounds[b], (unsigned long long)cum);
                    else
                        buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", fam->name, lb,
                                    sep, (unsigned long long)cum);
                }
                double sum = (double)slot_sum(s->slot + s->nbounds + 1, nsh) * s->scale;
                buf_appendf(out, "%s_sum%s%s%s %.9g\n", fam->name, lo, lb, lc, sum);
                buf_appendf(out, "%s_count%s%s%s %llu\n", fam->name, lo, lb, lc,
                            (unsigned long long)cum);
            }
        }
    }
    procmetrics_render(out);
    return out->data || out->len == 0 ? 0 : -1;
}
