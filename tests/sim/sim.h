/* sim.h: deterministic simulation of the gateway's delivery protocol (issue 14).
 *
 * One gateway: service threads with their real message routing (gateway/msgroute.c) and
 * connection tables, the real hand-offs (gateway/link.c, handoff.c), and one real delivery
 * machine per API node (gateway/delivery.c); model transports; model API nodes that ack or
 * not, send no headers, refuse streams, reset streams, reject poison messages with a
 * non-retryable status, hang (no PING answers), crash, go away, or sit behind a black-holed
 * network. Clients open, send and close at random. Every thread runs only when it was woken
 * or its timer is due, as in the real process, so a lost wake-up shows as work nobody does.
 * Time is simulated; every choice comes from the seed (or from fuzzer bytes), so a failing
 * run replays exactly.
 *
 * Checked after every step: each delivery machine's own consistency (dlv_check); a
 * connection's messages are first received by the API nodes in the order sent; no message
 * goes out more often than the retry bound allows. Checked once the faults stop and the system
 * settles: every message was received by an API node, or its client was told (kicked);
 * nothing is queued or held any more; every node's presence equals the live connections (with
 * shared presence: the one store does). */
#ifndef WSGW_SIM_H
#define WSGW_SIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct sim_opts {
    uint64_t seed;
    int nsvc, nup, nstreams;   /* 0: chosen from the seed */
    int fault_steps;           /* steps of client traffic and faults (0: 3000) */
    int settle_steps;          /* bound on the steps to settle afterwards (0: 200000) */
    const uint8_t *bytes;      /* fuzzing: choices come from these bytes, then the seed */
    size_t nbytes;
    int verbose;               /* 1: a line per fault; 2: per step */
    uint64_t trace_conn;       /* with verbose: every receipt of this connection */
    int shared;                /* 1: the nodes share presence (ws-api --redis, gw.h): Opens and
                                  Closes are routed to one node like messages, and all nodes
                                  write one store (closed connections kept as tombstones, so a
                                  late Open cannot bring one back) under the gateway's token,
                                  which a session that presents a new instance renews; every
                                  node acks, and every node refuses the Close of a few
                                  connections (as it would a poison message) */
} sim_opts_t;

typedef struct sim_result {
    uint64_t steps;
    char violation[512];       /* "" when none */
    uint64_t messages, received, kicked_lost, conns, sessions, crashes, hangs, partitions,
        goaways, resets, poisons;
    uint64_t handed_back, resyncs, pings, ping_timeouts, splits, lost;
    uint64_t renewals, rotations, mismatches; /* shared: instances renewed, tokens made anew,
                                                 sessions a node ended for an old token */
} sim_result_t;

/* sim_run: one simulated run. Returns 0, or -1 with the first violation in r->violation. */
int sim_run(const sim_opts_t *o, sim_result_t *r);

#endif
