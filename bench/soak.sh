#!/usr/bin/env bash
# bench/soak.sh [MINUTES] [USERS] [KILL_EVERY_S]: the soak test (not in CI).
# USERS clients (default 10 000) send the 59-byte message once a second through ws-gateway to
# ws-api for MINUTES (default 30) while ws-api is killed with SIGKILL every KILL_EVERY_S
# seconds (default 120) and restarted on the same port. Records messages sent vs echoed,
# errors, reconnects and lost-message counters, and the gateway's RSS every 10 s; writes
# bench/results/soak.json, bench/results/soak.png (RSS over time) and a RESULTS.md section.
set -u
cd "$(dirname "$0")/.."
MIN=${1:-30}
USERS=${2:-10000}
KILL_EVERY=${3:-120}
BIN=${BIN:-$PWD/bin}
PY=${PY:-/usr/bin/python3}
WORK=build/bench-work/soak
mkdir -p "$WORK" bench/results
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GP=$(free_port); AP=$(free_port); HP=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

start_api() {
    "$BIN/ws-api" --grpc-listen 127.0.0.1:$AP --http-listen 127.0.0.1:$HP >>"$WORK/api.log" 2>&1 &
    API=$!
}
start_api
"$BIN/ws-gateway" --listen 127.0.0.1:$GP --upstream 127.0.0.1:$AP --threads 2 >"$WORK/gw.log" 2>&1 &
GW=$!
pids+=("$GW")
sleep 1
"$BIN/ws-bench" message --host 127.0.0.1:$GP --path /gateway/ws --user "$USERS" \
    --file testdata/50b.txt --interval 1s --duration "${MIN}m" --connect-rate 5000 \
    --json "$WORK/bench.json" >"$WORK/bench.log" 2>&1 &
BENCH=$!
pids+=("$BENCH")
: >"$WORK/rss.tsv"
t0=$(date +%s)
next_kill=$((t0 + KILL_EVERY))
kills=0
while kill -0 "$BENCH" 2>/dev/null; do
    now=$(date +%s)
    rss=$(awk '/VmRSS/{print $2}' /proc/$GW/status 2>/dev/null)
    echo -e "$((now - t0))\t${rss:-0}" >>"$WORK/rss.tsv"
    if [ "$now" -ge "$next_kill" ]; then
        kill -9 "$API" 2>/dev/null
        wait "$API" 2>/dev/null
        sleep 1
        start_api
        kills=$((kills + 1))
        next_kill=$((now + KILL_EVERY))
    fi
    sleep 10
done
wait "$BENCH"
kill "$API" 2>/dev/null
metrics=$(curl -s 127.0.0.1:$GP/metrics)
m() { echo "$metrics" | awk -v k="$1" '$1==k{print $2}'; }
"$PY" - "$WORK" "$kills" "$MIN" "$USERS" "$KILL_EVERY" \
    "$(m 'wsgw_upstream_reconnects_total{node="127.0.0.1:'$AP'"}')" \
    "$(m wsgw_upstream_lost_messages_total)" "$(m 'wsgw_messages_total{direction="in"}')" \
    "$(m 'wsgw_messages_total{direction="out"}')" <<'EOF'
import json, os, subprocess, sys, datetime
work, kills, minutes, users, every, reconnects, lost, gin, gout = sys.argv[1:]
last = open(os.path.join(work, "bench.log")).read().strip().splitlines()[-1]
kv = dict(x.split("=", 1) for x in last.split() if "=" in x)
rss = [tuple(map(int, l.split())) for l in open(os.path.join(work, "rss.tsv")) if l.strip()]
res = {"minutes": int(minutes), "users": int(users), "kill_every_s": int(every),
       "api_kills": int(kills), "bench": kv, "gateway_reconnects": reconnects,
       "gateway_lost_messages": lost, "gateway_messages_in": gin, "gateway_messages_out": gout,
       "rss_kb": rss}
json.dump(res, open("bench/results/soak.json", "w"), indent=1)
with open(os.path.join(work, "rss.dat"), "w") as f:
    for t, r in rss:
        f.write("%d %.1f\n" % (t, r / 1024))
subprocess.run(["gnuplot", "-e", "set terminal png size 900,400; set output 'bench/results/soak.png';"
                " set xlabel 'seconds'; set ylabel 'ws-gateway RSS (MB)'; set yrange [0:*];"
                " set title 'soak: %s users, ws-api killed every %s s'; plot '%s/rss.dat' w l t 'RSS'"
                % (users, every, work)], check=False)
r0 = rss[0][1] / 1024 if rss else 0
rmax = max(r for _, r in rss) / 1024 if rss else 0
rend = rss[-1][1] / 1024 if rss else 0
nproc = os.cpu_count()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
with open("bench/RESULTS.md", "a") as f:
    f.write("\n## Soak: %s users x 1 msg/s for %s min, ws-api killed every %s s\n\n" % (users, minutes, every))
    f.write("%s UTC · nproc %d · %s\n\n" % (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), nproc, cpu))
    f.write("```\nbench/soak.sh %s %s %s\n```\n\n" % (minutes, users, every))
    f.write("| sent | received (echoes, duplicates included) | errors | ws-api kills | gateway reconnects | lost (counted) | gateway in / out | RSS start / max / end MB |\n|---|---|---|---|---|---|---|---|\n")
    f.write("| %s | %s | %s | %s | %s | %s | %s / %s | %.1f / %.1f / %.1f |\n\n" % (
        kv.get("sent"), kv.get("received"), kv.get("errors"), kills, reconnects, lost, gin, gout, r0, rmax, rend))
    f.write("Data: [results/soak.json](results/soak.json), plot: ![soak](results/soak.png)\n")
print("soak:", last, "kills=%s reconnects=%s lost=%s rss_mb start=%.1f max=%.1f end=%.1f" % (kills, reconnects, lost, r0, rmax, rend))
EOF
