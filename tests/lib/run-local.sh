#!/usr/bin/env bash
# run-local.sh BIN: starts ws-api and ws-gateway with the defaults (make run). Ctrl-C stops both.
set -u
BIN=${1:-bin}
pids=()
cleanup() {
    trap - INT TERM EXIT
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup INT TERM EXIT
"$BIN/ws-api" &
pids+=($!)
echo "ws-api:     gRPC h2c on 0.0.0.0:8081, push API on http://127.0.0.1:8082 (POST /v1/push)"
if [ -x "$BIN/ws-gateway" ]; then
    "$BIN/ws-gateway" &
    pids+=($!)
    echo "ws-gateway: connect to ws://127.0.0.1:8080/gateway/ws?user=alice  (metrics: http://127.0.0.1:8080/metrics)"
else
    echo "ws-gateway: not built yet (the gateway is in progress); running ws-api alone"
fi
echo "Ctrl-C stops everything."
wait -n "${pids[@]}"
