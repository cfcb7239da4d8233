/* reasm.c: WebSocket message reassembly (see reasm.h). */
#include "reasm.h"

#include "recycle.h"

#include <stdlib.h>
#include <string.h>

void gw_reasm_reset(gw_reasm_t *r)
{
    free(r->ev);
    r->ev = NULL;
}

int gw_reasm_add(gw_reasm_t *r, uint64_t conn_id, const char *user, size_t ulen, bool binary,
                 const void *in, size_t len, bool final, size_t rest, size_t max,
                 gw_event_t **out)
{
    *out = NULL;
    if (!r->ev && final) {
        /* the whole message in one chunk */
        if (len > max)
            return GW_REASM_TOO_BIG;
        gw_event_t *e = gw_event_new(GW_EV_MESSAGE, conn_id, user, ulen, in, len, NULL, 0,
                                     NULL, 0);
        if (!e)
            return GW_REASM_NOMEM;
        e->binary = binary;
        *out = e;
        return GW_REASM_DONE;
    }
    gw_event_t *e = r->ev;
    size_t have = e ? e->a_len : 0;
    if (len > max || have > max - len) {
        gw_reasm_reset(r);
        return GW_REASM_TOO_BIG;
    }
    if (e)
        ulen = e->user_len; /* fixed by the first chunk */
    size_t cap = e ? e->b_len : 0; /* payload capacity while in flight (reasm.h) */
    size_t need = have + len; /* <= max: checked above */
    if (need > cap) {
        /* twice what arrived (amortised growth), never past the known end or max (reasm.h) */
        size_t want = need * 2;
        if (rest != GW_REASM_REST_UNKNOWN && rest < want - need)
            want = need + rest;
        if (want > max)
            want = max;
        gw_event_t *ne = realloc(e, sizeof *ne + ulen + 1 + want + 3);
        if (!ne) {
            gw_reasm_reset(r);
            return GW_REASM_NOMEM;
        }
        if (!e) {
            memset(ne, 0, sizeof *ne);
            ne->owner = (int16_t)gw_recycle_owner(GW_RC_SVC);
            ne->type = GW_EV_MESSAGE;
            ne->conn_id = conn_id;
            ne->user_len = (uint32_t)ulen;
            if (ulen)
                memcpy(ne->data, user, ulen);
            ne->data[ulen] = 0;
            ne->binary = binary;
        }
        e = ne;
        r->ev = e;
        e->b_len = (uint32_t)want;
    }
    if (len)
        memcpy(e->data + ulen + 1 + have, in, len);
    e->a_len = (uint32_t)need;
    if (!final)
        return GW_REASM_MORE;
    char *tail = e->data + ulen + 1 + e->a_len;
    tail[0] = tail[1] = tail[2] = 0; /* payload \0, empty b \0, empty c \0 */
    e->b_len = 0;                    /* no longer the capacity: b is the empty string */
    r->ev = NULL;
    *out = e;
    return GW_REASM_DONE;
}
