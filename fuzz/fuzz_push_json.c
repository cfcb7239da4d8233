/* fuzz_push_json.c: libFuzzer target for the HTTP push/kick body parser (api/push_json.c).
 * The first input byte picks push or kick; the rest is the body. Checks the parser's promises:
 * success means a non-empty target and consistent fields, failure means a message and an
 * emptied result. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../api/push_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int kick = data[0] & 1;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    char err[PUSH_JSON_ERR_LEN] = "";
    push_req_t r;
    int rv = kick ? push_json_parse_kick(body, len, &r, err)
                  : push_json_parse_push(body, len, &r, err);
    if (rv == 0) {
        if (target_empty(&r.target))
            abort();
        for (size_t i = 0; i < r.target.n_user_ids; i++)
            if (!r.target.user_ids[i] || !r.target.user_ids[i][0])
                abort();
        if (r.target.room && !r.target.room[0])
            abort();
        if (kick && (!r.reason || strlen(r.reason) > 123 ||
                     !(r.code == 1000 || (r.code >= 3000 && r.code <= 4999))))
            abort();
        if (!kick && r.len) {
            if (!r.data)
                abort();
            volatile uint8_t ends = r.data[0] ^ r.data[r.len - 1]; /* ASan checks the bounds */
            (void)ends;
        }
        push_req_free(&r);
    } else {
        if (rv != -1 || !err[0] || r.data || r.target.conn_ids || r.target.user_ids ||
            r.target.room || r.reason)
            abort();
    }
    return 0;
}
