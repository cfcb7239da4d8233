#!/usr/bin/env bash
# ab_gateway.sh OLD_BIN [ROUNDS]: two ws-gateway builds side by side in one run, alternating in
# every round (old, new, old, new, ...) so that load from elsewhere on the box hits both alike:
# closed loop (1 KB, 100 connections x 16 in flight), round trip (one connection, inflight 1,
# 59 B) and fan-out (64 B to 10 000 connections at 100 pushes/s). Both use this tree's ws-api
# and ws-bench ($BIN, default bin/); only the gateway differs. Prints the medians per build.
#   bench/ab_gateway.sh /path/to/old/bin 3
. "$(dirname "$0")/lib.sh"
OLD=${1:?usage: ab_gateway.sh OLD_BIN [ROUNDS]}
ROUNDS=${2:-3}
NEW=$BIN
have ws-gateway ws-api ws-bench || exit 1
[ -x "$OLD/ws-gateway" ] || { say "no ws-gateway in $OLD"; exit 1; }
RESULTS=$WORK/ab.jsonl
: >"$RESULTS"

record() { # BUILD CASE KEY=VALUE... (from the last ws-bench JSON)
    "$PY" - "$1" "$2" "$BENCH_JSON" >>"$RESULTS" <<'PYEOF'
import json, sys
build, case, path = sys.argv[1:4]
j = json.load(open(path))
lat = j.get("latency_us") or {}
m = j.get("messages") or {}
print(json.dumps({"build": build, "case": case, "msgs_per_s": j.get("msgs_per_s"),
                  "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
                  "sent": m.get("sent"), "received": m.get("received"),
                  "errors": (j.get("errors") or {}).get("total")}))
PYEOF
}

gw_with() { # BUILD_BIN ID THREADS: start_gw with that build's gateway
    local saved=$BIN
    BIN=$1
    start_gw "$2" "$3" "$API_GRPC"
    local rv=$?
    BIN=$saved
    return $rv
}

one_round() { # BUILD_NAME BUILD_BIN ROUND
    local b=$1 bin=$2 r=$3
    start_api echo || return 1
    gw_with "$bin" "tput$b$r" 2 || return 1
    run_bench "$b closed loop #$r" "gateway:$GW_PID api:$API_PID" message \
        --host "127.0.0.1:$GW_PORT" --user 100 --interval 0 --inflight 16 \
        --file "$ROOT/testdata/1k.txt" --duration 8s
    record "$b" closed_loop
    cleanup
    start_api echo || return 1
    gw_with "$bin" "rtt$b$r" 1 || return 1
    run_bench "$b round trip #$r" "gateway:$GW_PID api:$API_PID" message \
        --host "127.0.0.1:$GW_PORT" --user 1 --interval 0 --inflight 1 \
        --file "$ROOT/testdata/50b.txt" --duration 5s
    record "$b" rtt
    cleanup
    start_api echo || return 1
    gw_with "$bin" "fan$b$r" 2 || return 1
    run_bench "$b fan-out #$r" "gateway:$GW_PID api:$API_PID" push \
        --host "127.0.0.1:$GW_PORT" --user 10000 --target all --size 64 --rate 100 \
        --duration 8s --push-url "$API_HTTP_URL" --connect-rate "$CONNECT_RATE" \
        --settle 2s --drain 20s
    record "$b" fanout
    cleanup
}

for ((r = 1; r <= ROUNDS; r++)); do
    one_round old "$OLD" "$r" || exit 1
    one_round new "$NEW" "$r" || exit 1
done

"$PY" - "$RESULTS" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(build, case, key):
    xs = [r[key] for r in rows if r["build"] == build and r["case"] == case and r[key] is not None]
    return statistics.median(xs) if xs else float("nan"), xs
for case, key, unit in (("closed_loop", "msgs_per_s", "msg/s"), ("rtt", "p50_us", "us p50"),
                        ("rtt", "p99_us", "us p99"), ("fanout", "msgs_per_s", "deliveries/s"),
                        ("fanout", "p99_us", "us p99")):
    o, ox = med("old", case, key)
    n, nx = med("new", case, key)
    print("%-12s %-14s old %10.0f  new %10.0f  new/old %.3f   (old %s; new %s)"
          % (case, unit, o, n, n / o if o else float("nan"),
             " ".join("%.0f" % x for x in ox), " ".join("%.0f" % x for x in nx)))
print("errors: " + ", ".join("%s %s %s" % (r["build"], r["case"], r["errors"]) for r in rows
                             if r.get("errors")))
PYEOF
