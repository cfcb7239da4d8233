/* ws.c: the client side of ws-gateway on lws raw sockets. lws keeps the event loop, the reads
 * (up to pt_serv_buf_size, 16 KB, per recv), the writes it could not finish and TLS; this file
 * does the rest: the request head (http1.c), the WebSocket handshake checks and the 101, RFC 6455
 * frames in (common/ws_frame.c) and out, ping/pong and the close handshake, and client events
 * -> rings. lws' own ws role is not used: it costs ~600 B more per idle connection and reads a
 * 1.4 KB message in 3-4 recvs (bench/RESULTS.md, experiments 28 and 30).
 * Every function runs on the service thread that owns the lws context. */
#include "ws.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "admit.h"
#include "auth.h"
#include "clientproto.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "gwm.h"
#include "http1.h"
#include "httpd.h"
#include "index.h"
#include "keepalive.h"
#include "log.h"
#include "metrics.h"
#include "msgroute.h"
#include "outq.h"
#include "reasm.h"
#include "route.h"
#include "svc.h"
#include "utf8.h"
#include "ws_frame.h"
#include "ws_handshake.h"
#include "wsout.h"

#define WS_PATH "/gateway/ws"
#define USER_MAX 256
#define HANDSHAKE_TIMEOUT_S 10 /* from accept to a complete request head */
#define CLOSE_ACK_TIMEOUT_S 5  /* from our close frame to the client's (RFC 6455 §7.1.1) */
/* Bytes one service thread holds in request heads split over reads: 512 heads of the largest
 * size, thousands of ordinary ones (~300 B). Past it a new split head gets 503. */
#define GW_HS_BUDGET (4u << 20)

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len);

struct lws_protocols gw_ws_protocols[] = {
    /* The raw-socket protocol every accepted socket is adopted into. rx_buffer_size is not used
     * by raw sockets (lws reads into its per-thread buffer). tx_packet_size: without it lws
     * caps every send(2) at pt_serv_buf_size + LWS_PRE + 4 bytes. */
    {"wsgw", ws_callback, sizeof(gw_conn_t), 0, 0, NULL, 256 * 1024},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static gw_svc_t *svc_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* ---- frames out ----------------------------------------------------------------------- */

int gw_ws_write(gw_conn_t *c, gw_payload_t *p)
{
    uint8_t *d = gw_payload_data(p);
    uint8_t hdr[GW_WS_HDR_MAX];
    size_t h = gw_ws_frame_header(hdr, p->binary, p->len);
    /* the header goes into the payload's headroom (LWS_PRE >= GW_WS_HDR_MAX bytes). A payload
     * is shared only by the connections of one service thread, which all write the same
     * header there. */
    memcpy(d - h, hdr, h);
    int w = lws_write(c->wsi, d - h, h + p->len, LWS_WRITE_RAW);
    if (w < (int)(h + p->len)) {
        log_rl_warn("write failed", "conn_id=%llu", (unsigned long long)c->id);
        return -1;
    }
    metrics_observe(gwm.stage_egress, (uint64_t)(clock_mono_ns() - p->t_recv));
    metrics_inc(gwm.msgs_out);
    metrics_add(gwm.bytes_out, p->len);
    return 0;
}

int gw_ws_control(gw_conn_t *c, int opcode, const void *payload, size_t len)
{
    uint8_t buf[LWS_PRE + 2 + WS_MAX_CONTROL];
    if (len > WS_MAX_CONTROL)
        len = WS_MAX_CONTROL;
    size_t n = ws_frame_encode(buf + LWS_PRE, sizeof buf - LWS_PRE, opcode, true, payload, len,
                               NULL);
    /* whole frames only: lws appends to what it still holds of earlier ones, in order */
    return lws_write(c->wsi, buf + LWS_PRE, n, LWS_WRITE_RAW) < (int)n ? -1 : 0;
}

void gw_ws_close(gw_conn_t *c, int code, const void *reason, size_t rlen)
{
    uint8_t body[WS_MAX_CONTROL];
    size_t n = 0;
    if (code != 1005) { /* 1005: the client's close had no code, so ours has none (§5.5.1) */
        /* <= 123 bytes (§5.5), cut on a character boundary (the reason is UTF-8, §5.5.1) */
        rlen = gw_utf8_cut(reason, rlen, WS_MAX_CONTROL - 2);
        body[0] = (uint8_t)(code >> 8);
        body[1] = (uint8_t)code;
        if (rlen)
            memcpy(body + 2, reason, rlen);
        n = 2 + rlen;
    }
    if (c->closing) {
        /* a message read after our close frame (1001, Kick) was bad: no second close frame
         * (§5.5.1); its data is dropped from here on, and the close counts under this code */
        c->close_code = (uint16_t)code;
        return;
    }
    c->closing = true;
    if (!c->close_code)
        c->close_code = (uint16_t)code;
    if (gw_ws_control(c, WS_OP_CLOSE, body, n) < 0)
        log_rl_warn("close frame write failed", "conn_id=%llu", (unsigned long long)c->id);
    /* the client answers with its close frame (frames_in closes then); if it does not, lws
     * ends the connection after this timeout */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, CLOSE_ACK_TIMEOUT_S);
}

void gw_ws_hangup(gw_conn_t *c)
{
    c->closing = true;
    /* no close handshake (lws would wait for its acknowledgement): end the socket; lws sees
     * the hang-up and closes (the kill timeout covers a socket it does not poll now) */
    shutdown(lws_get_socket_fd(c->wsi), SHUT_RDWR);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* ---- handshake ------------------------------------------------------------------------ */

/* Refuses a request with an HTTP status; the callback then returns -1 (flush, close). */
static int refuse(struct lws *wsi, unsigned status, int metric, const char *why)
{
    char peer[64] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    log_rl_warn("handshake refused", "status=%u reason=%s peer=%s", status, why, peer);
    metrics_inc(metric);
    const char *text = gw_httpd_status_text(status);
    char body[64];
    int n = snprintf(body, sizeof body, "%s\n", text);
    gw_httpd_reply(wsi, status, "text/plain", body, (size_t)n, false);
    return -1;
}

/* The bearer token of a handshake: "Authorization: Bearer T", else ?token=T. */
static const char *find_token(const gw_http_req_t *r, char *buf, size_t cap)
{
    const gw_slice_t *a = gw_http_header(r, "authorization");
    if (a && a->n > 7 && strncasecmp(a->p, "Bearer ", 7) == 0) {
        gw_slice_t t = {a->p + 7, a->n - 7};
        while (t.n && *t.p == ' ') {
            t.p++;
            t.n--;
        }
        return gw_http_copy(t, buf, cap) >= 0 ? buf : NULL;
    }
    return gw_http_query_arg(r->query, "token", buf, cap) >= 0 ? buf : NULL;
}

static uint64_t peer_hash(struct lws *wsi)
{
    char ip[64] = "";
    lws_get_peer_simple(wsi, ip, sizeof ip);
    return gw_hash64(ip, strlen(ip), 0x5ca1ab1e) | 1; /* never 0 */
}

/* The request query minus token= and user= (credentials stay at the edge; user= is
 * Event.user_id), each argument decoded, joined by '&'. */
static size_t copy_query(gw_slice_t query, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = query.p, *end = query.p + query.n;
    while (p < end && o + 1 < cap) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gw_slice_t f = {p, (size_t)((amp ? amp : end) - p)};
        p = amp ? amp + 1 : end;
        if (!f.n || (f.n >= 6 && memcmp(f.p, "token=", 6) == 0) ||
            (f.n >= 5 && memcmp(f.p, "user=", 5) == 0) || gw_cp_query_arg(f.p, f.n))
            continue;
        if (o)
            out[o++] = '&';
        long n = gw_http_decode(f, true, out + o, cap - o);
        if (n < 0) {
            o -= o ? 1 : 0;
            break;
        }
        o += (size_t)n;
    }
    out[o] = 0;
    return o;
}

/* The user id without --auth-secret: ?user= or X-User-Id. */
static size_t copy_user(const gw_http_req_t *r, char *out, size_t cap)
{
    long n = gw_http_query_arg(r->query, "user", out, cap);
    if (n >= 0)
        return (size_t)n;
    const gw_slice_t *h = gw_http_header(r, "x-user-id");
    if (h && (n = gw_http_copy(*h, out, cap)) >= 0)
        return (size_t)n;
    out[0] = 0;
    return 0;
}

static size_t copy_peer(struct lws *wsi, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "";
    out[0] = 0;
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) < 0)
        return 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%d", ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%d", ip, ntohs(a->sin6_port));
    }
    return strlen(out);
}

gw_event_t *gw_ws_open_event(gw_conn_t *c, uint32_t resync_gen, bool rooms)
{
    char peer[80];
    size_t plen = copy_peer(c->wsi, peer, sizeof peer);
    /* Open.rooms, encoded here once (bounded by --max-rooms-per-conn); in no room: one empty
     * name, which tells a node that holds an older record of them (shared presence) "none" */
    size_t d = rooms && !c->rooms ? gw_event_room_size(0) : 0;
    for (const gw_member_t *m = rooms ? c->rooms : NULL; m; m = m->conn_next)
        d += gw_event_room_size(m->room->hh.keylen);
    gw_event_t *e = gw_event_new_d(GW_EV_OPEN, c->id, c->user, c->user ? strlen(c->user) : 0,
                                   peer, plen, c->query, c->query ? strlen(c->query) : 0,
                                   WS_PATH, sizeof WS_PATH - 1, d);
    if (!e)
        return NULL;
    uint8_t *p = gw_event_d(e);
    if (rooms && !c->rooms)
        gw_event_put_room(p, NULL, 0);
    for (const gw_member_t *m = rooms ? c->rooms : NULL; m; m = m->conn_next)
        p = gw_event_put_room(p, m->room->name, m->room->hh.keylen);
    e->code = (int32_t)resync_gen;
    e->gateway_ns = clock_wall_ns();
    e->t_read = clock_mono_ns();
    return e;
}

/* The checks of a WebSocket upgrade request, in the order a client can fix them. Returns 0
 * with the user (JWT subject, or ?user= / X-User-Id) in user, the subprotocol and positions in
 * c (clientproto.h) and the per-address reservation in *iph, or the -1 of refuse(). */
static int check_upgrade(gw_svc_t *s, struct lws *wsi, gw_conn_t *c, const gw_http_req_t *r,
                         const gw_slice_t *upgrade, char *user, size_t ucap, uint64_t *iph)
{
    char path[128], tok[4096];
    *iph = 0;
    if (!gw_http_has_token(upgrade, "websocket"))
        return refuse(wsi, 400, gwm.rejected_400, "unsupported-upgrade");
    if (gw_http_decode(r->path, false, path, sizeof path) < 0 || strcmp(path, WS_PATH) != 0)
        return refuse(wsi, 404, gwm.rejected_404, "unknown-path");
    const gw_slice_t *key = gw_http_header(r, "sec-websocket-key");
    const gw_slice_t *ver = gw_http_header(r, "sec-websocket-version");
    if (r->method.n != 3 || memcmp(r->method.p, "GET", 3) != 0 || r->minor != 1 ||
        !gw_http_has_token(gw_http_header(r, "connection"), "upgrade") || !key || !key->n ||
        key->n > 64 || !ver || ver->n != 2 || memcmp(ver->p, "13", 2) != 0)
        return refuse(wsi, 400, gwm.rejected_400, "bad-handshake");
    if (atomic_load(&s->gw->draining) || atomic_load(&s->stop_req))
        return refuse(wsi, 503, gwm.rejected_503, "draining");
    if (atomic_load_explicit(&s->gw->nconns, memory_order_relaxed) >= s->gw->conn_cap)
        return refuse(wsi, 503, gwm.rejected_503, "at-capacity");
    /* compared as it came, whatever its length (a copy buffer once made a long one "absent") */
    const gw_slice_t *o = gw_http_header(r, "origin");
    bool have_origin = o && o->n > 0;
    if (!gw_admit_origin(have_origin ? o->p : NULL, have_origin ? o->n : 0,
                         gw_cfg.require_origin))
        return refuse(wsi, 403, gwm.rejected_403,
                      have_origin ? "origin-not-allowed" : "origin-missing");
    if (*gw_cfg.auth_secret) {
        const char *t = find_token(r, tok, sizeof tok);
        gw_auth_result_t ar = gw_auth_check(t, gw_cfg.auth_secret, clock_wall_ns() / 1e9,
                                            gw_cfg.jwt_leeway_us / 1e6, user, ucap);
        if (ar != GW_AUTH_OK) {
            metrics_inc(gwm.auth_rejects[ar]);
            /* the reason goes to the log and the metric, never to the client */
            return refuse(wsi, 401, gwm.rejected_401, gw_auth_reason(ar));
        }
    } else {
        copy_user(r, user, ucap);
    }
    const char *why;
    if (gw_cp_handshake(c, r, &why) < 0)
        return refuse(wsi, 400, gwm.rejected_400, why); /* (on_closed frees what it kept) */
    if (gw_cfg.max_conns_per_ip > 0) {
        uint64_t h = peer_hash(wsi);
        if (!gw_admit_ip_take(h, gw_cfg.max_conns_per_ip))
            return refuse(wsi, 429, gwm.rejected_429, "too-many-per-address");
        *iph = h;
    }
    return 0;
}

/* Undoes what establish() did before the 101 went out. */
static void unestablish(gw_svc_t *s, gw_conn_t *c)
{
    gw_index_remove_conn(&s->index, c);
    gw_conn_table_remove(&s->conns, c);
    free(c->user);
    c->user = NULL;
    free(c->query);
    c->query = NULL;
    gw_cp_closed(s, c);
    c->id = 0;
}

/* Answers 101 and makes c a live connection: table, user index, Open to every node. */
static int establish(gw_svc_t *s, struct lws *wsi, gw_conn_t *c, const gw_http_req_t *r,
                     const char *user, uint64_t iph)
{
    c->node = GW_NODE_NONE;
    c->iph = iph; /* given back by on_closed from here on */
    if (gw_conn_table_add(&s->conns, c) < 0) {
        log_rl_error("connection table full", "thread=%d", s->idx);
        return refuse(wsi, 503, gwm.rejected_503, "table-full");
    }
    char query[1024];
    size_t ulen = strlen(user);
    if ((copy_query(r->query, query, sizeof query) > 0 && !(c->query = strdup(query))) ||
        (ulen && (!(c->user = strdup(user)) || gw_index_add_user(&s->index, c) < 0))) {
        log_rl_error("out of memory on connect", "thread=%d", s->idx);
        unestablish(s, c);
        return refuse(wsi, 503, gwm.rejected_503, "out-of-memory");
    }
    const gw_slice_t *key = gw_http_header(r, "sec-websocket-key");
    char k[65], accept[HS_ACCEPT_LEN + 1];
    gw_http_copy(*key, k, sizeof k); /* <= 64 bytes: checked */
    hs_accept(k, accept);
    uint8_t resp[LWS_PRE + 224];
    int n = snprintf((char *)resp + LWS_PRE, sizeof resp - LWS_PRE,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n", accept,
                     c->proto ? "Sec-WebSocket-Protocol: " GW_CP_NAME "\r\n" : "");
    /* Counted before the 101 goes out: a client that has its 101 and connects again at once
     * (to another thread) must find this one in the count that --max-connections checks. */
    atomic_fetch_add_explicit(&s->gw->nconns, 1, memory_order_relaxed);
    if (n < 0 || lws_write(wsi, resp + LWS_PRE, (size_t)n, LWS_WRITE_RAW) < n) {
        atomic_fetch_sub_explicit(&s->gw->nconns, 1, memory_order_relaxed);
        unestablish(s, c);
        return -1;
    }
    c->established = true; /* from here on on_closed undoes all of the above */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    memset(&c->ws, 0, sizeof c->ws);
    c->ws.expect_masked = 1; /* client frames are masked (§5.1) */
    /* a frame header announcing more than --max-message (for the message so far) is refused
     * at the header, before any of its payload is waited for */
    c->ws.max_message = (uint64_t)gw_cfg.max_message;
    gw_keepalive_alive(s, c);
    atomic_fetch_add_explicit(&s->nconns, 1, memory_order_relaxed);
    metrics_gauge_add(gwm.connections, 1);
    metrics_inc(gwm.accepted);

    gw_event_t *e = gw_ws_open_event(c, 0, false);
    if (!e) {
        log_rl_error("out of memory on connect", "thread=%d", s->idx);
        gw_ws_close(c, 1011, "out of memory", 13);
        return 0;
    }
    if (gw_presence_shared(s->gw)) {
        /* presence shared by the API nodes: the Open goes to one node, the one this
         * connection's messages go to, ahead of them (msgroute.h) */
        e->routed = 1;
        gw_msgroute_send(&s->route, c, e);
    } else if (!gw_svc_push_all(s, e)) {
        gw_svc_pause(s, c);
    }
    if (c->proto)
        gw_cp_established(s, c); /* after its Open: the user channel's recovery */
    if (atomic_load(&s->stop_req) >= GW_SVC_QUIESCE)
        gw_svc_close_conn(s, c, 1001, NULL);
    if (log_level >= LOG_DEBUG) {
        char q[USER_MAX + 8], peer[80];
        copy_peer(wsi, peer, sizeof peer);
        log_debug("connected", "conn_id=%llu user=%s peer=%s thread=%d",
                  (unsigned long long)c->id, log_quote(q, sizeof q, user), peer, s->idx);
    }
    return 0;
}

static int frames_in(gw_conn_t *c, uint8_t *p, size_t n);

/* Appends n bytes to c's split request head, within the thread's budget for such heads (slow
 * or stalled clients hold them until HANDSHAKE_TIMEOUT_S). False when over it or out of
 * memory. */
static bool hs_hold(gw_svc_t *s, gw_conn_t *c, const uint8_t *p, size_t n)
{
    if (s->hs_bytes + n > GW_HS_BUDGET)
        return false;
    char *b = realloc(c->hs, (size_t)c->hs_len + n);
    if (!b)
        return false;
    memcpy(b + c->hs_len, p, n);
    c->hs = b;
    c->hs_len = (uint16_t)(c->hs_len + n);
    s->hs_bytes += n;
    return true;
}

static void hs_release(gw_svc_t *s, gw_conn_t *c)
{
    s->hs_bytes -= c->hs_len;
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
}

/* The request head: collected (in c->hs only when it spans reads), then a WebSocket upgrade
 * or a plain HTTP request. Bytes after the head of an upgrade are the first frames. */
static int request_in(gw_svc_t *s, struct lws *wsi, gw_conn_t *c, uint8_t *in, size_t len)
{
    gw_http_req_t r;
    uint8_t *buf = in, *more = NULL;
    size_t blen = len, nmore = 0;
    int rv;
    if (!c->hs) {
        rv = gw_http_parse((const char *)in, len, &r);
        if (rv == GW_HTTP_AGAIN) {
            /* len < GW_HTTP_MAX_HEAD, or the parse said BAD */
            if (!hs_hold(s, c, in, len))
                return refuse(wsi, 503, gwm.rejected_503, "handshake-budget");
            return 0;
        }
    } else {
        size_t take = len < GW_HTTP_MAX_HEAD - c->hs_len ? len : GW_HTTP_MAX_HEAD - c->hs_len;
        if (!hs_hold(s, c, in, take))
            return refuse(wsi, 503, gwm.rejected_503, "handshake-budget");
        buf = (uint8_t *)c->hs;
        blen = c->hs_len;
        more = in + take;
        nmore = len - take;
        rv = gw_http_parse(c->hs, c->hs_len, &r);
        if (rv == GW_HTTP_AGAIN && nmore)
            rv = GW_HTTP_BAD; /* the buffer is full and the head goes on */
        if (rv == GW_HTTP_AGAIN)
            return 0;
    }
    if (rv != GW_HTTP_OK)
        return refuse(wsi, 400, gwm.rejected_400, "bad-request");
    const gw_slice_t *up = gw_http_header(&r, "upgrade");
    if (!up) {
        gw_httpd_serve(s, wsi, &r);
        return -1; /* after the response is sent */
    }
    char user[USER_MAX];
    uint64_t iph;
    user[0] = 0;
    if (check_upgrade(s, wsi, c, &r, up, user, sizeof user, &iph) < 0)
        return -1;
    if (establish(s, wsi, c, &r, user, iph) < 0)
        return -1;
    /* frames the client sent right behind its request */
    rv = 0;
    if (blen > r.head_len)
        rv = frames_in(c, buf + r.head_len, blen - r.head_len);
    if (!rv && nmore)
        rv = frames_in(c, more, nmore);
    if (c->hs)
        hs_release(s, c);
    return rv;
}

/* ---- frames in ------------------------------------------------------------------------ */

/* A text message is not UTF-8: close 1007 (RFC 6455 §8.1), dropping what was read of it. */
static void bad_utf8(gw_conn_t *c, uint64_t at)
{
    log_rl_warn("invalid UTF-8 in a text message", "conn_id=%llu received=%llu",
                (unsigned long long)c->id, (unsigned long long)at);
    gw_reasm_reset(&c->rx);
    gw_ws_close(c, 1007, "invalid UTF-8", 13);
}

/* Hands a complete message upstream. Takes e. whole: it came in one slice, not yet
 * checked for UTF-8 (a reassembled one was checked slice by slice in on_data). */
static void message_done(gw_svc_t *s, gw_conn_t *c, gw_event_t *e, bool whole)
{
    const uint8_t *payload = (const uint8_t *)gw_event_a(e);
    if (!e->binary && (whole ? !gw_utf8_valid(payload, e->a_len) : c->utf8 != 0)) {
        uint32_t n = e->a_len;
        gw_event_free(e);
        bad_utf8(c, n);
        return;
    }
    e->t_read = clock_mono_ns();
    e->seq = ++c->seq;
    e->gateway_ns = clock_wall_ns();
    metrics_inc(gwm.msgs_in);
    metrics_add(gwm.bytes_in, e->a_len);
    gw_svcpoll_work(&s->poll, 1);
    gw_msgroute_send(&s->route, c, e);
}

/* One chunk of a data message (final: the message ends with it). */
static void chunk(gw_conn_t *c, const uint8_t *p, size_t n, bool final, bool whole)
{
    size_t max = (size_t)gw_cfg.max_message;
    gw_event_t *e;
    /* what is still to come is known only inside the final frame */
    size_t rest = c->ws.frame_fin ? (size_t)c->ws.remaining : GW_REASM_REST_UNKNOWN;
    int rv = gw_reasm_add(&c->rx, c->id, c->user, c->user ? strlen(c->user) : 0, c->rx_binary,
                          p, n, final, rest, max, &e);
    switch (rv) {
    case GW_REASM_MORE:
        return;
    case GW_REASM_TOO_BIG:
        log_rl_warn("message too big", "conn_id=%llu max=%zu", (unsigned long long)c->id, max);
        gw_ws_close(c, 1009, "message too big", 15);
        return;
    case GW_REASM_NOMEM:
        log_rl_error("out of memory reading a message", "conn_id=%llu", (unsigned long long)c->id);
        gw_ws_close(c, 1011, "out of memory", 13);
        return;
    default:
        message_done(svc_of(c->wsi), c, e, whole);
    }
}

static int on_msg_begin(void *ctx, int opcode, const uint8_t *prefix, size_t n)
{
    gw_conn_t *c = ctx;
    (void)prefix;
    (void)n;
    c->rx_binary = opcode == WS_OP_BINARY;
    c->utf8 = 0;
    return 0;
}

/* After our close frame the client's messages still count until its own close frame arrives:
 * it may have sent them before it saw ours (RFC 6455 §7.1.1 has us read on until its close).
 * After a 1001 (drain), a 1008 or a Kick they go upstream as usual. After a close for what the
 * client sent (1002 protocol error, 1007 invalid UTF-8, 1009 too big), 1011 (out of memory)
 * or a hang-up (no close code) they are read and dropped. */
static bool drops_data(const gw_conn_t *c)
{
    if (!c->closing)
        return false;
    switch (c->close_code) {
    case 0: case 1002: case 1007: case 1009: case 1011:
        return true;
    default:
        return false;
    }
}

static int on_data(void *ctx, const uint8_t *p, size_t n)
{
    gw_conn_t *c = ctx;
    if (drops_data(c))
        return 0;
    /* the whole message in this slice: one copy, no reassembly, one UTF-8 pass */
    bool whole = !c->rx.ev && c->ws.remaining == 0 && c->ws.frame_fin && c->ws.msg_len == n;
    if (!whole && !c->rx_binary && !gw_utf8_feed(&c->utf8, p, n)) {
        bad_utf8(c, c->ws.msg_len - c->ws.remaining); /* fail fast (§8.1) */
        return 0;
    }
    chunk(c, p, n, whole, whole);
    return 0;
}

static int on_msg_end(void *ctx, uint64_t total)
{
    gw_conn_t *c = ctx;
    if (drops_data(c))
        return 0;
    if (c->rx.ev || total == 0)
        chunk(c, (const uint8_t *)"", 0, true, false); /* reassembled, or an empty message */
    return 0;
}

/* RFC 6455 §7.4: the codes a close frame may carry. */
static bool close_code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* Ping, pong and close. Returns 1 when the connection is to end (the parser stops). */
static int on_control(void *ctx, int opcode, const uint8_t *p, size_t n)
{
    gw_conn_t *c = ctx;
    if (opcode == WS_OP_PONG) {
        gw_keepalive_alive(svc_of(c->wsi), c);
        return 0;
    }
    if (opcode == WS_OP_PING) {
        if (!c->closing && gw_ws_control(c, WS_OP_PONG, p, n) < 0)
            return 1;
        return 0;
    }
    /* close */
    int code = ws_close_code(p, n);
    if (c->closing)
        return 1; /* the answer to ours: done */
    if (code != 1005 && !close_code_ok(code)) {
        log_rl_warn("client closed for a protocol violation", "conn_id=%llu code=%d",
                    (unsigned long long)c->id, code);
        gw_ws_close(c, 1002, "invalid close code", 18);
        return 1;
    }
    if (n > 2 && !gw_utf8_valid(p + 2, n - 2)) {
        gw_ws_close(c, 1007, "invalid UTF-8", 13);
        return 1;
    }
    c->peer_code = (uint16_t)code;
    /* echo its code (§5.5.1), then hang up: lws sends what it holds first */
    gw_ws_close(c, code, NULL, 0);
    return 1;
}

static const ws_rx_cb_t rx_cb = {on_msg_begin, on_data, on_msg_end, on_control};

/* Bytes of an established connection. Returns -1 when lws is to close it. */
static int frames_in(gw_conn_t *c, uint8_t *p, size_t n)
{
    int rv = ws_rx_feed(&c->ws, p, n, &rx_cb, c);
    if (rv == WS_OK)
        return 0;
    if (rv == WS_ERR_STOP)
        return -1;
    if (rv == WS_ERR_TOO_BIG && !drops_data(c)) {
        /* a frame header announced more than --max-message: refused before its payload
         * (after our 1001 or a Kick too: no second close frame, the close counts as 1009) */
        log_rl_warn("message too big", "conn_id=%llu max=%lld at=header",
                    (unsigned long long)c->id, (long long)gw_cfg.max_message);
        gw_reasm_reset(&c->rx);
        gw_ws_close(c, 1009, "message too big", 15);
        return -1;
    }
    if (c->closing)
        return -1;
    if (rv == WS_ERR_NOMEM) {
        log_rl_error("out of memory reading a frame", "conn_id=%llu", (unsigned long long)c->id);
        gw_ws_close(c, 1011, "out of memory", 13);
        return -1;
    }
    log_rl_warn("client closed for a protocol violation", "conn_id=%llu code=1002",
                (unsigned long long)c->id);
    gw_ws_close(c, 1002, "protocol error", 14);
    return -1; /* the parser cannot go on: lws sends the close frame, then hangs up */
}

/* ---- connection life ------------------------------------------------------------------ */

static void on_closed(struct lws *wsi, gw_conn_t *c)
{
    gw_svc_t *s = svc_of(wsi);
    if (c->hs)
        hs_release(s, c);
    ws_rx_free(&c->ws);
    if (c->iph) {
        gw_admit_ip_put(c->iph);
        c->iph = 0;
    }
    gw_cp_closed(s, c); /* (also what a refused handshake kept) */
    if (!c->established)
        return;
    int code = c->close_code ? c->close_code : c->peer_code;
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
        e->routed = gw_presence_shared(s->gw); /* then to one node, after its messages */
        /* to every node; after the messages held for a failover, if any (msgroute.h) */
        gw_msgroute_close(&s->route, c, e);
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

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    gw_conn_t *c = user;
    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT:
        c->wsi = wsi;
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, HANDSHAKE_TIMEOUT_S);
        return 0;
    case LWS_CALLBACK_RAW_RX:
        if (!len)
            return 0;
        if (c->established)
            return frames_in(c, in, len);
        return request_in(svc_of(wsi), wsi, c, in, len);
    case LWS_CALLBACK_RAW_WRITEABLE:
        if (!c->established || c->closing)
            return 0; /* the close frame is on its way */
        return gw_wsout_flush(c, svc_of(wsi)->wscratch);
    case LWS_CALLBACK_RAW_CLOSE:
        on_closed(wsi, c);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        gw_svc_on_wake(svc_of(wsi));
        return 0;
    default:
        return 0;
    }
}
