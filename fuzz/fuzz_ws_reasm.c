/* fuzz_ws_reasm.c: WebSocket message reassembly (gateway/reasm.c) + the incremental UTF-8
 * check that runs beside it. The input is split into chunks whose sizes, finality and sizing
 * hints come from the input; every completed message must equal the concatenation of its
 * chunks, the buffer must never hold more than twice what arrived (nor past a known end), and
 * the slice-by-slice UTF-8 verdict must equal the whole-message one, failing at the same
 * chunk as a byte-by-byte feed first fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../gateway/reasm.h"
#include "utf8.h"

/* The first byte offset at which a byte-by-byte feed fails, or len when it does not. */
static size_t first_bad(const uint8_t *p, size_t len)
{
    uint8_t st = 0;
    for (size_t i = 0; i < len; i++)
        if (!gw_utf8_feed(&st, p + i, 1))
            return i;
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = (size_t)(data[0] % 32) * 64 + 1;
    uint8_t ctl = data[1];
    data += 2;
    size -= 2;
    gw_reasm_t r = {0};
    uint8_t *expect = malloc(size + 1);
    size_t elen = 0;
    size_t off = 0;
    uint8_t st = 0;   /* incremental UTF-8 state of the message in flight */
    bool bad = false; /* the incremental check failed in this message */
    while (off < size) {
        size_t n = (ctl % 13) + 1;
        if (n > size - off)
            n = size - off;
        bool final = (ctl & 0x80) != 0;
        size_t rest = ctl & 0x40 ? (size_t)ctl * 3 : GW_REASM_REST_UNKNOWN;
        if (!bad && !gw_utf8_feed(&st, data + off, n)) {
            bad = true;
            /* fails in this chunk exactly when the byte-wise feed of the message does */
            memcpy(expect + elen, data + off, n);
            size_t fb = first_bad(expect, elen + n);
            if (fb < elen || fb >= elen + n)
                abort();
        }
        gw_event_t *e = NULL;
        int rv = gw_reasm_add(&r, 42, "user", 4, ctl & 1, data + off, n, final, rest, max, &e);
        memcpy(expect + elen, data + off, n);
        elen += n;
        if (rv == GW_REASM_MORE) {
            /* holds what arrived (at most twice as much), never the announced size */
            if (!r.ev || r.ev->a_len != elen || r.ev->b_len > 2 * elen)
                abort();
        } else if (rv == GW_REASM_DONE) {
            if (e->a_len != elen || memcmp(gw_event_a(e), expect, elen) != 0 || elen > max ||
                strcmp(gw_event_user(e), "user") != 0 || gw_event_a(e)[elen] != 0 ||
                e->b_len != 0 || e->c_len != 0 || gw_event_b(e)[0] != 0 ||
                gw_event_size(e) != sizeof *e + 4 + elen + 4)
                abort();
            bool whole = gw_utf8_valid((const uint8_t *)gw_event_a(e), e->a_len);
            if (whole != (!bad && st == 0))
                abort(); /* slice by slice and whole disagree */
            gw_event_free(e);
            elen = 0;
            st = 0;
            bad = false;
        } else if (rv == GW_REASM_TOO_BIG) {
            if (elen <= max)
                abort(); /* refused while within the limit */
            elen = 0;
            st = 0;
            bad = false;
        } else {
            abort();
        }
        off += n;
        ctl = (uint8_t)(ctl * 31 + 17 + (off < size ? data[off] : 0));
    }
    gw_reasm_reset(&r);
    free(expect);
    return 0;
}
