#!/usr/bin/env bash
# bench/tls_reallocs.sh BIN [gateway flags]: the closed loop (100 x 16 x 1.4 KB, unpinned, 8 s)
# with the gateway -> ws-api hop over TLS (a self-signed certificate made here), the gateway run
# with build/tests/liballoc_count.so. Prints the gateway's reallocations of 256 KiB or more and
# both processes' CPU ticks over 5 s of it, and ws-bench's summary (bench/RESULTS.md #77).
set -u
BIN=$(cd "$1" && pwd) || exit 2 # (before the cd below: a relative BIN is the caller's)
shift
cd "$(dirname "$0")/.."
LIB=$PWD/build/tests/liballoc_count.so
[ -f "$LIB" ] || { echo "no $LIB: run make" >&2; exit 2; }
T=$(mktemp -d)
cleanup() { kill "${W:-}" "${A:-}" "${B:-}" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1
fp() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
G=$(fp) H=$(fp) P=$(fp)
"$BIN/ws-api" --grpc-listen 127.0.0.1:$G --http-listen 127.0.0.1:$H --handler echo \
    --log-level warn --grpc-tls-cert "$T/cert.pem" --grpc-tls-key "$T/key.pem" >/dev/null 2>&1 &
A=$!
sleep 0.5
LD_PRELOAD=$LIB ALLOC_COUNT_OUT=$T/ac.out "$BIN/ws-gateway" --listen 127.0.0.1:$P \
    --upstream localhost:$G --upstream-tls --upstream-ca "$T/cert.pem" --gateway-id r \
    --log-level warn "$@" >/dev/null 2>&1 &
W=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$P/readyz >/dev/null && break; sleep 0.05; done
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
count() { # the preloaded counter writes its count to $T/ac.out on SIGUSR2
    rm -f "$T/ac.out"; kill -USR2 $W
    for _ in $(seq 50); do [ -s "$T/ac.out" ] && break; sleep 0.02; done
    cat "$T/ac.out"
}
"$BIN/ws-bench" message --host 127.0.0.1:$P --user 100 --interval 0 --inflight 16 \
    --file testdata/1k.txt --duration 8s >"$T/cl.out" 2>&1 &
B=$!
sleep 2
c0=$(count); a0=$(ticks $A); w0=$(ticks $W)
sleep 5
a1=$(ticks $A); w1=$(ticks $W); c1=$(count)
wait $B
echo "$BIN reallocs_256k_in_5s=$((c1 - c0)) gateway_ticks=$((w1 - w0)) api_ticks=$((a1 - a0))" \
    "$(tail -1 "$T/cl.out")"
