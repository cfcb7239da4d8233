/* ws.c: the lws protocol of ws-gateway: HTTP endpoints (/healthz, /readyz, /metrics), the
 * WebSocket handshake checks, and client events -> rings. Every function runs on the service
 * thread that owns the lws context (lws calls them from its loop). */
#include "ws.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "admit.h"
#include "auth.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "gwm.h"
#include "keepalive.h"
#include "log.h"
#include "metrics.h"
#include "msgroute.h"
#include "outq.h"
#include "reasm.h"
#include "route.h"
#include "svc.h"
#include "upstream.h"
#include "utf8.h"
#include "wsout.h"

#define WS_PATH "/gateway/ws"
#define USER_MAX 256

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len);

struct lws_protocols gw_ws_protocols[] = {
    /* One protocol for HTTP and WebSocket: clients need not name a subprotocol.
     * rx_buffer_size (--rx-buffer, default 384) is what lws allocates per connection for
     * receiving and also the most it reads per recv(2). 384 keeps an idle connection under
     * 2 KB (2 026 B at 18 000; 512: 2 158 B) at the price of one more read per 1 KB
     * message (3 instead of 2): +10-20 % gateway CPU per 1 KB message in closed loop
     * (bench/RESULTS.md, experiments 23-24). Larger messages: raise it.
     * tx_packet_size: without it lws caps every send(2) at rx_buffer_size + LWS_PRE + 4
     * bytes, so a 1.4 KB message went out in three sends with two POLLOUT round trips
     * (epoll_ctl + epoll_wait each) in between. */
    {"wsgw", ws_callback, sizeof(gw_conn_t), 384, 0, NULL, 256 * 1024},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static char static_dir[512];

const char *gw_static_dir(void)
{
    return static_dir[0] ? static_dir : NULL;
}

void gw_static_dir_init(const char *flag, const char *argv0)
{
    struct stat st;
    char cand[512];
    static_dir[0] = 0;
    if (flag && *flag) {
        snprintf(static_dir, sizeof static_dir, "%s", flag);
        goto trim;
    }
    if (stat("/usr/share/wsgw/demo", &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(static_dir, sizeof static_dir, "/usr/share/wsgw/demo");
        return;
    }
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    if (slash) {
        snprintf(cand, sizeof cand, "%.*s/../demo", (int)(slash - argv0), argv0);
        if (stat(cand, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(static_dir, sizeof static_dir, "%s", cand);
    }
trim:
    for (size_t n = strlen(static_dir); n > 1 && static_dir[n - 1] == '/'; n--)
        static_dir[n - 1] = 0;
}

static gw_svc_t *svc_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* ---- HTTP ----------------------------------------------------------------------------- */

/* Writes a complete response (headers + body in one write) and ends the transaction.
 * Returns what the callback should return. */
static int http_reply(struct lws *wsi, unsigned status, const char *ctype, const void *body,
                      size_t len)
{
    size_t cap = LWS_PRE + 1024 + len;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -1;
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + cap;
    int rv = -1;
    if (lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_http_header(wsi, &p, end))
        goto out;
    memcpy(p, body, len);
    p += len;
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
        goto out;
    rv = lws_http_transaction_completed(wsi) ? -1 : 0;
out:
    free(buf);
    return rv;
}

static int http_text(struct lws *wsi, unsigned status, const char *text)
{
    return http_reply(wsi, status, "text/plain; charset=utf-8", text, strlen(text));
}

static const char *mime_of(const char *path)
{
    static const struct {
        const char *ext, *mime;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".png", "image/png"},                 {".ico", "image/x-icon"},
        {".json", "application/json"},         {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].mime;
    return "application/octet-stream";
}

/* GET of a file under --static-dir (the browser demo at /). lws sends it asynchronously. */
static int serve_static(struct lws *wsi, const char *path)
{
    const char *dir = gw_static_dir();
    if (!dir || path[0] != '/' || strstr(path, "..") || strchr(path, '\\') ||
        strlen(path) > 200)
        return http_text(wsi, 404, "not found\n");
    char file[1024];
    snprintf(file, sizeof file, "%s%s%s", dir, path, path[strlen(path) - 1] == '/' ? "index.html" : "");
    struct stat st;
    if (stat(file, &st) != 0 || !S_ISREG(st.st_mode))
        return http_text(wsi, 404, "not found\n");
    int n = lws_serve_http_file(wsi, file, mime_of(file), NULL, 0);
    if (n < 0)
        return -1;
    if (n > 0 && lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static int on_http(struct lws *wsi, const char *path)
{
    gw_svc_t *s = svc_of(wsi);
    if (strcmp(path, "/healthz") == 0)
        return http_text(wsi, 200, "ok\n");
    if (strcmp(path, "/readyz") == 0) {
        if (atomic_load(&s->gw->draining))
            return http_text(wsi, 503, "draining\n");
        return gw_ready(s->gw) ? http_text(wsi, 200, "ready\n")
                               : http_text(wsi, 503, "no API node connected\n");
    }
    if (strcmp(path, "/metrics") == 0) {
        buf_t b = BUF_INIT;
        if (metrics_render(&b) < 0) {
            buf_free(&b);
            return http_text(wsi, 500, "out of memory\n");
        }
        int rv = http_reply(wsi, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        buf_free(&b);
        return rv;
    }
    if (strcmp(path, WS_PATH) == 0)
        return http_text(wsi, 400, "WebSocket upgrade required\n");
    return serve_static(wsi, path);
}

static const char *status_text(unsigned status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* Refuses a WebSocket handshake with an HTTP status and closes the connection. Written by
 * hand: lws_return_http_status answers "HTTP/1.0" on the upgrade path (the request version is
 * not parsed there), which strict clients reject. Returns the CONFIRM_UPGRADE result. */
static int refuse(struct lws *wsi, unsigned status, int metric, const char *why)
{
    char peer[64] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    log_rl_warn("handshake refused", "status=%u reason=%s peer=%s", status, why, peer);
    metrics_inc(metric);
    uint8_t buf[LWS_PRE + 256];
    const char *text = status_text(status);
    int n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE,
                     "HTTP/1.1 %u %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n"
                     "connection: close\r\n\r\n%s\n",
                     status, text, strlen(text) + 1, text);
    lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS);
    return -1; /* lws flushes what is buffered, then closes */
}

/* The bearer token of a handshake: "Authorization: Bearer T", else ?token=T. */
static const char *find_token(struct lws *wsi, char *buf, size_t cap)
{
    int n = lws_hdr_copy(wsi, buf, (int)cap, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 7 && strncasecmp(buf, "Bearer ", 7) == 0) {
        const char *t = buf + 7;
        while (*t == ' ')
            t++;
        return t;
    }
    return lws_get_urlarg_by_name(wsi, "token=", buf, (int)cap);
}

static uint64_t peer_hash(struct lws *wsi)
{
    char ip[64] = "";
    lws_get_peer_simple(wsi, ip, sizeof ip);
    return gw_hash64(ip, strlen(ip), 0x5ca1ab1e) | 1; /* never 0 */
}

/* A reservation made for a handshake that never reached ESTABLISHED goes back. */
static void drop_pending_handshake(gw_svc_t *s)
{
    if (s->hs_iph)
        gw_admit_ip_put(s->hs_iph);
    s->hs_wsi = NULL;
    s->hs_iph = 0;
    s->hs_user[0] = 0;
}

static int on_confirm_upgrade(struct lws *wsi, const char *upgrade)
{
    gw_svc_t *s = svc_of(wsi);
    char uri[128];
    drop_pending_handshake(s);
    if (strcasecmp(upgrade, "websocket") != 0)
        return refuse(wsi, 400, gwm.rejected_400, "unsupported-upgrade");
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, WS_PATH) != 0)
        return refuse(wsi, 404, gwm.rejected_404, "unknown-path");
    char ver[8];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_KEY) <= 0 ||
        lws_hdr_copy(wsi, ver, sizeof ver, WSI_TOKEN_VERSION) <= 0 || strcmp(ver, "13") != 0)
        return refuse(wsi, 400, gwm.rejected_400, "bad-handshake");
    if (atomic_load(&s->gw->draining) || atomic_load(&s->stop_req))
        return refuse(wsi, 503, gwm.rejected_503, "draining");
    if (atomic_load_explicit(&s->gw->nconns, memory_order_relaxed) >= s->gw->conn_cap)
        return refuse(wsi, 503, gwm.rejected_503, "at-capacity");
    char origin[512];
    int on = lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN);
    if (!gw_admit_origin(on > 0 ? origin : NULL, gw_cfg.require_origin))
        return refuse(wsi, 403, gwm.rejected_403, on > 0 ? "origin-not-allowed" : "origin-missing");
    if (*gw_cfg.auth_secret) {
        char tok[4096];
        const char *t = find_token(wsi, tok, sizeof tok);
        gw_auth_result_t r = gw_auth_check(t, gw_cfg.auth_secret, clock_wall_ns() / 1000000000,
                                           s->hs_user, sizeof s->hs_user);
        if (r != GW_AUTH_OK) {
            metrics_inc(gwm.auth_rejects[r]);
            s->hs_user[0] = 0;
            /* the reason goes to the log and the metric, never to the client */
            return refuse(wsi, 401, gwm.rejected_401, gw_auth_reason(r));
        }
    }
    if (gw_cfg.max_conns_per_ip > 0) {
        uint64_t h = peer_hash(wsi);
        if (!gw_admit_ip_take(h, gw_cfg.max_conns_per_ip)) {
            s->hs_user[0] = 0;
            return refuse(wsi, 429, gwm.rejected_429, "too-many-per-address");
        }
        s->hs_iph = h;
    }
    s->hs_wsi = wsi;
    return 0;
}

/* ---- connection life ------------------------------------------------------------------ */

/* Copies the request query (URI args joined by '&', minus any token=) into out. */
static size_t copy_query(struct lws *wsi, char *out, size_t cap)
{
    size_t o = 0;
    char frag[512];
    for (int i = 0; o + 1 < cap; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0)
            break;
        if (strncmp(frag, "token=", 6) == 0)
            continue; /* credentials stay at the edge */
        if (strncmp(frag, "user=", 5) == 0)
            continue; /* it is Event.user_id; keeping it out keeps most stored queries empty */
        int w = snprintf(out + o, cap - o, "%s%s", o ? "&" : "", frag);
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
    }
    out[o] = 0;
    return o;
}

static size_t copy_peer(struct lws *wsi, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "";
    out[0] = 0;
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) < 0)
        return 0;
    int port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(out, cap, "%s:%d", ip, port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(out, cap, "[%s]:%d", ip, port);
    }
    return strlen(out);
}

/* The user id without --auth-secret: ?user= or X-User-Id. */
static size_t copy_user(struct lws *wsi, char *out, size_t cap)
{
    out[0] = 0;
    const char *v = lws_get_urlarg_by_name(wsi, "user=", out, (int)cap);
    if (v) {
        memmove(out, v, strlen(v) + 1);
        return strlen(out);
    }
    int n = lws_hdr_custom_copy(wsi, out, (int)cap, "x-user-id:", 10);
    if (n > 0)
        return (size_t)n;
    out[0] = 0;
    return 0;
}

/* Sends e (a copy per node) to every API node: Open and Close are replicated. Takes e.
 * Returns false when some node's ring overflowed (the caller pauses the client). */
static bool to_all_nodes(gw_svc_t *s, gw_event_t *e)
{
    bool fit = true;
    int n = s->gw->nup;
    for (int u = 0; u < n; u++) {
        gw_event_t *x = u == n - 1 ? e : gw_event_dup(e);
        if (!x) {
            /* Cannot copy: this node misses the event. Logged; presence resyncs on reconnect. */
            log_rl_error("out of memory replicating an event", "node=%d", u);
            continue;
        }
        if (!gw_svc_push_event(s, u, x))
            fit = false;
    }
    return fit;
}

gw_event_t *gw_ws_open_event(gw_conn_t *c, uint32_t resync_gen)
{
    char peer[80];
    size_t plen = copy_peer(c->wsi, peer, sizeof peer);
    gw_event_t *e = gw_event_new(GW_EV_OPEN, c->id, c->user, c->user ? strlen(c->user) : 0,
                                 peer, plen, c->query, c->query ? strlen(c->query) : 0, WS_PATH,
                                 sizeof WS_PATH - 1);
    if (!e)
        return NULL;
    e->code = (int32_t)resync_gen;
    e->gateway_ns = clock_wall_ns();
    e->t_read = clock_mono_ns();
    return e;
}

static int on_established(struct lws *wsi, gw_conn_t *c)
{
    gw_svc_t *s = svc_of(wsi);
    c->wsi = wsi;
    c->node = GW_NODE_NONE;
    if (gw_conn_table_add(&s->conns, c) < 0) {
        drop_pending_handshake(s);
        log_rl_error("connection table full", "thread=%d", s->idx);
        lws_close_reason(wsi, (enum lws_close_status)1013, (unsigned char *)"full", 4);
        return -1;
    }
    char user[USER_MAX], query[1024], peer[80];
    size_t ulen;
    if (s->hs_wsi != wsi) {
        /* CONFIRM_UPGRADE always precedes ESTABLISHED on the same wsi: never here */
        log_error("handshake state lost", "thread=%d", s->idx);
        drop_pending_handshake(s);
        return -1;
    }
    if (*gw_cfg.auth_secret) {
        ulen = strlen(s->hs_user);
        memcpy(user, s->hs_user, ulen + 1);
    } else {
        ulen = copy_user(wsi, user, sizeof user);
    }
    c->iph = s->hs_iph;
    s->hs_iph = 0; /* the connection owns the reservation now */
    drop_pending_handshake(s);
    if (copy_query(wsi, query, sizeof query) > 0 && !(c->query = strdup(query))) {
        log_rl_error("out of memory on connect", "thread=%d", s->idx);
        gw_conn_table_remove(&s->conns, c);
        c->id = 0;
        return -1;
    }
    if (ulen) {
        c->user = strdup(user);
        if (!c->user || gw_index_add_user(&s->index, c) < 0) {
            log_rl_error("out of memory on connect", "thread=%d", s->idx);
            gw_conn_table_remove(&s->conns, c);
            free(c->user);
            c->user = NULL;
            free(c->query);
            c->query = NULL;
            c->id = 0;
            return -1;
        }
    }
    c->established = true;
    gw_keepalive_alive(s, c);
    atomic_fetch_add_explicit(&s->gw->nconns, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->nconns, 1, memory_order_relaxed);
    metrics_gauge_add(gwm.connections, 1);
    metrics_inc(gwm.accepted);

    gw_event_t *e = gw_ws_open_event(c, 0);
    if (!e) {
        log_rl_error("out of memory on connect", "thread=%d", s->idx);
        return -1; /* CLOSED follows and cleans up */
    }
    copy_peer(wsi, peer, sizeof peer);
    if (!to_all_nodes(s, e))
        gw_svc_pause(s, c);
    if (atomic_load(&s->stop_req) >= GW_SVC_QUIESCE)
        gw_svc_close_conn(s, c, 1001, NULL);
    char q[USER_MAX + 8];
    log_debug("connected", "conn_id=%llu user=%s peer=%s thread=%d", (unsigned long long)c->id,
              log_quote(q, sizeof q, user), peer, s->idx);
    return 0;
}

static void on_closed(struct lws *wsi, gw_conn_t *c)
{
    gw_svc_t *s = svc_of(wsi);
    if (c->iph) {
        gw_admit_ip_put(c->iph);
        c->iph = 0;
    }
    if (!c->established)
        return;
    gw_msgroute_forget(s, c); /* messages held for a failover go before the Close */
    int code = c->close_code ? c->close_code : c->peer_code;
    if (!code && lws_get_close_length(wsi) >= 2) {
        /* lws closed it itself (protocol error 1002, ...): its close frame payload is here */
        const uint8_t *p = lws_get_close_payload(wsi);
        code = p[0] << 8 | p[1];
        log_rl_warn("client closed for a protocol violation", "conn_id=%llu code=%d",
                    (unsigned long long)c->id, code);
    }
    if (!code)
        code = 1006; /* RFC 6455 §7.1.5: closed abnormally, no close frame */
    const char *reason = "";
    size_t rlen = 0;
    if (c->close_reason) {
        reason = (const char *)gw_payload_data(c->close_reason);
        rlen = c->close_reason->len;
    }
    gw_event_t *e = gw_event_new(GW_EV_CLOSE, c->id, c->user, c->user ? strlen(c->user) : 0,
                                 reason, rlen, NULL, 0, NULL, 0);
    if (e) {
        e->code = code;
        e->gateway_ns = clock_wall_ns();
        e->t_read = clock_mono_ns();
        to_all_nodes(s, e); /* the client is gone: nothing to pause */
    } else {
        log_rl_error("out of memory: Close event not sent", "conn_id=%llu",
                     (unsigned long long)c->id);
    }
    gwm_close(code);
    gw_index_remove_conn(&s->index, c);
    gw_conn_table_remove(&s->conns, c);
    gw_outq_free(&c->outq);
    gw_reasm_reset(&c->rx);
    if (c->close_reason)
        gw_payload_unref(c->close_reason);
    c->close_reason = NULL;
    free(c->user);
    c->user = NULL;
    free(c->query);
    c->query = NULL;
    c->established = false;
    atomic_fetch_sub_explicit(&s->gw->nconns, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->nconns, 1, memory_order_relaxed);
    metrics_gauge_add(gwm.connections, -1);
}

/* Closes with code from inside RECEIVE: lws sends the close frame after we return -1. */
static int close_now(struct lws *wsi, gw_conn_t *c, int code, const char *why)
{
    c->close_code = (uint16_t)code;
    c->closing = true;
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
    return -1;
}

/* Hands a complete message upstream. Takes e. */
static int message_done(struct lws *wsi, gw_conn_t *c, gw_event_t *e)
{
    gw_svc_t *s = svc_of(wsi);
    const uint8_t *payload = (const uint8_t *)gw_event_a(e);
    if (!e->binary && !gw_utf8_valid(payload, e->a_len)) {
        log_rl_warn("invalid UTF-8 in a text message", "conn_id=%llu len=%u",
                    (unsigned long long)c->id, e->a_len);
        gw_event_free(e);
        return close_now(wsi, c, 1007, "invalid UTF-8");
    }
    e->seq = ++c->seq;
    e->gateway_ns = clock_wall_ns();
    metrics_inc(gwm.msgs_in);
    metrics_add(gwm.bytes_in, e->a_len);
    gw_msgroute_send(s, c, e);
    return 0;
}

static int on_receive(struct lws *wsi, gw_conn_t *c, const void *in, size_t len)
{
    if (c->closing || !c->established)
        return 0; /* input after we decided to close is ignored */
    size_t max = (size_t)gw_cfg.max_message;
    gw_event_t *e;
    int rv = gw_reasm_add(&c->rx, c->id, c->user, c->user ? strlen(c->user) : 0,
                          lws_frame_is_binary(wsi), in, len, lws_is_final_fragment(wsi),
                          lws_remaining_packet_payload(wsi), max, &e);
    switch (rv) {
    case GW_REASM_MORE:
        return 0;
    case GW_REASM_TOO_BIG:
        log_rl_warn("message too big", "conn_id=%llu max=%zu", (unsigned long long)c->id, max);
        return close_now(wsi, c, 1009, "message too big");
    case GW_REASM_NOMEM:
        log_rl_error("out of memory reading a message", "conn_id=%llu", (unsigned long long)c->id);
        return close_now(wsi, c, 1011, "out of memory");
    default:
        e->t_read = clock_mono_ns();
        return message_done(wsi, c, e);
    }
}

int gw_ws_write(gw_conn_t *c, gw_payload_t *p)
{
    int w = lws_write(c->wsi, gw_payload_data(p), p->len,
                      p->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    if (w < (int)p->len) {
        log_rl_warn("write failed", "conn_id=%llu", (unsigned long long)c->id);
        return -1;
    }
    metrics_observe(gwm.stage_egress, (uint64_t)(clock_mono_ns() - p->t_recv));
    metrics_inc(gwm.msgs_out);
    metrics_add(gwm.bytes_out, p->len);
    return 0;
}

static int on_writeable(struct lws *wsi, gw_conn_t *c)
{
    if (c->closing)
        return 0; /* the close frame is on its way (gw_svc_close_conn) */
    return gw_wsout_flush(c, svc_of(wsi)->wscratch);
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    gw_conn_t *c = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return on_confirm_upgrade(wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_ESTABLISHED:
        return on_established(wsi, c);
    case LWS_CALLBACK_RECEIVE:
        return on_receive(wsi, c, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(wsi, c);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c && c->established)
            gw_keepalive_alive(svc_of(wsi), c);
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2 && c) {
            const uint8_t *p = in;
            c->peer_code = (uint16_t)(p[0] << 8 | p[1]);
        } else if (c) {
            c->peer_code = 1005; /* RFC 6455 §7.1.5: no status code present */
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        on_closed(wsi, c);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        gw_svc_on_wake(svc_of(wsi));
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
