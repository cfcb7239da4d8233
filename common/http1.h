/* http1.h: an HTTP/1.1 request head (RFC 9112 §2-§5), parsed in place: the slices point into
 * the caller's buffer. Pure (no I/O, no allocation); fuzzed by fuzz_http_head (the head alone)
 * and fuzz_api_http1 (ws-api's request state machine around it). Shared by both servers:
 * ws-gateway (the WebSocket upgrade, RFC 6455 §4.2.1, and the GETs of /healthz, /readyz,
 * /metrics and the static files; gateway/ws.c, gateway/httpd.c) and ws-api (its HTTP/1.1 push
 * API; api/http_conn.c). The gw_http_ prefix dates from when only the gateway used it; it was
 * kept so that the gateway's call sites did not change. Any thread (no shared state). */
#ifndef GW_HTTP1_H
#define GW_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_HTTP_MAX_HEAD 8192u  /* a longer request head is refused (400) */
#define GW_HTTP_MAX_HEADERS 48

typedef struct gw_slice {
    const char *p;
    size_t n;
} gw_slice_t;

typedef struct gw_http_req {
    gw_slice_t method;
    gw_slice_t path;   /* the request target up to '?', still percent-encoded */
    gw_slice_t query;  /* after '?', without it; empty when there is none */
    int minor;         /* HTTP/1.<minor> */
    size_t head_len;   /* bytes of the head, the blank line included */
    unsigned nhdr;
    struct {
        gw_slice_t name, value; /* value without surrounding blanks */
    } hdr[GW_HTTP_MAX_HEADERS];
} gw_http_req_t;

enum {
    GW_HTTP_OK = 0,
    GW_HTTP_AGAIN = 1,   /* the head is not complete yet */
    GW_HTTP_BAD = -1,    /* malformed, too long or too many headers: 400 */
};

/* gw_http_parse: parses the head at the start of buf[0..len). GW_HTTP_OK fills *r. */
int gw_http_parse(const char *buf, size_t len, gw_http_req_t *r);

/* gw_http_header: the first header called name (case-insensitive), or NULL. */
const gw_slice_t *gw_http_header(const gw_http_req_t *r, const char *name);

/* gw_http_has_token: whether the comma-separated list v holds tok (case-insensitive), as in
 * "Connection: keep-alive, Upgrade". */
bool gw_http_has_token(const gw_slice_t *v, const char *tok);

/* gw_http_query_arg: the value of name=... in a query (percent- and '+'-decoded) into out.
 * Returns its length, or -1 when the argument is absent, empty-named or does not fit. */
long gw_http_query_arg(gw_slice_t query, const char *name, char *out, size_t cap);

/* gw_http_decode: percent-decodes s into out ('+' as a space when plus is true). Returns the
 * length, or -1 when it does not fit or holds a bad escape or a NUL. */
long gw_http_decode(gw_slice_t s, bool plus, char *out, size_t cap);

/* gw_http_copy: the slice as a C string into out; -1 when it does not fit. */
long gw_http_copy(gw_slice_t s, char *out, size_t cap);

#endif
