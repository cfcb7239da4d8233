/* event.h: the objects that cross threads through the SPSC rings.
 *
 *   gw_event_t: client event, service thread -> upstream writer (Open, Message, Close).
 *   gw_cmd_t:   command, upstream writer -> service thread (Send, Kick, Join, Leave).
 *
 * Each is one allocation with its strings and payload inline. Ownership moves with the pointer:
 * whoever pops it from a ring frees it. */
#ifndef GW_EVENT_H
#define GW_EVENT_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pbwire.h"

typedef enum {
    GW_EV_OPEN = 1,        /* code != 0: a resync Open of resync generation `code` */
    GW_EV_MESSAGE = 2,
    GW_EV_CLOSE = 3,
    GW_EV_RESYNC_DONE = 4, /* this thread sent all its resync Opens (code = generation) */
    GW_EV_REROUTED = 5,    /* this thread re-sent the messages of Reroute number `code` */
} gw_ev_type_t;

typedef struct gw_event {
    struct gw_event *next; /* overflow list link; owner thread only */
    uint8_t type;          /* gw_ev_type_t */
    bool binary;
    int16_t owner;         /* service thread that allocated it (recycle.h), or -1 */
    uint8_t tries;         /* times it went out to an API node already (delivery.h, I4) */
    bool recover;          /* a GW_EV_MESSAGE that is a Recover (clientproto.h): a = channel,
                              b = epoch, seq = offset, code = request id. It travels, is acked,
                              replayed and handed back like the connection's messages */
    uint8_t routed;        /* Open/Close sent to one node like a Message (gw_presence_shared):
                              numbered, kept, handed back like one (delivery.h) */
    uint8_t rc;            /* recycle class tag (gw_rc_alloc); 0: a plain malloc block */
    uint8_t rounds;        /* routed Close: times it was handed back after failing alone
                              (delivery.h, I4); travels in its batch like tries */
    uint32_t tno;          /* Message: its number among the thread's Messages to this node and
                              stream, as the writer took them (seqtrack.h); set when taken */
    int32_t code;          /* Close */
    uint32_t d_len;        /* Open: its rooms (resync only), as Open.rooms fields on the wire */
    uint64_t conn_id;
    uint64_t seq;          /* Message: per connection, from 1 */
    int64_t gateway_ns;    /* wall clock when the frame was read */
    int64_t t_read;        /* monotonic, for the ingress stage */
    uint32_t user_len;
    uint32_t a_len;        /* Open: remote addr; Message: payload; Close: reason */
    uint32_t b_len;        /* Open: query */
    uint32_t c_len;        /* Open: path */
    char data[];           /* user \0 a \0 b \0 c \0 d */
} gw_event_t;

static inline const char *gw_event_user(const gw_event_t *e) { return e->data; }
static inline const char *gw_event_a(const gw_event_t *e) { return e->data + e->user_len + 1; }
static inline const char *gw_event_b(const gw_event_t *e)
{
    return e->data + e->user_len + 1 + e->a_len + 1;
}
static inline const char *gw_event_c(const gw_event_t *e)
{
    return e->data + e->user_len + 1 + e->a_len + 1 + e->b_len + 1;
}
/* (non-const result from a const event, as strchr: the maker fills it, readers only read) */
static inline uint8_t *gw_event_d(const gw_event_t *e)
{
    return (uint8_t *)(uintptr_t)e->data + e->user_len + e->a_len + e->b_len + e->c_len + 4;
}

/* An Open's rooms in its d bytes: each an Open.rooms (= 5) field, written whole even when empty
 * (a repeated string's element always is: the lone empty one says "in no room", ws.c). */
static inline size_t gw_event_room_size(size_t n)
{
    return 1 + pbw_varint_len(n) + n;
}
static inline uint8_t *gw_event_put_room(uint8_t *p, const void *name, size_t n)
{
    *p++ = 5 << 3 | PBW_LEN;
    p = pbw_put_varint(p, n);
    if (n)
        memcpy(p, name, n);
    return p + n;
}

/* gw_event_new: one allocation holding the strings (any may be NULL with len 0; a is copied
 * as bytes, NUL-terminated). Returns NULL when out of memory. Caller owns the result. */
gw_event_t *gw_event_new(gw_ev_type_t type, uint64_t conn_id, const char *user, size_t user_len,
                         const void *a, size_t a_len, const char *b, size_t b_len,
                         const char *c, size_t c_len);
/* gw_event_new_d: the same with d_len bytes more after the strings (gw_event_d), for the
 * caller to fill. */
gw_event_t *gw_event_new_d(gw_ev_type_t type, uint64_t conn_id, const char *user,
                           size_t user_len, const void *a, size_t a_len, const char *b,
                           size_t b_len, const char *c, size_t c_len, size_t d_len);
gw_event_t *gw_event_dup(const gw_event_t *e);
/* gw_event_free: done with e (any thread: it goes home to be freed, recycle.h). */
void gw_event_free(gw_event_t *e);
static inline size_t gw_event_size(const gw_event_t *e)
{
    return sizeof *e + e->user_len + e->a_len + e->b_len + e->c_len + 4 + e->d_len;
}

/* A payload framed for lws_write: LWS_PRE bytes of headroom, then the data. One per service
 * thread per command, shared by every recipient on that thread (refcount: that thread only). */
typedef struct gw_payload {
    uint32_t refs;     /* owner service thread only */
    int16_t owner;     /* writer that allocated it (recycle.h), or -1 */
    uint8_t rc;        /* recycle class tag (gw_rc_alloc) */
    uint32_t len;
    bool binary;
    int64_t t_recv;    /* monotonic: command read from HTTP/2 (egress stage start) */
    uint8_t buf[];     /* LWS_PRE + len */
} gw_payload_t;

static inline uint8_t *gw_payload_data(gw_payload_t *p) { return p->buf + LWS_PRE; }
gw_payload_t *gw_payload_new(const void *data, size_t len, bool binary, int64_t t_recv);
/* gw_payload_alloc: gw_payload_new without the copy: len bytes to fill (then NUL). */
gw_payload_t *gw_payload_alloc(size_t len, bool binary, int64_t t_recv);
static inline void gw_payload_ref(gw_payload_t *p) { p->refs++; }
void gw_payload_free(gw_payload_t *p);
static inline void gw_payload_unref(gw_payload_t *p)
{
    if (--p->refs == 0)
        gw_payload_free(p);
}

typedef enum {
    GW_CMD_SEND = 1,
    GW_CMD_KICK = 2,
    GW_CMD_JOIN = 3,
    GW_CMD_LEAVE = 4,
    GW_CMD_REROUTE = 5, /* Message events a disconnected node hands back, oldest first */
    GW_CMD_RESYNC = 6,  /* send an Open for every live connection (code = generation) */
    GW_CMD_RECOVERED = 7, /* history for one connection's channel (clientproto.h) */
} gw_cmd_type_t;

/* One publication of a Recovered command: its wsgw.v1.json envelope, framed by the writer. */
typedef struct gw_pub {
    uint64_t offset;
    gw_payload_t *env;     /* owned by the command */
} gw_pub_t;

enum {
    GW_REC_MORE = 1,       /* Recovered: another command follows for this request */
    GW_REC_OK = 2,         /* Recovered: every message after the client's offset is there */
};

/* A command for one service thread: the targets that may live on it. */
typedef struct gw_cmd {
    struct gw_cmd *next;   /* overflow list link; owner (writer) only */
    uint8_t type;          /* gw_cmd_type_t */
    bool all;
    int16_t owner;         /* writer that allocated it (recycle.h), or -1 */
    int32_t code;          /* Kick */
    int64_t api_ns;
    gw_payload_t *payload; /* Send: payload; Kick: reason (text); owned by the command */
    gw_event_t *events;    /* Reroute: list via next; owned by the command */
    uint32_t nconns;       /* conn ids on this thread */
    uint32_t nusers;
    uint32_t room_len;
    uint64_t *conns;       /* -> inline */
    char *strs;            /* -> inline: room \0 then users, each NUL-terminated */
    /* History (Send with a channel; Recovered). chan/epoch -> inline after the users. */
    const char *chan, *epoch;
    uint16_t chan_len;
    uint8_t epoch_len;
    uint8_t flags;         /* Recovered: GW_REC_* */
    uint8_t rc;            /* recycle class tag (gw_rc_alloc) */
    uint32_t rid;          /* Recovered: the request id */
    uint64_t offset;       /* Send: offset in the channel (0: not kept); Recovered: the newest */
    gw_payload_t *env;     /* Send: its wsgw.v1.json envelope, made by the service thread on
                              the first such recipient (clientproto.c); owned by the command */
    gw_pub_t *pubs;        /* Recovered: -> inline, npubs of them */
    uint32_t npubs;
    uint64_t inline_data[];
} gw_cmd_t;

/* gw_cmd_new: room may be NULL. users: array of nusers strings (lengths in ulens). */
gw_cmd_t *gw_cmd_new(gw_cmd_type_t type, const uint64_t *conns, size_t nconns, const char *room,
                     size_t room_len, const char *const *users, const size_t *ulens, size_t nusers);
/* gw_cmd_new_ch: gw_cmd_new with a channel and epoch (either may be NULL with length 0) and
 * room for npubs publications (zeroed). */
gw_cmd_t *gw_cmd_new_ch(gw_cmd_type_t type, const uint64_t *conns, size_t nconns,
                        const char *room, size_t room_len, const char *const *users,
                        const size_t *ulens, size_t nusers, const char *chan, size_t chan_len,
                        const char *epoch, size_t epoch_len, size_t npubs);
static inline const char *gw_cmd_room(const gw_cmd_t *c) { return c->strs; }
/* Frees the command and drops its payload reference (service thread that owns the payload). */
void gw_cmd_free(gw_cmd_t *c);

#endif
