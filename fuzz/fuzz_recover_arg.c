/* fuzz_recover_arg.c: the wsgw.v1.json handshake (gateway/clientproto.c): the subprotocol
 * header and the `recover` query arguments (percent-decoded "<offset>.<epoch>.<channel>") on
 * arbitrary bytes: never a crash or a leak, and every position it keeps is one the client
 * could have given: a user or room channel, an epoch of at most 32 safe characters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../gateway/chanrec.h"
#include "../gateway/clientproto.h"
#include "../gateway/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_cfg.max_room_name = 255;
    gw_cfg.max_rooms_per_conn = 8;
    gw_cfg.recover_timeout_us = 5000000;
    gw_cfg.recover_hold = 1 << 20;
    char *q = malloc(size ? size : 1); /* exactly sized: ASan sees any overread */
    memcpy(q, data, size);
    gw_http_req_t r;
    memset(&r, 0, sizeof r);
    r.query.p = q;
    r.query.n = size;
    r.nhdr = 1;
    r.hdr[0].name.p = "Sec-WebSocket-Protocol";
    r.hdr[0].name.n = 22;
    r.hdr[0].value.p = "chat, wsgw.v1.json";
    r.hdr[0].value.n = 18;
    gw_conn_t c;
    memset(&c, 0, sizeof c);
    const char *why = NULL;
    int rv = gw_cp_handshake(&c, &r, &why);
    if (!c.proto || (rv < 0 && !why))
        abort();
    for (gw_chan_t *ch = c.chans ? c.chans->head : NULL; ch; ch = ch->next) {
        if (ch->state != GW_CR_WAIT || ch->name_len <= 5 ||
            (memcmp(ch->name, "user:", 5) != 0 && memcmp(ch->name, "room:", 5) != 0) ||
            strlen(ch->epoch) > GW_CR_EPOCH_MAX)
            abort();
        for (const char *e = ch->epoch; *e; e++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", *e))
                abort();
    }
    if (c.chans && c.chans->n > (uint32_t)gw_cfg.max_rooms_per_conn + 2)
        abort();
    gw_cp_closed(NULL, &c);
    free(q);
    return 0;
}
