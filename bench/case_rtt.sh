#!/usr/bin/env bash
# case_rtt.sh: one connection, one message in flight (testdata/50b.txt): the round trip of
# ws-refecho, of ws-gateway (1 thread) + ws-api echo, of the Node.js `ws` echo (npm ws 8 +
# bufferutil) and, with UWS_ECHO set, of uWebSockets' EchoServer, alternating for ROUNDS rounds
# (env ROUNDS overrides; lib.sh peer_rounds); medians of p50 and the gateway's ratio to each.
. "$(dirname "$0")/lib.sh"
have ws-bench ws-refecho || exit 0
D=$(pick 5s 20s)
ROUNDS=${ROUNDS:-$(pick 2 3)}
peer_rounds "$ROUNDS" 1 1 rtt --user 1 --interval 0 --inflight 1 \
    --file "$ROOT/testdata/50b.txt" --duration "$D" || exit 1
SUMMARY=$(medians p50 gateway us)
say "p50: $SUMMARY"
NOTE="Medians of the round trip p50: **$SUMMARY**. Peers: $NODE_WS_DESC (bench/node-ws/echo.js)${UWS_ECHO:+; uWS: $UWS_ECHO}."
finish "Round trip: one connection, inflight 1, 59-byte message" cdf "$NOTE"
