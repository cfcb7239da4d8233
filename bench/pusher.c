/* pusher.c: rate-paced push API driver (see pusher.h). */
#include "pusher.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "http_push.h"
#include "log.h"

size_t pusher_body(const pusher_opts_t *o, uint64_t k, int64_t wall_ns, char *out, size_t cap)
{
    int n;
    switch (o->target) {
    case PUSH_TARGET_USER:
        n = snprintf(out, cap, "{\"user_ids\":[\"u%" PRIu64 "\"],%s\"data\":\"",
                     o->users ? k % o->users : 0, o->history ? "\"history\":true," : "");
        break;
    case PUSH_TARGET_ROOM:
        n = snprintf(out, cap, "{\"room\":\"%s\",\"data\":\"", o->room);
        break;
    default:
        n = snprintf(out, cap, "{\"all\":true,\"data\":\"");
        break;
    }
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t o_len = (size_t)n;
    /* data: "<ns> xxxx..." of exactly o->size bytes */
    int d = snprintf(out + o_len, cap - o_len, "%" PRId64 " ", wall_ns);
    if (d < 0 || (size_t)d >= cap - o_len)
        return 0;
    o_len += (size_t)d;
    for (size_t i = (size_t)d; i < o->size; i++) {
        if (o_len + 1 >= cap)
            return 0;
        out[o_len++] = 'x';
    }
    if (o_len + 3 >= cap)
        return 0;
    memcpy(out + o_len, "\"}", 3);
    return o_len + 2;
}

/* Sleeps until the monotonic time `due` unless stop_fd fires. Returns false if it fired. */
static bool wait_until(int stop_fd, int64_t due)
{
    for (;;) {
        int64_t left = due - clock_mono_ns();
        if (left <= 0)
            return true;
        struct timespec ts = {left / 1000000000, left % 1000000000};
        struct pollfd pf = {stop_fd, POLLIN, 0};
        int rv = ppoll(&pf, 1, &ts, NULL);
        if (rv > 0)
            return false;
    }
}

static bool stop_fired(int stop_fd)
{
    struct pollfd pf = {stop_fd, POLLIN, 0};
    return poll(&pf, 1, 0) > 0;
}

int pusher_run(const pusher_opts_t *o, int stop_fd, report_t *rep, char err[PUSHER_ERR_LEN])
{
    push_client_t pc;
    if (push_client_init(&pc, o->url, o->token, 5000, err) < 0)
        return -1;
    size_t cap = o->size + 512;
    char *body = malloc(cap);
    if (!body) {
        snprintf(err, PUSHER_ERR_LEN, "out of memory");
        push_client_close(&pc);
        return -1;
    }
    int64_t gap = (int64_t)(1e9 / o->rate);
    int64_t t0 = clock_mono_ns();
    int64_t end = o->duration_ns ? t0 + o->duration_ns : 0;
    uint64_t behind = 0;
    for (uint64_t k = 0; !o->count || k < o->count; k++) {
        int64_t due = t0 + (int64_t)k * gap;
        if (end && due >= end)
            break;
        if (!wait_until(stop_fd, due))
            break;
        int64_t now = clock_mono_ns();
        if (now - due > 1000000)
            behind++;
        size_t len = pusher_body(o, k, clock_wall_ns(), body, cap);
        int status = 0;
        const char *resp = NULL;
        char perr[PUSH_ERR_LEN];
        if (!rep->t_first_send)
            rep->t_first_send = now;
        rep->t_last_send = now;
        if (push_post(&pc, "/v1/push", body, len, &status, &resp, perr) < 0) {
            rep->errors[ERR_PUSH]++;
            log_rl_warn("push failed", "err=\"%s\"", perr);
            if (stop_fired(stop_fd))
                break;
            continue;
        }
        if (status != 200) {
            rep->errors[ERR_PUSH]++;
            report_code_add(rep->http_status, (uint32_t)status, 1);
            log_rl_warn("push rejected", "status=%d body=\"%.200s\"", status, resp);
            continue;
        }
        rep->sent++;
        rep->bytes_sent += o->size;
    }
    if (behind)
        log_warn("push rate not kept", "late_pushes=%" PRIu64 " rate=%.0f", behind, o->rate);
    free(body);
    push_client_close(&pc);
    return 0;
}
