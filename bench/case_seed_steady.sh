#!/usr/bin/env bash
# case_seed_steady.sh: the steady-state CPU of seed case 2 (10 000 users, testdata/1k.txt, one
# message per user per second), for several server set-ups side by side (issue 8, goal 2).
#
#   bash bench/case_seed_steady.sh [ROUNDS] [VARIANT...]
#
# A VARIANT is "gw FLAGS..." (ws-gateway as shipped plus FLAGS, ws-api echo behind it: its
# --threads at the default, the cores it can use, so 2 here and 1 with BENCH_PIN=1);
# "gw@DIR FLAGS..." takes ws-gateway and ws-api from DIR instead of $BIN: another build, side
# by side; "gwunix" and "gwunix@DIR": the same with the API hop on a Unix domain socket;
# "raw FLAGS..." / "lws FLAGS..." (ws-refecho --threads 2 plus FLAGS, with and without --raw:
# no upstream hop) or "uws" (uWebSockets' EchoServer named by UWS_ECHO, see bench/README.md).
# A later --threads in FLAGS wins. The variants run one after the other, ROUNDS times
# (default 1; 3 with BENCH_MODE=full), alternating. For each run, once every
# connection is up and 3 s have passed, the server's user and system CPU are sampled from
# /proc over WINDOW seconds (default 10), and with SYSCALLS=1 `perf stat` counts its recvfrom,
# sendto, sendmsg, epoll_wait, epoll_pwait2 (libuv's wait: the service threads), write and read
# calls and context switches over the same window.
# The round-trip p50/p99 and errors are ws-bench's over the whole run.
# Prints one line per run, then the medians per variant; records the runs (make bench: the
# default variants below, 1 round in short mode, 3 in full).
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench ws-refecho || exit 0
ROUNDS=$(pick 1 3)
case ${1:-} in [0-9]*) ROUNDS=$1; shift ;; esac
# lws alone on one thread (no upstream hop: the floor), the gateway as shipped, and the
# gateway set up for CPU (one service thread, both coalescing windows)
[ $# -gt 0 ] || set -- "raw --threads 1" "gw" "gw --threads 1 --coalesce 1ms --svc-coalesce 1ms"
WINDOW=${WINDOW:-10}
TIMES=${TIMES:-$((WINDOW + 15))}
USERS=${USERS:-10000}
OUT=$WORK/steady.tsv
: >"$OUT"

# ticks PID: "user system" clock ticks of the process (all threads)
ticks() { awk '{print $14, $15}' "/proc/$1/stat" 2>/dev/null || echo "0 0"; }

# one_run LABEL VARIANT: prints a tab-separated result line to $OUT
one_run() {
    local label=$1 v=$2 srv api="" port
    case $v in
    raw* | lws*)
        local f=${v#???}
        [ "${v:0:3}" = raw ] && f="--raw $f"
        port=$(free_port)
        # shellcheck disable=SC2086 # the flags of the variant are words
        spawn refecho "$BIN/ws-refecho" --listen "127.0.0.1:$port" --threads 2 $f
        srv=$SPAWNED
        wait_port "$port" || return 1
        ;;
    uws)
        [ -n "${UWS_ECHO:-}" ] || { say "uws: UWS_ECHO is not set"; return 1; }
        start_uws || return 1
        srv=$UWS_PID
        port=$UWS_PORT
        ;;
    gw*)
        local gwv=${v%% *} gbin=$BIN unix=
        [ "$gwv" = "$v" ] && v="$v " # no flags
        case $gwv in gwunix*) unix=1 ;; esac
        case $gwv in gw@* | gwunix@*) gbin=${gwv#*@} ;; esac
        API_UNIX=$unix BIN=$gbin start_api echo || return 1
        api=$API_PID
        # shellcheck disable=SC2086 # the flags of the variant are words
        BIN=$gbin start_gw steady 0 "$API_GRPC" ${v#"$gwv"} || return 1
        srv=$GW_PID
        port=$GW_PORT
        ;;
    *) say "unknown variant: $v"; return 1 ;;
    esac
    local err=$WORK/bench.err json=$WORK/run$RUN.json
    local args=(message --host "127.0.0.1:$port" --path /gateway/ws --user "$USERS"
        --file "$ROOT/testdata/1k.txt" --interval 1s --times "$TIMES" --connect-rate "$CONNECT_RATE")
    : >"$err"
    rm -f "$json"
    "${GEN_PIN[@]}" "$BIN/ws-bench" "${args[@]}" --log-level info --json "$json" \
        >"$WORK/bench.out" 2>>"$err" &
    local bp=$! i
    for ((i = 0; i < 1200; i++)); do
        grep -q 'msg=connected' "$err" && break
        kill -0 "$bp" 2>/dev/null || break
        sleep 0.1
    done
    sleep 3
    local a0 a1 p0 p1 s0 s1 perf=""
    a0=$(ticks "$srv")
    [ -n "$api" ] && p0=$(ticks "$api")
    s0=$(now_s)
    if [ "${SYSCALLS:-0}" = 1 ]; then
        perf=$WORK/perf.txt
        perf stat -x, -p "$srv" -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait2,syscalls:sys_enter_write,syscalls:sys_enter_read,context-switches' \
            -o "$perf" -- sleep "$WINDOW" 2>/dev/null
    else
        sleep "$WINDOW"
    fi
    s1=$(now_s)
    a1=$(ticks "$srv")
    [ -n "$api" ] && p1=$(ticks "$api")
    wait "$bp"
    local last
    last=$(tail -n 1 "$WORK/bench.out")
    local msgs=$((USERS * WINDOW)) # one message per user per second
    awk -v l="$label" -v a0="$a0" -v a1="$a1" -v p0="${p0:-0 0}" -v p1="${p1:-0 0}" \
        -v c="$CLK" -v d="$(awk -v a="$s0" -v b="$s1" 'BEGIN {print b - a}')" -v last="$last" \
        -v perf="$perf" -v msgs="$msgs" 'BEGIN {
        split(a0, x); split(a1, y); split(p0, q); split(p1, r)
        us = (y[1] - x[1]) / c / d * 100; sy = (y[2] - x[2]) / c / d * 100
        api = (r[1] + r[2] - q[1] - q[2]) / c / d * 100
        n = split(last, kv, " ")
        for (i = 1; i <= n; i++) { split(kv[i], p, "="); f[p[1]] = p[2] }
        sc = ""
        if (perf != "") {
            while ((getline line < perf) > 0) {
                m = split(line, z, ",")
                if (m < 3) continue
                name = z[3]; sub(/.*sys_enter_/, "", name)
                sc = sc sprintf(" %s=%.2f", name, z[1] / msgs)
            }
        }
        printf "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%s\t%s\n", l, us + sy, us, sy, api,
            f["p50_us"] / 1000, f["p99_us"] / 1000, f["errors"], sc
    }' >>"$OUT"
    tail -n 1 "$OUT" >&2
    local cpu user sys apic
    IFS=$'\t' read -r _ cpu user sys apic _ < <(tail -n 1 "$OUT")
    local desc t2="--threads 2" t0="--threads 0"
    [[ "$v" == *--threads* ]] && t2="" t0="" # the variant's own wins
    case $v in
    uws) desc="uWebSockets EchoServer ($UWS_ECHO)" ;;
    gw@*) local g1=${v%% *}; desc="ws-gateway of ${g1#gw@} $t0 ${v#"$g1"} (ws-api echo)" ;;
    gw*) desc="ws-gateway $t0${v#gw} (ws-api echo)" ;;
    raw*) desc="ws-refecho $t2 --raw${v#raw}" ;;
    *) desc="ws-refecho $t2${v#lws}" ;;
    esac
    local cmd="ws-bench ${args[*]}"
    manifest "$label #$RUN" "${cmd//$ROOT\//}   # server: $desc" "$json" \
        "server_cpu_pct=$cpu" "server_user_pct=$user" "server_sys_pct=$sys" "api_cpu_pct=$apic"
    cleanup
}

printf 'variant\tcpu%%\tuser%%\tsys%%\tapi%%\tp50ms\tp99ms\terrors\tper message\n' >&2
RUN=0
for ((round = 1; round <= ROUNDS; round++)); do
    for v in "$@"; do
        RUN=$((RUN + 1))
        one_run "$v" "$v"
    done
done
echo
echo "seed case 2 steady state: $USERS users x testdata/1k.txt x 1/s, ${WINDOW} s window, $ROUNDS rounds (medians)"
printf '| variant | server CPU %% | user %% | system %% | ws-api CPU %% | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|---|\n'
for v in "$@"; do
    awk -F'\t' -v v="$v" '$1 == v {n++; for (i = 2; i <= 8; i++) a[i, n] = $i}
    function med(i,   j, k, t, b) { for (j = 1; j <= n; j++) b[j] = a[i, j]
        for (j = 1; j <= n; j++) for (k = j + 1; k <= n; k++) if (b[k] < b[j]) { t = b[j]; b[j] = b[k]; b[k] = t }
        return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2 }
    END { if (n) printf "| %s | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %s |\n", v, med(2), med(3), med(4), med(5), med(6), med(7), med(8) }' "$OUT"
done
finish "Seed case 2 steady state: CPU of the server side by side" bars:server_cpu_pct \
    "$USERS users x testdata/1k.txt x 1/s. server_cpu_pct (= user + sys) and api_cpu_pct: /proc ticks over ${WINDOW} s once every connection is up (3 s after); latency over the whole run. raw = ws-refecho --raw (lws alone, no upstream hop)."
