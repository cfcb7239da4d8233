/* fuzz_delivery_sim.c: the delivery simulator (tests/sim/sim.h) with its schedule taken from
 * the fuzzer's bytes: every choice (which thread runs, which fault strikes, how many bytes the
 * network moves) is the next input byte, so libFuzzer searches the space of schedules for one
 * that breaks an invariant (order, loss, presence, retry bound, the machine's own checks),
 * with each node's own presence or with shared presence (ws-api --redis: one store).
 * A violation aborts with the schedule's description. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../tests/sim/sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    sim_opts_t o = {.seed = (uint64_t)data[0] | (uint64_t)data[1] << 8 | (uint64_t)data[2] << 16,
                    .nsvc = 1 + data[3] % 3, .nup = 1 + data[4] % 3, .nstreams = 1 + data[5] % 4,
                    .fault_steps = 200 + 8 * (int)(size < 4000 ? size : 4000),
                    .settle_steps = 100000, .bytes = data + 6, .nbytes = size - 6,
                    .shared = (data[5] >> 4) & 1}; /* (nstreams takes the low bits) */
    sim_result_t r;
    if (sim_run(&o, &r) < 0) {
        fprintf(stderr, "delivery invariant broken: %s\n", r.violation);
        abort();
    }
    return 0;
}
