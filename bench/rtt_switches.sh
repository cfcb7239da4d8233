#!/usr/bin/env bash
# rtt_switches.sh ROUNDS "FLAGS" ["FLAGS"...]: the round trip (one connection, one message in
# flight, testdata/50b.txt, 5 s) through ws-gateway --threads 1 (plus FLAGS; "" = defaults)
# and ws-api echo, with the gateway's context switches and CPU per round trip (`perf stat -e
# context-switches,task-clock -p GATEWAY` over 3 s of the run). Alternates the set-ups in
# every round; one line per run. Needs perf.
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
command -v perf >/dev/null || { say "no perf"; exit 0; }
R=${1:?usage: rtt_switches.sh ROUNDS FLAGS...}
shift
for r in $(seq 1 "$R"); do
    for v in "$@"; do
        start_api echo || exit 1
        # shellcheck disable=SC2086  # FLAGS are words
        start_gw sw 1 "$API_GRPC" $v || exit 1
        "$BIN/ws-bench" message --host "127.0.0.1:$GW_PORT" --user 1 --interval 0 --inflight 1 \
            --file "$ROOT/testdata/50b.txt" --duration 5s --json "$WORK/rtt.json" >/dev/null 2>&1 &
        b=$!
        sleep 1
        perf stat -x, -e context-switches,task-clock -p "$GW_PID" -o "$WORK/rtt.stat" -- sleep 3 2>/dev/null
        wait $b
        "$PY" - "$r" "$v" "$WORK/rtt.json" "$WORK/rtt.stat" <<'PY'
import json, sys
r, v, js, st = sys.argv[1:5]
j = json.load(open(js))
n = j["msgs_per_s"] * 3
c = {}
for line in open(st):
    p = line.strip().split(",")
    if len(p) > 3:
        try:
            c[p[2]] = float(p[0])
        except ValueError:
            pass
print("#%s %-32s p50 %6.1f us  context switches %.2f  gateway CPU %.1f us  per round trip"
      % (r, v or "(defaults)", j["latency_us"]["p50"], c.get("context-switches", 0) / n,
         c.get("task-clock", 0) * 1e3 / n))
PY
        cleanup
    done
done
