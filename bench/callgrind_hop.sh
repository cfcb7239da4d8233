#!/usr/bin/env bash
# callgrind_hop.sh: user-space instructions per message of the closed loop through both hops,
# ws-gateway and ws-api separately (callgrind counts are repeatable on a busy box where
# wall-clock figures are not; kernel time is not in them).
#
# Both servers run under `valgrind --tool=callgrind` at once (gateway --threads 1, ws-api echo).
# After a warm-up run of ws-bench, the counters are zeroed; run A sends TIMES_A messages per
# connection, its counts are dumped, run B sends TIMES_B, dumped again. Instructions per message
# = (Ir of B - Ir of A) / ((TIMES_B - TIMES_A) x USERS): connection set-up and teardown cancel.
#
#   bench/callgrind_hop.sh [GW_BIN [API_BIN]]        (default: $BIN, i.e. bin/)
#   USERS=20 INFLIGHT=4 TIMES_A=50 TIMES_B=150 FILE=testdata/1k.txt (the defaults: as #29)
# Prints "gateway_ir_per_msg=N api_ir_per_msg=N"; the dumps and callgrind_annotate output of
# run B stay in $WORK (build/bench-work/callgrind_hop/).
. "$(dirname "$0")/lib.sh"
GWB=${1:-$BIN}
APIB=${2:-$GWB}
USERS=${USERS:-20}
INFLIGHT=${INFLIGHT:-4}
TIMES_A=${TIMES_A:-50}
TIMES_B=${TIMES_B:-150}
FILE=${FILE:-$ROOT/testdata/1k.txt}
EXTRA_GW=${EXTRA_GW:-}
VG="valgrind --tool=callgrind --dump-instr=no --collect-jumps=no --compress-strings=no"
rm -f "$WORK"/cg.*

g=$(free_port)
h=$(free_port)
spawn api $VG --callgrind-out-file="$WORK/cg.api.%p" "$APIB/ws-api" \
    --grpc-listen "127.0.0.1:$g" --http-listen "127.0.0.1:$h" --handler echo \
    --log-level warn --presence-grace 0
API_PID=$SPAWNED
wait_port "$g" 60 || exit 1
GW_PORT=$(free_port)
# shellcheck disable=SC2086
spawn gw $VG --callgrind-out-file="$WORK/cg.gw.%p" "$GWB/ws-gateway" \
    --listen "127.0.0.1:$GW_PORT" --upstream "127.0.0.1:$g" --threads 1 --gateway-id cg \
    --log-level warn $EXTRA_GW
GW_PID=$SPAWNED
wait_port "$GW_PORT" 60 || exit 1
for ((i = 0; i < 600; i++)); do
    curl -sf "http://127.0.0.1:$GW_PORT/readyz" >/dev/null && break
    sleep 0.1
done

bench() { # TIMES
    "$BIN/ws-bench" message --host "127.0.0.1:$GW_PORT" --user "$USERS" --interval 0 \
        --inflight "$INFLIGHT" --times "$1" --file "$FILE" --connect-rate 200 >>"$WORK/bench.log" 2>&1 ||
        { say "ws-bench failed (see $WORK/bench.log)"; exit 1; }
    tail -n 1 "$WORK/bench.log" >&2
}
dump() { # TAG: dump (and zero) both
    callgrind_control -d "$1" "$GW_PID" >/dev/null
    callgrind_control -d "$1" "$API_PID" >/dev/null
}
bench 20
# the counters from here on; startup and the warm-up are not counted
callgrind_control -z "$GW_PID" >/dev/null
callgrind_control -z "$API_PID" >/dev/null
bench "$TIMES_A"
dump runA
bench "$TIMES_B"
dump runB

ir() { # FILE: total Ir of one dump
    awk '/^(summary|totals):/ {print $2; exit}' "$1"
}
part() { # PREFIX TAG: the dump file of that part
    grep -l "^desc: Trigger: dump $2$" "$WORK"/cg."$1".*.* 2>/dev/null | head -n 1
}
n=$(((TIMES_B - TIMES_A) * USERS))
res=""
for who in gw api; do
    a=$(part "$who" runA) b=$(part "$who" runB)
    [ -n "$a" ] && [ -n "$b" ] || { say "no dumps for $who"; exit 1; }
    per=$(((($(ir "$b") - $(ir "$a"))) / n))
    callgrind_annotate --inclusive=no "$b" 2>/dev/null | head -n 60 >"$WORK/annotate.$who.txt"
    callgrind_annotate --inclusive=yes "$b" 2>/dev/null | head -n 80 >"$WORK/annotate.$who.incl.txt"
    res="$res ${who/gw/gateway}_ir_per_msg=$per"
done
echo "${res# }"
