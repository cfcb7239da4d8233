#!/usr/bin/env bash
# case_seed.sh: the seed's cases 1-3 through ws-gateway + ws-api (echo handler):
#   1. 10 000 users connect and stay idle (the seed's `conn` command);
#   2. 10 000 users each send testdata/50b.txt (59 bytes) every second, --times T;
#   3. the same with testdata/1k.txt (1411 bytes).
# Figures: p50/p99 round trip, errors, CPU % and RSS of ws-gateway and ws-api over the run.
. "$(dirname "$0")/lib.sh"
have ws-gateway ws-api ws-bench || exit 0
USERS=10000
TIMES=$(pick 10 60)
start_api echo || exit 1
start_gw seed 2 "$API_GRPC" || exit 1
H=127.0.0.1:$GW_PORT
W="gateway:$GW_PID api:$API_PID"
hold_bench "1 conn 10k idle" "gateway:$GW_PID api:$API_PID" conn --host "$H" \
    --user $USERS --sleep "$(pick 5s 30s)" --connect-rate "$CONNECT_RATE"
run_bench "2 message 50b x$TIMES" "$W" message --host "$H" --path /gateway/ws --user $USERS \
    --file "$ROOT/testdata/50b.txt" --interval 1s --times "$TIMES" --connect-rate "$CONNECT_RATE"
run_bench "3 message 1k x$TIMES" "$W" message --host "$H" --path /gateway/ws --user $USERS \
    --file "$ROOT/testdata/1k.txt" --interval 1s --times "$TIMES" --connect-rate "$CONNECT_RATE"
finish "Seed cases 1-3: 10 000 users, ws-gateway (2 threads) + ws-api echo" cdf \
    "Case 1 holds the connections idle; cases 2-3 send one message per user per second (open loop). CPU % is averaged over the whole ws-bench run (connect, messages, close); RSS at its end."
