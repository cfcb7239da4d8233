#!/usr/bin/env bash
# fuzz/run.sh BUILD SECONDS: runs every built libFuzzer target for SECONDS each on its corpus
# (testdata/fuzz/<target>/ seeds, new inputs kept in BUILD/corpus/<target>/) and prints a line
# per target: executions, corpus size, crashes. Exit 1 if any target crashed.
set -u
cd "$(dirname "$0")/.."
build=$1 secs=$2
rc=0
for f in "$build"/fuzz-bin/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f"); target=${name#fuzz_}
    seeds=testdata/fuzz/$target
    work=$build/corpus/$target
    mkdir -p "$work" "$build/crashes/$target"
    log=$build/fuzz-$target.log
    "$f" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$build/crashes/$target/" \
        "$work" $( [ -d "$seeds" ] && echo "$seeds" ) >"$log" 2>&1
    frc=$?
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
    crashes=$(ls "$build/crashes/$target" | wc -l)
    echo "fuzz target=$target seconds=$secs executions=${execs:-?} corpus=$(ls "$work" | wc -l) crashes=$crashes exit=$frc"
    if [ "$frc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        rc=1
        tail -n 30 "$log"
    fi
done
exit $rc
