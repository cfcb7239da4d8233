#!/usr/bin/env bash
# bench/fanout_peers.sh ROUNDS N RATE...: broadcast of 64 B pushes (POST /v1/push {"all":true})
# to N connections, ws-gateway (--threads 2) + ws-api echo against a uWebSockets broadcast
# server, alternating in every round and at every rate (pushes/s; deliveries offered = rate x N).
# The ceiling is the highest delivered rate; a server "falls behind" when deliveries/s stay
# under the offered rate (its push answers slow the one blocking pusher down, or deliveries
# pile up). UWS_BCAST names a build of the uWS server made outside the repository: every
# WebSocket subscribes to "all"; POST /v1/push on a second port, served by a second thread,
# hands "data" to the WebSocket loop (Loop::defer), which publishes it to "all" (bench/RESULTS.md
# #50 has its source and build commands). UWS_DIRECT=1: POST on the WebSocket port, published
# inside the handler (one thread). Without UWS_BCAST only the gateway runs.
# Labels "<server> N at R/s #round"; GW_FLAGS adds gateway flags; DUR (default 5s) per run.
#   UWS_BCAST=/tmp/g5-uws/BroadcastPushServer bash bench/fanout_peers.sh 3 10000 300 600 900
CASE=${CASE:-fanpeer}
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
[ $# -ge 3 ] || { echo "usage: $0 ROUNDS N RATE..." >&2; exit 2; }
rounds=$1 n=$2
shift 2
DUR=${DUR:-5s}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
procs=$(((n + 17999) / 18000))
push() { # LABEL WATCH HOST PUSH_URL RATE
    RUN_EXTRA=("offered_per_s=$(($5 * n))" "load1=$(cut -d' ' -f1 /proc/loadavg)")
    run_bench "$1" "$2" push --host "$3" --user "$n" --target all --size 64 --rate "$5" \
        --duration "$DUR" --push-url "$4" --connect-rate "$CONNECT_RATE" --settle 2s \
        --drain 20s --procs "$procs" --timeout 30s
}
for ((r = 1; r <= rounds; r++)); do
    for rate in "$@"; do
        start_api echo || exit 1
        # shellcheck disable=SC2086
        start_gw "fp$r" 2 "$API_GRPC" ${GW_FLAGS:-} || exit 1
        push "wsgw $n at $rate/s #$r" "server:$GW_PID api:$API_PID" "127.0.0.1:$GW_PORT" \
            "$API_HTTP_URL" "$rate"
        cleanup
        if [ -n "${UWS_BCAST:-}" ]; then
            UWS_PORT=$(free_port)
            if [ "${UWS_DIRECT:-0}" = 1 ]; then
                spawn uws "$UWS_BCAST" "$UWS_PORT"
                uh=$UWS_PORT
            else
                uh=$(free_port)
                spawn uws "$UWS_BCAST" "$UWS_PORT" "$uh"
            fi
            UWS_PID=$SPAWNED
            wait_port "$UWS_PORT" && wait_port "$uh" || exit 1
            push "uWS $n at $rate/s #$r" "server:$UWS_PID" "127.0.0.1:$UWS_PORT" \
                "http://127.0.0.1:$uh" "$rate"
            cleanup
        fi
    done
done
finish "Fan-out against uWebSockets: broadcast of 64 B to $n connections" cdf \
    "msg/s here is deliveries per second (first push to last delivery); sent = pushes accepted, received = deliveries; offered = rate x $n. Alternating wsgw (ws-gateway --threads 2 + ws-api echo) and uWS (${UWS_BCAST:-not run}${UWS_DIRECT:+, UWS_DIRECT=$UWS_DIRECT}) at every rate of every round; load average at the start $load0; load1 = the 1-minute load average before each run."
