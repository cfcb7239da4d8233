/* test_gw_delivery_sim.c: the delivery protocol (gateway/delivery.c with msgroute.c and the
 * hand-offs) under seeded random faults (tests/sim/sim.h). Every seed is one reproducible
 * run; a failing seed prints the command that replays it.
 *
 *   test_gw_delivery_sim                      seeds 1..WSGW_SIM_SEEDS (default 10000)
 *   test_gw_delivery_sim --seed N [-v|-vv]    one seed, with a trace
 *   test_gw_delivery_sim --from A --to B [--steps N]   a range (long runs)
 *   ... --shared                              with shared presence (ws-api --redis): Opens and
 *                                             Closes routed to one node, one store */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sim/sim.h"
#include "test.h"

/* Seeds that once failed, each a one-line regression test: {seed, fault steps, shared}. */
static const struct { uint64_t seed; int steps, shared; } regressions[] = {
    /* a routed Close failed alone max_attempts times (behind a poison batch, then a stream
     * reset) and was lost: a ghost in shared presence, which no new session clears */
    {20212, 600, 1},
    /* the simulator, not the gateway: a node without acks that refused a stream 4 times had
     * each arrival on it counted as taken, over I4's bound; a refusal is not a failure (the
     * node took nothing, delivery.c), and arrivals on refused streams no longer count */
    {485598, 600, 0},
    /* a Close every node refuses is lost after its rounds (I4): before the gateway renewed its
     * instance on that, the closed connection stayed in shared presence for good */
    {5, 600, 1},
};

static uint64_t trace;
static int shared; /* run_seed: with shared presence */

static int run_seed(uint64_t seed, int steps, int verbose, sim_result_t *r)
{
    sim_opts_t o = {.seed = seed, .fault_steps = steps, .verbose = verbose, .trace_conn = trace,
                    .shared = shared};
    int rv = sim_run(&o, r);
    if (rv < 0)
        fprintf(stderr, "seed %llu: %s\n  replay: %s --seed %llu --steps %d%s -v\n",
                (unsigned long long)seed, r->violation, "build/tests/test_gw_delivery_sim",
                (unsigned long long)seed, steps, shared ? " --shared" : "");
    return rv;
}

static uint64_t seeds_from = 1, seeds_to;
static int seed_steps = 600;

static void test_regression_seeds(void)
{
    sim_result_t r;
    for (size_t i = 0; i < sizeof regressions / sizeof regressions[0]; i++) {
        shared = regressions[i].shared;
        CHECK_EQ(run_seed(regressions[i].seed, regressions[i].steps, 0, &r), 0);
    }
    shared = 0;
}

static void fault_schedules(void)
{
    uint64_t steps = 0, msgs = 0, fails = 0, sessions = 0, crashes = 0, hangs = 0, parts = 0,
             goaways = 0, resets = 0, poisons = 0, hb = 0, pto = 0, splits = 0, lost = 0,
             renewals = 0, rotations = 0, mismatches = 0;
    for (uint64_t seed = seeds_from; seed <= seeds_to; seed++) {
        sim_result_t r;
        if (run_seed(seed, seed_steps, 0, &r) < 0 && ++fails >= 5)
            break;
        steps += r.steps;
        msgs += r.messages;
        sessions += r.sessions;
        crashes += r.crashes;
        hangs += r.hangs;
        parts += r.partitions;
        goaways += r.goaways;
        resets += r.resets;
        poisons += r.poisons;
        hb += r.handed_back;
        pto += r.ping_timeouts;
        splits += r.splits;
        lost += r.lost;
        renewals += r.renewals;
        rotations += r.rotations;
        mismatches += r.mismatches;
    }
    CHECK_EQ(fails, 0);
    printf("# seeds %llu..%llu: %llu steps, %llu messages, %llu sessions, faults: %llu crashes "
           "%llu hangs %llu black holes %llu goaways %llu stream resets %llu poison; %llu handed "
           "back, %llu PING timeouts, %llu splits, %llu lost and told\n",
           (unsigned long long)seeds_from, (unsigned long long)seeds_to,
           (unsigned long long)steps, (unsigned long long)msgs, (unsigned long long)sessions,
           (unsigned long long)crashes, (unsigned long long)hangs, (unsigned long long)parts,
           (unsigned long long)goaways, (unsigned long long)resets, (unsigned long long)poisons,
           (unsigned long long)hb, (unsigned long long)pto, (unsigned long long)splits,
           (unsigned long long)lost);
    if (shared) {
        /* the nodes refuse some Closes always: each is lost after its rounds (I4), and only
         * the renewed instance's new token takes it out of the store */
        printf("# shared presence: %llu instance renewals (Closes lost), %llu tokens made, %llu "
               "sessions ended by a node for an old token\n", (unsigned long long)renewals,
               (unsigned long long)rotations, (unsigned long long)mismatches);
        CHECK(seeds_to - seeds_from < 20 || renewals > 0);
    }
}

static void test_seeded_fault_schedules(void)
{
    shared = 0;
    fault_schedules();
}

/* The same faults with shared presence (ws-api --redis): Opens and Closes routed to one node
 * like messages (kept, handed back, in order with the connection's messages), the store right
 * once things settle. A quarter of the seeds. */
static void test_seeded_fault_schedules_shared_presence(void)
{
    uint64_t to = seeds_to;
    seeds_to = seeds_from + (seeds_to - seeds_from) / 4;
    shared = 1;
    fault_schedules();
    shared = 0;
    seeds_to = to;
}

int main(int argc, char **argv)
{
    const char *env = getenv("WSGW_SIM_SEEDS");
    const char *san = getenv("SANITIZE"); /* sanitizer builds run several times slower */
    seeds_to = env ? strtoull(env, NULL, 10) : san && *san ? 2000 : 10000;
    int verbose = 0;
    long long one = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            one = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--from") && i + 1 < argc)
            seeds_from = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--to") && i + 1 < argc)
            seeds_to = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            seed_steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--trace") && i + 1 < argc)
            trace = strtoull(argv[++i], NULL, 16);
        else if (!strcmp(argv[i], "--shared"))
            shared = 1;
        else if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else if (!strcmp(argv[i], "-vv"))
            verbose = 2;
        else if (!strcmp(argv[i], "-vvv"))
            verbose = 3;
    }
    if (one >= 0) {
        sim_result_t r;
        int rv = run_seed((uint64_t)one, seed_steps, verbose, &r);
        printf("seed %lld: %s (%llu steps, %llu messages, %llu received)\n", one,
               rv ? r.violation : "ok", (unsigned long long)r.steps,
               (unsigned long long)r.messages, (unsigned long long)r.received);
        return rv ? 1 : 0;
    }
    RUN(test_regression_seeds);
    RUN(test_seeded_fault_schedules);
    RUN(test_seeded_fault_schedules_shared_presence);
    return TEST_REPORT();
}
