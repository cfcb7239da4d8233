#!/usr/bin/env bash
# bench/run.sh short|full: the benchmark suite (make bench / make bench-full).
# Each case writes bench/results/<case>.json and .png and appends to bench/RESULTS.md.
# BIN selects the binaries (default bin/); CASES="rtt throughput" runs a subset.
# short: under 5 minutes on 2 cores; full: larger sizes, longer runs, the 100 000-connection
# cases over six gateway processes.
set -u
cd "$(dirname "$0")/.."
MODE=${1:-short}
case "$MODE" in short | full) ;; *) echo "usage: bench/run.sh short|full" >&2; exit 2 ;; esac
export BENCH_MODE=$MODE
export BIN=${BIN:-$PWD/bin}
# the revision the results are filed under: HEAD now (+ "-dirty" with local changes), unless
# BENCH_REV names the revision the binaries in BIN were built from
if [ -z "${BENCH_REV:-}" ]; then
    BENCH_REV=$(git rev-parse --short HEAD 2>/dev/null)
    [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && BENCH_REV="$BENCH_REV-dirty"
fi
export BENCH_REV
CASES=${CASES:-"rtt throughput seed seed_steady idle_memory fanout recovery"}
command -v gnuplot >/dev/null || echo "note: gnuplot (Debian gnuplot-nox) is not installed: no PNG plots" >&2
rc=0
t0=$SECONDS
for c in $CASES; do
    echo "== $c ($MODE)"
    bash "bench/case_$c.sh" || { echo "case $c failed" >&2; rc=1; }
done
echo "bench $MODE done in $((SECONDS - t0)) s: see bench/RESULTS.md"
exit $rc
