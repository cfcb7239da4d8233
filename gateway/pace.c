/* pace.c: when a consumer thread takes its work (see pace.h for the rules R1-R7). Pure: the
 * caller's thread only, no I/O, time passed in. */
#include "pace.h"

#include <string.h>

void pace_init(pace_t *p, int64_t window_ns)
{
    memset(p, 0, sizeof *p);
    p->mode_ns = window_ns < 0 ? PACE_AUTO : window_ns;
}

void pace_set_lag(pace_t *p, int lag16) { p->lag16 = lag16 < 0 ? 0 : lag16 > 15 ? 15 : lag16; }

static bool is_auto(const pace_t *p) { return p->mode_ns == PACE_AUTO; }

/* R2: the window that carries PACE_TARGET items at `items` per `elapsed` ns. */
static int64_t auto_window(uint64_t items, int64_t elapsed)
{
    if (!items)
        return PACE_MAX_NS;
    double w = (double)PACE_TARGET * (double)elapsed / (double)items;
    int64_t q = PACE_MAX_NS; /* the largest of MAX, MAX/2, MAX/4 ... that is <= w (R3) */
    while (q / 2 >= PACE_MIN_NS && (double)q > w)
        q /= 2;
    return q;
}

/* R3: the next take. Auto: the first point of the window's grid (multiples of the window on
 * the monotonic clock, shifted by lag16/16 of a window) after now; fixed: the previous
 * deadline + W, or now + W when the thread ran late. Either way in (now, now + W]. */
static int64_t next_take(const pace_t *p, int64_t now, int64_t from)
{
    if (p->mode_ns != PACE_AUTO) {
        int64_t d = from + p->win;
        return d <= now ? now + p->win : d;
    }
    int64_t off = p->win * p->lag16 / 16, r = (now - off) % p->win;
    if (r < 0)
        r += p->win;
    return now - r + p->win;
}

static void enter(pace_t *p, int64_t now, int64_t win)
{
    p->polling = true;
    p->win = win;
    p->deadline = next_take(p, now, now);
    p->win_items = 0;
    p->quiet = 0;
    p->eval_start = now;
    p->eval_windows = 0;
    p->eval_items = 0;
    p->probed = false;
    p->last_end = PACE_END_NONE;
    p->st.spells++;
}

static void leave(pace_t *p, int64_t now, pace_end_t why)
{
    p->polling = false;
    p->last_end = why;
    p->per_wakes = 0; /* the next EVENT period starts afresh */
    if (!is_auto(p))
        return;
    if (!p->probed && why != PACE_END_QUIET) { /* R6: a failed try */
        p->st.failed++;
        p->hold = p->hold ? p->hold * 2 : PACE_HOLD_MIN_NS;
        if (p->hold > PACE_HOLD_MAX_NS)
            p->hold = PACE_HOLD_MAX_NS;
        p->hold_until = now + p->hold;
    }
}

/* EVENT: a turn that took items. Returns true when POLL should start (R1). */
static bool event_turn(pace_t *p, int64_t now, uint32_t items)
{
    if (!is_auto(p))
        return true; /* fixed: from the first turn with items */
    if (!p->per_wakes) {
        p->per_start = p->sub_start = now;
        p->per_wakes = 1;
        p->per_items = p->sub_items = items;
        p->sub_min = -1;
        return false;
    }
    p->per_wakes++;
    p->per_items += items;
    p->sub_items += items;
    if (now - p->sub_start >= PACE_PERIOD_NS / PACE_SUBS) { /* a part ends (R5) */
        double r = (double)p->sub_items / (double)(now - p->sub_start);
        if (p->sub_min < 0 || r < p->sub_min)
            p->sub_min = r;
        p->sub_start = now;
        p->sub_items = 0;
    }
    int64_t elapsed = now - p->per_start;
    if (elapsed < PACE_PERIOD_NS)
        return false;
    uint32_t wakes = p->per_wakes;
    uint64_t n = p->per_items;
    p->per_wakes = 0;
    /* wakes / elapsed >= PACE_ENTER_WAKES / PACE_MAX_NS */
    if ((double)wakes * PACE_MAX_NS < (double)PACE_ENTER_WAKES * (double)elapsed)
        return false;
    if (now < p->hold_until)
        return false;
    p->entry_rate = p->sub_min >= 0 ? p->sub_min : (double)n / (double)elapsed;
    p->win = auto_window(n, elapsed);
    return true;
}

/* POLL, at the end of a window: R4/R5 evaluation. Returns the reason to leave, or NONE. */
static pace_end_t evaluate(pace_t *p, int64_t now)
{
    int64_t elapsed = now - p->eval_start;
    if (elapsed <= 0)
        elapsed = 1;
    uint64_t n = p->eval_items;
    p->last_rate = (double)n / (double)elapsed;
    if (n < (uint64_t)PACE_MIN_BATCH * p->eval_windows)
        return PACE_END_SMALL;
    if (!p->probed && (double)n / (double)elapsed * PACE_CLOSED_DIV < p->entry_rate)
        return PACE_END_CLOSED;
    if (!p->probed) {
        p->probed = true;
        p->hold = 0; /* R6: a try that paid clears the hold-off */
        p->hold_until = 0;
    }
    p->win = auto_window(n, elapsed);
    p->eval_start = now;
    p->eval_windows = 0;
    p->eval_items = 0;
    return PACE_END_NONE;
}

const char *pace_end_name(pace_end_t why)
{
    static const char *const names[] = {"none", "quiet", "small", "closed_loop"};
    return why <= PACE_END_CLOSED ? names[why] : "?";
}

pace_act_t pace_turn(pace_t *p, int64_t now, uint32_t items)
{
    if (!p->mode_ns)
        return PACE_SLEEP;
    if (!p->polling) {
        if (!items || !event_turn(p, now, items))
            return PACE_SLEEP;
        enter(p, now, is_auto(p) ? p->win : p->mode_ns);
        return PACE_ENTER;
    }
    p->win_items += items;
    if (now < p->deadline)
        return PACE_WAIT; /* an early turn: the window goes on (R3) */
    uint32_t n = p->win_items;
    p->win_items = 0;
    p->st.windows++;
    p->st.items += n;
    p->quiet = n ? 0 : p->quiet + 1;
    if (p->quiet >= (is_auto(p) ? PACE_AUTO_QUIET : PACE_QUIET)) { /* R7 */
        leave(p, now, PACE_END_QUIET);
        return PACE_LEAVE;
    }
    if (is_auto(p)) {
        p->eval_windows++;
        p->eval_items += n;
        if (p->eval_windows >= (p->probed ? PACE_EVAL : PACE_PROBE)) {
            pace_end_t why = evaluate(p, now);
            if (why != PACE_END_NONE) {
                leave(p, now, why);
                return PACE_LEAVE;
            }
        }
    }
    p->deadline = next_take(p, now, p->deadline); /* R3 */
    return PACE_WAIT;
}

const char *pace_check(const pace_t *p, bool was_polling, pace_act_t act, int64_t now)
{
    bool in_auto = is_auto(p);
    switch (act) { /* I2 */
    case PACE_SLEEP:
        if (was_polling || p->polling)
            return "I2: SLEEP while polling";
        break;
    case PACE_ENTER:
        if (was_polling || !p->polling)
            return "I2: ENTER not from EVENT into POLL";
        break;
    case PACE_WAIT:
        if (!was_polling || !p->polling)
            return "I2: WAIT out of POLL";
        break;
    case PACE_LEAVE:
        if (!was_polling || p->polling)
            return "I2: LEAVE not from POLL into EVENT";
        break;
    default:
        return "unknown action";
    }
    if (!p->mode_ns && (p->polling || act != PACE_SLEEP))
        return "I3: off but polling";
    if (p->polling) {
        int64_t ceiling = pace_ceiling(p);
        if (p->deadline <= now)
            return "I1: deadline not in the future";
        if (p->deadline - now > ceiling)
            return "I1: deadline beyond the ceiling";
        if (in_auto && (p->win < PACE_MIN_NS || p->win > PACE_MAX_NS))
            return "I4: auto window out of [PACE_MIN_NS, PACE_MAX_NS]";
        if (!in_auto && p->win != p->mode_ns)
            return "I4: fixed window is not W";
        if (p->quiet >= (in_auto ? PACE_AUTO_QUIET : PACE_QUIET))
            return "I5: still polling after the quiet windows";
    }
    if (p->hold < 0 || p->hold > PACE_HOLD_MAX_NS || p->hold_until > now + PACE_HOLD_MAX_NS)
        return "I6: hold-off beyond PACE_HOLD_MAX_NS";
    return NULL;
}
