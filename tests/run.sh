#!/usr/bin/env bash
# tests/run.sh [FILTER[,FILTER...]]: runs every unit test binary and integration test, counts "ok NAME" and
# "FAIL NAME" lines, and ends with "N passed, N failed" (exit 1 on any failure).
# Env: BIN (binaries), BUILD (build dir with tests/), PY (python with grpcio/websockets),
#      SANITIZE (set when running a sanitizer build; tests may scale themselves down).
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
BUILD=${BUILD:-$PWD/build}
PY=${PY:-/usr/bin/python3}
FILTER=${1:-}
export BIN BUILD PY SANITIZE="${SANITIZE:-}"
export WSGW_ROOT=$PWD
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"
# Unit tests print their own results; ASan/UBSan reports must fail the run.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}

pass=0 fail=0
failed_names=()

run_one() { # name, timeout seconds, command...
    local name=$1 limit=$2; shift 2
    local log=$LOGDIR/${name//\//_}.log
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@" >"$log" 2>&1
    local rc=$?
    local p f
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    grep -E '^(ok|FAIL) ' "$log" | sed "s|^|  [$name] |"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        # crashed, timed out or failed outside a test case: one failure, show the tail
        f=1
        echo "  [$name] FAIL exit=$rc (timeout=$limit s) — last lines of $log:"
        tail -n 15 "$log" | sed 's/^/      /'
    elif [ "$f" -gt 0 ]; then
        echo "  [$name] see $log"
        grep -vE '^(ok|FAIL) ' "$log" | tail -n 20 | sed 's/^/      /'
    fi
    [ "$f" -gt 0 ] && failed_names+=("$name")
    pass=$((pass + p)); fail=$((fail + f))
    echo "  [$name] $p passed, $f failed ($((SECONDS - t0)) s)"
}

# FILTER: comma-separated substrings; a test runs when its name contains any of them.
match() {
    [ -z "$FILTER" ] && return 0
    local f
    IFS=, read -ra pats <<<"$FILTER"
    for f in "${pats[@]}"; do
        [[ "$1" == *"$f"* ]] && return 0
    done
    return 1
}

echo "== unit tests"
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=unit/$(basename "$t")
    match "$name" || continue
    run_one "$name" 300 "$t"
done

echo "== integration tests"
for t in tests/integration/test_*; do
    [ -f "$t" ] || continue
    name=integration/$(basename "$t")
    match "$name" || continue
    case "$t" in
        *.py) run_one "$name" 600 "$PY" "$t" ;;
        *.sh) run_one "$name" 600 bash "$t" ;;
    esac
done

if [ ${#failed_names[@]} -gt 0 ]; then
    echo "failed: ${failed_names[*]}"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
