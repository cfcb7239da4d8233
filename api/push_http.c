/* push_http.c: the routes of ws-api's HTTP/1.1 push API (see push_http.h) on http_server.h.
 *
 * Threads: every function runs on ws-api's loop thread (http_server calls the handler from
 * its uv callbacks). Commands queued here are flushed to the gateways by grpc_server's
 * uv_check handle at the end of the same loop iteration. */
#include "push_http.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bearer.h"
#include "buf.h"
#include "cluster.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "presence_gate.h"
#include "push.h"
#include "push_json.h"
#include "wsapi_metrics.h"

#define MAX_PATH 256

struct push_http {
    http_server_t *srv;
    push_http_cfg_t cfg;
    router_t *r;
    presence_t *pres;
    bearer_t auth; /* --push-token */
    bool draining; /* push_http_draining: /readyz answers 503 from then on */
};

/* One request being answered: now (c, during the handler), or later (hold: --redis, where
 * pushes and presence are looked up in Redis; a heap copy of the call). */
typedef struct call {
    push_http_t *h;
    http_conn_t *c;
    http_hold_t *hold;
    char path[MAX_PATH]; /* percent-decoded */
    char *name;          /* later: the user or room asked about */
    bool v1;             /* under /v1/: counted in wsapi_push_requests_total */
    bool kick;           /* later: a kick (for the log line) */
} call_t;

/* ---- responses ----------------------------------------------------------------------------- */

static void respond_hdrs(call_t *k, int status, const char *ctype, const char *hdrs,
                         const void *body, size_t len)
{
    if (k->v1)
        metrics_inc(wsapi_metrics_http(status));
    if (k->hold)
        http_server_answer(k->hold, status, ctype, hdrs, body, len);
    else if (http_conn_respond_hdrs(k->c, status, ctype, hdrs, body, len) < 0)
        log_rl_error("http response dropped", "status=%d error=%s", status, "out of memory");
    k->hold = NULL;
}

/* The call, answered later: a heap copy holding the connection (NULL: out of memory, then
 * answered 500 now). */
static call_t *defer(call_t *k, const char *name)
{
    call_t *a = malloc(sizeof *a);
    if (!a)
        return NULL;
    *a = *k;
    a->name = NULL;
    if (name && !(a->name = strdup(name))) {
        free(a);
        return NULL;
    }
    a->hold = http_server_hold(k->c);
    a->c = NULL;
    return a;
}

static void call_free(call_t *a)
{
    free(a->name);
    free(a);
}

static void respond(call_t *k, int status, const char *ctype, const void *body, size_t len)
{
    respond_hdrs(k, status, ctype, NULL, body, len);
}

/* Presence is not whole yet (presence_gate.h): 503, try again in a second. */
/* 503 {"error":why} with Retry-After: 1, not logged (/readyz probes). */
static void respond_unavailable(call_t *k, const char *why)
{
    char body[96];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", why);
    respond_hdrs(k, 503, "application/json", "Retry-After: 1\r\n", body, (size_t)n);
}

static void respond_503(call_t *k, const char *why)
{
    char q[96];
    log_rl_warn("http error", "status=503 path=%s error=\"%s\"", log_quote(q, sizeof q, k->path),
                why);
    respond_unavailable(k, why);
}

static bool refuse_resyncing(call_t *k)
{
    const char *why = "presence resyncing";
    presence_t *p = k->h->pres;
    if (p->cluster ? cluster_ready(p->cluster, &why) : presence_gate_open(p))
        return false;
    respond_503(k, why);
    return true;
}

/* GET /readyz: 200 while the push API can answer (presence whole: every gateway synced, and
 * with --redis the Redis links up), 503 {"error":why} otherwise and once shutting down. Not
 * logged per probe (probes come every few seconds): the state changes are (presence ready,
 * Redis link up/down, shutting down). */
static void answer_readyz(call_t *k)
{
    const char *why = "presence resyncing";
    presence_t *p = k->h->pres;
    if (k->h->draining)
        why = "shutting down";
    else if (p->cluster ? cluster_ready(p->cluster, &why) : presence_gate_open(p)) {
        respond(k, 200, "text/plain", "ready\n", 6);
        return;
    }
    respond_unavailable(k, why);
}

static void respond_json(call_t *k, int status, json_t *o)
{
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!txt) {
        respond(k, 500, NULL, NULL, 0);
        return;
    }
    size_t n = strlen(txt);
    char *withnl = realloc(txt, n + 2);
    if (!withnl) {
        free(txt);
        respond(k, 500, NULL, NULL, 0);
        return;
    }
    withnl[n] = '\n';
    respond(k, status, "application/json", withnl, n + 1);
    free(withnl);
}

static void respond_error(call_t *k, int status, const char *msg)
{
    char q[96];
    if (status >= 500)
        log_rl_warn("http error", "status=%d path=%s error=\"%s\"", status,
                    log_quote(q, sizeof q, k->path), msg);
    else
        log_debug("http error", "status=%d path=%s error=\"%s\"", status,
                  log_quote(q, sizeof q, k->path), msg);
    respond_json(k, status, json_pack("{s:s}", "error", msg));
}

/* ---- handlers ------------------------------------------------------------------------------ */

/* --redis: a push or kick routed (cluster.h): its answer. */
/* The answer to a push: {"gateways":N}, and where it was kept in each channel's history:
 * {"history":{"user:alice":{"offset":18,"epoch":"k3x9"}}}. */
static void respond_pushed(call_t *k, int rv, const push_result_t *res)
{
    if (push_err_away(rv)) {
        respond_503(k, push_err_away(rv));
        return;
    }
    if (rv < 0) {
        respond_error(k, 500, "out of memory");
        return;
    }
    log_debug("push", "gateways=%d kept=%zu", res->gateways, res->nkept);
    json_t *o = json_pack("{s:i}", "gateways", res->gateways);
    if (o && (res->nkept || res->not_kept)) {
        json_t *hist = json_object();
        for (size_t i = 0; hist && i < res->nkept; i++)
            json_object_set_new(hist, res->kept[i].channel,
                                json_pack("{s:I, s:s}", "offset",
                                          (json_int_t)res->kept[i].pos.offset, "epoch",
                                          res->kept[i].pos.epoch));
        json_object_set_new(o, "history", hist);
        if (res->not_kept)
            json_object_set_new(o, "not_kept", json_integer((json_int_t)res->not_kept));
    }
    respond_json(k, 200, o);
}

/* The answer to a kick (the gateway count, or an error). */
static void on_kicked_now(call_t *k, int n)
{
    if (push_err_away(n))
        respond_503(k, push_err_away(n));
    else if (n < 0)
        respond_error(k, 500, "out of memory");
    else
        respond_json(k, 200, json_pack("{s:i}", "gateways", n));
    log_debug("kick", "gateways=%d", n);
}

/* --redis: a push or kick routed through the cluster (push.h): its answer. */
static void on_pushed(void *ud, int rv, push_result_t *res)
{
    call_t *a = ud;
    respond_pushed(a, rv, res);
    call_free(a);
}

static void on_kicked(void *ud, int n)
{
    call_t *a = ud;
    on_kicked_now(a, n);
    call_free(a);
}

/* --redis: the members of a user or room, from Redis: the answer. */
static void on_members(void *ud, int status, const cl_member_t *m, size_t n)
{
    call_t *a = ud;
    if (status < 0) {
        if (push_err_away(status))
            respond_503(a, push_err_away(status));
        else
            respond_error(a, 500, "out of memory");
        call_free(a);
        return;
    }
    bool room = strncmp(a->path, "/v1/rooms/", 10) == 0;
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr; i++) {
        char id[24];
        snprintf(id, sizeof id, "%llu", (unsigned long long)m[i].conn_id);
        json_array_append_new(arr, room ? json_pack("{s:s, s:s, s:s}", "conn_id", id, "user_id",
                                                    m[i].user_id, "gateway_id", m[i].gateway_id)
                                        : json_pack("{s:s, s:s}", "conn_id", id, "gateway_id",
                                                    m[i].gateway_id));
    }
    json_t *o = !arr ? NULL
                : room ? json_pack("{s:s, s:I, s:o}", "room", a->name, "count", (json_int_t)n,
                                   "members", arr)
                       : json_pack("{s:s, s:o}", "user_id", a->name, "connections", arr);
    if (!o)
        respond_error(a, 500, "out of memory");
    else
        respond_json(a, 200, o);
    call_free(a);
}

static void queried(call_t *k, const char *name, bool room)
{
    cluster_t *cl = k->h->pres->cluster;
    call_t *a = defer(k, name);
    if (!a) {
        respond_error(k, 500, "out of memory");
        return;
    }
    int rv = room ? cluster_room_presence(cl, name, on_members, a)
                  : cluster_user_presence(cl, name, on_members, a);
    if (rv < 0)
        on_members(a, rv, NULL, 0);
}

static void handle_users(call_t *k, const char *user_id)
{
    if (!*user_id) {
        respond_error(k, 404, "no user id in path: GET /v1/users/{user_id}");
        return;
    }
    if (refuse_resyncing(k))
        return;
    if (k->h->pres->cluster) {
        queried(k, user_id, false);
        return;
    }
    json_t *conns = json_array();
    pres_user_t *u = presence_user(k->h->pres, user_id);
    for (pres_conn_t *c = u ? u->conns : NULL; c && conns; c = c->u_next) {
        char id[24];
        snprintf(id, sizeof id, "%llu", (unsigned long long)c->conn_id);
        json_array_append_new(conns, json_pack("{s:s, s:s}", "conn_id", id, "gateway_id",
                                               presence_conn_label(c)));
    }
    json_t *o = json_pack("{s:s, s:o}", "user_id", user_id, "connections", conns);
    if (!o) {
        respond_error(k, 500, "out of memory");
        return;
    }
    respond_json(k, 200, o);
}

static void add_member(void *ud, const pres_conn_t *c)
{
    json_t *members = ud;
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)c->conn_id);
    json_array_append_new(members, json_pack("{s:s, s:s, s:s}", "conn_id", id, "user_id",
                                             c->user ? c->user->id : "", "gateway_id",
                                             presence_conn_label(c)));
}

static void handle_rooms(call_t *k, const char *room)
{
    if (!*room) {
        respond_error(k, 404, "no room in path: GET /v1/rooms/{room}");
        return;
    }
    if (refuse_resyncing(k))
        return;
    if (k->h->pres->cluster) {
        queried(k, room, true);
        return;
    }
    json_t *members = json_array();
    size_t n = 0;
    if (members && k->h->cfg.rooms)
        n = rooms_each_member(k->h->cfg.rooms, k->h->pres, room, add_member, members);
    json_t *o = members && json_array_size(members) == n
                    ? json_pack("{s:s, s:I, s:o}", "room", room, "count", (json_int_t)n,
                                "members", members)
                    : (json_decref(members), NULL);
    if (!o) {
        respond_error(k, 500, "out of memory");
        return;
    }
    respond_json(k, 200, o);
}

static void handle_post(call_t *k, const uint8_t *body, size_t len)
{
    push_http_t *h = k->h;
    bool kick = strcmp(k->path, "/v1/kick") == 0;
    char err[PUSH_JSON_ERR_LEN];
    push_req_t req;
    const char *b = body ? (const char *)body : "";
    int rv = kick ? push_json_parse_kick(b, len, &req, err) : push_json_parse_push(b, len, &req, err);
    if (rv < 0) {
        respond_error(k, 400, err);
        return;
    }
    if (refuse_resyncing(k)) {
        push_req_free(&req);
        return;
    }
    if (h->pres->cluster) { /* --redis: looked up and routed through Redis, answered later */
        call_t *a = defer(k, NULL);
        if (!a) {
            push_req_free(&req);
            respond_error(k, 500, "out of memory");
            return;
        }
        a->kick = kick;
        if (kick) {
            int n = push_kick_async(h->r, &req.target, req.code, req.reason, on_kicked, a);
            if (n != PUSH_PENDING)
                on_kicked(a, n);
        } else {
            push_result_t res;
            int n = push_publish_async(h->r, &req.target, req.data, req.len, req.binary,
                                       req.history, &res, on_pushed, a);
            if (n != PUSH_PENDING)
                on_pushed(a, n, &res);
        }
        push_req_free(&req);
        return;
    }
    if (kick) {
        int n = push_kick(h->r, &req.target, req.code, req.reason);
        push_req_free(&req);
        on_kicked_now(k, n);
        return;
    }
    push_result_t res;
    rv = push_publish(h->r, &req.target, req.data, req.len, req.binary, req.history, NULL, &res);
    push_req_free(&req);
    respond_pushed(k, rv, &res);
    push_result_free(&res);
}

static bool method_is(const gw_http_req_t *r, const char *m)
{
    size_t n = strlen(m);
    return r->method.n == n && memcmp(r->method.p, m, n) == 0;
}

/* Every complete request (http_conn.h): authentication, routing, method. */
static void on_request(void *ud, http_conn_t *c, const http_req_t *hr)
{
    push_http_t *h = ud;
    const gw_http_req_t *r = hr->head;
    call_t k = {.h = h, .c = c};
    if (gw_http_decode(r->path, false, k.path, sizeof k.path) < 0) {
        snprintf(k.path, sizeof k.path, "(undecodable)");
        respond_error(&k, 404, "not found");
        return;
    }
    k.v1 = strncmp(k.path, "/v1/", 4) == 0;
    bool post = method_is(r, "POST");
    bool get = method_is(r, "GET") || method_is(r, "HEAD");

    if (k.v1 && h->auth.enabled) {
        char auth[512] = "";
        const gw_slice_t *a = gw_http_header(r, "authorization");
        if (a && gw_http_copy(*a, auth, sizeof auth) < 0)
            auth[0] = 0; /* longer than any token we would accept: judged wrong below */
        bearer_result_t br = bearer_check(&h->auth, a ? auth : NULL);
        if (a && !auth[0])
            br = BEARER_WRONG;
        if (br != BEARER_OK) {
            char q[96];
            wsapi_metrics_auth_reject(WSAPI_AUTH_HTTP_PUSH, (int)br);
            log_rl_warn("push unauthenticated", "api=http reason=%s path=%s",
                        bearer_result_name(br), log_quote(q, sizeof q, k.path));
            respond_error(&k, 401, "missing or wrong bearer token");
            return;
        }
    }

    bool post_path = strcmp(k.path, "/v1/push") == 0 || strcmp(k.path, "/v1/kick") == 0;
    bool get_path = strcmp(k.path, "/healthz") == 0 || strcmp(k.path, "/readyz") == 0 ||
                    strcmp(k.path, "/metrics") == 0 ||
                    strncmp(k.path, "/v1/users/", 10) == 0 ||
                    strncmp(k.path, "/v1/rooms/", 10) == 0;
    if (!post_path && !get_path) {
        respond_error(&k, 404, "not found");
        return;
    }
    if ((post_path && !post) || (get_path && !get)) {
        respond_error(&k, 405, post_path ? "use POST" : "use GET");
        return;
    }
    if (post_path) {
        handle_post(&k, hr->body, hr->body_len);
    } else if (strcmp(k.path, "/healthz") == 0) {
        respond(&k, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(k.path, "/readyz") == 0) {
        answer_readyz(&k);
    } else if (strcmp(k.path, "/metrics") == 0) {
        buf_t b = BUF_INIT;
        if (metrics_render(&b) < 0)
            respond_error(&k, 500, "out of memory");
        else
            respond(&k, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        buf_free(&b);
    } else if (strncmp(k.path, "/v1/rooms/", 10) == 0) {
        handle_rooms(&k, k.path + 10);
    } else {
        handle_users(&k, k.path + 10);
    }
}

/* Refusals by the connection itself (400/408/411/413) still count for /v1/... paths. */
static void on_refused(void *ud, int status, const char *path)
{
    (void)ud;
    if (strncmp(path, "/v1/", 4) == 0)
        metrics_inc(wsapi_metrics_http(status));
}

push_http_t *push_http_new(uv_loop_t *loop, const push_http_cfg_t *cfg, router_t *r,
                           presence_t *pres, char err[PUSH_HTTP_ERR_LEN])
{
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
    http_server_cfg_t scfg = {
        .listen = cfg->listen,
        .tls_cert = cfg->tls_cert,
        .tls_key = cfg->tls_key,
        .max_body = cfg->max_body,
        .max_conns = cfg->max_conns,
        .handshake_timeout_ms = cfg->handshake_timeout_ms,
        .head_timeout_ms = cfg->head_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .handler = on_request,
        .on_refused = on_refused,
        .ud = h,
    };
    char serr[HTTP_SERVER_ERR_LEN];
    if (!(h->srv = http_server_new(loop, &scfg, serr))) {
        snprintf(err, PUSH_HTTP_ERR_LEN, "%s", serr);
        free(h);
        return NULL;
    }
    log_info("http push api", "auth=%s", h->auth.enabled ? "bearer" : "none");
    return h;
}

int push_http_port(const push_http_t *h)
{
    return http_server_port(h->srv);
}

void push_http_draining(push_http_t *h)
{
    h->draining = true;
}

void push_http_free(push_http_t *h)
{
    if (!h)
        return;
    http_server_free(h->srv);
    free(h);
}
