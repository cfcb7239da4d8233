/* history.c: the store-independent part of history.h: dispatch, checks, epochs, metrics.
 * Loop thread only. */
#include "history.h"

#include <openssl/rand.h>
#include <string.h>

#include "history_metrics.h"
#include "log.h"
#include "metrics.h"

/* -1 per field (no metric yet: the unit tests never register them) */
hist_metrics_t hist_m = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
_Static_assert(sizeof hist_m == 12 * sizeof(int), "one -1 per field of hist_metrics_t");

void history_metrics_init(void)
{
    const char *ah = "Pushes offered to a channel's history: kept, refused because the memory "
                     "store is full (--history-max-bytes), or failed (Redis down, memory).";
    hist_m.add_ok = metrics_counter("wsapi_history_adds_total", "result=\"ok\"", ah);
    hist_m.add_full = metrics_counter("wsapi_history_adds_total", "result=\"full\"", ah);
    hist_m.add_error = metrics_counter("wsapi_history_adds_total", "result=\"error\"", ah);
    hist_m.push_refused = metrics_counter(
        "wsapi_history_push_refused_total", NULL,
        "Pushes with history refused (503) because the history store (Redis) was unavailable.");
    const char *rh = "Recover requests answered: recovered (everything after the client's "
                     "offset), missed (trimmed, another epoch, over --history-recover-max), "
                     "error (the store failed: answered missed), refused (a channel the "
                     "connection may not read).";
    hist_m.read_recovered = metrics_counter("wsapi_history_reads_total", "result=\"recovered\"", rh);
    hist_m.read_missed = metrics_counter("wsapi_history_reads_total", "result=\"missed\"", rh);
    hist_m.read_error = metrics_counter("wsapi_history_reads_total", "result=\"error\"", rh);
    hist_m.read_refused = metrics_counter("wsapi_history_reads_total", "result=\"refused\"", rh);
    hist_m.read_msgs = metrics_counter("wsapi_history_read_messages_total", NULL,
                                       "Messages sent to gateways from the history.");
    hist_m.ev_recover = metrics_counter("wsapi_events_total", "kind=\"recover\"",
                                        "Client events received, by kind.");
    hist_m.channels = metrics_gauge("wsapi_history_channels", NULL,
                                    "Channels with a history position in the memory store.");
    hist_m.bytes = metrics_gauge("wsapi_history_bytes", NULL,
                                 "Bytes the memory store holds (payloads and overhead).");
}

int history_add(history_t *h, const char *chan, size_t clen, const uint8_t *data, size_t len,
                bool binary, uint64_t now_ms, hist_added_fn fn, void *ud)
{
    if (!history_channel_ok(chan, clen))
        return HIST_ERR_BAD;
    int rv = h->ops->add(h, chan, clen, data, len, binary, now_ms, fn, ud);
    if (rv == HIST_ERR_FULL) {
        metrics_inc(hist_m.add_full);
        log_rl_warn("history full: push delivered but not kept", "store=%s max_bytes=%zu",
                    h->kind, h->cfg.max_bytes);
    } else if (rv < 0) {
        metrics_inc(hist_m.add_error);
        log_rl_warn("history add failed", "store=%s error=%d", h->kind, rv);
    }
    return rv;
}

int history_read(history_t *h, const char *chan, size_t clen, uint64_t after,
                 const char *epoch, uint64_t now_ms, hist_page_fn fn, void *ud)
{
    if (!history_channel_ok(chan, clen))
        return HIST_ERR_BAD;
    return h->ops->read(h, chan, clen, after, epoch ? epoch : "", now_ms, fn, ud);
}

void history_sweep(history_t *h, uint64_t now_ms)
{
    if (h && h->ops->sweep)
        h->ops->sweep(h, now_ms);
}

void history_free(history_t *h)
{
    if (h)
        h->ops->free(h);
}

bool history_channel_ok(const char *chan, size_t clen)
{
    return clen > 5 && clen <= HIST_CHANNEL_MAX &&
           (memcmp(chan, "user:", 5) == 0 || memcmp(chan, "room:", 5) == 0) &&
           !memchr(chan, 0, clen);
}

void history_new_epoch(char out[HIST_EPOCH_MAX + 1])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned char r[8];
    if (RAND_bytes(r, sizeof r) != 1) {
        /* (no entropy: still different from any earlier epoch of this process) */
        static uint64_t n;
        uint64_t v = ++n * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&n;
        memcpy(r, &v, sizeof r);
    }
    for (int i = 0; i < 8; i++)
        out[i] = digits[r[i] % 36];
    out[8] = 0;
}
