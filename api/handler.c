/* handler.c: echo / chat / none handlers (see handler.h). */
#include "handler.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster.h"
#include "log.h"
#include "metrics.h"
#include "push.h"
#include "wsapi_metrics.h"

int handler_kind_parse(const char *name, handler_kind_t *out)
{
    if (strcmp(name, "echo") == 0)
        *out = HANDLER_ECHO;
    else if (strcmp(name, "chat") == 0)
        *out = HANDLER_CHAT;
    else if (strcmp(name, "none") == 0)
        *out = HANDLER_NONE;
    else
        return -1;
    return 0;
}

void chat_cmd_free(chat_cmd_t *c)
{
    free(c->room);
    free(c->text);
    c->room = c->text = NULL;
    c->op = CHAT_OTHER;
}

chat_op_t chat_parse(const uint8_t *payload, size_t len, bool binary, chat_cmd_t *out)
{
    memset(out, 0, sizeof *out);
    if (binary || len == 0 || payload[0] != '{')
        return CHAT_OTHER; /* cheap reject before the JSON parser */
    json_t *root = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, NULL);
    if (!root)
        return CHAT_OTHER;
    chat_op_t op = CHAT_OTHER;
    const char *ops = json_string_value(json_object_get(root, "op"));
    const char *room = json_string_value(json_object_get(root, "room"));
    json_t *jtext = json_object_get(root, "text");
    if (!ops || !room || !*room)
        goto out;
    if (strcmp(ops, "join") == 0)
        op = CHAT_JOIN;
    else if (strcmp(ops, "leave") == 0)
        op = CHAT_LEAVE;
    else if (strcmp(ops, "say") == 0 && json_is_string(jtext))
        op = CHAT_SAY;
    else
        goto out;
    out->room = strdup(room);
    if (op == CHAT_SAY)
        out->text = strdup(json_string_value(jtext));
    if (!out->room || (op == CHAT_SAY && !out->text)) {
        chat_cmd_free(out);
        op = CHAT_OTHER;
        goto out;
    }
    out->op = op;
out:
    json_decref(root);
    return op;
}

int chat_said_json(buf_t *out, const char *room, const char *from, const char *text)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "op", "said", "room", room, "from",
                          from ? from : "", "text", text);
    if (!o)
        return -1;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return -1;
    int rv = buf_append(out, s, strlen(s));
    free(s);
    return rv;
}

static int send_to_conn(router_t *r, api_stream_t *src, uint64_t conn_id, const uint8_t *payload,
                        size_t len, bool binary)
{
    return router_emit_send1(r, src, conn_id, payload, len, binary, clock_wall_ns());
}

static int join_leave(router_t *r, api_stream_t *src, uint64_t conn_id, const char *room,
                      bool join)
{
    Wsgw__V1__Command cmd = WSGW__V1__COMMAND__INIT;
    Wsgw__V1__Join j = WSGW__V1__JOIN__INIT;
    Wsgw__V1__Leave l = WSGW__V1__LEAVE__INIT;
    if (join) {
        j.conn_id = conn_id;
        j.room = (char *)room;
        cmd.kind_case = WSGW__V1__COMMAND__KIND_JOIN;
        cmd.join = &j;
    } else {
        l.conn_id = conn_id;
        l.room = (char *)room;
        cmd.kind_case = WSGW__V1__COMMAND__KIND_LEAVE;
        cmd.leave = &l;
    }
    return router_emit(r, src, &cmd);
}

static int chat_say(router_t *r, api_stream_t *src, const char *user_id, const chat_cmd_t *c)
{
    buf_t body = BUF_INIT;
    if (chat_said_json(&body, c->room, user_id, c->text) < 0)
        return ROUTER_ERR_NOMEM;
    target_t t = {0};
    t.room = c->room;
    /* prefer src: on the sender's own gateway the said message follows its earlier Join.
     * Kept in the room's history with --history-all. */
    push_result_t res;
    int rv = push_publish(r, &t, body.data, body.len, false, false, src, &res);
    push_result_free(&res);
    buf_free(&body);
    return rv < 0 ? rv : 0;
}

static const char *const chat_op_names[] = {"other", "join", "leave", "say"};
enum { CHAT_REFUSED_NAME = 0, CHAT_REFUSED_ROOMS = 1 }; /* wsapi_m.chat_refusals[] */

/* A chat op over the caps (chat_limits_t): counted, logged, and the sender told. Returns what
 * queuing the answer returned. */
static int chat_refuse(router_t *r, api_stream_t *src, uint64_t conn_id, const chat_cmd_t *c,
                       int reason, size_t limit)
{
    static const char *const names[] = {"name_too_long", "too_many_rooms"};
    metrics_inc(wsapi_m.chat_refusals[reason]);
    log_rl_warn("chat op refused", "conn_id=%llu op=%s reason=%s room_len=%zu limit=%zu",
                (unsigned long long)conn_id, chat_op_names[c->op], names[reason],
                strlen(c->room), limit);
    json_t *o = json_pack("{s:s, s:s, s:s}", "op", "error", "of", chat_op_names[c->op],
                          "reason", names[reason]);
    if (o && reason == CHAT_REFUSED_ROOMS)
        json_object_set_new(o, "room", json_string(c->room));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return ROUTER_ERR_NOMEM;
    int rv = send_to_conn(r, src, conn_id, (const uint8_t *)s, strlen(s), false);
    free(s);
    return rv;
}

void handler_join_refused(router_t *r, api_stream_t *src, uint64_t conn_id, const char *room,
                          size_t max_rooms, bool take_back)
{
    chat_cmd_t c = {.op = CHAT_JOIN, .room = (char *)room};
    if (!src) { /* (the stream went: its gateway resyncs, and the client is not told) */
        metrics_inc(wsapi_m.chat_refusals[CHAT_REFUSED_ROOMS]);
        return;
    }
    if (take_back)
        join_leave(r, src, conn_id, room, false); /* its gateway was told to join */
    chat_refuse(r, src, conn_id, &c, CHAT_REFUSED_ROOMS, max_rooms);
}

int handler_message(handler_kind_t kind, router_t *r, rooms_t *rooms, const chat_limits_t *lim,
                    api_stream_t *src, uint64_t conn_id, const char *user_id,
                    const uint8_t *payload, size_t len, bool binary)
{
    switch (kind) {
    case HANDLER_NONE:
        return 0;
    case HANDLER_ECHO:
        return send_to_conn(r, src, conn_id, payload, len, binary);
    case HANDLER_CHAT:
        break;
    }
    chat_cmd_t c;
    int rv;
    chat_op_t op = chat_parse(payload, len, binary, &c);
    if (op != CHAT_OTHER && strlen(c.room) > lim->max_name) {
        rv = chat_refuse(r, src, conn_id, &c, CHAT_REFUSED_NAME, lim->max_name);
        chat_cmd_free(&c);
        return rv;
    }
    if (op == CHAT_JOIN && !r->cl && rooms && rooms_of_conn(rooms, conn_id) >= lim->max_rooms &&
        !rooms_is_member(rooms, conn_id, c.room)) {
        rv = chat_refuse(r, src, conn_id, &c, CHAT_REFUSED_ROOMS, lim->max_rooms);
        chat_cmd_free(&c);
        return rv;
    }
    switch (op) {
    case CHAT_JOIN:
        rv = join_leave(r, src, conn_id, c.room, true);
        /* the room presence this node answers (rooms.h), or the cluster's (--redis); a
         * membership that cannot be recorded is only missing from those answers */
        if (rv == 0 && r->cl)
            cluster_room(r->cl, conn_id, user_id, c.room, true, lim->max_rooms);
        else if (rv == 0 && rooms && rooms_join(rooms, conn_id, c.room) < 0)
            log_rl_warn("room membership not recorded", "conn_id=%llu error=\"out of memory\"",
                        (unsigned long long)conn_id);
        break;
    case CHAT_LEAVE:
        rv = join_leave(r, src, conn_id, c.room, false);
        if (rv == 0 && r->cl)
            cluster_room(r->cl, conn_id, user_id, c.room, false, lim->max_rooms);
        else if (rv == 0 && rooms)
            rooms_leave(rooms, conn_id, c.room);
        break;
    case CHAT_SAY:
        rv = chat_say(r, src, user_id, &c);
        break;
    default:
        rv = send_to_conn(r, src, conn_id, payload, len, binary);
        break;
    }
    chat_cmd_free(&c);
    return rv;
}
