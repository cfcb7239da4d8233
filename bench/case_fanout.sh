#!/usr/bin/env bash
# case_fanout.sh: broadcast of 64-byte pushes (POST /v1/push {"all":true}) to every connection
# of one gateway (2 threads): 10 000 connections, and in full mode 18 000, and 100 000 over six
# gateways (one ws-api). Delivery latency = client receive time - send time in the payload.
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
D=$(pick 10s 30s)
fan() { # LABEL RATE N HOSTS WATCH [extra ws-bench flags]
    local label=$1 rate=$2 n=$3 hosts=$4 watch=$5
    shift 5
    run_bench "$label" "$watch" push --host "$hosts" --user "$n" --target all --size 64 \
        --rate "$rate" --duration "$D" --push-url "$API_HTTP_URL" --connect-rate "$CONNECT_RATE" \
        --settle 2s --drain 20s "$@"
}
start_api echo || exit 1
start_gw fan1 2 "$API_GRPC" || exit 1
# latency runs: offered deliveries/s kept around 40 000 (10 000 x 4, 18 000 x 2, 100 000 x 0.4),
# well below capacity, so latency is not a backlog; capacity runs offer 1 M/s and more
fan "all 10000 at 4/s" 4 10000 "127.0.0.1:$GW_PORT" "gateway:$GW_PID api:$API_PID"
# capacity: 1 000 000 deliveries/s offered (issue 8 goal 5); the gateway writes each
# connection's queued pushes in one send when they pile up (wsout.h)
fan "all 10000 at 100/s" 100 10000 "127.0.0.1:$GW_PORT" "gateway:$GW_PID api:$API_PID"
if [ "$MODE" = full ]; then
    fan "all 18000 at 2/s" 2 18000 "127.0.0.1:$GW_PORT" "gateway:$GW_PID api:$API_PID"
    fan "all 18000 at 100/s" 100 18000 "127.0.0.1:$GW_PORT" "gateway:$GW_PID api:$API_PID"
    cleanup
    start_api echo || exit 1
    start_six_gw fan || exit 1
    hosts=$SIX_HOSTS pids=$SIX_PIDS
    # six gateways and six bench workers share 2 cores: connect slower, wait longer
    CONNECT_RATE=2000 fan "all 100000 (6 gateways) at 0.4/s" 0.4 100000 "$hosts" \
        "gateway:$pids api:$API_PID" --procs 6 --source-ips 127.0.0.1-127.0.0.8 \
        --max-pending 200 --timeout 30s
    CONNECT_RATE=2000 fan "all 100000 (6 gateways) at 10/s" 10 100000 "$hosts" \
        "gateway:$pids api:$API_PID" --procs 6 --source-ips 127.0.0.1-127.0.0.8 \
        --max-pending 200 --timeout 30s
fi
cleanup
finish "Fan-out: broadcast of 64 B to every connection" cdf \
    "msg/s here is deliveries per second (first push to last delivery); sent = pushes accepted, received = deliveries."
