/* fuzz_pbcodec.c: the hand-written protobuf decoders of the hot path (gateway/dsdec.h for
 * Downstream, api/updec.h for Upstream) against protobuf-c's on arbitrary bytes: both must
 * refuse alike, or accept and say the same (tests/sim/pbcheck.h compares them). Any
 * disagreement aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/sim/pbcheck.h"

static void check(bool ok, const char *what, const buf_t *a, const buf_t *b)
{
    if (ok)
        return;
    fprintf(stderr, "%s decoders disagree\n ours:   %.*s\n theirs: %.*s\n", what, (int)a->len,
            (const char *)a->data, (int)b->len, (const char *)b->data);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static buf_t a, b;
    uint8_t *m = malloc(size + 1); /* exactly sized (+1 for malloc(0)): ASan sees overreads */
    if (!m)
        return 0;
    memcpy(m, data, size);
    check(pbcheck_downstream(m, size, &a, &b), "Downstream", &a, &b);
    check(pbcheck_upstream(m, size, &a, &b), "Upstream", &a, &b);
    free(m);
    return 0;
}
