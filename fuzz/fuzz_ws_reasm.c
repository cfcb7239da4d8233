/* fuzz_ws_reasm.c: WebSocket message reassembly (gateway/reasm.c) + the UTF-8 check that
 * follows it. The input is split into chunks whose sizes, finality and sizing hints come from
 * the input; every completed message must equal the concatenation of its chunks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../gateway/reasm.h"
#include "../gateway/utf8.h"

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
    while (off < size) {
        size_t n = (ctl % 13) + 1;
        if (n > size - off)
            n = size - off;
        bool final = (ctl & 0x80) != 0;
        size_t remaining = ctl & 0x40 ? (size_t)ctl * 3 : 0;
        gw_event_t *e = NULL;
        int rv = gw_reasm_add(&r, 42, "user", 4, ctl & 1, data + off, n, final, remaining, max, &e);
        memcpy(expect + elen, data + off, n);
        elen += n;
        if (rv == GW_REASM_DONE) {
            if (e->a_len != elen || memcmp(gw_event_a(e), expect, elen) != 0 || elen > max ||
                strcmp(gw_event_user(e), "user") != 0 || gw_event_a(e)[elen] != 0 ||
                e->b_len != 0 || e->c_len != 0 || gw_event_b(e)[0] != 0 ||
                gw_event_size(e) != sizeof *e + 4 + elen + 4)
                abort();
            (void)gw_utf8_valid((const uint8_t *)gw_event_a(e), e->a_len);
            gw_event_free(e);
            elen = 0;
        } else if (rv == GW_REASM_TOO_BIG) {
            if (elen <= max)
                abort(); /* refused while within the limit */
            elen = 0;
        } else if (rv != GW_REASM_MORE) {
            abort();
        }
        off += n;
        ctl = (uint8_t)(ctl * 31 + 17 + (off < size ? data[off] : 0));
    }
    gw_reasm_reset(&r);
    free(expect);
    return 0;
}
