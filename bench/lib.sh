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
# BENCH_PIN=1: the placement of issue 18's method: ws-bench on CPU 0 (GEN_PIN), every server a
# case starts (spawn) on the other CPUs (SRV_PIN), with taskset. Unset (the default): no
# placement, the scheduler's. Recorded in each section's header line (bench/results.py).
SRV_PIN=()
GEN_PIN=()
if [ -n "${BENCH_PIN:-}" ] && [ "$(nproc)" -ge 2 ]; then
    SRV_CPUS=1
    [ "$(nproc)" -gt 2 ] && SRV_CPUS="1-$(($(nproc) - 1))"
    SRV_PIN=(taskset -c "$SRV_CPUS")
    GEN_PIN=(taskset -c 0)
    export BENCH_PLACEMENT="ws-bench on CPU 0, servers on CPU $SRV_CPUS"
fi

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

# spawn NAME CMD...: starts CMD in the background (on SRV_PIN's CPUs), stderr+stdout to
# $WORK/NAME.log; PID in SPAWNED
spawn() {
    local name=$1
    shift
    "${SRV_PIN[@]}" "$@" >>"$WORK/$name.log" 2>&1 &
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

# start_api HANDLER [extra flags...]: API_PID, API_GRPC (host:port, or unix:PATH when API_UNIX
# is set: the gRPC side on a Unix domain socket in $WORK), API_HTTP_URL
start_api() {
    local g h handler=$1 listen i
    shift
    g=$(free_port)
    h=$(free_port)
    listen=127.0.0.1:$g
    if [ -n "${API_UNIX:-}" ]; then
        listen=unix:$WORK/api-$g.sock
    fi
    # --presence-grace 0: no gateway was connected before this ws-api started, so there is no
    # presence to wait for (pushes would otherwise get 503 for 3 s)
    spawn api "$BIN/ws-api" --grpc-listen "$listen" --http-listen "127.0.0.1:$h" \
        --handler "$handler" --log-level warn --presence-grace 0 "$@"
    API_PID=$SPAWNED
    API_GRPC=$listen
    API_HTTP_URL=http://127.0.0.1:$h
    wait_port "$h" || return 1
    if [ -n "${API_UNIX:-}" ]; then
        for ((i = 0; i < 200; i++)); do
            [ -S "$WORK/api-$g.sock" ] && return 0
            sleep 0.05
        done
        say "ws-api: no socket at $WORK/api-$g.sock"
        return 1
    fi
    wait_port "$g"
}

# start_redis: REDIS_PID, REDIS_PORT, REDIS_URL (Debian's redis-server, no persistence)
start_redis() {
    REDIS_PORT=$(free_port)
    spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --protected-mode no --loglevel warning
    REDIS_PID=$SPAWNED
    REDIS_URL=redis://127.0.0.1:$REDIS_PORT
    wait_port "$REDIS_PORT"
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

# node_ws_install: the Node.js `ws` echo peer (bench/node-ws): `npm ci` from its committed lock
# file (ws 8, bufferutil as an optional native add-on) into $NODE_WS_DIR (build/bench-node-ws,
# never the repository); reinstalled only when the lock file changed. On success NODE_WS_DESC
# says what runs ("ws 8.23.1, bufferutil 4.1.0"); otherwise it says loudly why the peer is
# NOT measured, NODE_WS_DESC holds the reason for the case's note, and it returns 1.
NODE_WS_DIR=${NODE_WS_DIR:-$ROOT/build/bench-node-ws}
node_ws_install() {
    local src=$ROOT/bench/node-ws log=$WORK/npm-install.log
    NODE_WS_DESC=""
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        NODE_WS_DESC="Node ws NOT MEASURED: node/npm not found (Debian packages nodejs, npm)"
        say "$NODE_WS_DESC"
        return 1
    fi
    if ! [ -f "$NODE_WS_DIR/node_modules/ws/package.json" ] ||
        ! cmp -s "$src/package-lock.json" "$NODE_WS_DIR/package-lock.json"; then
        mkdir -p "$NODE_WS_DIR"
        rm -rf "$NODE_WS_DIR/node_modules"
        cp "$src/package.json" "$src/package-lock.json" "$NODE_WS_DIR/"
        say "installing the Node ws peer: npm ci in $NODE_WS_DIR"
        if ! (cd "$NODE_WS_DIR" && timeout 300 npm ci --prefer-offline --no-audit --no-fund) \
            >"$log" 2>&1 || ! [ -f "$NODE_WS_DIR/node_modules/ws/package.json" ]; then
            local why
            why=$(grep -m 1 -E 'npm (error|ERR!) code|not found|timed out' "$log" || tail -n 1 "$log")
            NODE_WS_DESC="Node ws NOT MEASURED: npm ci failed (${why//[|\`]/})"
            say "$NODE_WS_DESC; log: $log"
            rm -f "$NODE_WS_DIR/package-lock.json" # try again next time
            return 1
        fi
    fi
    NODE_WS_DESC=$(cd "$NODE_WS_DIR" && NODE_PATH=$NODE_WS_DIR/node_modules node -e '
let b = "not installed (masking in JavaScript)";
try { require("bufferutil"); b = require("bufferutil/package.json").version; } catch (e) {}
console.log("Node " + process.version + ", ws " + require("ws/package.json").version + ", bufferutil " + b);' 2>&1)
    say "Node ws peer: $NODE_WS_DESC"
}

# start_node_ws: the Node ws echo (bench/node-ws/echo.js, one process): NW_PID, NW_PORT
start_node_ws() {
    NW_PORT=$(free_port)
    spawn node-ws env NODE_PATH="$NODE_WS_DIR/node_modules" node "$ROOT/bench/node-ws/echo.js" "$NW_PORT"
    NW_PID=$SPAWNED
    wait_port "$NW_PORT"
}

# start_uws: uWebSockets' EchoServer, when UWS_ECHO names a build of it made outside the
# repository that takes its port as argv[1] (bench/README.md says how): UWS_PID, UWS_PORT.
# uWS is packaged neither for Debian nor for npm, so make bench runs it only when given.
start_uws() {
    UWS_PORT=$(free_port)
    spawn uws "$UWS_ECHO" "$UWS_PORT"
    UWS_PID=$SPAWNED
    wait_port "$UWS_PORT"
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
    "${GEN_PIN[@]}" "$BIN/ws-bench" "$@" --json "$BENCH_JSON" >"$WORK/$slug.out" \
        2>"$WORK/$slug.err"
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

# peer_rounds ROUNDS REFECHO_THREADS GW_THREADS GW_ID WS-BENCH-MESSAGE-ARGS...: the same
# ws-bench run against each server in turn, for ROUNDS rounds: ws-refecho, ws-gateway + ws-api
# echo (when built), the Node ws echo (installed here; when it cannot be, the case says so and
# goes on: NODE_WS_DESC) and uWS when UWS_ECHO is given. Alternating within every round, so
# that load from elsewhere on the box hits all alike. Labels "<server> #<round>".
peer_rounds() {
    local rounds=$1 ret=$2 gwt=$3 gwid=$4 r node_ok=0
    shift 4
    node_ws_install && node_ok=1
    for ((r = 1; r <= rounds; r++)); do
        start_refecho "$ret" || return 1
        run_bench "refecho direct #$r" "server:$RE_PID" message --host "127.0.0.1:$RE_PORT" "$@"
        cleanup
        if have ws-gateway ws-api; then
            start_api echo || return 1
            start_gw "$gwid$r" "$gwt" "$API_GRPC" || return 1
            run_bench "gateway + ws-api #$r" "server:$GW_PID api:$API_PID" message \
                --host "127.0.0.1:$GW_PORT" "$@"
            cleanup
        fi
        if [ $node_ok = 1 ]; then
            start_node_ws || return 1
            run_bench "node ws #$r" "server:$NW_PID" message --host "127.0.0.1:$NW_PORT" "$@"
            cleanup
        fi
        if [ -n "${UWS_ECHO:-}" ]; then
            start_uws || return 1
            run_bench "uWS #$r" "server:$UWS_PID" message --host "127.0.0.1:$UWS_PORT" "$@"
            cleanup
        fi
    done
}

# medians KEY REF UNIT: for each server of the runs so far (label "<server> #<round>"), the
# median of KEY over its rounds (msgs_per_s, or p50 / p99 of latency_us, in us) and its range;
# then REF's (a label prefix: the gateway) ratio to each other server: of the medians, and the
# median and range of the ratios within each round (the load of the box moves both alike).
medians() {
    "$PY" - "$MANIFEST" "$@" <<'EOF'
import json, re, statistics, sys
path, key, ref, unit = sys.argv[1:5]
runs, rounds = {}, {}
for line in open(path):
    m = json.loads(line)
    try:
        b = json.load(open(m["bench"]))
    except (OSError, ValueError):
        continue
    v = b.get(key) if key == "msgs_per_s" else (b.get("latency_us") or {}).get(key)
    if v:
        g = re.match(r"(.*?)(?: #(\d+))?$", m["label"])
        runs.setdefault(g.group(1), []).append(float(v))
        rounds.setdefault(g.group(2), {})[g.group(1)] = float(v)
med = {k: statistics.median(v) for k, v in runs.items()}
fmt = (lambda x: "%.1f" % x) if unit == "us" else (lambda x: "%.0f" % x)
parts = ["%s %s %s (%d runs, %s-%s)" % (k, fmt(med[k]), unit, len(v), fmt(min(v)), fmt(max(v)))
         for k, v in runs.items()]
r = next((k for k in med if k.startswith(ref)), None)
for k in med:
    if not r or k == r or not med[k]:
        continue
    pr = [x[r] / x[k] for x in rounds.values() if x.get(r) and x.get(k)]
    parts.append("%s / %s = %.2f (per round %.2f, %.2f-%.2f)" % (
        r, k, med[r] / med[k], statistics.median(pr), min(pr), max(pr)))
print("; ".join(parts) if parts else "no runs")
EOF
}

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
    "${GEN_PIN[@]}" "$BIN/ws-bench" "$@" --log-level info --json "$BENCH_JSON" \
        >"$WORK/$slug.out" 2>>"$WORK/$slug.err" &
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
