/* presence_gate.c: presence readiness for the push endpoints, and presence's gauges (see
 * presence_gate.h). Loop thread only. */
#include "presence_gate.h"

#include "clock.h"
#include "cluster.h"
#include "log.h"
#include "metrics.h"
#include "wsapi_metrics.h"

static uint64_t start_ms;

uint64_t presence_gate_now_ms(void)
{
    return (uint64_t)(clock_mono_ns() / 1000000);
}

void presence_gate_gauges(const presence_t *p)
{
    metrics_gauge_set(wsapi_m.presence, (int64_t)presence_count(p));
    metrics_gauge_set(wsapi_m.gateways, (int64_t)p->ngateways);
    metrics_gauge_set(wsapi_m.gateway_streams, (int64_t)p->nstreams);
    metrics_gauge_set(wsapi_m.presence_sessions, (int64_t)p->nsessions);
    metrics_gauge_set(wsapi_m.presence_unsynced, (int64_t)p->unsynced);
}

void presence_gate_config(presence_t *p, uint64_t grace_ms, uint64_t sync_timeout_ms)
{
    start_ms = presence_gate_now_ms();
    p->ready_after_ms = start_ms + grace_ms;
    p->sync_timeout_ms = sync_timeout_ms;
    p->was_ready = presence_ready(p, start_ms);
    metrics_gauge_set(wsapi_m.presence_ready, p->was_ready);
    presence_gate_gauges(p);
}

bool presence_gate_open(presence_t *p)
{
    if (p->cluster) /* --redis: presence is the cluster's (Redis up, every gateway synced) */
        return cluster_ready(p->cluster, NULL);
    uint64_t now = presence_gate_now_ms();
    if (p->unsynced) {
        size_t n = presence_sync_expire(p, now, p->sync_timeout_ms);
        if (n) {
            metrics_add(wsapi_m.sync_timeouts, n);
            log_rl_warn("presence sync timeout: counted as synced",
                        "sessions=%zu timeout_ms=%llu", n,
                        (unsigned long long)p->sync_timeout_ms);
        }
    }
    bool ready = presence_ready(p, now);
    if (ready != p->was_ready) {
        p->was_ready = ready;
        metrics_gauge_set(wsapi_m.presence_ready, ready);
        metrics_gauge_set(wsapi_m.presence_unsynced, (int64_t)p->unsynced);
        if (ready)
            log_rl_info("presence ready", "since_start_ms=%llu sessions=%zu connections=%zu",
                        (unsigned long long)(now - start_ms), p->nsessions, presence_count(p));
        else
            log_rl_info("presence resyncing: push and presence requests refused",
                        "unsynced_sessions=%zu grace_left_ms=%llu", p->unsynced,
                        (unsigned long long)(now < p->ready_after_ms ? p->ready_after_ms - now
                                                                      : 0));
    }
    return ready;
}
