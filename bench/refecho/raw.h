/* raw.h: ws-refecho --raw (see raw.c): the echo over lws raw sockets, framing done here. */
#ifndef WSGW_REFECHO_RAW_H
#define WSGW_REFECHO_RAW_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_frame.h"

typedef struct raw_sess {
    struct lws *wsi;
    char *hs;          /* request bytes until the upgrade is done, then NULL */
    uint32_t hs_len;
    uint8_t upgraded;
    uint8_t opcode;    /* of the message being received */
    ws_rx_t rx;
    uint8_t *msg;      /* LWS_PRE + 10 header bytes + payload of the message being received */
    size_t msg_len, msg_cap;
} raw_sess_t;

/* The lws protocol callback of raw connections (service thread). */
int refecho_raw_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len);

#endif
