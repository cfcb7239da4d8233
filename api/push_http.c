/* push_http.c: HTTP/1.1 push API on libwebsockets + libuv (see push_http.h).
 *
 * Threads: every function runs on ws-api's loop thread (lws callbacks come from the shared uv
 * loop). Commands queued here are flushed to the gateways by grpc_server's uv_check handle at
 * the end of the same loop iteration. */
#include "push_http.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "bearer.h"
#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "push.h"
#include "push_json.h"
#include "tls_server.h"
#include "wsapi_metrics.h"

#define WRITE_CHUNK 16384

struct push_http {
    struct lws_context *ctx;
    struct lws_vhost *vh;
    push_http_cfg_t cfg;
    router_t *r;
    presence_t *pres;
    bearer_t auth; /* --push-token */
    int port;
};

/* Per connection (lws allocates and zeroes it; reused across keep-alive requests). */
typedef struct sess {
    int method; /* LWSHUMETH_* */
    char path[256];
    bool v1;       /* path under /v1/: counted in wsapi_push_requests_total */
    bool auth_ok;
    buf_t body;
    bool too_big;
    buf_t resp; /* response body */
    size_t resp_off;
    bool close_after;
    int err_status; /* POST already judged bad: answer after its body */
    char err_msg[64];
} sess_t;

static push_http_t *the_http; /* lws protocol callbacks reach the server through this */

static void sess_reset(sess_t *s)
{
    buf_free(&s->body);
    buf_free(&s->resp);
    memset(s, 0, sizeof *s);
}

/* ---- responses ----------------------------------------------------------------------------- */

/* Writes the status line and headers now and schedules the body (s->resp) for WRITEABLE. */
static int respond(struct lws *wsi, sess_t *s, int status, const char *ctype)
{
    uint8_t hdr[LWS_PRE + 512];
    uint8_t *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    if (s->v1)
        metrics_inc(wsapi_metrics_http(status));
    if (lws_add_http_common_headers(wsi, (unsigned)status, ctype, s->resp.len, &p, end))
        return -1;
    if (s->close_after &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const uint8_t *)"close", 5, &p,
                                     end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    s->resp_off = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

static int respond_json(struct lws *wsi, sess_t *s, int status, json_t *o)
{
    buf_reset(&s->resp);
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!txt || buf_append(&s->resp, txt, strlen(txt)) < 0 || buf_append(&s->resp, "\n", 1) < 0) {
        free(txt);
        return -1;
    }
    free(txt);
    return respond(wsi, s, status, "application/json");
}

static int respond_error(struct lws *wsi, sess_t *s, int status, const char *msg)
{
    if (status >= 500)
        log_warn("http error", "status=%d path=%s error=\"%s\"", status, s->path, msg);
    else
        log_debug("http error", "status=%d path=%s error=\"%s\"", status, s->path, msg);
    return respond_json(wsi, s, status, json_pack("{s:s}", "error", msg));
}

static int respond_text(struct lws *wsi, sess_t *s, int status, const char *ctype,
                        const char *text)
{
    buf_reset(&s->resp);
    if (buf_append(&s->resp, text, strlen(text)) < 0)
        return -1;
    return respond(wsi, s, status, ctype);
}

/* WRITEABLE: one chunk of the body per callback; the last one ends the transaction. */
static int write_body(struct lws *wsi, sess_t *s)
{
    uint8_t chunk[LWS_PRE + WRITE_CHUNK];
    size_t left = s->resp.len - s->resp_off;
    size_t n = left < WRITE_CHUNK ? left : WRITE_CHUNK;
    bool last = n == left;
    memcpy(chunk + LWS_PRE, s->resp.data + s->resp_off, n);
    if (lws_write(wsi, chunk + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
        (int)n)
        return -1;
    s->resp_off += n;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    bool close_after = s->close_after;
    buf_free(&s->resp);
    buf_free(&s->body);
    if (close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- handlers ------------------------------------------------------------------------------ */

static int handle_users(struct lws *wsi, sess_t *s, const char *user_id)
{
    push_http_t *h = the_http;
    if (!*user_id)
        return respond_error(wsi, s, 404, "no user id in path: GET /v1/users/{user_id}");
    json_t *conns = json_array();
    pres_user_t *u = presence_user(h->pres, user_id);
    for (pres_conn_t *c = u ? u->conns : NULL; c && conns; c = c->u_next) {
        char id[24];
        snprintf(id, sizeof id, "%llu", (unsigned long long)c->conn_id);
        json_array_append_new(conns, json_pack("{s:s, s:s}", "conn_id", id, "gateway_id",
                                               presence_conn_label(c)));
    }
    json_t *o = json_pack("{s:s, s:o}", "user_id", user_id, "connections", conns);
    if (!o)
        return respond_error(wsi, s, 500, "out of memory");
    return respond_json(wsi, s, 200, o);
}

static int handle_post(struct lws *wsi, sess_t *s)
{
    push_http_t *h = the_http;
    bool kick = strcmp(s->path, "/v1/kick") == 0;
    char err[PUSH_JSON_ERR_LEN];
    push_req_t req;
    const char *body = s->body.data ? (const char *)s->body.data : "";
    int rv = kick ? push_json_parse_kick(body, s->body.len, &req, err)
                  : push_json_parse_push(body, s->body.len, &req, err);
    if (rv < 0)
        return respond_error(wsi, s, 400, err);
    int n = kick ? push_kick(h->r, &req.target, req.code, req.reason)
                 : push_send(h->r, &req.target, req.data, req.len, req.binary);
    push_req_free(&req);
    if (n < 0)
        return respond_error(wsi, s, 500, "out of memory");
    log_debug(kick ? "kick" : "push", "gateways=%d", n);
    return respond_json(wsi, s, 200, json_pack("{s:i}", "gateways", n));
}

/* An error for a POST is answered at LWS_CALLBACK_HTTP_BODY_COMPLETION (lws calls it for every
 * POST, also with an empty body), once the body has been read and dropped: clients that send
 * the whole body before reading see the status instead of a reset connection. */
static int post_error(sess_t *s, int status, const char *msg)
{
    s->err_status = status;
    snprintf(s->err_msg, sizeof s->err_msg, "%s", msg);
    return 0;
}

/* Headers complete (LWS_CALLBACK_HTTP). GETs are answered now; POSTs after their body. */
static int on_request(struct lws *wsi, sess_t *s, const char *uri)
{
    push_http_t *h = the_http;
    char *muri;
    int mlen;
    sess_reset(s);
    s->method = lws_http_get_uri_and_method(wsi, &muri, &mlen);
    snprintf(s->path, sizeof s->path, "%s", uri ? uri : "");
    s->v1 = strncmp(s->path, "/v1/", 4) == 0;
    bool post = s->method == LWSHUMETH_POST;

    if (s->v1 && h->auth.enabled) {
        char auth[512] = "";
        bool has = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) > 0;
        if (has && lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
            auth[0] = 0; /* longer than any token we would accept: judged wrong below */
        bearer_result_t br = bearer_check(&h->auth, has ? auth : NULL);
        if (has && !auth[0])
            br = BEARER_WRONG;
        if (br != BEARER_OK) {
            char q[96];
            wsapi_metrics_auth_reject(WSAPI_AUTH_HTTP_PUSH, (int)br);
            log_rl_warn("push unauthenticated", "api=http reason=%s path=%s", bearer_result_name(br),
                        log_quote(q, sizeof q, s->path));
            const char *m = "missing or wrong bearer token";
            return post ? post_error(s, 401, m) : respond_error(wsi, s, 401, m);
        }
    }

    bool post_path = strcmp(s->path, "/v1/push") == 0 || strcmp(s->path, "/v1/kick") == 0;
    bool get_path = strcmp(s->path, "/healthz") == 0 || strcmp(s->path, "/metrics") == 0 ||
                    strncmp(s->path, "/v1/users/", 10) == 0;
    if (!post_path && !get_path)
        return post ? post_error(s, 404, "not found") : respond_error(wsi, s, 404, "not found");
    if ((post_path && !post) || (get_path && s->method != LWSHUMETH_GET)) {
        const char *m = post_path ? "use POST" : "use GET";
        return post ? post_error(s, 405, m) : respond_error(wsi, s, 405, m);
    }
    if (post_path) {
        char cl[32] = "";
        bool has_len = lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
        if (!has_len && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
            /* lws 4.1 does not deliver chunked request bodies to us: ask for a length. */
            s->close_after = true;
            return respond_error(wsi, s, 411, "Content-Length required (no chunked bodies)");
        }
        if (!has_len)
            return handle_post(wsi, s); /* no length: empty body (RFC 9112 §6.3), no BODY cbs */
        if (strtoull(cl, NULL, 10) > h->cfg.max_body) {
            s->too_big = true;     /* the body is read and dropped, then 413 */
            s->close_after = true; /* and the connection ends: do not invite another one */
            return 0;
        }
        return 0; /* answered at BODY_COMPLETION */
    }
    if (strcmp(s->path, "/healthz") == 0)
        return respond_text(wsi, s, 200, "text/plain", "ok\n");
    if (strcmp(s->path, "/metrics") == 0) {
        buf_reset(&s->resp);
        if (metrics_render(&s->resp) < 0)
            return respond_error(wsi, s, 500, "out of memory");
        return respond(wsi, s, 200, "text/plain; version=0.0.4; charset=utf-8");
    }
    return handle_users(wsi, s, s->path + 10);
}

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len)
{
    sess_t *s = user;
    push_http_t *h = the_http;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_request(wsi, s, in) < 0 ? -1 : 0;
    case LWS_CALLBACK_HTTP_BODY:
        if (s->too_big || s->err_status)
            return 0; /* dropped */
        if (s->body.len + len > h->cfg.max_body) {
            s->too_big = true;
            buf_free(&s->body);
            return 0;
        }
        if (buf_append(&s->body, in, len) < 0) {
            s->too_big = true;
            buf_free(&s->body);
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (s->method != LWSHUMETH_POST || s->resp.data)
            return 0; /* not ours to answer, or already answered */
        if (s->err_status)
            return respond_error(wsi, s, s->err_status, s->err_msg) < 0 ? -1 : 0;
        if (s->too_big) {
            char m[96];
            snprintf(m, sizeof m, "body larger than %zu bytes", h->cfg.max_body);
            return respond_error(wsi, s, 413, m) < 0 ? -1 : 0;
        }
        return handle_post(wsi, s) < 0 ? -1 : 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!s || !s->resp.data || s->resp_off > s->resp.len)
            return 0;
        return write_body(wsi, s);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (s)
            sess_reset(s);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"http", callback_http, sizeof(sess_t), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* lws log lines into our logfmt stream (loop thread). */
static void lws_emit(int level, const char *line)
{
    char q[512];
    char tmp[480];
    snprintf(tmp, sizeof tmp, "%s", line);
    size_t n = strlen(tmp);
    while (n && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r'))
        tmp[--n] = 0;
    if (level & LLL_ERR)
        log_error("lws", "line=%s", log_quote(q, sizeof q, tmp));
    else
        log_warn("lws", "line=%s", log_quote(q, sizeof q, tmp));
}

push_http_t *push_http_new(uv_loop_t *loop, const push_http_cfg_t *cfg, router_t *r,
                           presence_t *pres, char err[PUSH_HTTP_ERR_LEN])
{
    struct sockaddr_storage ss;
    char host[64];
    int port;
    if (addr_parse(cfg->listen, &ss, host, &port, err) < 0)
        return NULL;
    push_http_t *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, PUSH_HTTP_ERR_LEN, "out of memory");
        return NULL;
    }
    h->cfg = *cfg;
    h->r = r;
    h->pres = pres;
    if (bearer_init(&h->auth, cfg->push_token) < 0) {
        snprintf(err, PUSH_HTTP_ERR_LEN, "cannot hash the push token (OpenSSL)");
        free(h);
        return NULL;
    }
    bool tls = cfg->tls_cert && *cfg->tls_cert && cfg->tls_key && *cfg->tls_key;
    if (tls) {
        /* Load and check the pair ourselves first: lws would only log a failure and leave a
         * half-built foreign-loop context behind (see below). */
        char terr[TLS_SERVER_ERR_LEN];
        tls_server_t *probe = tls_server_new(cfg->tls_cert, cfg->tls_key, NULL, terr);
        if (!probe) {
            snprintf(err, PUSH_HTTP_ERR_LEN, "%s", terr);
            free(h);
            return NULL;
        }
        tls_server_free(probe);
    }
    the_http = h;

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
    void *loops[1] = {loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ? NULL : host;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (ss.ss_family == AF_INET)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = loops;
    info.vhost_name = "ws-api";
    info.server_string = "ws-api";
    info.max_http_header_data = 8192;
    info.keepalive_timeout = 30;
    info.timeout_secs = 30;
    if (tls) {
        /* lws does the TLS: OpenSSL initialised by lws, the default vhost serves HTTPS only
         * (no ALLOW_NON_SSL_ON_SSL_PORT), HTTP/1.1 only (ALPN), same policy as the gRPC port. */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
        info.ssl_options_set = (long)(SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_SSLv3 |
                                      SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                      SSL_OP_CIPHER_SERVER_PREFERENCE);
        info.ssl_cipher_list = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL";
        info.alpn = "http/1.1";
    }
    h->ctx = lws_create_context(&info);
    if (!h->ctx) {
        snprintf(err, PUSH_HTTP_ERR_LEN, "cannot create the HTTP server on %s (lws)", cfg->listen);
        goto out_free;
    }
    /* lws creates the context even when its default vhost cannot listen: check the vhost. */
    h->vh = lws_get_vhost_by_name(h->ctx, "ws-api");
    h->port = h->vh ? lws_get_vhost_listen_port(h->vh) : -1;
    if (h->port <= 0) {
        /* Not destroyed: lws 4.1 frees a foreign-loop context whose vhost failed before its
         * listen wsi finishes closing on our loop (use after free in __lws_close_free_wsi_final).
         * The caller exits; the context stays reachable from the_http until then. */
        snprintf(err, PUSH_HTTP_ERR_LEN, "cannot listen on %s", cfg->listen);
        return NULL;
    }
    log_info("http listening", "addr=%s:%d transport=%s max_body=%zu auth=%s", host, h->port,
             tls ? "https" : "http", cfg->max_body, h->auth.enabled ? "bearer" : "none");
    return h;
out_free:
    the_http = NULL;
    free(h);
    return NULL;
}

int push_http_port(const push_http_t *h)
{
    return h->port;
}

void push_http_free(push_http_t *h)
{
    if (!h)
        return;
    lws_context_destroy(h->ctx);
    the_http = NULL;
    free(h);
}
