#!/usr/bin/env bash
# bench/fanout_six.sh RATE...: broadcast of 64 B pushes to 100 000 connections over six
# ws-gateway processes (--threads 1 each, one ws-api), one 30 s run per push rate (pushes/s;
# deliveries offered = rate x 100 000). Like case_fanout.sh's full mode, at rates of your
# choice; writes results/fan6.json + .png and a RESULTS.md section. Not part of make bench.
#   bash bench/fanout_six.sh 12 15
CASE=fan6
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
[ $# -gt 0 ] || { echo "usage: $0 RATE..." >&2; exit 2; }
start_api echo || exit 1
start_six_gw fan || exit 1
hosts=$SIX_HOSTS pids=$SIX_PIDS
for r in "$@"; do
    # six gateways and six bench workers share the cores: connect slower, wait longer
    run_bench "all 100000 (6 gateways) at $r/s" "gateway:$pids api:$API_PID" push \
        --host "$hosts" --user 100000 --target all --size 64 --rate "$r" --duration 30s \
        --push-url "$API_HTTP_URL" --connect-rate 2000 --settle 2s --drain 30s --procs 6 \
        --source-ips 127.0.0.1-127.0.0.8 --max-pending 200 --timeout 30s
done
cleanup
finish "Fan-out: 64 B to 100 000 connections over six gateways (issue 8 goal 5)" cdf \
    "msg/s here is deliveries per second (first push to last delivery); sent = pushes accepted, received = deliveries."
