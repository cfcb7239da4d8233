#!/usr/bin/env bash
# case_recovery.sh: recovery after a disconnect (issue 16 goal: >= 99.9 % of the messages pushed
# during a 5 s disconnect of 1 000 clients recovered in order). 1 000 wsgw.v1.json clients, one
# gateway (2 threads), ws-api with its history in memory, then in Redis Streams (--redis, when
# redis-server is installed), side by side: pushes to the users ("history": true, round robin)
# at 1 000/s (full: 1 000 and 2 000/s); 2 s in every client goes away, 5 s later all come back
# at once with their positions. Counted by ws-bench recover (bench/recov.h):
# what was pushed meanwhile, the share the recovery gave back in order before its notice, the
# time from the reconnect to the notice; gaps, repeats and recovered=false notices are errors.
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
export WSAPI_HISTORY_SIZE=2000 # far more than a client misses in 5 s: nothing is trimmed
rec() { # LABEL RATE
    run_bench "$1" "$WATCH" recover --host "127.0.0.1:$GW_PORT" \
        --user 1000 --rate "$2" --push-url "$API_HTTP_URL" --offline 5s --offline-after 2s \
        --duration 10s --connect-rate "$CONNECT_RATE" --settle 1s --drain 10s
}
# the history in ws-api's memory, then in Redis Streams (--redis): side by side in one run
for store in memory redis; do
    extra=()
    watch=""
    if [ $store = redis ]; then
        command -v redis-server >/dev/null || { say "no redis-server: --redis skipped"; break; }
        start_redis || exit 1
        extra=(--redis "$REDIS_URL")
        watch=" redis:$REDIS_PID"
    fi
    start_api echo "${extra[@]}" || exit 1
    start_gw "rec-$store" 2 "$API_GRPC" || exit 1
    WATCH="gateway:$GW_PID api:$API_PID$watch"
    rec "$store: 1000 clients away 5 s, 1000 pushes/s" 1000
    if [ "$MODE" = full ]; then
        rec "$store: 1000 clients away 5 s, 2000 pushes/s" 2000
    fi
    cleanup
done
cleanup
finish "Recovery: 1 000 clients away 5 s while pushes go on" cdf \
    "latency = delivery latency of every push (the recovered ones waited out the disconnect); recovered in order % = messages the recovery gave back, each the next offset, before its notice, of those pushed while the clients were away."
