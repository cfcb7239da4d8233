/* test_gw_chanrec.c: the channel/recovery state machine of wsgw.v1.json connections
 * (gateway/chanrec.h): cases, then a seeded simulator. The simulator pushes messages into a
 * model history and delivers them live with random delays (reordered), twice, or not at all;
 * answers Recovers late, twice, in pages, or never; trims the history and restarts its epoch;
 * and checks C1-C4 on what the client got. A failing seed is printed and replays exactly
 * (CHANREC_SEED=N). */
#include <stdlib.h>

#include "../../gateway/chanrec.h"
#include "test.h"

/* ---- a message and the client's log -------------------------------------------------------- */

typedef struct tmsg {
    int refs;
    uint64_t offset;
    int epoch;
    int chan;
} tmsg_t;

typedef struct frame {
    bool notice;
    bool recovered;
    uint64_t offset;
    int epoch;
    int chan;
} frame_t;

typedef struct req {
    uint64_t after;
    int epoch;     /* the client's epoch number, 0 = any */
    uint32_t id;
    int chan;
} req_t;

#define MAXF 20000
#define MAXR 256

typedef struct world {
    frame_t log[MAXF];
    int nlog;
    req_t reqs[MAXR];
    int nreqs;
    bool refuse_request;
    long live_objs;
    int cur_chan;
    int events[GW_CR_EV__N];
} world_t;

static world_t W;

static int epoch_num(const char *e)
{
    return *e ? atoi(e + 1) : 0; /* "e3" -> 3 */
}

static void op_deliver(void *ctx, void *m)
{
    (void)ctx;
    tmsg_t *t = m;
    if (W.nlog < MAXF)
        W.log[W.nlog++] = (frame_t){false, false, t->offset, t->epoch, t->chan};
}
static void op_ref(void *ctx, void *m) { (void)ctx; ((tmsg_t *)m)->refs++; }
static void op_unref(void *ctx, void *m)
{
    (void)ctx;
    tmsg_t *t = m;
    if (--t->refs == 0) {
        free(t);
        W.live_objs--;
    }
}
static void op_notice(void *ctx, const gw_chan_t *ch, bool recovered)
{
    (void)ctx;
    if (W.nlog < MAXF)
        W.log[W.nlog++] =
            (frame_t){true, recovered, ch->last, epoch_num(ch->epoch), ch->name[0] == 'r'};
}
static bool op_request(void *ctx, const gw_chan_t *ch, uint64_t after, const char *epoch,
                       uint32_t id)
{
    (void)ctx;
    if (W.refuse_request || W.nreqs == MAXR)
        return false;
    W.reqs[W.nreqs++] = (req_t){after, epoch_num(epoch), id, ch->name[0] == 'r'};
    return true;
}
static void op_event(void *ctx, gw_cr_ev_t e)
{
    (void)ctx;
    W.events[e]++;
}

static const gw_cr_ops_t ops = {op_deliver, op_ref, op_unref, op_notice, op_request, op_event};
static const gw_cr_cfg_t cfg = {
    .recover_timeout_ns = 5000, .gap_wait_ns = 100, .max_held_bytes = 1 << 20, .max_chans = 8};

static tmsg_t *mk(uint64_t off, int epoch)
{
    tmsg_t *t = malloc(sizeof *t);
    t->refs = 1;
    t->offset = off;
    t->epoch = epoch;
    t->chan = W.cur_chan;
    W.live_objs++;
    return t;
}

static void live(gw_chans_t *s, const char *name, uint64_t off, int epoch, int64_t now)
{
    char e[16];
    snprintf(e, sizeof e, "e%d", epoch);
    W.cur_chan = name[0] == 'r';
    tmsg_t *t = mk(off, epoch);
    gw_cr_live(s, &cfg, &ops, NULL, name, strlen(name), off, e, strlen(e), t, 10, now);
    op_unref(NULL, t);
}

static void reply(gw_chans_t *s, const char *name, uint32_t id, uint64_t a, uint64_t b,
                  bool more, uint64_t top, int epoch, bool ok, int64_t now)
{
    gw_cr_pub_t pubs[64];
    size_t n = 0;
    W.cur_chan = name[0] == 'r';
    for (uint64_t o = a; o && o <= b && n < 64; o++)
        pubs[n++] = (gw_cr_pub_t){o, mk(o, epoch)};
    char e[16];
    snprintf(e, sizeof e, "e%d", epoch);
    W.cur_chan = name[0] == 'r';
    gw_cr_reply(s, &cfg, &ops, NULL, name, strlen(name), id, pubs, n, more, top, e, strlen(e),
                ok, now);
    for (size_t i = 0; i < n; i++)
        op_unref(NULL, pubs[i].msg);
}

static void reset_world(void)
{
    memset(&W, 0, sizeof W);
}

/* What the client got as a string "1,2,ok@2" (only channel chan; -1: all, with "r" before
 * the room's). */
static const char *frames(int chan)
{
    static char buf[8192];
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < W.nlog && o < sizeof buf - 40; i++) {
        if (chan >= 0 && W.log[i].chan != chan)
            continue;
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s%s%llu", o ? "," : "",
                              chan < 0 && W.log[i].chan ? "r" : "",
                              W.log[i].notice ? (W.log[i].recovered ? "ok@" : "missed@") : "",
                              (unsigned long long)W.log[i].offset);
        if (W.log[i].epoch > 1)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "e%d", W.log[i].epoch);
    }
    return buf;
}

static const char *offsets(void) { return frames(-1); }

/* ---- cases ---------------------------------------------------------------------------------- */

static void test_live_in_order_dups_dropped(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    live(&s, "user:a", 5, 1, 0);
    live(&s, "user:a", 6, 1, 0);
    live(&s, "user:a", 6, 1, 0);
    live(&s, "user:a", 4, 1, 0);
    live(&s, "user:a", 7, 1, 0);
    CHECK_STR(offsets(), "5,6,7");
    CHECK_EQ(W.events[GW_CR_EV_DUPLICATE], 2);
    gw_cr_free(&s, &ops, NULL);
    CHECK_EQ(W.live_objs, 0);
}

static void test_recover_then_held_live(void)
{
    /* client at 10; live 13, 14 arrive during the recovery; history has 11..13 */
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    CHECK_EQ(gw_cr_position(&s, &cfg, "user:a", 6, 10, "e1", 2), 0);
    gw_cr_start(&s, &cfg, &ops, NULL, "user:a", 6, 0);
    REQUIRE(W.nreqs == 1);
    CHECK_EQ(W.reqs[0].after, 10);
    live(&s, "user:a", 13, 1, 1);
    live(&s, "user:a", 14, 1, 2);
    CHECK_EQ(W.nlog, 0);
    reply(&s, "user:a", W.reqs[0].id, 11, 13, false, 13, 1, true, 3);
    CHECK_STR(offsets(), "11,12,13,ok@13,14");
    live(&s, "user:a", 15, 1, 4);
    CHECK_STR(offsets(), "11,12,13,ok@13,14,15");
    CHECK(!gw_cr_busy(&s));
    gw_cr_free(&s, &ops, NULL);
    CHECK_EQ(W.live_objs, 0);
}

static void test_recover_trimmed_says_missed(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    gw_cr_position(&s, &cfg, "user:a", 6, 10, "e1", 2);
    gw_cr_start(&s, &cfg, &ops, NULL, "user:a", 6, 0);
    /* 11..14 trimmed: the history starts at 15 */
    reply(&s, "user:a", W.reqs[0].id, 15, 20, false, 20, 1, false, 1);
    CHECK_STR(offsets(), "15,16,17,18,19,20,missed@20");
    gw_cr_free(&s, &ops, NULL);
    CHECK_EQ(W.live_objs, 0);
}

static void test_recover_other_epoch(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    gw_cr_position(&s, &cfg, "user:a", 6, 10, "e1", 2);
    gw_cr_start(&s, &cfg, &ops, NULL, "user:a", 6, 0);
    live(&s, "user:a", 4, 2, 1);
    reply(&s, "user:a", W.reqs[0].id, 0, 0, false, 3, 2, false, 2);
    CHECK_STR(offsets(), "missed@3e2,4e2");
    gw_cr_free(&s, &ops, NULL);
}

static void test_room_waits_for_join(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    gw_cr_position(&s, &cfg, "room:r", 6, 3, "e1", 2);
    CHECK_EQ(W.nreqs, 0);
    gw_cr_start(&s, &cfg, &ops, NULL, "user:a", 6, 0); /* another channel: nothing */
    CHECK_EQ(W.nreqs, 0);
    gw_cr_start(&s, &cfg, &ops, NULL, "room:r", 6, 0);
    REQUIRE(W.nreqs == 1);
    CHECK_EQ(W.reqs[0].after, 3);
    reply(&s, "room:r", W.reqs[0].id, 4, 4, false, 4, 1, true, 1);
    CHECK_STR(offsets(), "r4,rok@4");
    gw_cr_leave(&s, &ops, NULL, "room:r", 6);
    CHECK(gw_cr_find(&s, "room:r", 6) == NULL);
    gw_cr_free(&s, &ops, NULL);
}

static void test_gap_filled_by_reordered(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    live(&s, "user:a", 1, 1, 0);
    live(&s, "user:a", 3, 1, 1);
    live(&s, "user:a", 4, 1, 2);
    CHECK(gw_cr_busy(&s));
    live(&s, "user:a", 2, 1, 3);
    CHECK_STR(offsets(), "1,2,3,4");
    CHECK(!gw_cr_busy(&s));
    CHECK_EQ(W.nreqs, 0);
    gw_cr_free(&s, &ops, NULL);
    CHECK_EQ(W.live_objs, 0);
}

static void test_gap_recovered_from_history(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    live(&s, "user:a", 1, 1, 0);
    live(&s, "user:a", 3, 1, 1);
    gw_cr_tick(&s, &cfg, &ops, NULL, 50);
    CHECK_EQ(W.nreqs, 0);
    gw_cr_tick(&s, &cfg, &ops, NULL, 101);
    REQUIRE(W.nreqs == 1);
    CHECK_EQ(W.reqs[0].after, 1);
    reply(&s, "user:a", W.reqs[0].id, 2, 3, false, 3, 1, true, 102);
    CHECK_STR(offsets(), "1,2,3"); /* no notice: the client never noticed */
    live(&s, "user:a", 2, 1, 103); /* the late live copy */
    CHECK_STR(offsets(), "1,2,3");
    gw_cr_free(&s, &ops, NULL);
    CHECK_EQ(W.live_objs, 0);
}

static void test_no_answer_times_out(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    gw_cr_position(&s, &cfg, "user:a", 6, 10, "e1", 2);
    gw_cr_start(&s, &cfg, &ops, NULL, "user:a", 6, 0);
    live(&s, "user:a", 12, 1, 1);
    CHECK(gw_cr_tick(&s, &cfg, &ops, NULL, 4999));
    CHECK_EQ(W.nlog, 0);
    gw_cr_tick(&s, &cfg, &ops, NULL, 5000);
    CHECK_STR(offsets(), "12,missed@12");
    /* the answer after all: ignored */
    reply(&s, "user:a", W.reqs[0].id, 11, 12, false, 12, 1, true, 5001);
    CHECK_STR(offsets(), "12,missed@12");
    CHECK_EQ(W.events[GW_CR_EV_LATE], 1);
    gw_cr_free(&s, &ops, NULL);
    CHECK_EQ(W.live_objs, 0);
}

static void test_held_bytes_bounded(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    gw_cr_cfg_t small = cfg;
    small.max_held_bytes = 25;
    gw_cr_position(&s, &small, "user:a", 6, 0, "", 0);
    gw_cr_start(&s, &small, &ops, NULL, "user:a", 6, 0);
    for (uint64_t o = 1; o <= 3; o++) {
        tmsg_t *t = mk(o, 1);
        gw_cr_live(&s, &small, &ops, NULL, "user:a", 6, o, "e1", 2, t, 10, 1);
        op_unref(NULL, t);
    }
    CHECK_STR(offsets(), "1,2,3,missed@3");
    CHECK_EQ(W.events[GW_CR_EV_OVERFLOW], 1);
    gw_cr_free(&s, &ops, NULL);
    CHECK_EQ(W.live_objs, 0);
}

static void test_paged_answer_and_repeat(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    gw_cr_position(&s, &cfg, "user:a", 6, 0, "", 0);
    gw_cr_start(&s, &cfg, &ops, NULL, "user:a", 6, 0);
    uint32_t id = W.reqs[0].id;
    reply(&s, "user:a", id, 1, 2, true, 0, 1, false, 1);
    reply(&s, "user:a", id, 1, 2, true, 0, 1, false, 1); /* a repeated Recover's page */
    reply(&s, "user:a", id, 3, 4, false, 4, 1, true, 2);
    reply(&s, "user:a", id, 3, 4, false, 4, 1, true, 2);
    CHECK_STR(offsets(), "1,2,3,4,ok@4");
    gw_cr_free(&s, &ops, NULL);
    CHECK_EQ(W.live_objs, 0);
}

static void test_epoch_reset_live(void)
{
    reset_world();
    gw_chans_t s;
    gw_cr_init(&s);
    live(&s, "user:a", 7, 1, 0);
    live(&s, "user:a", 1, 2, 0);
    live(&s, "user:a", 2, 2, 0);
    CHECK_STR(offsets(), "7,1e2,missed@1e2,2e2");
    gw_cr_free(&s, &ops, NULL);
}

/* ---- simulator -------------------------------------------------------------------------------- */

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static int pct(int p) { return (int)(rnd() % 100) < p; }

typedef struct inflight {
    int at;          /* step it arrives */
    int chan;
    uint64_t offset;
    int epoch;
} inflight_t;

typedef struct pending_reply {
    int at;
    req_t r;
    uint64_t next;   /* next offset to page from (0: not started) */
} pending_t;

typedef struct hist {
    int epoch;
    uint64_t top;
    uint64_t first;  /* oldest offset kept (top + 1 when empty) */
} hist_t;

#define MAXIN 4096
static inflight_t inq[MAXIN];
static int ninq;
static pending_t pend[MAXR];
static int npend;

static const char *chan_name(int c) { return c ? "room:r" : "user:a"; }

typedef struct profile {
    int drop, dup, delay, trim, reset, noanswer, twice, page;
    int shortcut; /* % of answers that end early and still say ok (an API that leaves some out) */
} profile_t;

/* One run. Returns 0 or -1 (with the seed and log printed). */
static int sim_run(uint64_t seed, const profile_t *pf, bool lossless)
{
    reset_world();
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    ninq = npend = 0;
    hist_t h[2] = {{1, 0, 1}, {1, 0, 1}};
    gw_chans_t s;
    gw_cr_init(&s);
    /* the client already had some: history 1..k, position p <= k */
    uint64_t pos[2];
    bool joined_room = false;
    for (int c = 0; c < 2; c++) {
        h[c].top = rnd() % 20;
        pos[c] = h[c].top ? rnd() % (h[c].top + 1) : 0;
        if (pf->trim && pct(30))
            h[c].first = 1 + rnd() % (h[c].top + 1);
        char e[8];
        snprintf(e, sizeof e, "e%d", h[c].epoch);
        bool any = pct(10); /* the client's epoch "": any */
        gw_cr_position(&s, &cfg, chan_name(c), 6, pos[c], any ? "" : e, any ? 0 : strlen(e));
    }
    int64_t now = 0;
    W.cur_chan = 0;
    gw_cr_start(&s, &cfg, &ops, NULL, "user:a", 6, now);
    int steps = 150 + (int)(rnd() % 150);
    for (int step = 0; step < steps + 400; step++) {
        now += 10;
        bool pushing = step < steps;
        if (!joined_room && (step == 5 || !pushing)) {
            joined_room = true;
            W.cur_chan = 1;
            gw_cr_start(&s, &cfg, &ops, NULL, "room:r", 6, now);
        }
        /* a push: into the history, then live (maybe not, twice, late) */
        if (pushing && pct(60)) {
            int c = (int)(rnd() % 2);
            if (pf->reset && pct(1)) {
                h[c].epoch++;
                h[c].top = 0;
                h[c].first = 1;
            }
            uint64_t off = ++h[c].top;
            int copies = pct(pf->drop) ? 0 : pct(pf->dup) ? 2 : 1;
            /* the room's live messages only reach members */
            if (c == 1 && !joined_room)
                copies = 0;
            for (int k = 0; k < copies && ninq < MAXIN; k++)
                inq[ninq++] = (inflight_t){step + (pct(pf->delay) ? (int)(rnd() % 8) : 0), c,
                                           off, h[c].epoch};
            if (pf->trim && pct(5) && h[c].top >= h[c].first)
                h[c].first += 1 + rnd() % (h[c].top - h[c].first + 1);
        }
        /* arrivals this step, in random order among themselves */
        for (int i = 0; i < ninq;) {
            if (inq[i].at <= step && pct(70)) {
                inflight_t m = inq[i];
                inq[i] = inq[--ninq];
                live(&s, chan_name(m.chan), m.offset, m.epoch, now);
            } else {
                i++;
            }
        }
        /* requests become pending answers */
        for (int i = 0; i < W.nreqs; i++) {
            if (pct(pf->noanswer))
                continue;
            int times = pct(pf->twice) ? 2 : 1;
            for (int k = 0; k < times && npend < MAXR; k++)
                pend[npend++] = (pending_t){step + 1 + (int)(rnd() % 20), W.reqs[i], 0};
        }
        W.nreqs = 0;
        /* answers: one page per due answer per step, oldest first */
        for (int i = 0; i < npend; i++) {
            pending_t *p = &pend[i];
            if (p->at > step)
                continue;
            hist_t *hh = &h[p->r.chan];
            const char *name = chan_name(p->r.chan);
            bool same = !p->r.epoch || p->r.epoch == hh->epoch;
            if (!p->next)
                p->next = same ? p->r.after + 1 : hh->top + 1;
            bool ok = same && p->r.after + 1 >= hh->first && p->r.after <= hh->top;
            uint64_t a = p->next < hh->first ? hh->first : p->next;
            uint64_t page = pf->page ? 1 + rnd() % 5 : 1000;
            uint64_t b = a + page - 1;
            bool more = b < hh->top;
            if (!more)
                b = hh->top;
            if (more && pct(pf->shortcut))
                more = false; /* ends here, claims everything: the gateway must not believe it */
            reply(&s, name, p->r.id, a, b, more, hh->top, hh->epoch, ok && !more ? ok : ok,
                  now);
            if (more) {
                p->next = b + 1;
                p->at = step + 1;
            } else {
                pend[i] = pend[--npend];
                i--;
            }
        }
        gw_cr_tick(&s, &cfg, &ops, NULL, now);
        if (!pushing && !ninq && !npend && !gw_cr_busy(&s))
            break;
    }
    /* quiesce: timeouts fire */
    for (int i = 0; i < 20 && gw_cr_busy(&s); i++) {
        now += cfg.recover_timeout_ns;
        gw_cr_tick(&s, &cfg, &ops, NULL, now);
        npend = 0;
    }
    int bad = 0;
    char why[200] = "";
    if (gw_cr_busy(&s)) {
        bad = 1;
        snprintf(why, sizeof why, "still busy after quiescing");
    }
    /* C1, C2 per channel; C4 when lossless */
    for (int c = 0; c < 2 && !bad; c++) {
        uint64_t last = pos[c];
        int ep = 0;
        bool jump = false, seen_missed = false;
        uint64_t delivered = 0;
        for (int i = 0; i < W.nlog && !bad; i++) {
            frame_t *f = &W.log[i];
            if (f->chan != c)
                continue;
            if (f->notice) {
                if (f->recovered && jump) {
                    bad = 1;
                    snprintf(why, sizeof why, "C2: chan %d notice recovered after a jump", c);
                }
                if (!f->recovered) {
                    jump = false;
                    seen_missed = true;
                }
                last = f->offset;
                ep = f->epoch;
                continue;
            }
            if (ep && f->epoch == ep && f->offset <= last && delivered) {
                bad = 1;
                snprintf(why, sizeof why, "C1: chan %d offset %llu after %llu", c,
                         (unsigned long long)f->offset, (unsigned long long)last);
            }
            if (ep && f->epoch != ep)
                jump = true;
            else if (f->offset != last + 1)
                jump = true;
            last = f->offset;
            ep = f->epoch;
            delivered++;
        }
        if (!bad && jump) {
            bad = 1;
            snprintf(why, sizeof why, "C2: chan %d ends after a jump with no notice", c);
        }
        if (!bad && lossless) {
            /* every offset after the position, once, in order, and no missed notice */
            if (seen_missed) {
                bad = 1;
                snprintf(why, sizeof why, "C4: chan %d told missed without a loss", c);
            } else if (last != h[c].top) {
                bad = 1;
                snprintf(why, sizeof why, "C4: chan %d ends at %llu, history top %llu", c,
                         (unsigned long long)last, (unsigned long long)h[c].top);
            }
        }
    }
    gw_cr_free(&s, &ops, NULL);
    if (!bad && W.live_objs != 0) {
        bad = 1;
        snprintf(why, sizeof why, "C3: %ld messages leaked", W.live_objs);
    }
    if (bad) {
        fprintf(stderr, "seed %llu: %s (positions u%llu r%llu)\n  user: %s\n", (unsigned long long)seed,
                why, (unsigned long long)pos[0], (unsigned long long)pos[1], frames(0));
        fprintf(stderr, "  room: %s\n", frames(1));
        return -1;
    }
    return 0;
}

static int sim_many(const profile_t *pf, bool lossless, int n)
{
    const char *one = getenv("CHANREC_SEED");
    if (one)
        return sim_run(strtoull(one, NULL, 10), pf, lossless);
    int fails = 0;
    for (int i = 1; i <= n && fails < 3; i++)
        if (sim_run((uint64_t)i, pf, lossless) < 0)
            fails++;
    return fails;
}

static void test_sim_lossless_reordered(void)
{
    /* reordered, duplicated, answers late, twice, paged: everything arrives, in order */
    profile_t pf = {.dup = 10, .delay = 40, .twice = 10, .page = 1};
    CHECK_EQ(sim_many(&pf, true, 3000), 0);
}

static void test_sim_lost_live_recovered(void)
{
    /* live messages lost: recovered from the history by the gap that follows */
    profile_t pf = {.drop = 10, .dup = 5, .delay = 30, .twice = 5, .page = 1};
    CHECK_EQ(sim_many(&pf, false, 3000), 0);
}

static void test_sim_everything(void)
{
    profile_t pf = {.drop = 10, .dup = 10, .delay = 40, .trim = 1, .reset = 1, .noanswer = 10,
                    .twice = 10, .page = 1, .shortcut = 10};
    CHECK_EQ(sim_many(&pf, false, 4000), 0);
}

int main(void)
{
    RUN(test_live_in_order_dups_dropped);
    RUN(test_recover_then_held_live);
    RUN(test_recover_trimmed_says_missed);
    RUN(test_recover_other_epoch);
    RUN(test_room_waits_for_join);
    RUN(test_gap_filled_by_reordered);
    RUN(test_gap_recovered_from_history);
    RUN(test_no_answer_times_out);
    RUN(test_held_bytes_bounded);
    RUN(test_paged_answer_and_repeat);
    RUN(test_epoch_reset_live);
    RUN(test_sim_lossless_reordered);
    RUN(test_sim_lost_live_recovered);
    RUN(test_sim_everything);
    return TEST_REPORT();
}
