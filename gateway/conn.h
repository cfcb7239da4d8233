/* conn.h: one client connection. It is the lws per-session data of the raw socket (lws
 * allocates and frees it with the wsi), so a connection costs no allocation of ours while idle.
 * Every field belongs to the connection's service thread. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>

#include "event.h"
#include "reasm.h"
#include "ws_frame.h"

#define GW_NODE_NONE 0xFF

typedef struct gw_outq gw_outq_t;
typedef struct gw_member gw_member_t;
struct gw_chans;

typedef struct gw_conn {
    struct lws *wsi;
    uint64_t id;             /* 0 until established */
    char *user;              /* NULL when anonymous */
    char *query;             /* request query without user= and token= (Open.query), or NULL */
    uint64_t seq;            /* last Message.seq sent upstream */
    gw_outq_t *outq;         /* NULL while nothing is queued */
    gw_reasm_t rx;           /* message being reassembled; empty while none is in flight */
    ws_rx_t ws;              /* frame parser (ws.c); holds no buffer between frames */
    char *hs;                /* request head split over reads, until the 101; else NULL */
    gw_member_t *rooms;      /* room memberships (conn_next list) */
    struct gw_chans *chans;  /* wsgw.v1.json: channel positions (clientproto.h); NULL until
                                the first position or kept message */
    struct gw_conn *user_prev, *user_next;
    gw_payload_t *close_reason; /* Kick reason (text), when closing on command */
    uint16_t close_code;     /* set when we sent our close frame (ws.c gw_ws_close) */
    uint16_t peer_code;      /* close code the client sent */
    uint16_t hs_len;         /* bytes in hs */
    bool established;        /* upgraded (101 sent); before: the HTTP request */
    bool rx_binary;          /* the message being read is binary */
    bool closing;
    bool paused;             /* rx flow control off (backpressure) */
    bool held;               /* messages held while its old node hands back (msgroute.c) */
    bool indexed;            /* in the thread's user index */
    bool dirty;              /* listed in the thread's dirty list (svc.h) */
    bool pinged;             /* a ping went out since alive_ms (keepalive.h) */
    bool proto;              /* speaks wsgw.v1.json (clientproto.h): envelopes, recovery */
    bool cp_listed;          /* on the thread's list of connections with recovery timers */
    uint8_t node;            /* API node its messages go to (GW_NODE_NONE before the first) */
    uint8_t utf8;            /* UTF-8 state of the text message being read (utf8.h feed) */
    uint32_t mark;           /* sent-counter value of its last message to `node` */
    uint32_t alive_ms;       /* monotonic ms (wrapping) it was last known alive (keepalive.h) */
    uint64_t iph;            /* address hash counted in the per-address limit (0 = none) */
} gw_conn_t;

#endif
