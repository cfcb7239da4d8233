/* http_conn.h: one server-side HTTP/1.1 connection (RFC 9112) of ws-api's push API as a pure
 * state machine: bytes in, requests handed to a handler one at a time and in order, response
 * bytes out. No sockets, no clock, no libuv: api/http_server.c drives it from the loop, and
 * fuzz/fuzz_api_http1.c feeds it arbitrary bytes in arbitrary chunks.
 *
 * Framing is right by construction:
 *  - a request reaches the handler only once its head (common/http1.h) and its whole body are
 *    here, and its response is queued before the next request is looked at: pipelined
 *    requests are answered in order, each exactly once;
 *  - the body length comes from Content-Length alone (RFC 9112 §6.3). Transfer-Encoding
 *    together with Content-Length, Content-Length values that differ (in one field or in
 *    several), a Content-Length that is not a plain decimal number, or a Transfer-Encoding
 *    other than "chunked": 400 and the connection ends, since the framing is in doubt and
 *    nothing after it may be read as a request (request smuggling). "chunked" alone: 411 and
 *    the connection ends (no chunked request bodies are accepted);
 *  - a malformed head, an HTTP/1.1 request without exactly one Host (RFC 9112 §3.2), a body
 *    over max_body (413, answered at the head: the body is not awaited) also end the
 *    connection after their answer; after any response with "Connection: close" the rest of
 *    the input is ignored. HTTP/1.0 requests are answered and the connection ends.
 *  - "Expect: 100-continue" gets "100 Continue" before the body (a body over max_body gets the
 *    413 instead).
 * Backpressure: while HTTP_CONN_OUT_HIGH or more response bytes wait, no further request is
 * handled and http_conn_wants_input() is false (the owner stops reading): a client that
 * pipelines without reading its answers holds at most one head + body of input and about
 * OUT_HIGH + one response of output.
 * Timeouts are the owner's: it asks http_conn_phase() what the connection waits for and calls
 * http_conn_timeout() when that took too long (408 for a partial head or body).
 *
 * Ownership: the connection owns its buffers; request slices and bodies passed to the handler
 * are valid only during the call. Loop thread (ws-api) or the fuzzer's thread: one owner. */
#ifndef WSGW_API_HTTP_CONN_H
#define WSGW_API_HTTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http1.h"

#define HTTP_CONN_OUT_HIGH (64 * 1024) /* queued response bytes that pause request handling */

typedef struct http_req {
    const gw_http_req_t *head; /* method, path, query, headers (valid during the call) */
    const uint8_t *body;       /* Content-Length bytes (NULL when 0) */
    size_t body_len;
    bool head_only; /* HEAD: the response carries no body (http_conn_respond drops it) */
} http_req_t;

typedef struct http_conn http_conn_t;

/* Answers r with exactly one http_conn_respond() (none: the connection answers 500). */
typedef void (*http_handler_fn)(void *ud, http_conn_t *c, const http_req_t *r);

/* What the connection waits for (the owner's timeouts). */
typedef enum {
    HTTP_PHASE_IDLE = 0, /* nothing of a next request yet (keep-alive) */
    HTTP_PHASE_HEAD,     /* part of a request head */
    HTTP_PHASE_BODY,     /* a complete head, part of its body */
    HTTP_PHASE_CLOSING,  /* no further request will be read: close once the output is out */
} http_phase_t;

/* Refusals made by the connection itself, for the owner's metrics and logs. */
typedef enum {
    HTTP_LIMIT_NONE = 0,
    HTTP_LIMIT_BAD_REQUEST,  /* 400: malformed head, Host missing or repeated */
    HTTP_LIMIT_FRAMING,      /* 400: CL + TE, differing or bad CL, TE other than chunked */
    HTTP_LIMIT_CHUNKED,      /* 411: chunked request body */
    HTTP_LIMIT_BODY_SIZE,    /* 413: Content-Length over max_body */
    HTTP_LIMIT_HEAD_TIMEOUT, /* 408 from http_conn_timeout in HTTP_PHASE_HEAD */
    HTTP_LIMIT_BODY_TIMEOUT, /* 408 from http_conn_timeout in HTTP_PHASE_BODY */
    HTTP_LIMIT_COUNT
} http_limit_t;

typedef struct http_conn_cfg {
    size_t max_body;
    http_handler_fn handler;
    void *ud;
} http_conn_cfg_t;

struct http_conn {
    const http_conn_cfg_t *cfg;
    buf_t in;          /* received bytes; in.data[in_off..in.len) not handled yet */
    size_t in_off;
    size_t head_scan;  /* bytes of the pending head already searched for a line end */
    http_phase_t phase;
    size_t head_len;   /* HTTP_PHASE_BODY: the head's length ... */
    size_t body_need;  /* ... and its Content-Length */
    bool keep_alive;   /* of the request being handled */
    bool responded;    /* the handler answered the current request */
    bool head_only;
    buf_t out;         /* response bytes; out.data[out_off..out.len) not yet taken */
    size_t out_off;
    http_limit_t limit; /* last refusal, until http_conn_take_limit: ... */
    char limit_msg[96];
    int limit_status;
    char limit_path[96]; /* the refused request's path ("" when its head was unreadable) */
    uint64_t requests; /* handled so far (handler calls) */
    bool deferred;     /* the handler will answer the current request later (http_conn_defer) */
    bool in_handler;   /* inside the handler call (an answer given then needs no resume) */
};

/* http_conn_init: an idle connection using cfg (which must outlive it). */
void http_conn_init(http_conn_t *c, const http_conn_cfg_t *cfg);
/* http_conn_free: releases the buffers. */
void http_conn_free(http_conn_t *c);

/* http_conn_input: appends received bytes and handles every request they complete (as far as
 * the output allows). Returns 0, or -1 when out of memory (the owner closes). */
int http_conn_input(http_conn_t *c, const void *data, size_t len);
/* http_conn_process: handles requests already received; call after output was taken (a full
 * output buffer pauses handling). Returns 0 or -1 (out of memory). */
int http_conn_process(http_conn_t *c);
/* http_conn_eof: the peer sent no more (half-close): complete requests were answered, the
 * rest is dropped; the connection is closing. */
void http_conn_eof(http_conn_t *c);
/* http_conn_timeout: the current phase took too long: a partial head or body gets 408 and the
 * connection is closing (HTTP_PHASE_IDLE: nothing queued, just closing). */
void http_conn_timeout(http_conn_t *c);

/* http_conn_phase: what the connection waits for. */
http_phase_t http_conn_phase(const http_conn_t *c);
/* http_conn_wants_input: whether the owner should read more now. */
bool http_conn_wants_input(const http_conn_t *c);
/* http_conn_output: the response bytes waiting to be sent (*p valid until the next call that
 * may queue output); http_conn_sent: n of them were sent. */
size_t http_conn_output(const http_conn_t *c, const uint8_t **p);
void http_conn_sent(http_conn_t *c, size_t n);
/* http_conn_done: closing and every response byte was taken: the owner ends the connection. */
bool http_conn_done(const http_conn_t *c);
/* http_conn_take_limit: the last refusal the connection made itself, with its message, status
 * and the request's path (valid until the next call into c; "" when the head was unreadable),
 * then clears it; HTTP_LIMIT_NONE when there was none. */
http_limit_t http_conn_take_limit(http_conn_t *c, const char **msg, int *status,
                                  const char **path);

/* http_conn_respond: the handler's answer: status line, Server, Content-Type (ctype, may be
 * NULL with an empty body), Content-Length, "Connection: close" when the connection ends after
 * it, then the body (not for HEAD). Returns 0 or -1 (out of memory: the owner closes). */
int http_conn_respond(http_conn_t *c, int status, const char *ctype, const void *body,
                      size_t len);
/* http_conn_respond_hdrs: http_conn_respond with extra header lines (`hdrs`, each ending in
 * CRLF, e.g. "Retry-After: 1\r\n"; NULL: none) after Content-Type. */
int http_conn_respond_hdrs(http_conn_t *c, int status, const char *ctype, const char *hdrs,
                           const void *body, size_t len);
/* http_conn_defer: called by the handler instead of answering: the answer comes later through
 * http_conn_respond_hdrs (from outside the handler). Meanwhile no further request is handled,
 * no input is wanted, no timeout of the client's applies (the owner's sweep skips it), and a
 * half-close by the client only makes the connection end after that answer. Answered in
 * order all the same: the next request waits for it. */
void http_conn_defer(http_conn_t *c);

/* http_conn_close_after: the connection ends after the response being built (call before
 * http_conn_respond). */
void http_conn_close_after(http_conn_t *c);

/* http_conn_reason: the reason phrase of a status ("Not Found"), "Unknown" for others. */
const char *http_conn_reason(int status);

#endif
