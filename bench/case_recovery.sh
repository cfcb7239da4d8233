#!/usr/bin/env bash
# case_recovery.sh: recovery after a disconnect (issue 16 goal: >= 99.9 % of the messages pushed
# during a 5 s disconnect of 1 000 clients recovered in order). 1 000 wsgw.v1.json clients, one
# gateway (2 threads), ws-api with its in-memory history: pushes to the users ("history": true,
# round robin) at 1 000/s (full: 1 000 and 2 000/s); 2 s in every client goes away, 5 s later
# all come back at once with their positions. Counted by ws-bench recover (bench/recov.h):
# what was pushed meanwhile, the share the recovery gave back in order before its notice, the
# time from the reconnect to the notice; gaps, repeats and recovered=false notices are errors.
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
export WSAPI_HISTORY_SIZE=2000 # far more than a client misses in 5 s: nothing is trimmed
rec() { # LABEL RATE
    run_bench "$1" "gateway:$GW_PID api:$API_PID" recover --host "127.0.0.1:$GW_PORT" \
        --user 1000 --rate "$2" --push-url "$API_HTTP_URL" --offline 5s --offline-after 2s \
        --duration 10s --connect-rate "$CONNECT_RATE" --settle 1s --drain 10s
}
start_api echo || exit 1
start_gw rec1 2 "$API_GRPC" || exit 1
rec "1000 clients away 5 s, 1000 pushes/s" 1000
if [ "$MODE" = full ]; then
    rec "1000 clients away 5 s, 2000 pushes/s" 2000
fi
cleanup
finish "Recovery: 1 000 clients away 5 s while pushes go on" cdf \
    "latency = delivery latency of every push (the recovered ones waited out the disconnect); recovered in order % = messages the recovery gave back, each the next offset, before its notice, of those pushed while the clients were away."
