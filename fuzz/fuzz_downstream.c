/* fuzz_downstream.c: Downstream protobuf decode + command fan-out to service threads
 * (gateway/downstream.c), as the writer does for every message from an API node. */
#include <stdint.h>
#include <stdlib.h>

#include "../gateway/conn_id.h"
#include "../gateway/downstream.h"

static void emit(void *ud, int thread, gw_cmd_t *cmd)
{
    if (thread < 0 || thread >= 3)
        abort();
    for (uint32_t i = 0; i < cmd->nconns; i++)
        if (conn_id_thread(cmd->conns[i]) != (unsigned)thread || conn_id_prefix(cmd->conns[i]) != 7)
            abort(); /* an id routed to a thread that does not own it */
    ++*(size_t *)ud;
    gw_cmd_free(cmd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0;
    gw_ds_sink_t sink = {.nsvc = 3, .prefix = 7, .t_recv = 1, .emit = emit, .ud = &n};
    gw_ds_result_t res;
    gw_downstream_handle(data, size, &sink, &res);
    return 0;
}
