/* fuzz_pace.c: the wake-up pacing policy (gateway/pace.h) driven by the fuzzer's bytes: the
 * first byte picks the mode (auto, a fixed window, off), then every 3 bytes are one turn: how
 * long after the last one it ends (a polling consumer may also be woken before its deadline,
 * or run late past it) and how many items it took. pace_check runs after every turn; a broken
 * invariant (I1-I6) aborts with its name. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../gateway/pace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    pace_t p;
    int64_t mode = data[0] < 128 ? PACE_AUTO : data[0] < 240 ? (int64_t)(data[0] - 127) * 20000 : 0;
    pace_init(&p, mode);
    int64_t now = 0;
    for (size_t i = 1; i + 3 <= size; i += 3) {
        uint32_t d = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8;
        uint8_t items = data[i + 2];
        if (pace_polling(&p) && (d & 1)) /* at the deadline, plus up to 3 ms late */
            now = pace_deadline(&p) + (int64_t)(d >> 1) * 100;
        else
            now += (int64_t)d * 100; /* up to 6.5 ms later (early when polling) */
        bool was = pace_polling(&p);
        pace_act_t act = pace_turn(&p, now, items & 0x80 ? 0 : items);
        const char *v = pace_check(&p, was, act, now);
        if (v) {
            fprintf(stderr, "pace invariant broken at turn %zu (mode %lld): %s\n", i / 3,
                    (long long)mode, v);
            abort();
        }
    }
    return 0;
}
