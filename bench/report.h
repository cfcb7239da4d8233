/* report.h: the results of a bench run: counters, histograms, errors by kind, close codes and
 * HTTP statuses; merging (threads -> process -> parent, exact), the text summary with its fixed
 * last line, and the --json document.
 *
 * report_t is plain data (no pointers): worker processes write it whole to a pipe. */
#ifndef WSGW_BENCH_REPORT_H
#define WSGW_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "hist.h"

typedef enum {
    ERR_CONNECT_REFUSED,  /* ECONNREFUSED */
    ERR_CONNECT,          /* any other socket/bind/connect error (EADDRNOTAVAIL, ...) */
    ERR_CONNECT_TIMEOUT,  /* TCP connect + handshake not done within --timeout */
    ERR_HANDSHAKE_STATUS, /* HTTP status other than 101 (see report_t.http_status) */
    ERR_HANDSHAKE,        /* malformed response, wrong Sec-WebSocket-Accept, ... */
    ERR_CLOSED_BY_SERVER, /* close frame from the server before we were done (see close codes) */
    ERR_CLOSED,           /* EOF or reset without a close frame */
    ERR_PROTOCOL,         /* invalid frame from the server */
    ERR_UNANSWERED,       /* messages sent but never answered (one per message) */
    ERR_PUSH,             /* push API requests that failed (non-200 or I/O) */
    ERR_UNDELIVERED,      /* push: expected deliveries that never arrived */
    ERR_NOT_RECOVERED,    /* recover: a recovery notice said recovered=false */
    ERR_OUT_OF_ORDER,     /* recover: an offset again, or behind the last one */
    ERR_GAP,              /* recover: offsets skipped (one per offset) */
    ERR_KINDS
} err_kind_t;

/* report_err_name: "connect_refused", ... */
const char *report_err_name(err_kind_t k);

#define REPORT_CODES 32 /* distinct close codes / HTTP statuses kept; the last slot collects
                           any further codes as code 0 */

typedef struct code_count {
    uint32_t code;
    uint64_t count;
} code_count_t;

typedef struct report {
    /* connections */
    uint64_t conns_target;    /* connections asked for */
    uint64_t conns_attempted; /* connect() calls */
    uint64_t conns_opened;    /* completed handshakes */
    uint64_t conns_ready;     /* open when the connect phase ended */
    uint64_t conns_at_end;    /* open when the hold/message phase ended */
    /* messages */
    uint64_t sent, received;  /* data messages (push mode: sent = pushes accepted) */
    uint64_t bytes_sent, bytes_received; /* payload bytes */
    uint64_t unmatched;       /* replies with no send time waiting (not counted as latency) */
    uint64_t deliveries_expected; /* push mode */
    uint64_t pings, pongs;
    uint64_t errors[ERR_KINDS];
    code_count_t close_codes[REPORT_CODES]; /* close frames received from servers */
    code_count_t http_status[REPORT_CODES]; /* non-101 handshake statuses, push statuses != 200 */
    /* times: CLOCK_MONOTONIC ns (system-wide, comparable between the processes) */
    int64_t t_start, t_ready, t_first_send, t_last_send, t_last_recv, t_end;
    /* the bench's own memory: summed over processes */
    int64_t rss_base_kb, rss_ready_kb, rss_end_kb, rss_peak_kb;
    double cpu_s;   /* the bench's own CPU time (user + system), summed over processes */
    uint32_t procs, threads;
    /* message mode, open loop (--interval > 0): how far the bench fell behind its schedule */
    uint32_t open_loop;        /* 1: message mode with --interval > 0 */
    uint64_t late_sends;       /* sends more than late_threshold_ns behind their due time */
    int64_t late_threshold_ns; /* --late-threshold (the same in every thread and process) */
    hist_t latency; /* ns: message round trip (open loop: from the message's due time, so that
                       the bench's own delays count; closed loop: from its send), or push
                       delivery latency */
    hist_t latency_sent; /* ns: message round trip from the actual send (open loop: the figure
                            that coordinated omission gives; closed loop: == latency) */
    hist_t send_lag;     /* ns: open loop: actual send time - due time, every send */
    hist_t connect;      /* ns: connect() to validated 101 */
    /* recover mode (recov.h) */
    uint64_t rc_away;      /* messages pushed while the clients were away */
    uint64_t rc_recovered; /* of those, delivered by the recovery in order, before its notice */
    uint64_t rc_ok, rc_missed; /* recovery notices: recovered true / false */
    uint64_t rc_gaps, rc_dups;
    hist_t recovery;     /* ns: reconnected (101) to its recovery notice */
} report_t;

/* report_init: zeroes r with empty histograms and t_* unset. */
void report_init(report_t *r);

/* report_merge: adds src into dst: counters and histograms summed, codes merged, t_start /
 * t_first_send minimum, t_last_* / t_end maximum, memory summed. */
void report_merge(report_t *dst, const report_t *src);

/* report_code_add: counts code in a code table (code 0 collects overflow). */
void report_code_add(code_count_t *tab, uint32_t code, uint64_t n);

/* report_errors: the sum of all error kinds. */
uint64_t report_errors(const report_t *r);

/* report_mem_per_conn: (rss_ready - rss_base) in bytes per connection open at ready, 0 if none. */
double report_mem_per_conn(const report_t *r);

/* report_print: the human summary on out, ending with the fixed last line
 * "sent=N received=N errors=N p50_us=N p99_us=N[ conns=N]" (percentiles of `latency`: in open
 * loop timed from the due times). `mode` names the run. */
void report_print(const report_t *r, const char *mode, int with_conns, FILE *out);

/* report_json: writes the whole report as JSON to path; `config` (a jansson json_t *, may be
 * NULL) is embedded under "config" and stolen. Returns 0 or -1 with errno-style message in err. */
int report_json(const report_t *r, const char *mode, void *config, const char *path,
                char *err, size_t errlen);

#endif
