/* http_conn.c: HTTP/1.1 request state machine of ws-api's push API (see http_conn.h). */
#include "http_conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SHRINK_ABOVE (64 * 1024) /* buffers larger than this are freed once empty */

void http_conn_init(http_conn_t *c, const http_conn_cfg_t *cfg)
{
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    c->keep_alive = true;
}

void http_conn_free(http_conn_t *c)
{
    buf_free(&c->in);
    buf_free(&c->out);
}

const char *http_conn_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static size_t out_len(const http_conn_t *c)
{
    return c->out.len - c->out_off;
}

void http_conn_close_after(http_conn_t *c)
{
    c->keep_alive = false;
}

int http_conn_respond(http_conn_t *c, int status, const char *ctype, const void *body,
                      size_t len)
{
    return http_conn_respond_hdrs(c, status, ctype, NULL, body, len);
}

void http_conn_defer(http_conn_t *c)
{
    c->deferred = true;
    c->responded = true; /* (no 500 from the loop: the answer comes later) */
}

int http_conn_respond_hdrs(http_conn_t *c, int status, const char *ctype, const char *hdrs,
                           const void *body, size_t len)
{
    if (c->deferred) { /* the answer to a deferred request */
        c->deferred = false;
        c->responded = false;
    }
    if (c->responded)
        return 0; /* one response per request */
    c->responded = true;
    bool close = !c->keep_alive;
    if (buf_appendf(&c->out, "HTTP/1.1 %d %s\r\nServer: ws-api\r\n", status,
                    http_conn_reason(status)) < 0 ||
        (ctype && buf_appendf(&c->out, "Content-Type: %s\r\n", ctype) < 0) ||
        (hdrs && buf_appendf(&c->out, "%s", hdrs) < 0) ||
        buf_appendf(&c->out, "Content-Length: %zu\r\n%s\r\n", len,
                    close ? "Connection: close\r\n" : "") < 0 ||
        (!c->head_only && len && buf_append(&c->out, body, len) < 0))
        return -1;
    if (close)
        c->phase = HTTP_PHASE_CLOSING;
    return 0;
}

/* A refusal by the connection itself: JSON error, then the connection ends. r: the request's
 * head when it was readable (its path is kept for the owner's report). */
static int refuse(http_conn_t *c, const gw_http_req_t *r, int status, http_limit_t limit,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int refuse(http_conn_t *c, const gw_http_req_t *r, int status, http_limit_t limit,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->limit_msg, sizeof c->limit_msg, fmt, ap);
    va_end(ap);
    char body[160];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", c->limit_msg);
    c->limit = limit;
    c->limit_status = status;
    c->limit_path[0] = 0;
    if (r) {
        gw_slice_t p = r->path;
        if (p.n >= sizeof c->limit_path)
            p.n = sizeof c->limit_path - 1;
        gw_http_copy(p, c->limit_path, sizeof c->limit_path);
    }
    c->keep_alive = false;
    c->head_only = false;
    c->responded = false;
    return http_conn_respond(c, status, "application/json", body, (size_t)n);
}

static bool name_is(const gw_slice_t *s, const char *name)
{
    size_t n = strlen(name);
    return s->n == n && strncasecmp(s->p, name, n) == 0;
}

/* Content-Length (RFC 9112 §6.3, RFC 9110 §8.6): every field, and every comma-separated
 * member of each, must be the same plain decimal number. Returns 0 (*have says whether there
 * was one) or -1. */
static int content_length(const gw_http_req_t *r, uint64_t *len, bool *have)
{
    *have = false;
    for (unsigned i = 0; i < r->nhdr; i++) {
        if (!name_is(&r->hdr[i].name, "content-length"))
            continue;
        const char *p = r->hdr[i].value.p, *end = p + r->hdr[i].value.n;
        for (;;) {
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            uint64_t v = 0;
            int digits = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                if (++digits > 18)
                    return -1; /* over 10^18: certainly over any max_body */
                v = v * 10 + (uint64_t)(*p++ - '0');
            }
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            if (!digits || (*have && v != *len))
                return -1;
            *have = true;
            *len = v;
            if (p == end)
                break;
            if (*p++ != ',')
                return -1;
        }
    }
    return 0;
}

/* Judges a complete head: framing, Host, size. Returns 1 when the request may go on (body
 * awaited), 0 when it was refused (answer queued), -1 when out of memory. */
static int judge_head(http_conn_t *c, const gw_http_req_t *r)
{
    unsigned hosts = 0, tes = 0;
    bool chunked = false;
    for (unsigned i = 0; i < r->nhdr; i++) {
        const gw_slice_t *n = &r->hdr[i].name, *v = &r->hdr[i].value;
        if (name_is(n, "host")) {
            hosts++;
        } else if (name_is(n, "transfer-encoding")) {
            tes++;
            chunked = v->n == 7 && strncasecmp(v->p, "chunked", 7) == 0;
        } else if (name_is(n, "connection")) {
            if (gw_http_has_token(v, "close"))
                c->keep_alive = false;
        }
    }
    if (r->minor == 0)
        c->keep_alive = false;
    if (hosts > 1 || (r->minor == 1 && hosts == 0))
        return refuse(c, r, 400, HTTP_LIMIT_BAD_REQUEST, "exactly one Host header required");
    uint64_t cl = 0;
    bool has_cl;
    if (content_length(r, &cl, &has_cl) < 0)
        return refuse(c, r, 400, HTTP_LIMIT_FRAMING, "bad Content-Length");
    if (tes && has_cl)
        return refuse(c, r, 400, HTTP_LIMIT_FRAMING, "Content-Length with Transfer-Encoding");
    if (tes && !(tes == 1 && chunked))
        return refuse(c, r, 400, HTTP_LIMIT_FRAMING, "unsupported Transfer-Encoding");
    if (tes)
        return refuse(c, r, 411, HTTP_LIMIT_CHUNKED, "Content-Length required (no chunked bodies)");
    if (cl > c->cfg->max_body)
        return refuse(c, r, 413, HTTP_LIMIT_BODY_SIZE, "body larger than %zu bytes",
                      c->cfg->max_body);
    c->body_need = (size_t)cl;
    return 1;
}

static bool expects_continue(const gw_http_req_t *r)
{
    const gw_slice_t *e = gw_http_header(r, "expect");
    return e && e->n == 12 && strncasecmp(e->p, "100-continue", 12) == 0;
}

/* Drops handled input; frees buffers that grew large once they are empty. */
static void compact(http_conn_t *c)
{
    if (c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
        if (c->in.cap > SHRINK_ABOVE)
            buf_free(&c->in);
    } else if (c->in_off) {
        buf_consume(&c->in, c->in_off);
        c->in_off = 0;
    }
}

int http_conn_process(http_conn_t *c)
{
    int rv = 0;
    while (!c->deferred && c->phase != HTTP_PHASE_CLOSING && out_len(c) < HTTP_CONN_OUT_HIGH) {
        const char *p = (const char *)c->in.data + c->in_off;
        size_t avail = c->in.len - c->in_off;
        gw_http_req_t req;
        if (c->phase != HTTP_PHASE_BODY) {
            c->phase = avail ? HTTP_PHASE_HEAD : HTTP_PHASE_IDLE;
            if (!avail)
                break;
            /* Parse only when a new line ended (or the head is too long already): a head that
             * arrives byte by byte is parsed once per line, not once per byte. */
            if (avail < GW_HTTP_MAX_HEAD &&
                !memchr(p + c->head_scan, '\n', avail - c->head_scan)) {
                c->head_scan = avail;
                break;
            }
            c->head_scan = avail;
            int prv = gw_http_parse(p, avail, &req);
            if (prv == GW_HTTP_AGAIN)
                break;
            c->head_scan = 0;
            c->keep_alive = true;
            c->head_only = false;
            if (prv != GW_HTTP_OK) {
                rv = refuse(c, NULL, 400, HTTP_LIMIT_BAD_REQUEST, "malformed request head");
                break;
            }
            int j = judge_head(c, &req);
            if (j <= 0) {
                rv = j;
                break;
            }
            c->head_len = req.head_len;
            c->phase = HTTP_PHASE_BODY;
            if (avail - c->head_len < c->body_need && req.minor == 1 && expects_continue(&req) &&
                buf_appendf(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") < 0) {
                rv = -1;
                break;
            }
        }
        if (avail - c->head_len < c->body_need)
            break; /* the body is still coming: the head is parsed again once it is here */
        if (gw_http_parse(p, avail, &req) != GW_HTTP_OK) {
            /* the same bytes parsed before: cannot happen; end cleanly if it ever does */
            rv = refuse(c, NULL, 400, HTTP_LIMIT_BAD_REQUEST, "malformed request head");
            break;
        }
        /* A complete request: hand it over, then drop it from the input. */
        http_req_t hr = {
            .head = &req,
            .body = c->body_need ? (const uint8_t *)p + c->head_len : NULL,
            .body_len = c->body_need,
            .head_only = req.method.n == 4 && memcmp(req.method.p, "HEAD", 4) == 0,
        };
        c->head_only = hr.head_only;
        c->responded = false;
        c->requests++;
        c->in_handler = true;
        c->cfg->handler(c->cfg->ud, c, &hr);
        c->in_handler = false;
        if (!c->responded && http_conn_respond(c, 500, NULL, NULL, 0) < 0)
            rv = -1;
        c->in_off += c->head_len + c->body_need;
        c->head_len = c->body_need = 0;
        if (c->phase == HTTP_PHASE_BODY)
            c->phase = HTTP_PHASE_IDLE;
        if (rv < 0 || c->deferred)
            break;
    }
    if (c->phase == HTTP_PHASE_CLOSING)
        c->in_off = c->in.len; /* nothing after a closing response is read as a request */
    compact(c);
    if (rv < 0)
        c->phase = HTTP_PHASE_CLOSING;
    return rv;
}

int http_conn_input(http_conn_t *c, const void *data, size_t len)
{
    if (c->phase == HTTP_PHASE_CLOSING)
        return 0; /* ignored (lingering close) */
    if (buf_append(&c->in, data, len) < 0) {
        c->phase = HTTP_PHASE_CLOSING;
        return -1;
    }
    return http_conn_process(c);
}

void http_conn_eof(http_conn_t *c)
{
    if (c->deferred) { /* its answer is still to come: the connection ends after it */
        c->keep_alive = false;
        c->in_off = c->in.len;
        compact(c);
        return;
    }
    c->in_off = c->in.len;
    compact(c);
    c->phase = HTTP_PHASE_CLOSING;
}

void http_conn_timeout(http_conn_t *c)
{
    gw_http_req_t req;
    if (c->phase == HTTP_PHASE_HEAD) {
        (void)refuse(c, NULL, 408, HTTP_LIMIT_HEAD_TIMEOUT, "request head not received in time");
    } else if (c->phase == HTTP_PHASE_BODY) {
        bool ok = gw_http_parse((const char *)c->in.data + c->in_off, c->in.len - c->in_off,
                                &req) == GW_HTTP_OK;
        (void)refuse(c, ok ? &req : NULL, 408, HTTP_LIMIT_BODY_TIMEOUT,
                     "request body not received in time");
    }
    c->in_off = c->in.len;
    compact(c);
    c->phase = HTTP_PHASE_CLOSING;
}

http_phase_t http_conn_phase(const http_conn_t *c)
{
    return c->phase;
}

bool http_conn_wants_input(const http_conn_t *c)
{
    return !c->deferred && c->phase != HTTP_PHASE_CLOSING && out_len(c) < HTTP_CONN_OUT_HIGH &&
           c->in.len - c->in_off < GW_HTTP_MAX_HEAD + c->cfg->max_body;
}

size_t http_conn_output(const http_conn_t *c, const uint8_t **p)
{
    *p = c->out.data + c->out_off;
    return out_len(c);
}

void http_conn_sent(http_conn_t *c, size_t n)
{
    c->out_off += n;
    if (c->out_off == c->out.len) {
        c->out.len = c->out_off = 0;
        if (c->out.cap > SHRINK_ABOVE)
            buf_free(&c->out);
    }
}

bool http_conn_done(const http_conn_t *c)
{
    return c->phase == HTTP_PHASE_CLOSING && out_len(c) == 0;
}

http_limit_t http_conn_take_limit(http_conn_t *c, const char **msg, int *status,
                                  const char **path)
{
    http_limit_t l = c->limit;
    *msg = c->limit_msg;
    *status = c->limit_status;
    *path = c->limit_path;
    c->limit = HTTP_LIMIT_NONE;
    return l;
}
