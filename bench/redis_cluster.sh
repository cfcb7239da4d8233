#!/usr/bin/env bash
# bench/redis_cluster.sh [push] [presence] [fanout]: ws-api with and without --redis (issue 16),
# side by side in one run. Not part of make bench (minutes, and 100 000 connections).
#   push      push latency p50/p99 and pushes/s through one ws-api node: 1 gateway (2 threads),
#             1 000 users, ws-bench push --target user at 1 000/s (latency) and at 20 000/s
#             (as fast as its one blocking HTTP client gets answers), in memory vs --redis,
#             alternating, two rounds
#   presence  Redis CPU and memory per 100 000 connections in presence: 6 gateways, one ws-api
#             --redis, ws-bench conn --user 100000 --procs 6 (used_memory and redis-server CPU
#             while connecting and while holding them: the heartbeats)
#   fanout    pushes to all, 64 B, to 100 000 connections over six gateways (FANOUT_RATE, 15
#             pushes/s: 1.5 M deliveries/s offered), in memory (bench/fanout_six.sh's set-up: one
#             ws-api) and through Redis (the gateways are served by ws-api node A, the pushes go
#             to node P that serves none, so every push crosses Redis pub/sub), alternating,
#             two rounds
#   bash bench/redis_cluster.sh push presence fanout
CASE=redis
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
command -v redis-server >/dev/null || { say "skipped: redis-server not installed"; exit 0; }
[ $# -gt 0 ] || set -- push presence fanout

redis_mem() { redis-cli -p "$REDIS_PORT" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }

# start_api_with NAME HANDLER FLAGS...: API_PID, API_GRPC, API_HTTP_URL
start_api_with() {
    local name=$1 handler=$2 g h
    shift 2
    g=$(free_port)
    h=$(free_port)
    spawn "$name" "$BIN/ws-api" --grpc-listen "127.0.0.1:$g" --http-listen "127.0.0.1:$h" \
        --handler "$handler" --log-level warn --presence-grace 0 "$@"
    API_PID=$SPAWNED
    API_GRPC=127.0.0.1:$g
    API_HTTP_URL=http://127.0.0.1:$h
    wait_port "$g" && wait_port "$h"
}

# wait until ws-api answers pushes (with --redis: the registry read, the gateway synced)
api_ready() {
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/v1/users/nobody")" = 200 ] && return 0
        sleep 0.1
    done
    say "ws-api $1 not ready"
    return 1
}

push_case() {
    local r mode
    for r in 1 2; do
        for mode in memory redis; do
            local extra=() watch
            if [ $mode = redis ]; then
                start_redis || return 1
                extra=(--redis "$REDIS_URL")
            fi
            start_api_with "api-$mode" echo "${extra[@]}" || return 1
            start_gw "push-$mode-$r" 2 "$API_GRPC" || return 1
            watch="api:$API_PID gateway:$GW_PID"
            [ $mode = redis ] && watch="$watch redis:$REDIS_PID"
            api_ready "$API_HTTP_URL" || return 1
            run_bench "$mode 1000/s #$r" "$watch" push --host "127.0.0.1:$GW_PORT" \
                --user 1000 --target user --rate 1000 --duration 10s \
                --push-url "$API_HTTP_URL" --settle 1s
            run_bench "$mode max #$r" "$watch" push --host "127.0.0.1:$GW_PORT" \
                --user 1000 --target user --rate 20000 --duration 10s \
                --push-url "$API_HTTP_URL" --settle 1s
            cleanup
        done
    done
}

presence_case() {
    start_redis || return 1
    start_api_with api echo --redis "$REDIS_URL" || return 1
    start_six_gw pres || return 1
    local m0 m1 t0 t1 c0 c1 s0 s1
    m0=$(redis_mem)
    t0=$(cpu_ticks "$REDIS_PID")
    s0=$(now_s)
    RUN_EXTRA=("redis_used_memory_before=$m0")
    # hold 100 000 idle connections 40 s; sample Redis once they are all up
    "$BIN/ws-bench" conn --host "$SIX_HOSTS" --user 100000 --sleep 40s --procs 6 \
        --source-ips 127.0.0.1-127.0.0.8 --connect-rate 2000 --max-pending 200 --timeout 30s \
        --log-level info --json "$WORK/presence.json" >"$WORK/presence.out" \
        2>"$WORK/presence.err" &
    local bp=$! i
    for ((i = 0; i < 3000; i++)); do
        grep -q 'msg=connected' "$WORK/presence.err" 2>/dev/null && break
        kill -0 "$bp" 2>/dev/null || break
        sleep 0.1
    done
    sleep 3 # the Opens are written
    t1=$(cpu_ticks "$REDIS_PID")
    s1=$(now_s)
    m1=$(redis_mem)
    local n dbsize rss
    dbsize=$(redis-cli -p "$REDIS_PORT" dbsize)
    rss=$(rss_kb "$REDIS_PID")
    n=$(redis-cli -p "$REDIS_PORT" eval "local n = 0 for _, k in ipairs(redis.call('keys', 'wsgw:{g:*}:c:*')) do n = n + redis.call('hlen', k) end return n" 0)
    # steady state: 20 s of holding (heartbeats, registry reads)
    c0=$(cpu_ticks "$REDIS_PID")
    sleep 20
    c1=$(cpu_ticks "$REDIS_PID")
    wait "$bp"
    manifest "100000 conns in presence (6 gateways, 1 ws-api --redis)" \
        "ws-bench conn --user 100000 --procs 6 (6 gateways)" "$WORK/presence.json" \
        "conns_in_redis=$n" "redis_used_memory_mb=$(awk -v a="$m1" 'BEGIN{printf "%.1f", a/1048576}')" \
        "redis_bytes_per_conn=$(awk -v a="$m0" -v b="$m1" -v n="$n" 'BEGIN{printf "%.0f", (b-a)/(n?n:1)}')" \
        "redis_rss_mb=$(awk -v k="$rss" 'BEGIN{printf "%.1f", k/1024}')" "redis_keys=$dbsize" \
        "redis_cpu_s_connecting=$(awk -v a="$t0" -v b="$t1" -v c="$CLK" 'BEGIN{printf "%.2f", (b-a)/c}')" \
        "connect_phase_s=$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.1f", b-a}')" \
        "redis_cpu_pct_holding=$(awk -v a="$c0" -v b="$c1" -v c="$CLK" 'BEGIN{printf "%.2f", (b-a)/c/20*100}')"
    say "presence: $n conns, used_memory $m0 -> $m1, keys $dbsize"
    cleanup
}

fanout_case() {
    local r mode rate=${FANOUT_RATE:-15}
    for r in 1 2; do
        for mode in memory redis; do
            local watch p_url
            if [ $mode = memory ]; then
                # bench/fanout_six.sh's set-up: one ws-api in memory, every gateway on it
                start_api_with api-mem echo || return 1
                p_url=$API_HTTP_URL
                watch="api:$API_PID"
            else
                start_redis || return 1
                start_api_with api-a echo --redis "$REDIS_URL" --node-id node-a || return 1
                local a_pid=$API_PID a_grpc=$API_GRPC
                start_api_with api-p echo --redis "$REDIS_URL" --node-id node-p || return 1
                p_url=$API_HTTP_URL
                watch="api_a:$a_pid api_p:$API_PID redis:$REDIS_PID"
                API_GRPC=$a_grpc
            fi
            start_six_gw "fan-$mode-$r-" || return 1
            api_ready "$p_url" || return 1
            run_bench "$mode: all 100000 (6 gateways) at $rate/s #$r" "gateway:$SIX_PIDS $watch" \
                push --host "$SIX_HOSTS" --user 100000 --target all --size 64 --rate "$rate" \
                --duration 30s --push-url "$p_url" --connect-rate 2000 --settle 2s --drain 30s \
                --procs 6 --source-ips 127.0.0.1-127.0.0.8 --max-pending 200 --timeout 30s
            cleanup
        done
    done
}

# each mode is its own section of RESULTS.md and its own results/redis_<mode>.json (+ .png),
# so that running the modes one at a time keeps every mode's data
note_push="push: one gateway, one ws-api, ws-bench push to users (its HTTP client is one blocking connection: pushes/s at 'max' is one push per round trip)."
note_presence="presence: Redis memory per connection in presence and its CPU; used_memory, keys and RSS sampled while the 100 000 connections are held."
note_fanout="fanout: msg/s here is deliveries per second (first push to last delivery); sent = pushes accepted, received = deliveries. memory: one ws-api, six gateways on it (bench/fanout_six.sh); redis: the six gateways on node A, the pushes to node P that serves none, so every push crosses Redis pub/sub (one PUBLISH per push to A, naming the six gateways)."
for c in "$@"; do
    case $c in
    push | presence | fanout) ;;
    *) say "unknown case $c"; exit 2 ;;
    esac
    MANIFEST=$WORK/runs-$c.jsonl
    : >"$MANIFEST"
    "${c}_case"
    cleanup
    note=note_$c
    CASE=redis_$c finish "ws-api with and without --redis (issue 16): $c" cdf "${!note}"
done
