/* pace.h: when a consumer thread takes its work: at once, or once per window (wake-up
 * coalescing, fixed or adaptive). No I/O and no clock of its own: the caller passes the time.
 *
 * A consumer (a service thread: client reads and the writers' commands; an API-node writer:
 * the service threads' events) either sleeps until an event (EVENT) or polls (POLL): its
 * producers stop signalling (its wake flag stays raised) and it takes whatever arrived once
 * per window, at a deadline. A wake-up (a context switch, an eventfd or pipe write) costs more
 * than handling a small message on these machines, so when many arrive per wake-up interval,
 * one wake-up that carries many is cheaper; when they arrive far apart, waiting only adds
 * latency. After every loop turn the caller reports the items the turn took and does what
 * pace_turn answers. Times are monotonic nanoseconds.
 *
 * Modes (pace_init):
 *   off    window 0: always EVENT (wake per event).
 *   fixed  window W > 0 (--coalesce W, --svc-coalesce W): POLL from the first turn that took
 *          items, windows of W, back to EVENT after PACE_QUIET windows in a row without items.
 *   auto   PACE_AUTO (the default): POLL only while it pays, by the rules below.
 *
 * Rules of auto (constants below):
 *   R1 sparse traffic waits for nothing. In EVENT every item is taken when it wakes the
 *      thread. POLL starts only when, over a period of at least PACE_PERIOD_NS, turns that
 *      took items came at least PACE_ENTER_WAKES per PACE_MAX_NS (on average closer than
 *      PACE_MAX_NS / PACE_ENTER_WAKES), and no hold-off (R6) is running. A burst that arrives
 *      at once is one wake-up already and starts nothing.
 *   R2 the window: W = PACE_TARGET items' worth of time at the measured arrival rate (items
 *      per ns of the entry period, then of each evaluation), rounded down to PACE_MAX_NS
 *      halved 0, 1 or 2 times (1 ms, 500 us, 250 us = PACE_MIN_NS): a window carries up to
 *      PACE_TARGET items, and waits less when they come faster.
 *   R3 the bound: while polling, each take is at a deadline at most W ahead. Auto: the next
 *      point of a grid shared by every thread of the process (multiples of W on the
 *      monotonic clock; the three window lengths nest), shifted by pace_set_lag: service
 *      threads take at the grid points, writers a little after, so that the events the
 *      service threads hand over at a grid point leave for the API node in the same window
 *      and its answers are back for the next grid point: a message then waits for at most
 *      two windows on its way through, where unaligned windows could add up to three.
 *      Fixed: the previous deadline + W (or W after the turn, when the thread ran late).
 *      An item that arrives after a take waits at most W plus the thread's own work. Turns before the deadline (a writer woken by its socket) take items
 *      too and move nothing. Leaving POLL (R4-R6) drains once more and never waits.
 *   R4 it must pay: every PACE_EVAL windows (the first time after PACE_PROBE), POLL ends if
 *      the windows carried fewer than PACE_MIN_BATCH items each on average: a wake-up per
 *      window would then save next to none. 3, not 2: one closed-loop client gives a service
 *      thread exactly 2 per window (the answer to message n, then message n+1 that the
 *      client sent at once), however slow the thread is (under TSan the round trip is about
 *      a window long and R5 does not see it).
 *   R5 it must not slow the arrivals: at the first evaluation, POLL ends if the item rate
 *      fell below 1/PACE_CLOSED_DIV of the entry period's. Then arrivals wait on our own
 *      answers (a client that sends its next message when the echo of the last comes back):
 *      coalescing would slow them down, not batch them. The entry rate is the lowest of the
 *      period's PACE_SUBS parts, so that a backlog taken at once (the thread or its clients
 *      were descheduled for a while) does not pass for the usual rate.
 *   R6 hold-off: a POLL spell that ended at its first evaluation (R4 or R5: a failed try)
 *      doubles the hold-off (PACE_HOLD_MIN_NS to PACE_HOLD_MAX_NS) during which R1 does not
 *      start POLL; a spell that passed its first evaluation clears it. A closed-loop client
 *      thus sees a try of PACE_PROBE windows at most once per PACE_HOLD_MAX_NS.
 *   R7 quiet: PACE_AUTO_QUIET windows in a row without items end POLL (fixed mode:
 *      PACE_QUIET). Polling an idle thread costs a wake-up per window, so a few more in auto
 *      keep a short pause of the clients (or a descheduled client) from ending a spell that
 *      pays; thinner traffic ends it by R4.
 *
 * Invariants (pace_check verifies them after every step: the seeded simulation in
 * tests/unit/test_gw_pace.c, fuzz/fuzz_pace.c). `now` never decreases; the ceiling is
 * PACE_MAX_NS in auto and W in fixed mode.
 *   I1 bounded wait: a turn that leaves the consumer polling (ENTER, WAIT) leaves its next
 *      take at now < deadline <= now + ceiling. An item thus waits at most the ceiling plus
 *      the consumer's own work for one turn, however the arrivals and the turns fall.
 *   I2 EVENT adds nothing: out of POLL the answer is SLEEP (take items as they wake the
 *      thread) or ENTER; SLEEP and ENTER only out of POLL, WAIT and LEAVE only in POLL.
 *   I3 off never polls.
 *   I4 window: auto in [PACE_MIN_NS, PACE_MAX_NS], fixed exactly W.
 *   I5 no endless polling: a polling consumer that takes nothing leaves after
 *      PACE_AUTO_QUIET (auto) or PACE_QUIET (fixed) windows, so an idle thread goes back to
 *      sleeping on events and a lone message after a quiet spell is taken when it arrives.
 *   I6 the hold-off never exceeds PACE_HOLD_MAX_NS (R1 resumes within it: no starvation of
 *      coalescing either).
 *
 * One pace_t per consumer thread, used by that thread only. */
#ifndef GW_PACE_H
#define GW_PACE_H

#include <stdbool.h>
#include <stdint.h>

#define PACE_AUTO (-1)            /* pace_init window: adaptive */
#define PACE_MAX_NS 1000000       /* auto: longest window, the most an item waits (R3) */
#define PACE_MIN_NS 250000        /* auto: shortest window (a shorter sleep saves little) */
#define PACE_WRITER_LAG16 3       /* auto: writers take 3/16 of a window after the grid (R3) */
#define PACE_TARGET 32            /* auto: items a window is sized to carry (R2) */
#define PACE_ENTER_WAKES 2        /* auto: wake-ups per PACE_MAX_NS that start POLL (R1) */
#define PACE_PERIOD_NS 8000000    /* auto: EVENT measurement period (R1) */
#define PACE_PROBE 8              /* auto: windows before the first evaluation (R4, R5) */
#define PACE_EVAL 32              /* auto: windows between later evaluations (R4) */
#define PACE_MIN_BATCH 3          /* auto: items per window POLL must average (R4) */
#define PACE_CLOSED_DIV 2         /* auto: rate drop that means a closed loop (R5) */
#define PACE_SUBS 4               /* auto: parts of the EVENT period (R5) */
#define PACE_HOLD_MIN_NS 16000000 /* auto: first hold-off after a failed try (R6) */
#define PACE_HOLD_MAX_NS 1000000000
#define PACE_QUIET 4              /* fixed: windows without items that end POLL (R7) */
#define PACE_AUTO_QUIET 16        /* auto: the same */

/* What the caller does after a turn. */
typedef enum {
    PACE_SLEEP, /* EVENT: sleep until an event (its wake flag lowered as usual) */
    PACE_ENTER, /* start polling: raise the wake flag (producers stop signalling), take what
                   is there, then sleep until pace_deadline() */
    PACE_WAIT,  /* polling: sleep until pace_deadline() (or an earlier event), then take */
    PACE_LEAVE, /* stop polling: lower the wake flag, take once more, sleep until an event */
} pace_act_t;

/* Why the last POLL spell ended (statistics). */
typedef enum { PACE_END_NONE, PACE_END_QUIET, PACE_END_SMALL, PACE_END_CLOSED } pace_end_t;

/* Counters since pace_init, for metrics (the caller publishes deltas). */
typedef struct pace_stats {
    uint64_t windows; /* windows taken while polling */
    uint64_t items;   /* items those windows carried (items / windows = batch per wake-up) */
    uint64_t spells;  /* POLL spells started */
    uint64_t failed;  /* spells ended at their first evaluation (R4/R5: did not pay) */
} pace_stats_t;

typedef struct pace {
    int64_t mode_ns;    /* PACE_AUTO, 0 (off) or the fixed window */
    bool polling;
    int64_t win;        /* current window (ns) */
    int64_t deadline;   /* polling: the next take */
    uint32_t win_items; /* items of the window in progress */
    int quiet;          /* windows in a row without items */
    /* auto, EVENT: the measurement period */
    int64_t per_start;
    uint32_t per_wakes;
    uint64_t per_items;
    int64_t sub_start;  /* the part of the period in progress (R5) */
    uint64_t sub_items;
    double sub_min;     /* lowest items per ns of the parts so far */
    /* auto, POLL: the spell */
    double entry_rate;  /* items per ns of the period that started it */
    int64_t eval_start;
    uint32_t eval_windows;
    uint64_t eval_items;
    bool probed;        /* passed its first evaluation */
    double last_rate;   /* items per ns at the last evaluation (statistics) */
    /* auto: hold-off (R6) */
    int64_t hold, hold_until;
    int lag16;          /* auto: deadlines lag16/16 of a window after the grid (R3) */
    pace_end_t last_end;
    pace_stats_t st;
} pace_t;

/* pace_init: window_ns 0 (off), > 0 (fixed) or PACE_AUTO. */
void pace_init(pace_t *p, int64_t window_ns);

/* pace_set_lag: auto deadlines fall lag16/16 (0-15) of a window after the shared grid
 * (R3): 0 for service threads, PACE_WRITER_LAG16 for writers. After pace_init. */
void pace_set_lag(pace_t *p, int lag16);

/* pace_turn: the turn that just ended at `now` took `items` (client reads, commands, ring
 * events; 0 for a turn woken by a timer or by nothing the caller counts). Returns what to do
 * next; after PACE_ENTER and PACE_WAIT, pace_deadline() is when to take next. */
pace_act_t pace_turn(pace_t *p, int64_t now, uint32_t items);

/* pace_on: not off (window 0): pace_turn may say something else than PACE_SLEEP. */
static inline bool pace_on(const pace_t *p) { return p->mode_ns != 0; }
/* pace_polling: in POLL (the caller keeps its wake flag raised). */
static inline bool pace_polling(const pace_t *p) { return p->polling; }
/* pace_deadline: polling: when the next take is due. */
static inline int64_t pace_deadline(const pace_t *p) { return p->deadline; }
/* pace_window: the current window in ns (0 while not polling). */
static inline int64_t pace_window(const pace_t *p) { return p->polling ? p->win : 0; }
/* pace_check: the invariants I1-I6 after a pace_turn at `now` that answered `act`, the
 * consumer polling before it or not. Returns NULL, or which invariant broke and how (a
 * static string). Tests and fuzzing; any thread (reads p only). */
const char *pace_check(const pace_t *p, bool was_polling, pace_act_t act, int64_t now);
/* pace_ceiling: the most a window lasts: PACE_MAX_NS (auto), W (fixed), 0 (off). */
static inline int64_t pace_ceiling(const pace_t *p)
{
    return p->mode_ns == PACE_AUTO ? PACE_MAX_NS : p->mode_ns;
}
/* pace_end_name: "quiet", "small", "closed_loop" (logs). */
const char *pace_end_name(pace_end_t why);
/* pace_stats: counters since pace_init. */
static inline const pace_stats_t *pace_stats(const pace_t *p) { return &p->st; }

#endif
