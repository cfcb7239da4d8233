# bench/lib.sh: helpers sourced by the benchmark case scripts (bench/case_*.sh).
#
# Every process a case starts is remembered by PID and stopped (SIGTERM, then SIGKILL) when the
# script exits. Binaries come from $BIN (default: bin/). Each case collects its runs in a
# manifest and ends with `finish`, which calls bench/results.py: bench/results/<case>.json,
# bench/results/<case>.png and a section of bench/RESULTS.md.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
PY=${PY:-/usr/bin/python3}
MODE=${BENCH_MODE:-short}
CASE=${CASE:-$(basename "$0" .sh)}
CASE=${CASE#case_}
WORK=${BENCH_WORK:-$ROOT/build/bench-work}/$CASE
CLK=$(getconf CLK_TCK)
# connects per second used by the cases: handshakes are CPU work for client and server alike
# on the same two cores; faster than this the listen queues overflow and SYNs are retried
CONNECT_RATE=${CONNECT_RATE:-5000}
mkdir -p "$WORK" "${BENCH_OUT:-$ROOT/bench}/results"
MANIFEST=$WORK/runs.jsonl
: >"$MANIFEST"
PIDS=()

say() { echo "[$CASE] $*" >&2; }

# have BIN...: true when every binary exists; otherwise says which are missing.
have() {
    local b missing=()
    for b in "$@"; do [ -x "$BIN/$b" ] || missing+=("$b"); done
    if [ ${#missing[@]} -gt 0 ]; then
        say "skipped: ${missing[*]} not built in $BIN"
        return 1
    fi
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT [SECONDS]
wait_port() {
    local port=$1 limit=${2:-10} i
    for ((i = 0; i < limit * 20; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    say "nothing listening on port $port after ${limit}s"
    return 1
}

# spawn NAME CMD...: starts CMD in the background, stderr+stdout to $WORK/NAME.log; PID in SPAWNED
spawn() {
    local name=$1
    shift
    "$@" >>"$WORK/$name.log" 2>&1 &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

# stop_pid PID: SIGTERM, up to 15 s, then SIGKILL
stop_pid() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
}

cleanup() { # newest first: gateways stop before the API they talk to
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_api HANDLER: API_PID, API_GRPC (host:port), API_HTTP_URL
start_api() {
    local g h
    g=$(free_port)
    h=$(free_port)
    spawn api "$BIN/ws-api" --grpc-listen "127.0.0.1:$g" --http-listen "127.0.0.1:$h" \
        --handler "$1" --log-level warn
    API_PID=$SPAWNED
    API_GRPC=127.0.0.1:$g
    API_HTTP_URL=http://127.0.0.1:$h
    wait_port "$g" && wait_port "$h"
}

# start_gw ID THREADS UPSTREAM [extra flags...]: GW_PID, GW_PORT; waits for /readyz
start_gw() {
    local id=$1 threads=$2 up=$3 i
    shift 3
    GW_PORT=$(free_port)
    spawn "gateway-$id" "$BIN/ws-gateway" --listen "127.0.0.1:$GW_PORT" --upstream "$up" \
        --threads "$threads" --gateway-id "$id" --log-level warn "$@"
    GW_PID=$SPAWNED
    wait_port "$GW_PORT" || return 1
    for ((i = 0; i < 200; i++)); do
        curl -sf "http://127.0.0.1:$GW_PORT/readyz" >/dev/null && return 0
        sleep 0.05
    done
    say "gateway $id not ready"
    return 1
}

# start_six_gw ID_PREFIX: six gateways (--threads 1 each, ids PREFIX1..PREFIX6) on $API_GRPC;
# SIX_HOSTS (comma list of host:port) and SIX_PIDS (pid+pid+...: hold_bench's summed watch)
start_six_gw() {
    local i
    SIX_HOSTS="" SIX_PIDS=""
    for i in 1 2 3 4 5 6; do
        start_gw "$1$i" 1 "$API_GRPC" || return 1
        SIX_HOSTS="$SIX_HOSTS${SIX_HOSTS:+,}127.0.0.1:$GW_PORT"
        SIX_PIDS="$SIX_PIDS${SIX_PIDS:++}$GW_PID"
    done
}

# start_refecho THREADS: RE_PID, RE_PORT
start_refecho() {
    RE_PORT=$(free_port)
    spawn refecho "$BIN/ws-refecho" --listen "127.0.0.1:$RE_PORT" --threads "$1"
    RE_PID=$SPAWNED
    wait_port "$RE_PORT"
}

# cpu_ticks PID[+PID...], rss_kb PID[+PID...]: summed over the processes
cpu_ticks() {
    local p t=0
    for p in ${1//+/ }; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    echo "$t"
}
rss_kb() {
    local p t=0
    for p in ${1//+/ }; do t=$((t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
    echo "$t"
}
now_s() { date +%s.%N; }

# manifest LABEL CMD BENCH_JSON [key=value...]: one run of the case
manifest() {
    "$PY" - "$MANIFEST" "$@" <<'EOF'
import json, sys
path, label, cmd, bench = sys.argv[1:5]
extra = {}
for kv in sys.argv[5:]:
    k, v = kv.split("=", 1)
    try:
        v = float(v)
        v = int(v) if v.is_integer() and abs(v) < 1e15 else round(v, 2)
    except ValueError:
        pass
    extra[k] = v
with open(path, "a") as f:
    f.write(json.dumps({"label": label, "cmd": cmd, "bench": bench, "extra": extra}) + "\n")
EOF
}

# run_bench LABEL "name:pid[+pid] ..." WS-BENCH-ARGS...: runs ws-bench (--json added), measures the
# CPU % (over the whole run) and final RSS of the watched processes, records the run.
# Sets BENCH_JSON and BENCH_LAST (the summary line).
run_bench() {
    local label=$1 watch=$2
    shift 2
    local slug=${label//[^A-Za-z0-9_.-]/_}
    BENCH_JSON=$WORK/$slug.json
    local -A t0
    local w name pid
    for w in $watch; do t0[${w%%:*}]=$(cpu_ticks "${w#*:}"); done
    local s0 s1 rc
    rm -f "$BENCH_JSON"
    s0=$(now_s)
    "$BIN/ws-bench" "$@" --json "$BENCH_JSON" >"$WORK/$slug.out" 2>"$WORK/$slug.err"
    rc=$?
    s1=$(now_s)
    local extras=()
    for w in $watch; do
        name=${w%%:*}
        pid=${w#*:}
        extras+=("${name}_cpu_pct=$(awk -v a="${t0[$name]}" -v b="$(cpu_ticks "$pid")" \
            -v c="$CLK" -v s0="$s0" -v s1="$s1" 'BEGIN {printf "%.1f", (b - a) / c / (s1 - s0) * 100}')")
        extras+=("${name}_rss_mb=$(awk -v k="$(rss_kb "$pid")" 'BEGIN {printf "%.1f", k / 1024}')")
    done
    BENCH_LAST=$(tail -n 1 "$WORK/$slug.out")
    say "$label: $BENCH_LAST (exit $rc)"
    [ -s "$BENCH_JSON" ] || { say "$label: no JSON; stderr:"; tail -n 5 "$WORK/$slug.err" >&2; }
    manifest "$label" "ws-bench $*" "$BENCH_JSON" "${extras[@]}" "${RUN_EXTRA[@]}"
    RUN_EXTRA=()
}
RUN_EXTRA=()

# hold_bench LABEL "name:pid ..." WS-BENCH-CONN-ARGS...: runs `ws-bench conn` (give it a
# --sleep), and once every connection is up samples the RSS of the watched processes:
# <name>_bytes_per_conn = (RSS held - RSS before) / connections open.
hold_bench() {
    local label=$1 watch=$2
    shift 2
    local slug=${label//[^A-Za-z0-9_.-]/_}
    local -A r0
    local w name pid i open=0
    for w in $watch; do r0[${w%%:*}]=$(rss_kb "${w#*:}"); done
    BENCH_JSON=$WORK/$slug.json
    # emptied here, not by the redirections of the background job: those run later, and the
    # loop below must not read a previous run's "connected" line
    rm -f "$BENCH_JSON" "$WORK/$slug.out"
    : >"$WORK/$slug.err"
    "$BIN/ws-bench" "$@" --log-level info --json "$BENCH_JSON" >"$WORK/$slug.out" \
        2>>"$WORK/$slug.err" &
    local bp=$!
    for ((i = 0; i < 6000; i++)); do # up to 10 minutes of connecting
        if grep -q 'msg=connected' "$WORK/$slug.err" 2>/dev/null; then break; fi
        kill -0 "$bp" 2>/dev/null || break
        sleep 0.1
    done
    open=$(sed -n 's/.*msg=connected open=\([0-9]*\).*/\1/p' "$WORK/$slug.err" | head -n 1)
    sleep 1 # let the servers finish their per-connection work
    local extras=("conns_held=${open:-0}")
    for w in $watch; do
        name=${w%%:*}
        pid=${w#*:}
        local r1
        r1=$(rss_kb "$pid")
        extras+=("${name}_rss_mb=$(awk -v k="$r1" 'BEGIN {printf "%.1f", k / 1024}')")
        if [ "${open:-0}" -gt 0 ]; then
            extras+=("${name}_bytes_per_conn=$(awk -v a="${r0[$name]}" -v b="$r1" -v n="$open" \
                'BEGIN {printf "%.0f", (b - a) * 1024 / n}')")
        fi
    done
    wait "$bp"
    BENCH_LAST=$(tail -n 1 "$WORK/$slug.out")
    say "$label: $BENCH_LAST"
    manifest "$label" "ws-bench $*" "$BENCH_JSON" "${extras[@]}" "${RUN_EXTRA[@]}"
    RUN_EXTRA=()
}

# finish TITLE PLOT [NOTE]: writes results/<case>.json, .png and the RESULTS.md section
finish() {
    [ -s "$MANIFEST" ] || { say "no runs recorded"; return 0; }
    "$PY" "$ROOT/bench/results.py" --name "$CASE" --title "$1" --plot "$2" \
        --manifest "$MANIFEST" --note "${3:-}" --mode "$MODE"
}

# pick N_SHORT N_FULL: the value for this mode
pick() { if [ "$MODE" = full ]; then echo "$2"; else echo "$1"; fi; }
