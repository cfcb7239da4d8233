#!/usr/bin/env bash
# case_throughput.sh: closed loop, 1 KB (testdata/1k.txt, 1411 bytes), 100 connections x 16
# messages in flight: ws-refecho (the lws echo alone, 2 threads: the bound on this box) and
# ws-gateway (2 threads) + ws-api echo, in the same run, alternating (refecho, gateway, ...)
# for ROUNDS rounds so that load from elsewhere on the box hits both alike; the ratio of their
# mean messages/s.
. "$(dirname "$0")/lib.sh"
have ws-bench ws-refecho || exit 0
D=$(pick 10s 30s)
ROUNDS=$(pick 2 3)
ARGS=(--user 100 --interval 0 --inflight 16 --file "$ROOT/testdata/1k.txt" --duration "$D")
REF=() GW=()
for ((r = 1; r <= ROUNDS; r++)); do
    start_refecho 2 || exit 1
    run_bench "refecho direct #$r" "server:$RE_PID" message --host "127.0.0.1:$RE_PORT" "${ARGS[@]}"
    REF+=("$BENCH_JSON")
    cleanup
    if have ws-gateway ws-api; then
        start_api echo || exit 1
        start_gw "tput$r" 2 "$API_GRPC" || exit 1
        run_bench "gateway + ws-api #$r" "server:$GW_PID api:$API_PID" message \
            --host "127.0.0.1:$GW_PORT" "${ARGS[@]}"
        GW+=("$BENCH_JSON")
        cleanup
    fi
done
NOTE="Each message counts once (the echo of a 1411-byte message); MB/s counts the received bytes."
if [ ${#GW[@]} -gt 0 ]; then
    RATIO=$("$PY" - "${#REF[@]}" "${REF[@]}" "${GW[@]}" <<'PYEOF'
import json, sys
n = int(sys.argv[1])
rate = lambda p: json.load(open(p))["msgs_per_s"]
ref = [rate(p) for p in sys.argv[2:2 + n]]
gw = [rate(p) for p in sys.argv[2 + n:]]
mr, mg = sum(ref) / len(ref), sum(gw) / len(gw)
print("%.2f (mean %.0f vs %.0f msg/s over %d rounds)" % (mg / mr if mr else 0, mg, mr, n))
PYEOF
)
    say "ratio gateway/refecho: $RATIO"
    NOTE="Ratio of messages/s, gateway + ws-api over the direct echo: **$RATIO**. $NOTE"
fi
finish "Throughput: closed loop, 1 KB, 100 connections x 16 in flight" bars:msgs_per_s "$NOTE"
