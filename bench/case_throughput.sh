#!/usr/bin/env bash
# case_throughput.sh: closed loop, 1 KB (testdata/1k.txt, 1411 bytes), 100 connections x 16
# messages in flight: ws-refecho (the lws echo alone, 2 threads), ws-gateway (2 threads) +
# ws-api echo, the Node.js `ws` echo (npm ws 8 + bufferutil, one process: a peer users run)
# and, with UWS_ECHO set, uWebSockets' EchoServer, in the same run, alternating for ROUNDS
# rounds (env ROUNDS overrides; lib.sh peer_rounds); medians and the gateway's ratio to each.
. "$(dirname "$0")/lib.sh"
have ws-bench ws-refecho || exit 0
D=$(pick 10s 30s)
ROUNDS=${ROUNDS:-$(pick 2 3)}
peer_rounds "$ROUNDS" 2 2 tput --user 100 --interval 0 --inflight 16 \
    --file "$ROOT/testdata/1k.txt" --duration "$D" || exit 1
SUMMARY=$(medians msgs_per_s gateway msg/s)
say "$SUMMARY"
NOTE="Medians of messages/s: **$SUMMARY**. Peers: $NODE_WS_DESC (bench/node-ws/echo.js)${UWS_ECHO:+; uWS: $UWS_ECHO}. Each message counts once (the echo of a 1411-byte message); MB/s counts the received bytes."
finish "Throughput: closed loop, 1 KB, 100 connections x 16 in flight" bars:msgs_per_s "$NOTE"
