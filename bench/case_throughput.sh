#!/usr/bin/env bash
# case_throughput.sh: closed loop, 1 KB (testdata/1k.txt, 1411 bytes), 100 connections x 16
# messages in flight: ws-refecho (the lws echo alone, 2 threads: the bound on this box) and
# ws-gateway (2 threads) + ws-api echo, in the same run; the ratio of their messages/s.
. "$(dirname "$0")/lib.sh"
have ws-bench ws-refecho || exit 0
D=$(pick 10s 30s)
ARGS=(--user 100 --interval 0 --inflight 16 --file "$ROOT/testdata/1k.txt" --duration "$D")
start_refecho 2 || exit 1
run_bench "refecho direct" "server:$RE_PID" message --host "127.0.0.1:$RE_PORT" "${ARGS[@]}"
REF_JSON=$BENCH_JSON
cleanup
NOTE="Each message counts once (the echo of a 1411-byte message); MB/s counts the received bytes."
if have ws-gateway ws-api; then
    start_api echo || exit 1
    start_gw tput 2 "$API_GRPC" || exit 1
    run_bench "gateway + ws-api" "server:$GW_PID api:$API_PID" message --host "127.0.0.1:$GW_PORT" "${ARGS[@]}"
    RATIO=$("$PY" -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); print("%.2f" % (b["msgs_per_s"] / a["msgs_per_s"]) if a["msgs_per_s"] else "n/a")' "$REF_JSON" "$BENCH_JSON")
    say "ratio gateway/refecho: $RATIO"
    NOTE="Ratio of messages/s, gateway + ws-api over the direct echo: **$RATIO**. $NOTE"
    cleanup
fi
finish "Throughput: closed loop, 1 KB, 100 connections x 16 in flight" bars:msgs_per_s "$NOTE"
