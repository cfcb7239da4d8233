#!/usr/bin/env bash
# ab_hop.sh OLD_BIN [ROUNDS]: two builds of both hops (ws-gateway AND ws-api) side by side in
# one run, alternating in every round (old, new[, uWS], old, new, ...) so that load from
# elsewhere on the box hits both alike. Cases (AB_CASES, default "closed_loop rtt"):
#   closed_loop: 1 KB (testdata/1k.txt), 100 connections x 16 in flight, 8 s, gateway --threads 2
#   rtt:         59 B (testdata/50b.txt), one connection, inflight 1, 5 s, gateway --threads 1
# Per run: msg/s, p50/p99 and the server CPU per message (gateway + ws-api utime+stime from
# /proc over the ws-bench run, divided by the echoes received). Prints the medians per build
# and the median of the per-round new/old ratios. ws-bench is this tree's ($BIN) for all.
# UWS_ECHO=/path/to/EchoServerPort adds uWebSockets' echo to every round (bench/README.md).
# AB_UNIX="new" (or "old", "old new"): those builds' API hop goes over a Unix domain socket
# (ws-api --grpc-listen unix:PATH, ws-gateway --upstream unix:PATH) instead of TCP loopback;
# with OLD_BIN = this tree's bin it compares the two transports on one build.
#   bench/ab_hop.sh /path/to/old/bin 3
#   AB_UNIX=new bench/ab_hop.sh bin 5
. "$(dirname "$0")/lib.sh"
OLD=${1:?usage: ab_hop.sh OLD_BIN [ROUNDS]}
ROUNDS=${2:-3}
NEW=$BIN
CASES=${AB_CASES:-closed_loop rtt}
have ws-gateway ws-api ws-bench || exit 1
[ -x "$OLD/ws-gateway" ] && [ -x "$OLD/ws-api" ] || { say "no ws-gateway/ws-api in $OLD"; exit 1; }
RESULTS=$WORK/ab.jsonl
: >"$RESULTS"

record() { # BUILD CASE ROUND CPU_TICKS
    "$PY" - "$1" "$2" "$3" "$4" "$CLK" "$BENCH_JSON" >>"$RESULTS" <<'PYEOF'
import json, sys
build, case, rnd, ticks, clk, path = sys.argv[1:7]
j = json.load(open(path))
lat = j.get("latency_us") or {}
m = j.get("messages") or {}
rcv = m.get("received") or 0
cpu_us = int(ticks) / float(clk) * 1e6 / rcv if rcv else None
print(json.dumps({"build": build, "case": case, "round": int(rnd),
                  "msgs_per_s": j.get("msgs_per_s"), "p50_us": lat.get("p50"),
                  "p99_us": lat.get("p99"), "cpu_us_per_msg": cpu_us,
                  "sent": m.get("sent"), "received": rcv,
                  "errors": (j.get("errors") or {}).get("total")}))
PYEOF
}

with_bin() { # BUILD_BIN CMD...: run CMD with BIN set to that build
    local saved=$BIN rv
    BIN=$1
    shift
    "$@"
    rv=$?
    BIN=$saved
    return $rv
}

bench_case() { # NAME PIDS CASE ROUND PORT
    local name=$1 pids=$2 case=$3 r=$4 port=$5 t0 t1
    t0=$(cpu_ticks "$pids")
    if [ "$case" = closed_loop ]; then
        run_bench "$name $case #$r" "server:$pids" message --host "127.0.0.1:$port" --user 100 \
            --interval 0 --inflight 16 --file "$ROOT/testdata/1k.txt" --duration 8s
    else
        run_bench "$name $case #$r" "server:$pids" message --host "127.0.0.1:$port" --user 1 \
            --interval 0 --inflight 1 --file "$ROOT/testdata/50b.txt" --duration 5s
    fi
    t1=$(cpu_ticks "$pids")
    record "$name" "$case" "$r" $((t1 - t0))
}

one_round() { # BUILD_NAME BUILD_BIN ROUND
    local b=$1 bin=$2 r=$3 case threads
    for case in $CASES; do
        threads=2
        [ "$case" = rtt ] && threads=1
        API_UNIX=
        case " ${AB_UNIX:-} " in *" $b "*) API_UNIX=1 ;; esac
        with_bin "$bin" start_api echo || return 1
        with_bin "$bin" start_gw "$case$b$r" "$threads" "$API_GRPC" || return 1
        bench_case "$b" "$GW_PID+$API_PID" "$case" "$r" "$GW_PORT"
        cleanup
    done
}

uws_round() { # ROUND
    local r=$1 case
    for case in $CASES; do
        start_uws || return 1
        bench_case uws "$UWS_PID" "$case" "$r" "$UWS_PORT"
        cleanup
    done
}

for ((r = 1; r <= ROUNDS; r++)); do
    one_round old "$OLD" "$r" || exit 1
    one_round new "$NEW" "$r" || exit 1
    if [ -n "${UWS_ECHO:-}" ]; then uws_round "$r" || exit 1; fi
done

"$PY" - "$RESULTS" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
builds = [b for b in ("old", "new", "uws") if any(r["build"] == b for r in rows)]
def val(build, case, key, rnd=None):
    xs = [r[key] for r in rows if r["build"] == build and r["case"] == case
          and r[key] is not None and (rnd is None or r["round"] == rnd)]
    return xs
for case, key, unit in (("closed_loop", "msgs_per_s", "msg/s"),
                        ("closed_loop", "cpu_us_per_msg", "us CPU/msg"),
                        ("closed_loop", "p50_us", "us p50"),
                        ("rtt", "p50_us", "us p50"), ("rtt", "p99_us", "us p99"),
                        ("rtt", "cpu_us_per_msg", "us CPU/msg")):
    if not val("old", case, key):
        continue
    meds = {b: (statistics.median(val(b, case, key)) if val(b, case, key) else float("nan"))
            for b in builds}
    rounds = sorted({r["round"] for r in rows})
    ratios = []
    for rnd in rounds:
        o, n = val("old", case, key, rnd), val("new", case, key, rnd)
        if o and n and o[0]:
            ratios.append(n[0] / o[0])
    line = "%-12s %-11s " % (case, unit) + "  ".join("%s %10.2f" % (b, meds[b]) for b in builds)
    line += "   new/old per round: median %.3f (%s)" % (
        statistics.median(ratios) if ratios else float("nan"),
        " ".join("%.3f" % x for x in ratios))
    if "uws" in builds:
        ur = []
        for rnd in rounds:
            u, n = val("uws", case, key, rnd), val("new", case, key, rnd)
            if u and n and u[0]:
                ur.append(n[0] / u[0])
        line += "   new/uWS median %.3f" % (statistics.median(ur) if ur else float("nan"))
    print(line)
    print("             values: " + "; ".join(
        "%s %s" % (b, " ".join("%.1f" % x for x in val(b, case, key))) for b in builds))
errs = ["%s %s %s" % (r["build"], r["case"], r["errors"]) for r in rows if r.get("errors")]
print("errors: " + (", ".join(errs) if errs else "none"))
PYEOF
