#!/usr/bin/env bash
# hop_floor.sh [ROUNDS]: the kernel's floor under the API hop (issue 18). bench/floor/hop_floor.c
# moves 2 GiB from one process to another over TCP loopback and over an AF_UNIX socketpair,
# in 64 KiB and 16 KiB writes (the sizes of the hop's batches), alternating, ROUNDS times
# (default 3), and prints the medians of the CPU both ends spend per 1 411-byte message.
# A message crosses the API hop twice (Upstream, then Downstream), and both ends are ours:
# twice this figure is what the hop costs in the kernel before any user-space work.
. "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
EXE=$WORK/hop_floor
${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -o "$EXE" "$ROOT/bench/floor/hop_floor.c" ||
    exit 1
OUT=$WORK/hop_floor.txt
: >"$OUT"
for ((r = 1; r <= ROUNDS; r++)); do
    for chunk in 65536 16384; do
        for kind in tcp uds; do
            "$EXE" "$kind" "$chunk" | tee -a "$OUT" >&2
        done
    done
done
"$PY" - "$OUT" <<'PYEOF'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) chunk=(\d+) us_cpu_per_msg=([\d.]+) gb_per_s=([\d.]+)", line)
    if m:
        runs.setdefault((m[1], int(m[2])), []).append((float(m[3]), float(m[4])))
for (kind, chunk), v in sorted(runs.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
    cpu = statistics.median(x[0] for x in v)
    gbs = statistics.median(x[1] for x in v)
    print(f"{kind} {chunk // 1024} KiB writes: {cpu:.3f} us CPU per 1411-byte message one way "
          f"(x2 for the hop: {2 * cpu:.2f} us), {gbs:.2f} GB/s, {len(v)} runs")
PYEOF
