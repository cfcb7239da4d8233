/* gwm.h: the gateway's metric ids (names fixed by DESIGN.md), registered once at start-up by
 * the main thread; updated from any thread through common/metrics (per-thread shards). */
#ifndef GW_GWM_H
#define GW_GWM_H

typedef struct gw_metric_ids {
    int connections;         /* gauge wsgw_connections */
    int accepted;            /* wsgw_connections_accepted_total */
    int msgs_in, msgs_out;   /* wsgw_messages_total{direction} */
    int bytes_in, bytes_out; /* wsgw_bytes_total{direction} */
    int backpressure;        /* wsgw_backpressure_pauses_total */
    int paused;              /* wsgw_paused_connections (gauge: the service threads' lists) */
    int cmd_ring_full;       /* wsgw_command_ring_full_total */
    int lost;                /* wsgw_upstream_lost_messages_total */
    int refused;             /* wsgw_upstream_refused_messages_total (of lost: poison) */
    int handed_back;         /* wsgw_upstream_handed_back_total */
    int ping_timeouts;       /* wsgw_upstream_ping_timeouts_total */
    int resyncs;             /* wsgw_upstream_resyncs_total */
    int splits;              /* wsgw_upstream_split_batches_total */
    int presence_renewals;   /* wsgw_presence_renewals_total: a routed Close lost (delivery.h I4) */
    int stage_ingress, stage_api, stage_egress; /* wsgw_stage_seconds{stage} */
    int rejected_503, rejected_404, rejected_400; /* wsgw_handshake_rejects_total{status} */
    int rejected_401, rejected_403, rejected_429;
    int auth_rejects[8];     /* wsgw_auth_rejects_total{reason}, by gw_auth_result_t */
    int slow_consumer;       /* wsgw_slow_consumer_closes_total */
    int undeliverable;       /* wsgw_undeliverable_total: command for a connection that is gone */
    int accept_errors;       /* wsgw_accept_errors_total */
    int bad_downstream;      /* wsgw_upstream_decode_errors_total */
    int batches;             /* wsgw_upstream_batches_total */
    int upstream_blocked;    /* wsgw_upstream_send_blocked_total */
    int writer_wakeups;      /* wsgw_writer_wakeups_total: writer loop turns (--coalesce) */
    int svc_turns;           /* wsgw_service_loop_turns_total (--svc-coalesce) */
    int pace_windows[2], pace_items[2], pace_spells[2], pace_backoffs[2]; /* by GWM_PACE_* */
    int pace_polling[2];     /* wsgw_coalesce_polling{loop} (gauge) */
    int join_too_many;       /* wsgw_room_join_refusals_total{reason="too_many_rooms"} */
    int join_name_too_long;  /* wsgw_room_join_refusals_total{reason="name_too_long"} */
    int kick_bad_code;       /* wsgw_kick_fixes_total{what="code"}: sent as 4000 */
    int kick_bad_reason;     /* wsgw_kick_fixes_total{what="reason"}: not UTF-8, dropped */
    int subprotocol_accepted; /* wsgw_subprotocol_connections_total{protocol="wsgw.v1.json"} */
    int recover_requests;    /* wsgw_recover_requests_total: Recover events sent */
    int recovered_pubs;      /* wsgw_recovered_publications_total: from Recovered commands */
    int recover_events[12];  /* wsgw_recovery_events_total{event}, by gw_cr_ev_t (chanrec.h) */
} gw_metric_ids_t;

extern gw_metric_ids_t gwm;

/* gwm_init: registers every fixed series. Main thread, before other threads start. */
void gwm_init(void);
/* gwm_thread_conns: gauge wsgw_thread_connections{thread="k"} (spread over threads). */
int gwm_thread_conns(int thread);
/* gwm_close: counts a close with this code in wsgw_closes_total{code} (registers the label
 * value on first use: a mutex once per distinct code, never per message). Any thread. */
void gwm_close(int code);
/* Wake-up coalescing (pace.h), by loop: wsgw_coalesce_windows_total{loop},
 * wsgw_coalesce_items_total, wsgw_coalesce_spells_total, wsgw_coalesce_backoffs_total. */
enum { GWM_PACE_SERVICE, GWM_PACE_WRITER };
struct pace_stats;
/* gwm_pace_publish: adds now - seen of each counter (the caller's thread). */
void gwm_pace_publish(int loop, const struct pace_stats *now, const struct pace_stats *seen);
struct pace;
/* gwm_pace_change: after pace_turn answered `act` (pace.h) on the caller's loop: for
 * PACE_ENTER / PACE_LEAVE, moves wsgw_coalesce_polling{loop} and logs "coalescing starts" /
 * "coalescing ends" (rate-limited: one line a second each, suppressed=N); `who` names the
 * thread ("thread=1", "node=host:port"). Other actions: nothing. The caller's thread. */
void gwm_pace_change(int loop, const char *who, const struct pace *p, int act);
/* Per-node series: wsgw_upstream_connected{node}, wsgw_upstream_reconnects_total{node}. */
int gwm_up_connected(const char *node);
int gwm_up_reconnects(const char *node);

#endif
