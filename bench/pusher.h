/* pusher.h: push mode's driver: POST /v1/push to ws-api at a fixed rate, each push carrying
 * the send time (CLOCK_REALTIME, decimal ns) at the start of its data text, which the clients
 * turn into delivery latency.
 *
 * Thread: the bench's main thread (blocking HTTP). */
#ifndef WSGW_BENCH_PUSHER_H
#define WSGW_BENCH_PUSHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "report.h"

#define PUSHER_ERR_LEN 256

typedef enum { PUSH_TARGET_USER, PUSH_TARGET_ROOM, PUSH_TARGET_ALL } push_target_t;

typedef struct pusher_opts {
    const char *url, *token, *room;
    push_target_t target;
    double rate;          /* pushes per second */
    uint64_t count;       /* pushes; 0 = until duration */
    int64_t duration_ns;  /* 0 = until count */
    size_t size;          /* bytes of data text (>= 20) */
    uint64_t users;       /* target user: round robin over u0..u<users-1> */
    bool history;         /* "history": true (recover mode: kept for the clients away) */
} pusher_opts_t;

/* pusher_body: the JSON body of push number k into out (NUL-terminated), data text starting
 * with wall_ns. Returns its length, or 0 when cap is too small. */
size_t pusher_body(const pusher_opts_t *o, uint64_t k, int64_t wall_ns, char *out, size_t cap);

/* pusher_run: pushes until count/duration or until stop_fd (eventfd) becomes readable.
 * Accepted pushes (HTTP 200) count in rep->sent, failures in rep->errors[ERR_PUSH] with their
 * status in rep->http_status; rep->t_first_send / t_last_send are set. Returns 0, or -1 when
 * the URL is unusable (message in err). */
int pusher_run(const pusher_opts_t *o, int stop_fd, report_t *rep, char err[PUSHER_ERR_LEN]);

#endif
