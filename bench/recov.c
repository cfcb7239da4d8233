/* recov.c: ws-bench recover mode, the client side (see recov.h). */
#include "recov.h"

#include <stdio.h>
#include <string.h>

#include "hist.h"

/* The value after "key": in s (NUL-terminated), or NULL. */
static const char *after_key(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    return p ? p + strlen(key) : NULL;
}

static uint64_t digits(const char *p, int *n)
{
    uint64_t v = 0;
    *n = 0;
    while (p && *p >= '0' && *p <= '9' && *n < 20) {
        v = v * 10 + (uint64_t)(*p++ - '0');
        (*n)++;
    }
    return v;
}

void recov_parse(const uint8_t *p, size_t n, recov_frame_t *f)
{
    char s[RECOV_PREFIX + 1];
    memset(f, 0, sizeof *f);
    if (n > RECOV_PREFIX)
        n = RECOV_PREFIX;
    memcpy(s, p, n);
    s[n] = 0;
    if (strncmp(s, "{\"type\":\"message\"", 17) == 0)
        f->kind = RF_MESSAGE;
    else if (strncmp(s, "{\"type\":\"recovery\"", 18) == 0)
        f->kind = RF_RECOVERY;
    else
        return;
    int k;
    const char *v = after_key(s, "\"offset\":");
    f->offset = digits(v, &k);
    if ((v = after_key(s, "\"epoch\":\""))) {
        size_t i = 0;
        while (v[i] && v[i] != '"' && i < RECOV_EPOCH_MAX) {
            f->epoch[i] = v[i];
            i++;
        }
        f->epoch[i] = 0;
    }
    if (f->kind == RF_RECOVERY) {
        f->recovered = after_key(s, "\"recovered\":true") != NULL;
        return;
    }
    v = after_key(s, "\"data\":\"");
    uint64_t ts = digits(v, &k);
    if (k >= 16 && k < 20)
        f->stamp_ns = (int64_t)ts;
}

void recov_frame(recov_conn_t *c, const recov_frame_t *f, int64_t now, int64_t wall_now,
                 report_t *rep)
{
    if (f->kind == RF_RECOVERY) {
        if (c->phase != RC_RECOVERING) {
            rep->errors[ERR_PROTOCOL]++; /* a notice nobody asked for */
            return;
        }
        if (f->recovered)
            rep->rc_ok++;
        else
            rep->rc_missed++;
        if (!f->recovered)
            rep->errors[ERR_NOT_RECOVERED]++;
        if (f->offset > c->at_drop)
            rep->rc_away += f->offset - c->at_drop;
        rep->rc_recovered += c->recovered;
        hist_record(&rep->recovery, now > c->t_back ? (uint64_t)(now - c->t_back) : 0);
        c->last = f->offset;
        snprintf(c->epoch, sizeof c->epoch, "%s", f->epoch);
        c->phase = RC_LIVE;
        return;
    }
    if (f->kind != RF_MESSAGE) {
        rep->unmatched++;
        return;
    }
    rep->received++;
    rep->t_last_recv = now;
    if (f->stamp_ns)
        hist_record(&rep->latency, wall_now > f->stamp_ns ? (uint64_t)(wall_now - f->stamp_ns) : 0);
    if (!f->offset)
        return; /* not kept: no position */
    bool same = strcmp(c->epoch, f->epoch) == 0;
    if (c->last && same && f->offset <= c->last) {
        rep->rc_dups++;
        rep->errors[ERR_OUT_OF_ORDER]++;
        return;
    }
    if (c->last && same && f->offset != c->last + 1) {
        rep->rc_gaps += f->offset - c->last - 1;
        rep->errors[ERR_GAP] += f->offset - c->last - 1;
    } else if (c->phase == RC_RECOVERING && c->last) {
        c->recovered++; /* the next one, before the notice: recovered in order */
    }
    c->last = f->offset;
    if (!same)
        snprintf(c->epoch, sizeof c->epoch, "%s", f->epoch);
}

void recov_drop(recov_conn_t *c)
{
    c->at_drop = c->last;
    c->phase = RC_AWAY;
}

void recov_back(recov_conn_t *c, int64_t now)
{
    c->t_back = now;
    c->recovered = 0;
    c->phase = c->last ? RC_RECOVERING : RC_LIVE;
}

size_t recov_query(const recov_conn_t *c, uint64_t user, char *out, size_t cap)
{
    if (!c->last) {
        if (cap)
            out[0] = 0;
        return 0;
    }
    int n = snprintf(out, cap, "recover=%llu.%s.user%%3Au%llu", (unsigned long long)c->last,
                     c->epoch, (unsigned long long)user);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}
