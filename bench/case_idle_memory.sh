#!/usr/bin/env bash
# case_idle_memory.sh: RSS per idle connection. One gateway (2 threads) holding 5 000, 10 000
# and 18 000 connections (18 000: near the 20 000 descriptor limit of a process here), each on a
# fresh gateway; ws-refecho (the lws set-up alone) at 18 000 for comparison; full mode adds
# 100 000 connections over six gateway processes (own --gateway-id each, one ws-api) and the
# same over six ws-refecho processes. ws-bench's own memory per connection is in every row.
. "$(dirname "$0")/lib.sh"
have ws-bench ws-refecho || exit 0
HOLD=$(pick 3s 10s)
if have ws-gateway ws-api; then
    for n in 5000 10000 18000; do
        start_api echo || exit 1
        start_gw "idle-$n" 2 "$API_GRPC" || exit 1
        hold_bench "gateway $n" "server:$GW_PID" conn --host "127.0.0.1:$GW_PORT" --user $n \
            --sleep "$HOLD" --connect-rate "$CONNECT_RATE"
        cleanup
    done
fi
start_refecho 2 || exit 1
hold_bench "refecho 18000" "server:$RE_PID" conn --host "127.0.0.1:$RE_PORT" --user 18000 \
    --sleep "$HOLD" --connect-rate "$CONNECT_RATE"
cleanup
if [ "$MODE" = full ]; then
    if have ws-gateway ws-api; then
        start_api echo || exit 1
        start_six_gw gw || exit 1
        hosts=$SIX_HOSTS pids=$SIX_PIDS
        # six gateways and six bench workers share 2 cores: connect slower, wait longer
        hold_bench "6 gateways 100000" "server:$pids api:$API_PID" conn --host "$hosts" \
            --user 100000 --procs 6 --source-ips 127.0.0.1-127.0.0.8 --sleep "$HOLD" \
            --connect-rate 2000 --max-pending 200 --timeout 30s
        cleanup
    fi
    hosts="" pids=""
    for i in 1 2 3 4 5 6; do
        start_refecho 1 || exit 1
        hosts="$hosts${hosts:+,}127.0.0.1:$RE_PORT"
        pids="$pids${pids:++}$RE_PID"
    done
    hold_bench "6 refecho 100000" "server:$pids" conn --host "$hosts" --user 100000 --procs 6 \
        --source-ips 127.0.0.1-127.0.0.8 --sleep "$HOLD" --connect-rate 2000 \
        --max-pending 200 --timeout 30s
    cleanup
fi
finish "Idle connections: server RSS per connection" bars:server_bytes_per_conn \
    "server_bytes_per_conn = (server RSS while holding - RSS before) / connections held; for several processes the RSS is summed. bench B/conn: ws-bench's own RSS per connection."
