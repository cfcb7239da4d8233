#!/usr/bin/env bash
# rtt_variants.sh: the round trip (one connection, one message in flight, testdata/50b.txt)
# of several server set-ups side by side, alternating in every round (issue 18 goal 4: the
# defaults must not cost round-trip latency).
#
#   bash bench/rtt_variants.sh [ROUNDS] [VARIANT...]
#
# VARIANTs as in case_seed_steady.sh: "gw FLAGS..." (ws-gateway as shipped plus FLAGS, ws-api
# echo behind it: --threads at its default, the cores it can use; a --threads in FLAGS wins),
# "gw@DIR FLAGS..." (ws-gateway and ws-api from DIR: another build), "gwunix[@DIR] FLAGS..."
# (the same with the API hop on a Unix domain socket), "uws" (UWS_ECHO, bench/README.md).
# D (default 5s) per run.
# Prints one line per run and the medians of p50 and p99 per variant. With SWITCHES=1, `perf
# stat -e context-switches,task-clock` on the server over 3 s of each run (from its second
# second; D must be 5s or more) adds its context switches and CPU per round trip to the line.
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
ROUNDS=3
case ${1:-} in [0-9]*) ROUNDS=$1; shift ;; esac
[ $# -gt 0 ] || set -- "gw" "gw --threads 1 --coalesce 1ms --svc-coalesce 1ms"
D=${D:-5s}
OUT=$WORK/rtt_variants.tsv
: >"$OUT"

# switches LINE: "switches=N cpu_us=N" per round trip over perf's 3 s (round trips from the
# run's received count over D)
switches() {
    "$PY" - "$1" "${D%s}" "$WORK/rtt.stat" <<'PYEOF'
import re, sys
line, dur, stat = sys.argv[1], float(sys.argv[2]), sys.argv[3]
m = re.search(r"received=(\d+)", line)
n = int(m.group(1)) / dur * 3 if m else 0
c = {}
for row in open(stat):
    p = row.strip().split(",")
    if len(p) > 3:
        try:
            c[p[2]] = float(p[0])
        except ValueError:
            pass
if n:
    print("switches=%.2f cpu_us=%.1f" % (c.get("context-switches", 0) / n,
                                         c.get("task-clock", 0) * 1e3 / n))
PYEOF
}

one_run() {
    local v=$1 port gwv gbin=$BIN
    case $v in
    uws)
        [ -n "${UWS_ECHO:-}" ] || { say "uws: UWS_ECHO is not set"; return 1; }
        start_uws || return 1
        port=$UWS_PORT
        ;;
    gw*)
        gwv=${v%% *}
        local unix=
        case $gwv in gwunix*) unix=1 ;; esac
        case $gwv in gw@* | gwunix@*) gbin=${gwv#*@} ;; esac
        local flags=${v#"$gwv"}
        API_UNIX=$unix BIN=$gbin start_api echo || return 1
        # shellcheck disable=SC2086 # the flags of the variant are words
        BIN=$gbin start_gw rtt 0 "$API_GRPC" $flags || return 1
        port=$GW_PORT
        ;;
    esac
    local line srv=${GW_PID:-}
    [ "$v" = uws ] && srv=$UWS_PID
    "${GEN_PIN[@]}" "$BIN/ws-bench" message --host "127.0.0.1:$port" --user 1 --interval 0 \
        --inflight 1 --file "$ROOT/testdata/50b.txt" --duration "$D" 2>/dev/null >"$WORK/rtt.out" &
    local b=$!
    if [ "${SWITCHES:-0}" = 1 ]; then
        sleep 1
        perf stat -x, -e context-switches,task-clock -p "$srv" -o "$WORK/rtt.stat" -- sleep 3 \
            2>/dev/null
    fi
    wait $b
    line=$(tail -1 "$WORK/rtt.out")
    [ "${SWITCHES:-0}" = 1 ] && line="$line $(switches "$line")"
    cleanup
    local p50 p99
    p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
    printf '%s\t%s\t%s\t%s\n' "$v" "${p50:-?}" "${p99:-?}" "$line" | tee -a "$OUT"
}

for ((r = 1; r <= ROUNDS; r++)); do
    for v in "$@"; do one_run "$v"; done
done
echo "medians over $ROUNDS rounds (us):"
for v in "$@"; do
    awk -F'\t' -v v="$v" 'BEGIN { n = 0 } $1 == v { p50[n] = $2; p99[n++] = $3 }
        function med(a, n,   i, j, t) { for (i = 0; i < n; i++) for (j = i + 1; j < n; j++)
            if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[int(n / 2)] : (a[n / 2 - 1] + a[n / 2]) / 2 }
        END { printf "| %s | %s | %s |\n", v, med(p50, n), med(p99, n) }' "$OUT"
done
