/* gwm.c: gateway metric registration (see gwm.h). */
#include "gwm.h"

#include "chanrec.h"

#include <stdatomic.h>
#include <stdio.h>

#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "pace.h"
#include "procmetrics.h"

gw_metric_ids_t gwm;

/* Close codes are 1000..4999 (RFC 6455 §7.4); anything else is counted under 0. */
#define CODE_MIN 1000
#define CODE_MAX 4999
static _Atomic int close_ids[CODE_MAX - CODE_MIN + 2];

void gwm_init(void)
{
    procmetrics_build_info("wsgw_build_info");
    gwm.connections = metrics_gauge("wsgw_connections", NULL, "Open WebSocket connections.");
    gwm.accepted = metrics_counter("wsgw_connections_accepted_total", NULL,
                                   "WebSocket connections established.");
    const char *mh = "WebSocket messages, in = from clients, out = to clients.";
    gwm.msgs_in = metrics_counter("wsgw_messages_total", "direction=\"in\"", mh);
    gwm.msgs_out = metrics_counter("wsgw_messages_total", "direction=\"out\"", mh);
    const char *bh = "WebSocket payload bytes, in = from clients, out = to clients.";
    gwm.bytes_in = metrics_counter("wsgw_bytes_total", "direction=\"in\"", bh);
    gwm.bytes_out = metrics_counter("wsgw_bytes_total", "direction=\"out\"", bh);
    gwm.cmd_ring_full = metrics_counter("wsgw_command_ring_full_total", NULL,
                                        "Times a writer found its ring to a service thread "
                                        "full (commands wait, in order, and HTTP/2 credit "
                                        "is held back until the thread takes them).");
    gwm.backpressure = metrics_counter("wsgw_backpressure_pauses_total", NULL,
                                       "Clients paused because the ring to a writer was full.");
    gwm.paused = metrics_gauge("wsgw_paused_connections", NULL,
                               "Clients paused now for backpressure (reads off until the ring "
                               "to the writer has room). One that closed meanwhile counts until "
                               "its thread's next paused-socket check or resume drops it.");
    gwm.lost = metrics_counter("wsgw_upstream_lost_messages_total", NULL,
                               "Client messages lost toward the API, each counted and its client "
                               "told (closed 1011, or 1009 when refused as too big).");
    gwm.refused = metrics_counter("wsgw_upstream_refused_messages_total", NULL,
                                  "Of the lost messages: refused by an API node repeatedly "
                                  "(non-retryable gRPC status, or a batch failing alone).");
    gwm.handed_back = metrics_counter("wsgw_upstream_handed_back_total", NULL,
                                      "Messages handed back by an API node's writer for "
                                      "another node (failover).");
    gwm.ping_timeouts = metrics_counter("wsgw_upstream_ping_timeouts_total", NULL,
                                        "Sessions to API nodes ended because an HTTP/2 PING "
                                        "went unanswered (hung node, black hole).");
    gwm.resyncs = metrics_counter("wsgw_upstream_resyncs_total", NULL,
                                  "Presence resyncs: every live connection's Open re-sent to "
                                  "an API node at the start of a session.");
    gwm.splits = metrics_counter("wsgw_upstream_split_batches_total", NULL,
                                 "Batches split into one per event after failing repeatedly.");
    gwm.presence_renewals = metrics_counter(
        "wsgw_presence_renewals_total", NULL,
        "A connection's Close lost toward API nodes that share presence (refused repeatedly): "
        "the gateway presented a new x-wsgw-instance, so ws-api rebuilds its presence under a "
        "new token instead of keeping the closed connection.");
    const char *sh = "Time per hop: ingress = client frame read to batch written to HTTP/2; "
                     "api = api_ns - gateway_ns; egress = command read from HTTP/2 to lws_write.";
    gwm.stage_ingress = metrics_histogram("wsgw_stage_seconds", "stage=\"ingress\"", sh,
                                          metrics_latency_bounds, metrics_latency_nbounds, 1e-9);
    gwm.stage_api = metrics_histogram("wsgw_stage_seconds", "stage=\"api\"", sh,
                                      metrics_latency_bounds, metrics_latency_nbounds, 1e-9);
    gwm.stage_egress = metrics_histogram("wsgw_stage_seconds", "stage=\"egress\"", sh,
                                         metrics_latency_bounds, metrics_latency_nbounds, 1e-9);
    const char *rh = "WebSocket handshakes refused, by HTTP status.";
    gwm.rejected_400 = metrics_counter("wsgw_handshake_rejects_total", "status=\"400\"", rh);
    gwm.rejected_404 = metrics_counter("wsgw_handshake_rejects_total", "status=\"404\"", rh);
    gwm.rejected_503 = metrics_counter("wsgw_handshake_rejects_total", "status=\"503\"", rh);
    gwm.rejected_401 = metrics_counter("wsgw_handshake_rejects_total", "status=\"401\"", rh);
    gwm.rejected_403 = metrics_counter("wsgw_handshake_rejects_total", "status=\"403\"", rh);
    gwm.rejected_429 = metrics_counter("wsgw_handshake_rejects_total", "status=\"429\"", rh);
    for (int r = 1; r < GW_AUTH_NREASONS; r++) {
        char lb[64];
        snprintf(lb, sizeof lb, "reason=\"%s\"", gw_auth_reason((gw_auth_result_t)r));
        gwm.auth_rejects[r] = metrics_counter("wsgw_auth_rejects_total", lb,
                                              "WebSocket handshakes refused 401, by reason.");
    }
    gwm.slow_consumer = metrics_counter("wsgw_slow_consumer_closes_total", NULL,
                                        "Clients closed 1008 for exceeding --send-queue.");
    gwm.undeliverable = metrics_counter("wsgw_undeliverable_total", NULL,
                                        "Commands for connections that are gone or closing.");
    gwm.accept_errors = metrics_counter("wsgw_accept_errors_total", NULL,
                                        "accept(2) failures (e.g. out of file descriptors).");
    gwm.bad_downstream = metrics_counter("wsgw_upstream_decode_errors_total", NULL,
                                         "Undecodable messages or framing from API nodes.");
    gwm.batches = metrics_counter("wsgw_upstream_batches_total", NULL,
                                  "Upstream batches written to API nodes.");
    gwm.upstream_blocked = metrics_counter("wsgw_upstream_send_blocked_total", NULL,
                                           "Times an API node's socket did not take all the "
                                           "writer had (--upstream-sndbuf).");
    gwm.writer_wakeups = metrics_counter("wsgw_writer_wakeups_total", NULL,
                                         "Turns of the API-node writer loops (each a wake-up "
                                         "but for the 1 s idle timeout); see --coalesce.");
    gwm.svc_turns = metrics_counter("wsgw_service_loop_turns_total", NULL,
                                    "Turns of the service threads' event loops (each a wake-up "
                                    "but for timers); see --svc-coalesce.");
    static const char *const loops[2] = {"loop=\"service\"", "loop=\"writer\""};
    for (int l = 0; l < 2; l++) {
        gwm.pace_windows[l] = metrics_counter(
            "wsgw_coalesce_windows_total", loops[l],
            "Coalescing windows taken (one wake-up each) by service threads and writers while "
            "polling (--svc-coalesce, --coalesce); items / windows = items per wake-up.");
        gwm.pace_items[l] = metrics_counter(
            "wsgw_coalesce_items_total", loops[l],
            "Items (client messages and commands; events to API nodes) taken in coalescing "
            "windows.");
        gwm.pace_spells[l] = metrics_counter(
            "wsgw_coalesce_spells_total", loops[l],
            "Times a service thread or writer started polling (coalescing windows).");
        gwm.pace_polling[l] = metrics_gauge(
            "wsgw_coalesce_polling", loops[l],
            "Service threads or writers polling right now (taking their work once per "
            "coalescing window instead of waking per event).");
        gwm.pace_backoffs[l] = metrics_counter(
            "wsgw_coalesce_backoffs_total", loops[l],
            "Adaptive coalescing tries that did not pay (few items per window, or arrivals "
            "that slowed down because they wait on the gateway's answers): each doubles the "
            "time before the next try (16 ms to 1 s).");
    }
    const char *jh = "Room Join commands refused: the connection is in --max-rooms-per-conn "
                     "rooms, or the name is over --max-room-name bytes.";
    gwm.join_too_many = metrics_counter("wsgw_room_join_refusals_total",
                                        "reason=\"too_many_rooms\"", jh);
    gwm.join_name_too_long = metrics_counter("wsgw_room_join_refusals_total",
                                             "reason=\"name_too_long\"", jh);
    const char *kh = "Kick commands corrected before the close frame: a code a close frame may "
                     "not carry (sent as 4000), a reason that is not UTF-8 (dropped).";
    gwm.kick_bad_code = metrics_counter("wsgw_kick_fixes_total", "what=\"code\"", kh);
    gwm.kick_bad_reason = metrics_counter("wsgw_kick_fixes_total", "what=\"reason\"", kh);
    gwm.subprotocol_accepted =
        metrics_counter("wsgw_subprotocol_connections_total", "protocol=\"wsgw.v1.json\"",
                        "Connections that negotiated a WebSocket subprotocol.");
    gwm.recover_requests = metrics_counter(
        "wsgw_recover_requests_total", NULL,
        "Recover events sent to API nodes (wsgw.v1.json clients' positions and gaps).");
    gwm.recovered_pubs = metrics_counter("wsgw_recovered_publications_total", NULL,
                                         "History messages received in Recovered commands.");
    static const char *const cr_events[] = {"recovered", "missed",    "timeout",
                                            "overflow",  "gap",       "gap_filled",
                                            "duplicate", "late",      "reset",
                                            "untracked", "request_failed"};
    _Static_assert(sizeof cr_events / sizeof *cr_events == GW_CR_EV__N, "event names");
    _Static_assert(GW_CR_EV__N <= sizeof gwm.recover_events / sizeof *gwm.recover_events,
                   "recover_events");
    for (int i = 0; i < GW_CR_EV__N; i++) {
        char lb[48];
        snprintf(lb, sizeof lb, "event=\"%s\"", cr_events[i]);
        gwm.recover_events[i] = metrics_counter(
            "wsgw_recovery_events_total", lb,
            "wsgw.v1.json channels: recoveries that ended recovered or missed (with why: "
            "timeout, overflow, request_failed), live gaps (and gaps filled by late messages), "
            "duplicates dropped, late answers, epoch resets, untracked messages.");
    }
    for (size_t i = 0; i < sizeof close_ids / sizeof close_ids[0]; i++)
        atomic_init(&close_ids[i], -2);
}

int gwm_thread_conns(int thread)
{
    char lb[32];
    snprintf(lb, sizeof lb, "thread=\"%d\"", thread);
    return metrics_gauge("wsgw_thread_connections", lb, "Open connections per service thread.");
}

void gwm_close(int code)
{
    int slot = code >= CODE_MIN && code <= CODE_MAX ? code - CODE_MIN + 1 : 0;
    int id = atomic_load_explicit(&close_ids[slot], memory_order_acquire);
    if (id == -2) {
        char lb[32];
        snprintf(lb, sizeof lb, "code=\"%d\"", slot ? code : 0);
        id = metrics_counter("wsgw_closes_total", lb, "Closed WebSocket connections by close code.");
        atomic_store_explicit(&close_ids[slot], id, memory_order_release);
    }
    metrics_inc(id);
}

int gwm_up_connected(const char *node)
{
    char lb[320];
    snprintf(lb, sizeof lb, "node=\"%s\"", node);
    return metrics_gauge("wsgw_upstream_connected", lb, "1 while the API node is connected.");
}

int gwm_up_reconnects(const char *node)
{
    char lb[320];
    snprintf(lb, sizeof lb, "node=\"%s\"", node);
    return metrics_counter("wsgw_upstream_reconnects_total", lb,
                           "Reconnections to the API node.");
}

void gwm_pace_publish(int loop, const pace_stats_t *now, const pace_stats_t *seen)
{
    metrics_add(gwm.pace_windows[loop], now->windows - seen->windows);
    metrics_add(gwm.pace_items[loop], now->items - seen->items);
    metrics_add(gwm.pace_spells[loop], now->spells - seen->spells);
    metrics_add(gwm.pace_backoffs[loop], now->failed - seen->failed);
}

void gwm_pace_change(int loop, const char *who, const pace_t *p, int act)
{
    const char *lname = loop == GWM_PACE_SERVICE ? "service" : "writer";
    if (act == PACE_ENTER) {
        metrics_gauge_add(gwm.pace_polling[loop], 1);
        log_rl_info("coalescing starts", "loop=%s %s window_us=%lld per_ms=%.1f", lname, who,
                    (long long)pace_window(p) / 1000, p->entry_rate * 1e6);
    } else if (act == PACE_LEAVE) {
        metrics_gauge_add(gwm.pace_polling[loop], -1);
        log_rl_info("coalescing ends", "loop=%s %s why=%s per_ms=%.1f hold_ms=%lld", lname, who,
                    pace_end_name(p->last_end), p->last_rate * 1e6,
                    (long long)p->hold / 1000000);
    }
}
