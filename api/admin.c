/* admin.c: gRPC wsgw.v1.Admin methods (see admin.h). */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "grpc_frame.h"
#include "log.h"
#include "metrics.h"
#include "presence_gate.h"
#include "push.h"
#include "utf8.h"
#include "wsgw.pb-c.h"

enum { ST_OK = 0, ST_INVALID = 3, ST_NOMEM = 8, ST_UNAVAILABLE = 14, ST_MAX = 17 };

/* While gateways re-send presence (presence_gate.h) an online user may look offline: the
 * answer would be wrong, so it is refused as Push's is (14, "presence resyncing"). */
#define RESYNCING "presence resyncing"

static const char *const method_names[] = {"", "Kick", "UserPresence", "RoomPresence"};

admin_method_t admin_method(const char *path)
{
    static const char pre[] = "/wsgw.v1.Admin/";
    if (!path || strncmp(path, pre, sizeof pre - 1) != 0)
        return ADMIN_NONE;
    for (int m = ADMIN_KICK; m <= ADMIN_ROOM_PRESENCE; m++)
        if (strcmp(path + sizeof pre - 1, method_names[m]) == 0)
            return (admin_method_t)m;
    return ADMIN_NONE;
}

const char *admin_method_name(admin_method_t m)
{
    return m >= ADMIN_KICK && m <= ADMIN_ROOM_PRESENCE ? method_names[m] : "";
}

/* wsapi_grpc_admin_requests_total{method,status}: registered when a pair first occurs. */
static void count(admin_method_t m, int status)
{
    static int ids[ADMIN_ROOM_PRESENCE + 1][ST_MAX];
    static bool made[ADMIN_ROOM_PRESENCE + 1][ST_MAX];
    if (m < ADMIN_KICK || m > ADMIN_ROOM_PRESENCE || status < 0 || status >= ST_MAX)
        return;
    if (!made[m][status]) {
        char labels[64];
        snprintf(labels, sizeof labels, "method=\"%s\",status=\"%d\"", method_names[m], status);
        ids[m][status] = metrics_counter("wsapi_grpc_admin_requests_total", labels,
                                         "gRPC wsgw.v1.Admin calls by method and grpc-status.");
        made[m][status] = true;
    }
    metrics_inc(ids[m][status]);
}

/* frame: the gRPC-framed serialization of a reply into *out. Returns ST_OK or ST_NOMEM. */
static int frame(const ProtobufCMessage *m, uint8_t **out, size_t *outlen)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(GRPC_FRAME_HDR_LEN + n);
    if (!b)
        return ST_NOMEM;
    grpc_frame_header(b, (uint32_t)n);
    protobuf_c_message_pack(m, b + GRPC_FRAME_HDR_LEN);
    *out = b;
    *outlen = GRPC_FRAME_HDR_LEN + n;
    return ST_OK;
}

/* The target, code and reason of a KickRequest, checked: ST_OK or ST_INVALID with *msg. */
static int kick_args(const Wsgw__V1__KickRequest *k, target_t *t, int *code, const char **reason,
                     const char **msg)
{
    memset(t, 0, sizeof *t);
    if (k->target) {
        t->conn_ids = k->target->conn_ids;
        t->n_conn_ids = k->target->n_conn_ids;
        t->user_ids = k->target->user_ids;
        t->n_user_ids = k->target->n_user_ids;
        t->room = k->target->room && *k->target->room ? k->target->room : NULL;
        t->all = k->target->all;
    }
    *code = k->code ? k->code : 4000;
    *reason = k->reason ? k->reason : "";
    if (target_empty(t)) {
        *msg = "empty target";
        return ST_INVALID;
    }
    if (!(*code == 1000 || (*code >= 3000 && *code <= 4999))) {
        /* RFC 6455 §7.4: 1000 or the range reserved for applications */
        *msg = "code must be 1000 or 3000..4999";
        return ST_INVALID;
    }
    if (strlen(*reason) > 123 || !gw_utf8_valid((const uint8_t *)*reason, strlen(*reason))) {
        /* a close frame's payload is at most 125 bytes, its reason UTF-8 (RFC 6455 §5.5) */
        *msg = "reason must be UTF-8, at most 123 bytes";
        return ST_INVALID;
    }
    return ST_OK;
}

static int kick(presence_t *p, router_t *r, const uint8_t *req, size_t len, uint8_t **out,
                size_t *outlen, const char **msg)
{
    Wsgw__V1__KickRequest *k = wsgw__v1__kick_request__unpack(NULL, len, req);
    if (!k) {
        *msg = "cannot decode wsgw.v1.KickRequest";
        return ST_INVALID;
    }
    target_t t;
    int code;
    const char *reason;
    int st = kick_args(k, &t, &code, &reason, msg);
    if (st == ST_OK && !presence_gate_open(p)) {
        *msg = RESYNCING;
        st = ST_UNAVAILABLE;
    } else if (st == ST_OK) {
        int n = push_kick(r, &t, code, reason);
        if (n < 0) {
            *msg = "out of memory";
            st = ST_NOMEM;
        } else {
            Wsgw__V1__KickReply rep = WSGW__V1__KICK_REPLY__INIT;
            rep.gateways = (uint32_t)n;
            st = frame(&rep.base, out, outlen);
        }
    }
    wsgw__v1__kick_request__free_unpacked(k, NULL);
    return st;
}

/* Connections collected for a reply: Connection messages and the array that points at them. */
typedef struct conns {
    Wsgw__V1__Connection *items;
    Wsgw__V1__Connection **ptrs;
    size_t n, cap;
    bool nomem;
} conns_t;

static void add_conn(void *ud, const pres_conn_t *c)
{
    conns_t *cs = ud;
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? 2 * cs->cap : 16;
        Wsgw__V1__Connection *it = realloc(cs->items, cap * sizeof *it);
        if (it)
            cs->items = it;
        Wsgw__V1__Connection **pt = it ? realloc(cs->ptrs, cap * sizeof *pt) : NULL;
        if (!it || !pt) {
            cs->nomem = true;
            return;
        }
        cs->ptrs = pt;
        cs->cap = cap;
    }
    Wsgw__V1__Connection *x = &cs->items[cs->n++];
    wsgw__v1__connection__init(x);
    x->conn_id = c->conn_id;
    x->user_id = c->user ? c->user->id : "";
    x->gateway_id = (char *)presence_conn_label(c);
}

static void conns_free(conns_t *cs)
{
    free(cs->items);
    free(cs->ptrs);
}

/* The name a presence request asks about, and whether presence may be answered now. */
static int check_name(presence_t *p, const char *name, const char *empty, const char **msg)
{
    if (!name || !*name) {
        *msg = empty;
        return ST_INVALID;
    }
    if (!presence_gate_open(p)) {
        *msg = RESYNCING;
        return ST_UNAVAILABLE;
    }
    return ST_OK;
}

/* The collected connections as the pointer array protobuf-c wants: ST_OK or ST_NOMEM. */
static int conns_done(conns_t *cs, const char **msg)
{
    if (cs->nomem) {
        *msg = "out of memory";
        return ST_NOMEM;
    }
    for (size_t i = 0; i < cs->n; i++)
        cs->ptrs[i] = &cs->items[i];
    return ST_OK;
}

static int user_presence(presence_t *p, const uint8_t *req, size_t len, uint8_t **out,
                         size_t *outlen, const char **msg)
{
    Wsgw__V1__UserPresenceRequest *q = wsgw__v1__user_presence_request__unpack(NULL, len, req);
    if (!q) {
        *msg = "cannot decode wsgw.v1.UserPresenceRequest";
        return ST_INVALID;
    }
    int st = ST_OK;
    conns_t cs = {0};
    if ((st = check_name(p, q->user_id, "empty user_id", msg)) != ST_OK)
        goto out;
    pres_user_t *u = presence_user(p, q->user_id);
    for (pres_conn_t *c = u ? u->conns : NULL; c; c = c->u_next)
        add_conn(&cs, c);
    if ((st = conns_done(&cs, msg)) != ST_OK)
        goto out;
    Wsgw__V1__UserPresenceReply rep = WSGW__V1__USER_PRESENCE_REPLY__INIT;
    rep.user_id = q->user_id;
    rep.connections = cs.ptrs;
    rep.n_connections = cs.n;
    st = frame(&rep.base, out, outlen);
out:
    conns_free(&cs);
    wsgw__v1__user_presence_request__free_unpacked(q, NULL);
    return st;
}

static int room_presence(presence_t *p, rooms_t *rooms, const uint8_t *req, size_t len,
                         uint8_t **out, size_t *outlen, const char **msg)
{
    Wsgw__V1__RoomPresenceRequest *q = wsgw__v1__room_presence_request__unpack(NULL, len, req);
    if (!q) {
        *msg = "cannot decode wsgw.v1.RoomPresenceRequest";
        return ST_INVALID;
    }
    int st = ST_OK;
    conns_t cs = {0};
    if ((st = check_name(p, q->room, "empty room", msg)) != ST_OK)
        goto out;
    rooms_each_member(rooms, p, q->room, add_conn, &cs);
    if ((st = conns_done(&cs, msg)) != ST_OK)
        goto out;
    Wsgw__V1__RoomPresenceReply rep = WSGW__V1__ROOM_PRESENCE_REPLY__INIT;
    rep.room = q->room;
    rep.members = cs.ptrs;
    rep.n_members = cs.n;
    rep.count = (uint32_t)cs.n;
    st = frame(&rep.base, out, outlen);
out:
    conns_free(&cs);
    wsgw__v1__room_presence_request__free_unpacked(q, NULL);
    return st;
}

int admin_call(admin_method_t m, presence_t *p, rooms_t *rooms, router_t *r, const uint8_t *req,
               size_t len, uint8_t **out, size_t *outlen, const char **msg)
{
    *out = NULL;
    *outlen = 0;
    *msg = "";
    int st;
    switch (m) {
    case ADMIN_KICK:
        st = kick(p, r, req, len, out, outlen, msg);
        break;
    case ADMIN_USER_PRESENCE:
        st = user_presence(p, req, len, out, outlen, msg);
        break;
    case ADMIN_ROOM_PRESENCE:
        st = room_presence(p, rooms, req, len, out, outlen, msg);
        break;
    default:
        *msg = "unknown method";
        return 12;
    }
    if (st == ST_NOMEM && !**msg)
        *msg = "out of memory";
    count(m, st);
    if (st != ST_OK)
        log_rl_warn("admin call failed", "method=%s status=%d error=\"%s\"",
                    admin_method_name(m), st, *msg);
    return st;
}

/* ---- --redis: answered once Redis did (cluster.h) ------------------------------------------ */

typedef struct actx {
    admin_method_t m;
    admin_done_fn done;
    void *ud;
    char *name; /* the user or room asked about */
} actx_t;

static void finish(actx_t *a, int st, uint8_t *out, size_t outlen, const char *msg)
{
    if (st == ST_NOMEM && !*msg)
        msg = "out of memory";
    count(a->m, st);
    if (st != ST_OK)
        log_rl_warn("admin call failed", "method=%s status=%d error=\"%s\"",
                    admin_method_name(a->m), st, msg);
    a->done(a->ud, st, out, outlen, msg);
    free(a->name);
    free(a);
}

static void on_kicked(void *ud, int n)
{
    actx_t *a = ud;
    uint8_t *out = NULL;
    size_t outlen = 0;
    if (n < 0) {
        const char *away = push_err_away(n);
        finish(a, away ? ST_UNAVAILABLE : ST_NOMEM, NULL, 0, away ? away : "");
        return;
    }
    Wsgw__V1__KickReply rep = WSGW__V1__KICK_REPLY__INIT;
    rep.gateways = (uint32_t)n;
    int st = frame(&rep.base, &out, &outlen);
    finish(a, st, out, outlen, "");
}

static void on_members(void *ud, int status, const cl_member_t *m, size_t n)
{
    actx_t *a = ud;
    if (status < 0) {
        const char *away = push_err_away(status);
        finish(a, away ? ST_UNAVAILABLE : ST_NOMEM, NULL, 0, away ? away : "");
        return;
    }
    Wsgw__V1__Connection *items = calloc(n ? n : 1, sizeof *items);
    Wsgw__V1__Connection **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    uint8_t *out = NULL;
    size_t outlen = 0;
    int st = ST_NOMEM;
    if (items && ptrs) {
        for (size_t i = 0; i < n; i++) {
            wsgw__v1__connection__init(&items[i]);
            items[i].conn_id = m[i].conn_id;
            items[i].user_id = (char *)m[i].user_id;
            items[i].gateway_id = (char *)m[i].gateway_id;
            ptrs[i] = &items[i];
        }
        if (a->m == ADMIN_USER_PRESENCE) {
            Wsgw__V1__UserPresenceReply rep = WSGW__V1__USER_PRESENCE_REPLY__INIT;
            rep.user_id = a->name;
            rep.connections = ptrs;
            rep.n_connections = n;
            st = frame(&rep.base, &out, &outlen);
        } else {
            Wsgw__V1__RoomPresenceReply rep = WSGW__V1__ROOM_PRESENCE_REPLY__INIT;
            rep.room = a->name;
            rep.members = ptrs;
            rep.n_members = n;
            rep.count = (uint32_t)n;
            st = frame(&rep.base, &out, &outlen);
        }
    }
    free(items);
    free(ptrs);
    finish(a, st, out, outlen, "");
}

/* The name of a presence request (decoded), or NULL with st/msg set. */
static char *presence_name(admin_method_t m, presence_t *p, const uint8_t *req, size_t len,
                           int *st, const char **msg)
{
    char *name = NULL;
    const char *n;
    if (m == ADMIN_USER_PRESENCE) {
        Wsgw__V1__UserPresenceRequest *q = wsgw__v1__user_presence_request__unpack(NULL, len, req);
        if (!q) {
            *st = ST_INVALID;
            *msg = "cannot decode wsgw.v1.UserPresenceRequest";
            return NULL;
        }
        if ((*st = check_name(p, q->user_id, "empty user_id", msg)) == ST_OK &&
            !(name = strdup(q->user_id)))
            *st = ST_NOMEM;
        wsgw__v1__user_presence_request__free_unpacked(q, NULL);
        return name;
    }
    Wsgw__V1__RoomPresenceRequest *q = wsgw__v1__room_presence_request__unpack(NULL, len, req);
    if (!q) {
        *st = ST_INVALID;
        *msg = "cannot decode wsgw.v1.RoomPresenceRequest";
        return NULL;
    }
    n = q->room;
    if ((*st = check_name(p, n, "empty room", msg)) == ST_OK && !(name = strdup(n)))
        *st = ST_NOMEM;
    wsgw__v1__room_presence_request__free_unpacked(q, NULL);
    return name;
}

void admin_call_async(admin_method_t m, presence_t *p, rooms_t *rooms, router_t *r,
                      const uint8_t *req, size_t len, admin_done_fn done, void *ud)
{
    if (!p->cluster || m == ADMIN_NONE) {
        uint8_t *out = NULL;
        size_t outlen = 0;
        const char *msg = "";
        int st = admin_call(m, p, rooms, r, req, len, &out, &outlen, &msg);
        done(ud, st, out, outlen, msg);
        return;
    }
    actx_t *a = calloc(1, sizeof *a);
    if (!a) {
        count(m, ST_NOMEM);
        done(ud, ST_NOMEM, NULL, 0, "out of memory");
        return;
    }
    a->m = m;
    a->done = done;
    a->ud = ud;
    int st = ST_OK;
    const char *msg = "";
    if (m == ADMIN_KICK) {
        Wsgw__V1__KickRequest *k = wsgw__v1__kick_request__unpack(NULL, len, req);
        target_t t;
        int code;
        const char *reason;
        if (!k) {
            st = ST_INVALID;
            msg = "cannot decode wsgw.v1.KickRequest";
        } else if ((st = kick_args(k, &t, &code, &reason, &msg)) == ST_OK &&
                   !presence_gate_open(p)) {
            st = ST_UNAVAILABLE;
            msg = RESYNCING;
        }
        if (st == ST_OK) {
            int n = push_kick_async(r, &t, code, reason, on_kicked, a);
            wsgw__v1__kick_request__free_unpacked(k, NULL);
            if (n != PUSH_PENDING)
                on_kicked(a, n);
            return;
        }
        if (k)
            wsgw__v1__kick_request__free_unpacked(k, NULL);
        finish(a, st, NULL, 0, msg);
        return;
    }
    a->name = presence_name(m, p, req, len, &st, &msg);
    if (!a->name) {
        finish(a, st, NULL, 0, msg);
        return;
    }
    int rv = m == ADMIN_USER_PRESENCE ? cluster_user_presence(p->cluster, a->name, on_members, a)
                                      : cluster_room_presence(p->cluster, a->name, on_members, a);
    if (rv < 0)
        on_members(a, rv, NULL, 0);
}
