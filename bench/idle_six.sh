#!/usr/bin/env bash
# bench/idle_six.sh [GATEWAY FLAGS...]: 100 000 idle connections over six ws-gateway processes
# (--threads 1 each, one ws-api) with the given extra gateway flags; prints the summed RSS and
# PSS (shared library pages counted once) of the six while they hold. Not part of make bench.
B=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}; EXTRA="$*"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
G=$(port); H=$(port)
$B/ws-api --grpc-listen 127.0.0.1:$G --http-listen 127.0.0.1:$H --log-level warn >${TMPDIR:-/tmp}/idle_six-a.log 2>&1 & A=$!
sleep 0.3; hosts=""; pids=""
for i in 1 2 3 4 5 6; do P=$(port); $B/ws-gateway --listen 127.0.0.1:$P --upstream 127.0.0.1:$G --threads 1 --gateway-id g$i --log-level warn $EXTRA >${TMPDIR:-/tmp}/idle_six-g$i.log 2>&1 & pids="$pids $!"; hosts="$hosts${hosts:+,}127.0.0.1:$P"; done
sleep 1.5
rss() { local t=0; for p in $pids; do t=$((t + $(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $t; }
pss() { local t=0; for p in $pids; do t=$((t + $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup))); done; echo $t; }
r0=$(rss)
$B/ws-bench conn --host "$hosts" --user 100000 --procs 6 --source-ips 127.0.0.1-127.0.0.8 --sleep 20s --connect-rate 2000 --max-pending 200 --timeout 30s > ${TMPDIR:-/tmp}/idle_six-b.out 2>&1 & W=$!
# wait (at most 200 s) until both ends of 100 000 connections are established
for i in $(seq 1 200); do sleep 1; c=$(ss -tn state established 2>/dev/null | wc -l); [ "$c" -gt 199000 ] && break; done
sleep 5; r1=$(rss); p1=$(pss)
echo "extra='$EXTRA' base_total_kb=$r0 holding_total_kb=$r1 total_mb=$((r1/1024)) per_conn_b=$(( (r1-r0)*1024/100000 )) pss_total_mb=$((p1/1024))"
wait $W; tail -1 ${TMPDIR:-/tmp}/idle_six-b.out
kill $pids; sleep 1; kill $A; wait 2>/dev/null
