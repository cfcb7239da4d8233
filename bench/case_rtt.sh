#!/usr/bin/env bash
# case_rtt.sh: one connection, one message in flight (testdata/50b.txt): the round trip of
# ws-refecho and of ws-gateway + ws-api echo.
. "$(dirname "$0")/lib.sh"
have ws-bench ws-refecho || exit 0
D=$(pick 5s 20s)
ARGS=(--user 1 --interval 0 --inflight 1 --file "$ROOT/testdata/50b.txt" --duration "$D")
start_refecho 1 || exit 1
run_bench "refecho direct" "server:$RE_PID" message --host "127.0.0.1:$RE_PORT" "${ARGS[@]}"
cleanup
if have ws-gateway ws-api; then
    start_api echo || exit 1
    start_gw rtt 1 "$API_GRPC" || exit 1
    run_bench "gateway + ws-api" "server:$GW_PID api:$API_PID" message --host "127.0.0.1:$GW_PORT" "${ARGS[@]}"
    cleanup
fi
finish "Round trip: one connection, inflight 1, 59-byte message" cdf
