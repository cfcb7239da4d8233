/* history_redis.c: the history store in Redis Streams (history.h), shared by every ws-api node
 * of a cluster (--redis). Per channel C, two keys with the same hash tag (one slot on Redis
 * Cluster; scripts touch one tag only):
 *   wsgw:{h:C}:s   stream  the kept messages, entry id "<offset>-0", fields d (payload), b
 *                          ("1": binary), t (push time, ms by Redis's clock). XADD MAXLEN =
 *                          cfg.size (exact); entries older than cfg.ttl_ms are trimmed from
 *                          the head by adds and skipped by reads; PEXPIRE ttl after each add.
 *   wsgw:{h:C}:m   hash    e (epoch), s (newest offset). PEXPIRE cfg.meta_ttl_ms after each
 *                          add. A channel without it starts a new epoch (its stream, if any
 *                          is left, is dropped): offsets of an old epoch never mix with new.
 * Offsets come from HINCRBY inside the add script, so adds from any node are numbered in one
 * order, the order Redis ran them in. A read is one script per page: the position (created
 * with a new epoch when the channel has none, so that a reader's position stays valid) and
 * the entries after the reader's offset up to the newest at the first page, at most 64 and
 * cfg.page_bytes a page; later pages continue up to that first newest offset (what came
 * after it arrives live). A reader sees a gap (recovered = false) wherever an entry it needed
 * was trimmed, aged out or lost between pages.
 *
 * Every call that is accepted answers once (add) or once per page (read) from the reply's
 * callback; a lost reply (Redis away, timeout) answers HIST_ERR_DOWN. Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "history_metrics.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"

/* Lua shared by both scripts. now(): Redis's clock in ms (one clock for every node: a push's
 * age does not depend on which node took it). t(x): an entry's push time. off(id): the offset
 * of an entry id "<offset>-0". */
#define LUA_COMMON                                                                               \
    "local function now()\n"                                                                     \
    "  local t = redis.call('time')\n"                                                           \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                       \
    "end\n"                                                                                      \
    "local function t(x)\n"                                                                      \
    "  local f = x[2]\n"                                                                         \
    "  for i = 1, #f, 2 do if f[i] == 't' then return tonumber(f[i + 1]) end end\n"              \
    "  return 0\n"                                                                               \
    "end\n"                                                                                      \
    "local function off(id) return tonumber(string.match(id, '^(%d+)')) end\n"

/* KEYS: stream, meta. ARGV: payload, binary ("1"/"0"), size, ttl_ms, meta_ttl_ms, new epoch.
 * Returns {offset, epoch}. Age trimming costs one head entry read per add while the head is
 * young; once it is old, up to 16 old entries go per add (each add brings one: it keeps up). */
static redis_script_t add_script = {
    .text = LUA_COMMON
        "local e = redis.call('hget', KEYS[2], 'e')\n"
        "if not e then\n"
        "  e = ARGV[6]\n"
        "  redis.call('del', KEYS[1])\n"
        "  redis.call('hset', KEYS[2], 'e', e, 's', 0)\n"
        "end\n"
        "local ms = now()\n"
        "local o = redis.call('hincrby', KEYS[2], 's', 1)\n"
        "redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[3], o .. '-0', 'd', ARGV[1], 'b', ARGV[2],"
        " 't', ms)\n"
        "local old = ms - tonumber(ARGV[4])\n"
        "local h = redis.call('xrange', KEYS[1], '-', '+', 'COUNT', 1)\n"
        "if #h > 0 and t(h[1]) <= old then\n"
        "  h = redis.call('xrange', KEYS[1], '-', '+', 'COUNT', 16)\n"
        "  local keep = off(h[#h][1]) + 1\n"
        "  for _, x in ipairs(h) do\n"
        "    if t(x) > old then keep = off(x[1]) break end\n"
        "  end\n"
        "  redis.call('xtrim', KEYS[1], 'MINID', keep .. '-0')\n"
        "end\n"
        "redis.call('pexpire', KEYS[1], ARGV[4])\n"
        "redis.call('pexpire', KEYS[2], ARGV[5])\n"
        "return {o, e}\n",
};

/* KEYS: stream, meta. ARGV: from (first offset to scan), upto (0: the newest now), reader's
 * epoch ("": any), max missing (0: no limit), page bytes, ttl_ms, meta_ttl_ms, new epoch.
 * Returns {epoch, newest, give, next, id1, d1, b1, id2, ...}: give 0 when the reader gets no
 * entries (another epoch, too many missing, ahead of the history); next: the first offset not
 * scanned yet. A page holds at most 64 entries and page-bytes of payload (at least one);
 * entries older than ttl_ms are skipped (not given: the reader sees the gap), at most 4096
 * per page. */
static redis_script_t read_script = {
    .text = LUA_COMMON
        "local m = redis.call('hmget', KEYS[2], 'e', 's')\n"
        "local e, top = m[1], tonumber(m[2] or '0')\n"
        "if not e then\n"
        "  e = ARGV[8]\n"
        "  top = 0\n"
        "  redis.call('del', KEYS[1])\n"
        "  redis.call('hset', KEYS[2], 'e', e, 's', 0)\n"
        "  redis.call('pexpire', KEYS[2], ARGV[7])\n"
        "end\n"
        "local from = tonumber(ARGV[1])\n"
        "local upto = tonumber(ARGV[2])\n"
        "if upto == 0 then upto = top end\n"
        "local max = tonumber(ARGV[4])\n"
        "if (ARGV[3] ~= '' and ARGV[3] ~= e) or from > upto + 1 or\n"
        "   (max > 0 and upto - from + 1 > max) then\n"
        "  return {e, top, 0, from}\n"
        "end\n"
        "local out = {e, top, 1, from}\n"
        "local old = now() - tonumber(ARGV[6])\n"
        "local bytes, budget, scanned, cur = 0, tonumber(ARGV[5]), 0, from\n"
        "while cur <= upto and scanned < 4096 do\n"
        "  local h = redis.call('xrange', KEYS[1], cur .. '-0', upto .. '-0', 'COUNT', 64)\n"
        "  if #h == 0 then cur = upto + 1 break end\n"
        "  for _, x in ipairs(h) do\n"
        "    if t(x) > old then\n"
        "      local f, d, b = x[2], '', '0'\n"
        "      for i = 1, #f, 2 do\n"
        "        if f[i] == 'd' then d = f[i + 1] elseif f[i] == 'b' then b = f[i + 1] end\n"
        "      end\n"
        "      if #out >= 4 + 3 * 64 or (#out > 4 and bytes + #d > budget) then\n"
        "        out[4] = cur\n"
        "        return out\n"
        "      end\n"
        "      out[#out + 1] = x[1]\n"
        "      out[#out + 1] = d\n"
        "      out[#out + 1] = b\n"
        "      bytes = bytes + #d\n"
        "    end\n"
        "    cur = off(x[1]) + 1\n"
        "  end\n"
        "  scanned = scanned + #h\n"
        "end\n"
        "out[4] = cur\n"
        "return out\n",
};

typedef struct redis_store {
    history_t h;
    redis_t *r;
} redis_store_t;

#define KEY_MAX (HIST_CHANNEL_MAX + 16)

static void keys(char *s, char *m, const char *chan, size_t clen)
{
    snprintf(s, KEY_MAX, "wsgw:{h:%.*s}:s", (int)clen, chan);
    snprintf(m, KEY_MAX, "wsgw:{h:%.*s}:m", (int)clen, chan);
}

static int down(int rc)
{
    return rc == REDIS_C_NOMEM ? HIST_ERR_NOMEM : HIST_ERR_DOWN;
}

/* ---- add -------------------------------------------------------------------------------- */

typedef struct add_ctx {
    hist_added_fn fn;
    void *ud;
} add_ctx_t;

static bool reply_str(const redisReply *x, const char **s, size_t *n)
{
    if (!x || (x->type != REDIS_REPLY_STRING && x->type != REDIS_REPLY_STATUS))
        return false;
    *s = x->str;
    *n = x->len;
    return true;
}

static bool reply_u64(const redisReply *x, uint64_t *v)
{
    if (!x)
        return false;
    if (x->type == REDIS_REPLY_INTEGER && x->integer >= 0) {
        *v = (uint64_t)x->integer;
        return true;
    }
    if (x->type != REDIS_REPLY_STRING || !x->len || x->len > 20)
        return false;
    char buf[24], *end;
    memcpy(buf, x->str, x->len);
    buf[x->len] = 0;
    *v = strtoull(buf, &end, 10);
    return *end == 0;
}

static void on_added(void *ud, redisReply *reply)
{
    add_ctx_t *c = ud;
    hist_pos_t pos = {0};
    const char *e;
    size_t elen;
    int status = HIST_ERR_DOWN;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply_u64(reply->element[0], &pos.offset) && reply_str(reply->element[1], &e, &elen) &&
        elen <= HIST_EPOCH_MAX) {
        memcpy(pos.epoch, e, elen);
        pos.epoch[elen] = 0;
        status = HIST_OK;
        metrics_inc(hist_m.add_ok);
    } else {
        metrics_inc(hist_m.add_error);
        char q[128];
        log_rl_warn("history add failed in redis", "error=%s",
                    log_quote(q, sizeof q, redis_reply_error(reply)));
    }
    c->fn(c->ud, status, status == HIST_OK ? &pos : NULL);
    free(c);
}

static int rs_add(history_t *h, const char *chan, size_t clen, const uint8_t *data, size_t len,
                  bool binary, uint64_t now_ms, hist_added_fn fn, void *ud)
{
    (void)now_ms; /* (the scripts use Redis's clock: one for every node) */
    redis_store_t *st = (redis_store_t *)h;
    add_ctx_t *c = malloc(sizeof *c);
    if (!c)
        return HIST_ERR_NOMEM;
    c->fn = fn;
    c->ud = ud;
    char ks[KEY_MAX], km[KEY_MAX], size[24], ttl[24], mttl[24], ep[HIST_EPOCH_MAX + 1];
    keys(ks, km, chan, clen);
    snprintf(size, sizeof size, "%llu", (unsigned long long)h->cfg.size);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)h->cfg.ttl_ms);
    snprintf(mttl, sizeof mttl, "%llu", (unsigned long long)h->cfg.meta_ttl_ms);
    history_new_epoch(ep);
    const char *argv[] = {ks, km, len ? (const char *)data : "", binary ? "1" : "0", size, ttl,
                          mttl, ep};
    size_t lens[] = {strlen(ks), strlen(km), len, 1, strlen(size), strlen(ttl), strlen(mttl),
                     strlen(ep)};
    int rc = redis_eval(st->r, &add_script, on_added, c, 2, 8, argv, lens);
    if (rc != REDIS_C_OK) {
        free(c);
        return down(rc);
    }
    return HIST_OK;
}

/* ---- read ------------------------------------------------------------------------------- */

typedef struct read_ctx {
    redis_store_t *st;
    hist_page_fn fn;
    void *ud;
    char *chan;
    size_t clen;
    uint64_t expect;       /* the next offset the reader needs (anything else: a gap) */
    uint64_t cursor;       /* the first offset the next page scans */
    uint64_t upto;         /* the newest at the first page */
    bool first;            /* no page came yet */
    char epoch[HIST_EPOCH_MAX + 1]; /* the reader's, then the history's */
    bool recovered;        /* so far */
} read_ctx_t;

static int read_page(read_ctx_t *c);

static void read_end(read_ctx_t *c, int status, const hist_page_t *pg)
{
    if (status != HIST_OK) {
        hist_page_t e = {.status = status};
        c->fn(c->ud, &e);
    } else {
        c->fn(c->ud, pg);
    }
    free(c->chan);
    free(c);
}

/* The offset of an entry id "<offset>-0" (0: not one). */
static uint64_t id_offset(const redisReply *id)
{
    const char *s;
    size_t n;
    if (!reply_str(id, &s, &n) || n < 3 || n > 23 || s[n - 2] != '-' || s[n - 1] != '0')
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n - 2; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

static void on_page(void *ud, redisReply *reply)
{
    read_ctx_t *c = ud;
    const char *e;
    size_t elen;
    uint64_t top, give, next;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 4 ||
        (reply->elements - 4) % 3 || (reply->elements - 4) / 3 > 64 ||
        !reply_str(reply->element[0], &e, &elen) || elen > HIST_EPOCH_MAX ||
        !reply_u64(reply->element[1], &top) || !reply_u64(reply->element[2], &give) ||
        !reply_u64(reply->element[3], &next)) {
        char q[128];
        log_rl_warn("history read failed in redis: client told recovered=false", "error=%s",
                    log_quote(q, sizeof q, redis_reply_error(reply)));
        read_end(c, HIST_ERR_DOWN, NULL);
        return;
    }
    if (c->first) {
        c->first = false;
        c->upto = top;
        c->recovered = give != 0;
        memcpy(c->epoch, e, elen);
        c->epoch[elen] = 0;
    } else if (strlen(c->epoch) != elen || memcmp(c->epoch, e, elen) != 0 || !give) {
        c->recovered = false; /* the history restarted between two pages */
        give = 0;
    }
    size_t n = give ? (reply->elements - 4) / 3 : 0;
    hist_entry_t ents[64];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *d = reply->element[5 + 3 * i], *b = reply->element[6 + 3 * i];
        uint64_t off = id_offset(reply->element[4 + 3 * i]);
        if (!off || off < c->expect || d->type != REDIS_REPLY_STRING)
            continue; /* (not ours: skipped, and seen as a gap) */
        if (off != c->expect)
            c->recovered = false; /* trimmed (by size or age) */
        ents[k++] = (hist_entry_t){off, (const uint8_t *)d->str, d->len,
                                   b->type == REDIS_REPLY_STRING && b->len == 1 && b->str[0] == '1'};
        c->expect = off + 1;
    }
    metrics_add(hist_m.read_msgs, k);
    uint64_t before = c->cursor;
    if (give && next > c->cursor)
        c->cursor = next;
    /* another page while the scan moves on and has not passed the newest of the first page */
    bool more = give && c->cursor > before && c->cursor <= c->upto;
    if (!more && give && c->expect <= c->upto)
        c->recovered = false; /* (what was left up to the newest was gone: trimmed, aged out) */
    hist_page_t pg = {.status = HIST_OK, .pubs = ents, .n = k, .more = more, .top = c->upto,
                      .epoch = c->epoch, .recovered = c->recovered};
    if (!more) {
        read_end(c, HIST_OK, &pg);
        return;
    }
    c->fn(c->ud, &pg);
    int rc = read_page(c);
    if (rc != HIST_OK)
        read_end(c, rc, NULL);
}

static int read_page(read_ctx_t *c)
{
    const hist_cfg_t *cfg = &c->st->h.cfg;
    char ks[KEY_MAX], km[KEY_MAX], from[24], upto[24], max[24], pb[24], ttl[24], mttl[24];
    char ep[HIST_EPOCH_MAX + 1];
    keys(ks, km, c->chan, c->clen);
    snprintf(from, sizeof from, "%llu", (unsigned long long)c->cursor);
    snprintf(upto, sizeof upto, "%llu", (unsigned long long)(c->first ? 0 : c->upto));
    snprintf(max, sizeof max, "%llu", (unsigned long long)(c->first ? cfg->recover_max : 0));
    snprintf(pb, sizeof pb, "%zu", cfg->page_bytes);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)cfg->ttl_ms);
    snprintf(mttl, sizeof mttl, "%llu", (unsigned long long)cfg->meta_ttl_ms);
    history_new_epoch(ep);
    const char *argv[] = {ks, km, from, upto, c->epoch, max, pb, ttl, mttl, ep};
    size_t lens[10];
    for (int i = 0; i < 10; i++)
        lens[i] = strlen(argv[i]);
    int rc = redis_eval(c->st->r, &read_script, on_page, c, 2, 10, argv, lens);
    return rc == REDIS_C_OK ? HIST_OK : down(rc);
}

static int rs_read(history_t *h, const char *chan, size_t clen, uint64_t after,
                   const char *epoch, uint64_t now_ms, hist_page_fn fn, void *ud)
{
    (void)now_ms;
    if (strlen(epoch) > HIST_EPOCH_MAX)
        epoch = "-"; /* (no epoch is that long: another epoch) */
    read_ctx_t *c = calloc(1, sizeof *c);
    if (!c || !(c->chan = malloc(clen + 1))) {
        free(c);
        return HIST_ERR_NOMEM;
    }
    memcpy(c->chan, chan, clen);
    c->chan[clen] = 0;
    c->clen = clen;
    c->st = (redis_store_t *)h;
    c->fn = fn;
    c->ud = ud;
    c->expect = c->cursor = after + 1;
    c->first = true;
    strcpy(c->epoch, epoch);
    int rc = read_page(c);
    if (rc != HIST_OK) {
        free(c->chan);
        free(c);
    }
    return rc;
}

static void rs_free(history_t *h)
{
    free(h);
}

static const history_ops_t redis_ops = {rs_add, rs_read, NULL, rs_free};

history_t *history_redis_new(redis_t *r, const hist_cfg_t *cfg)
{
    redis_store_t *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->h.ops = &redis_ops;
    st->h.cfg = *cfg;
    st->h.kind = "redis";
    st->h.answers_later = true;
    st->r = r;
    redis_script_add(r, &add_script);
    redis_script_add(r, &read_script);
    return &st->h;
}
