/* handler.h: what ws-api does with a client message (--handler echo|chat|none).
 *
 *   echo: Send{target.conn_ids=[conn], payload, binary} back on the stream the event came on
 *         (so a connection's replies keep its order).
 *   chat: client text JSON {"op":"join","room":R} -> Join; {"op":"leave","room":R} -> Leave;
 *         {"op":"say","room":R,"text":T} -> Send{target.room=R} of
 *         {"op":"said","room":R,"from":USER,"text":T} to every gateway (rooms live on the
 *         gateways); anything else is echoed.
 *         Joins, leaves and says over the caps (chat_limits_t) get an error message back.
 *   none: nothing.
 * Every Send carries api_ns = wall-clock ns. Loop thread only. */
#ifndef WSGW_API_HANDLER_H
#define WSGW_API_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "rooms.h"
#include "router.h"

typedef enum { HANDLER_ECHO, HANDLER_CHAT, HANDLER_NONE } handler_kind_t;

/* handler_kind_parse: "echo" | "chat" | "none". Returns 0 or -1 for another name. */
int handler_kind_parse(const char *name, handler_kind_t *out);

/* chat_limits_t: the chat handler's caps (ws-api --max-room-name, --max-rooms-per-conn, with
 * the gateway's defaults). A join, leave or say naming a room of more than max_name bytes, or
 * a join that would put the connection in more than max_rooms rooms, is refused: no command,
 * nothing recorded, a rate-limited log line, wsapi_chat_refusals_total{reason}, and the sender
 * gets {"op":"error","of":OP,"reason":"name_too_long"|"too_many_rooms"} (with "room":R for
 * too_many_rooms). The gateway refuses such Joins too, but only after ws-api recorded them:
 * one client's 2 000 joins of 60 KB names held 120 MB of ws-api. Rooms per connection are
 * counted in the node's rooms table; with --redis, in Redis instead (the connection's list,
 * over every node's joins): there the join has been sent to the gateway by the time Redis
 * refuses it, so it is taken back with a Leave (handler_join_refused). */
typedef struct chat_limits {
    size_t max_name;  /* bytes of a room name */
    size_t max_rooms; /* rooms one connection may be in */
} chat_limits_t;
#define CHAT_MAX_ROOM_NAME 255
#define CHAT_MAX_ROOMS 128

/* handler_message: handles one client message from conn_id (user_id may be "") that arrived on
 * stream src. The chat handler's Join and Leave are also recorded in rooms (may be NULL), and
 * checked against lim (exchange_init sets the defaults). Returns 0, or a ROUTER_ERR_* code when a command
 * could not be queued. The caller keeps payload. */
int handler_message(handler_kind_t kind, router_t *r, rooms_t *rooms, const chat_limits_t *lim,
                    api_stream_t *src, uint64_t conn_id, const char *user_id,
                    const uint8_t *payload, size_t len, bool binary);

/* handler_join_refused: a chat join the cluster refused past max_rooms (--redis: rooms per
 * connection are counted in Redis, over every node's joins; cluster_room). Counted as
 * chat_refuse counts, the sender told, and, when take_back, its gateway told to leave the room
 * again (it was told to join); src NULL (the stream has gone): counted only. The Leave follows
 * every command the handler sent meanwhile, so it is sent only when no later join of the room
 * by the connection waits for Redis (take_back): a client at the cap that joined the refused
 * room again before Redis answered (after leaving another) ended up out of it on its gateway
 * while Redis listed it. */
void handler_join_refused(router_t *r, api_stream_t *src, uint64_t conn_id, const char *room,
                          size_t max_rooms, bool take_back);

typedef enum { CHAT_OTHER = 0, CHAT_JOIN, CHAT_LEAVE, CHAT_SAY } chat_op_t;

typedef struct chat_cmd {
    chat_op_t op;
    char *room; /* JOIN/LEAVE/SAY: non-empty */
    char *text; /* SAY: may be empty */
} chat_cmd_t;

/* chat_parse: classifies a client message. A binary frame, invalid JSON, a non-object, an
 * unknown op, a missing/empty/non-string room or a say without a string text are CHAT_OTHER
 * (to be echoed). Returns the op; out->room/text are owned by out (chat_cmd_free). */
chat_op_t chat_parse(const uint8_t *payload, size_t len, bool binary, chat_cmd_t *out);
void chat_cmd_free(chat_cmd_t *c);

/* chat_said_json: appends {"op":"said","room":R,"from":U,"text":T} (compact JSON) to out.
 * Returns 0 or -1 (memory). */
int chat_said_json(buf_t *out, const char *room, const char *from, const char *text);

#endif
