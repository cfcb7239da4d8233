/* delivery.h: the delivery protocol toward one API node, as a state machine with no I/O.
 *
 * Events in (function calls: the session came up or went down, response headers, an ack, a
 * stream closed with a status, a PING answered, client events from the rings, the clock),
 * actions out (dlv_io_t callbacks: open a stream, send a PING, hand commands to service
 * threads, mark the node usable or not; and the bytes of each stream, pulled by the I/O layer
 * with dlv_stream_read). upstream.c keeps the socket, TLS and nghttp2 around it; the
 * simulator (tests/unit/test_gw_delivery_sim.c) drives it through seeded faults instead.
 *
 * Invariants (checked by the simulator after every step):
 *   I1 Every Message event taken is, at every moment, exactly one of: queued here (pending,
 *      unsent, sent and not yet released), handed back to its service thread (another node
 *      takes it), released (acknowledged by the node, or, on a stream without acks, written
 *      to the socket), or lost and counted: its client is told (Kick with a close code), the
 *      count goes to wsgw_upstream_lost_messages_total, and msgroute sees it resolved.
 *   I2 A node's presence converges to the gateway's live set. A node keeps the presence a
 *      session brought for as long as that session (TCP connection) lives, whatever happens
 *      to single streams, and drops it when the session ends. So on every new session the
 *      service threads' Opens of their live connections go out first on every stream, ahead
 *      of anything queued; Opens and Closes queued from before are dropped, never replayed (a
 *      replayed Open of a client that left meanwhile is a ghost), while within one session a
 *      stream that fails replays its batches, presence events included, in order. Each
 *      stream's last resync batch says presence_complete.
 *   I3 Per stream, batches go out in the order events were taken and are replayed in that
 *      order; a connection maps to one stream; handed-back messages leave oldest first. So a
 *      connection's events reach the API in order (msgroute.h keeps it across nodes).
 *   I4 No batch is retried without bound: a batch goes out at most max_attempts times; then
 *      it is split into one batch per event, and an event that still fails is lost and
 *      counted (I1). A stream ended by a non-retryable gRPC status while batches were in flight
 *      makes the oldest of them a suspect at once (split or lost on the next failure). A
 *      refusal (trailers-only with a retryable status before any answer) is not a failure: the
 *      node took nothing, and everything goes out again after the stream's backoff. With
 *      shared presence a routed Close that fails alone that often is handed back (sent again
 *      through the next session or another node) up to 3 times before it is lost: a new
 *      session, which puts a node's own presence right (I2), does not clear a Close lost from
 *      the shared store (a resync only adds to it; test_gw_delivery_sim seed 20212). When it
 *      is lost all the same, the gateway presents a new instance (renew_instance) and the
 *      session ends: the next one binds a new presence token, under which the store holds
 *      only what the resyncs bring, the live set (the simulator's nodes refuse some Closes
 *      always to check it). Each renewal makes the API rebuild all of the gateway's presence,
 *      so a node renews at most once per renew_interval: Closes lost meanwhile wait for the
 *      next one. Any other lost Close ends the session at once (a node's own presence, I2).
 *   I5 Bytes queued and unreleased stay within replay_max_bytes plus one ring burst: the I/O
 *      layer stops taking events while dlv_full().
 *   I6 Liveness: while the node owes us something (response headers, acks, the session's
 *      SETTINGS, a socket that takes no more bytes), a silence of ping_interval sends a PING;
 *      no answer within ping_timeout ends the session like a closed connection (I1: messages
 *      handed back in order or kept for the next session). A connect that does not complete
 *      within connect_timeout is abandoned. A stream that gets no response headers within
 *      headers_timeout is taken to be without acks (a plain gRPC server).
 *
 * Single-threaded: every function runs on the node's writer thread (or the simulator). The
 * callbacks must not call back into this module. */
#ifndef GW_DELIVERY_H
#define GW_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "batch.h"
#include "event.h"

typedef struct dlv_cfg {
    int nsvc;                  /* service threads (thread bits of conn ids index them) */
    int nstreams;              /* streams per session */
    size_t batch_max_events, batch_max_bytes;
    size_t replay_max_bytes;   /* queued + unreleased bytes before dlv_full() */
    int max_attempts;          /* sends of one batch before it is split, then lost (>= 2) */
    int64_t ping_interval_ns;  /* silence while owed something before a PING (0: no PINGs) */
    int64_t ping_timeout_ns;   /* PING unanswered this long: session over */
    int64_t connect_timeout_ns;
    int64_t headers_timeout_ns;
    int64_t backoff_min_ns, backoff_max_ns; /* reconnect and stream reopen backoff */
    int64_t renew_interval_ns; /* at least this long between two renewals (I4; 0: no wait) */
    const char *gateway_id;    /* Open.gateway_id */
    const char *name;          /* node name for logs */
} dlv_cfg_t;

/* Actions. The I/O layer implements them; none may call into this module. */
typedef struct dlv_io {
    void *ud;
    /* Submit the request of stream st (HTTP/2 headers, body pulled with dlv_stream_read).
     * false: it could not; the stream is retried after backoff. */
    bool (*open_stream)(void *ud, int st);
    /* Stream st has bytes to read again (after dlv_stream_read returned DLV_DEFERRED). */
    void (*resume_stream)(void *ud, int st);
    /* Send an HTTP/2 PING. */
    void (*ping)(void *ud);
    /* The node may be given new messages (true) or not (routing, gw_node_t.connected). */
    void (*set_usable)(void *ud, bool usable);
    /* A command for service thread k (Resync, Reroute, Kick); takes cmd. */
    void (*emit)(void *ud, int k, gw_cmd_t *cmd);
    /* Another node is usable: messages stranded here are handed back to go there. */
    bool (*others_usable)(void *ud);
    /* A routed Close was lost (I4): the shared presence store keeps a client that left. The
     * gateway's streams opened from now on must present a new instance (x-wsgw-instance),
     * which makes the API rebuild its presence under a new token. */
    void (*renew_instance)(void *ud);
} dlv_io_t;

typedef enum {
    DLV_DOWN = 0,       /* no connection; reconnect at dlv_next_connect() */
    DLV_CONNECTING,     /* TCP/TLS under way (the I/O layer's) */
    DLV_RESYNC,         /* session up: collecting the service threads' Opens */
    DLV_LIVE,           /* streams open */
    DLV_GOAWAY,         /* the node is finishing: no new batches */
} dlv_state_t;

typedef struct dlv dlv_t;

/* dlv_new: a node state machine (copies cfg; gateway_id and name must outlive it). NULL when
 * out of memory. dlv_free frees it with everything queued (not counted: process exit). */
dlv_t *dlv_new(const dlv_cfg_t *cfg, const dlv_io_t *io);
void dlv_free(dlv_t *d);
/* dlv_seed: the seed of the backoff jitter (deterministic in the simulator). */
void dlv_seed(dlv_t *d, uint64_t seed);
dlv_state_t dlv_state(const dlv_t *d);

/* ---- session ----------------------------------------------------------------------------- */
/* dlv_connect_due: the I/O layer should start connecting now (DOWN and the backoff is over).
 * It then calls dlv_connecting, and later dlv_session_up or dlv_session_down. */
bool dlv_connect_due(const dlv_t *d, int64_t now);
void dlv_connecting(dlv_t *d, int64_t now);
/* dlv_session_up: TCP (+TLS) connected and the HTTP/2 session created: the resync starts
 * (Resync commands to every service thread); streams open once every thread's Opens are in. */
void dlv_session_up(dlv_t *d, int64_t now);
/* dlv_settings: the node's SETTINGS arrived (it speaks HTTP/2): usable. */
void dlv_settings(dlv_t *d, int64_t now);
/* dlv_goaway: the node sent GOAWAY (error_code: RFC 9113 §7; ENHANCE_YOUR_CALM doubles the
 * PING interval, as gRPC clients do for "too_many_pings"). */
void dlv_goaway(dlv_t *d, uint32_t error_code, int64_t now);
/* dlv_session_down: the connection is gone (or never came). output_lost: bytes handed over
 * for the socket did not all reach it (without acks, those batches are lost). */
void dlv_session_down(dlv_t *d, const char *why, bool output_lost, int64_t now);
/* dlv_disconnect_wanted: non-NULL (the reason) when the machine decided the session is dead
 * (PING or connect timeout): the I/O layer closes it, then calls dlv_session_down. */
const char *dlv_disconnect_wanted(const dlv_t *d);

/* ---- streams ----------------------------------------------------------------------------- */
/* dlv_headers: response headers on st. acking: x-wsgw-ack: 1. end_stream/grpc_status >= 0:
 * a trailers-only answer, i.e. a refusal (dlv_stream_closed follows). */
void dlv_headers(dlv_t *d, int st, bool acking, bool end_stream, int grpc_status, int64_t now);
/* dlv_ack: Downstream.ack on st: every batch up to seq is handled. */
void dlv_ack(dlv_t *d, int st, uint64_t seq, int64_t now);
/* dlv_stream_closed: st ended (grpc_status -1: none seen; h2_error: RST_STREAM code or 0). */
void dlv_stream_closed(dlv_t *d, int st, int grpc_status, uint32_t h2_error, int64_t now);
/* dlv_stream_read: up to len bytes of st's request body into out. Returns the count (> 0), 0
 * with *eof set (end the request), or DLV_DEFERRED (nothing now: dlv_io_t.resume_stream
 * comes when there is). */
enum { DLV_DEFERRED = -1 };
ssize_t dlv_stream_read(dlv_t *d, int st, uint8_t *out, size_t len, bool *eof);
/* dlv_stream_pieces: dlv_stream_read, the bytes given as pieces of the kept batches instead
 * of copied: piece(ud, p, n) for each, in order. They stay valid and unchanged until this
 * module is next called with anything but dlv_stream_read/pieces (an ack, a stream closed, a
 * tick, events taken: any may free or renumber a batch): the caller copies what it has not
 * written by then. */
typedef void (*dlv_piece_fn)(void *ud, const uint8_t *p, size_t n);
ssize_t dlv_stream_pieces(dlv_t *d, int st, size_t len, bool *eof, dlv_piece_fn piece,
                          void *ud);
/* dlv_flushed: every byte handed over so far reached the socket (streams without acks
 * release what they sent). */
void dlv_flushed(dlv_t *d, int64_t now);
/* dlv_output_blocked: the socket takes no more bytes (true) or took everything (false). */
void dlv_output_blocked(dlv_t *d, bool blocked);
/* dlv_api_base: gateway_ns of the batch an answer on st refers to (the acked one, else the
 * newest sent), for the api stage metric; 0 when none. */
int64_t dlv_api_base(const dlv_t *d, int st, bool has_ack, uint64_t ack);

/* ---- liveness ---------------------------------------------------------------------------- */
/* dlv_heard: bytes arrived from the node. */
void dlv_heard(dlv_t *d, int64_t now);
/* dlv_ping_acked: the node answered our PING (it has read everything sent before it). */
void dlv_ping_acked(dlv_t *d, int64_t now);
/* dlv_tick: timers (PING, timeouts, stream reopen, headers). Call after every input batch. */
void dlv_tick(dlv_t *d, int64_t now);
/* dlv_next_timer: monotonic ns of the next timer (0: none). */
int64_t dlv_next_timer(const dlv_t *d);

/* ---- client events ----------------------------------------------------------------------- */
/* dlv_take: one event from a service thread (takes e). A GW_EV_REROUTED marker carries its
 * thread in the thread bits of conn_id and the Reroute number in code. */
void dlv_take(dlv_t *d, gw_event_t *e, int64_t now);
/* dlv_flush_events: after a burst of dlv_take: batches what was taken. */
void dlv_flush_events(dlv_t *d, int64_t now);
/* dlv_full: the replay budget is spent: stop taking events. */
bool dlv_full(const dlv_t *d);
/* dlv_idle: nothing queued, unsent or unreleased. */
bool dlv_idle(const dlv_t *d);
/* dlv_renewal_pending: a lost routed Close waits for renew_interval to renew (I4). */
bool dlv_renewal_pending(const dlv_t *d);
/* dlv_resolved_take: the Message counts resolved since the last call, per (thread k, stream):
 * calls fn for each non-zero one and zeroes it. Call only once the commands emitted before
 * are in the rings (a handback must be found by the thread that sees the count). */
void dlv_resolved_take(dlv_t *d, void (*fn)(void *ud, int k, int st, uint32_t n), void *ud);

/* ---- counters (tests, metrics) ------------------------------------------------------------ */
typedef struct dlv_stats {
    uint64_t lost;         /* Messages lost and counted (their clients told) */
    uint64_t refused;      /* of those, refused by the node (poison) */
    uint64_t handed_back;  /* Messages handed back */
    uint64_t released;     /* Messages released (acked or sent without acks) */
    uint64_t resyncs;
    uint64_t pings, ping_timeouts;
    uint64_t splits;       /* batches split after repeated failures */
    uint64_t renewals;     /* routed Closes lost: renew_instance called */
    uint64_t batches;      /* batches handed over whole */
    size_t queued;         /* bytes queued and unreleased now */
} dlv_stats_t;
const dlv_stats_t *dlv_stats(const dlv_t *d);

/* dlv_check: the machine's own consistency (queue integrity, byte counts, what each state
 * may hold). 0, or -1 with the first violation in err. For the simulator and fuzzing. */
int dlv_check(const dlv_t *d, char *err, size_t errlen);
/* dlv_trace_batch: tests only (NULL otherwise): called with every batch made, released,
 * split, stripped or dropped. */
extern void (*dlv_trace_batch)(const dlv_t *d, const char *what, int st, const gw_batch_t *b);
/* dlv_describe: one line of state for logs and the simulator's reports (snprintf result). */
int dlv_describe(const dlv_t *d, char *out, size_t len);

#endif
