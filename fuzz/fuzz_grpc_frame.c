/* fuzz_grpc_frame.c: libFuzzer target for the incremental gRPC frame decoder.
 * The input is fed in chunks whose sizes come from the input itself, so split and merged
 * deliveries are both explored; each delivered message is checked against the max. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_frame.h"

typedef struct {
    size_t max;
    size_t total;
} ctx_t;

static int on_msg(void *ud, const uint8_t *msg, size_t len)
{
    ctx_t *c = ud;
    if (len > c->max)
        abort(); /* the decoder must never deliver more than max */
    if (len)
        c->total += msg[0] + msg[len - 1]; /* touch both ends (ASan checks bounds) */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    ctx_t c = {.max = (size_t)(data[0] % 64) * 16, .total = 0};
    uint8_t step = data[1] ? data[1] : 1;
    data += 2;
    size -= 2;
    grpc_dec_t d;
    grpc_dec_init(&d, c.max);
    size_t off = 0;
    int rv = 0;
    while (off < size && rv == 0) {
        size_t n = step < size - off ? step : size - off;
        rv = grpc_dec_feed(&d, data + off, n, on_msg, &c);
        off += n;
        step = (uint8_t)(step * 7 + 3);
        if (!step)
            step = 1;
    }
    if (rv < 0 && grpc_dec_feed(&d, data, size, on_msg, &c) != rv)
        abort(); /* errors are sticky */
    grpc_dec_free(&d);
    return 0;
}
