/* fuzz_api_http1.c: ws-api's HTTP/1.1 request state machine (api/http_conn.c) on arbitrary
 * bytes, fed in arbitrary chunks like a socket would deliver them, with the output taken in
 * arbitrary pieces (a slow reader), timeouts and half-closes at arbitrary points.
 *
 * Input: 4 bytes of seed (chunk sizes, when output is taken, how it ends), then the byte
 * stream of the connection (pipelined requests). Checks after every step and at the end:
 *  - input held and output queued stay within their bounds (one head + max_body + a chunk in,
 *    OUT_HIGH + one answer out);
 *  - the output is a sequence of well-formed responses (status line, headers, Content-Length
 *    body; 100 Continue without a body), exactly one final response per request handed to the
 *    handler plus one per refusal, "Connection: close" only on the last one, nothing after it;
 *  - once closing, no request reaches the handler.
 * The handler answers with the request's method and path (HEAD: headers only), leaves some
 * requests unanswered (the connection must answer 500) and closes after others. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../api/http_conn.h"

#define MAX_BODY 256
#define OUT_SLACK 1024 /* one answer + 100 Continue beyond OUT_HIGH */

typedef struct fz {
    unsigned handled, refused;
    bool closing_seen;
    buf_t taken; /* every output byte, in order */
} fz_t;

static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static bool slice_has(gw_slice_t s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.n; i++)
        if (memcmp(s.p + i, needle, n) == 0)
            return true;
    return false;
}

static void handler(void *ud, http_conn_t *c, const http_req_t *r)
{
    fz_t *f = ud;
    if (f->closing_seen || http_conn_phase(c) == HTTP_PHASE_CLOSING)
        abort(); /* a request after a closing response */
    f->handled++;
    if (r->body_len && (!r->body || r->body_len > MAX_BODY))
        abort();
    if (slice_has(r->head->path, "nothing"))
        return; /* the connection answers 500 */
    if (slice_has(r->head->path, "close"))
        http_conn_close_after(c);
    char body[320];
    int n = snprintf(body, sizeof body, "%.*s %.*s",
                     (int)(r->head->method.n > 64 ? 64 : r->head->method.n), r->head->method.p,
                     (int)(r->head->path.n > 200 ? 200 : r->head->path.n), r->head->path.p);
    http_conn_respond(c, 200, "text/plain", body, r->head_only ? 0 : (size_t)n);
}

static void note_limits(http_conn_t *c, fz_t *f)
{
    const char *msg, *path;
    int status;
    if (http_conn_take_limit(c, &msg, &status, &path) != HTTP_LIMIT_NONE) {
        f->refused++;
        if (status < 400 || status > 499 || strlen(path) >= 96)
            abort();
    }
}

static void check_bounds(const http_conn_t *c)
{
    const uint8_t *p;
    if (http_conn_output(c, &p) > HTTP_CONN_OUT_HIGH + OUT_SLACK)
        abort();
    if (c->in.len - c->in_off > GW_HTTP_MAX_HEAD + MAX_BODY + 4096)
        abort();
}

/* Takes up to n output bytes (all when n is 0). */
static void take(http_conn_t *c, fz_t *f, size_t n)
{
    const uint8_t *p;
    size_t have = http_conn_output(c, &p);
    if (!n || n > have)
        n = have;
    if (n && buf_append(&f->taken, p, n) < 0)
        abort();
    http_conn_sent(c, n);
}

/* The whole output: well-formed responses, one final per request or refusal, close last. */
static void check_output(const fz_t *f, bool done)
{
    const char *p = (const char *)f->taken.data, *end = p + f->taken.len;
    unsigned finals = 0;
    bool closed = false;
    while (p < end) {
        if (closed)
            abort(); /* bytes after the closing response */
        const char *h = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!h || end - p < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0)
            abort();
        int status = atoi(p + 9);
        size_t len = 0;
        const char *cl = memmem(p, (size_t)(h - p), "\r\nContent-Length: ", 18);
        if (status != 100) {
            if (!cl)
                abort();
            len = strtoul(cl + 18, NULL, 10);
            finals++;
            closed = memmem(p, (size_t)(h - p), "\r\nConnection: close", 19) != NULL;
        }
        p = h + 4;
        if ((size_t)(end - p) < len)
            abort(); /* a body cut short */
        p += len;
    }
    if (done && finals != f->handled + f->refused)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t seed;
    memcpy(&seed, data, 4);
    seed |= 1;
    data += 4;
    size -= 4;
    fz_t f = {0};
    http_conn_cfg_t cfg = {.max_body = MAX_BODY, .handler = handler, .ud = &f};
    http_conn_t c;
    http_conn_init(&c, &cfg);
    size_t off = 0;
    while (off < size && http_conn_phase(&c) != HTTP_PHASE_CLOSING) {
        uint32_t r = rnd(&seed);
        if (!http_conn_wants_input(&c) || (r & 0x700) == 0) {
            take(&c, &f, (r >> 16) & 1 ? 0 : 1 + (r >> 20) % 700); /* a slow reader at times */
            if (http_conn_process(&c) < 0)
                abort();
        } else {
            size_t n = 1 + (r & 0x1000 ? r % 4096 : r % 16);
            if (n > size - off)
                n = size - off;
            uint8_t *chunk = malloc(n); /* exactly sized: ASan sees any overread */
            memcpy(chunk, data + off, n);
            if (http_conn_input(&c, chunk, n) < 0)
                abort();
            free(chunk);
            off += n;
        }
        note_limits(&c, &f);
        if (http_conn_phase(&c) == HTTP_PHASE_CLOSING)
            f.closing_seen = true;
        check_bounds(&c);
    }
    /* the end: a timeout, a half-close, or the peer just reads everything */
    uint32_t r = rnd(&seed);
    if ((r & 3) == 0)
        http_conn_timeout(&c);
    else if ((r & 3) == 1)
        http_conn_eof(&c);
    note_limits(&c, &f);
    if (http_conn_phase(&c) == HTTP_PHASE_CLOSING)
        f.closing_seen = true;
    for (int i = 0; i < 100000; i++) {
        const uint8_t *p;
        if (!http_conn_output(&c, &p) &&
            (http_conn_phase(&c) == HTTP_PHASE_CLOSING || c.in.len == c.in_off))
            break;
        take(&c, &f, 0);
        size_t before = c.in.len - c.in_off;
        if (http_conn_process(&c) < 0)
            abort();
        note_limits(&c, &f);
        if (http_conn_phase(&c) == HTTP_PHASE_CLOSING)
            f.closing_seen = true;
        if (!http_conn_output(&c, &p) && c.in.len - c.in_off == before)
            break; /* an incomplete request waits for bytes that will not come */
    }
    take(&c, &f, 0);
    check_output(&f, true);
    if (http_conn_done(&c) != (http_conn_phase(&c) == HTTP_PHASE_CLOSING))
        abort();
    http_conn_free(&c);
    buf_free(&f.taken);
    return 0;
}
