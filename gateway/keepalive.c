/* keepalive.c: server pings by a periodic sweep (see keepalive.h). Service thread only. */
#include "keepalive.h"

#include <libwebsockets.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "svc.h"
#include "ws.h"
#include "ws_frame.h"

uint64_t gw_keepalive_tick_ms(int64_t ping_interval_us)
{
    if (ping_interval_us <= 0)
        return 0;
    uint64_t t = (uint64_t)ping_interval_us / 4000;
    return t < 50 ? 50 : t > 1000 ? 1000 : t;
}

static uint32_t now_ms(void)
{
    return (uint32_t)(clock_mono_ns() / 1000000); /* wraps every 49 days: compared by difference */
}

void gw_keepalive_alive(struct gw_svc *s, gw_conn_t *c)
{
    (void)s;
    c->alive_ms = now_ms();
    c->pinged = false;
}

void gw_keepalive_sweep(struct gw_svc *s)
{
    uint32_t now = now_ms();
    uint64_t ping_ms = (uint64_t)gw_cfg.ping_interval_us / 1000;
    uint64_t hup_ms = 3 * ping_ms;
    gw_conn_table_t *t = &s->conns;
    for (uint32_t i = 0; i < t->used; i++) {
        gw_conn_t *c = t->slots[i];
        if (!c || !c->established || c->closing)
            continue;
        uint32_t silent = now - c->alive_ms;
        if (c->paused) {
            /* Not read while paused (backpressure): its pongs wait unread, so time spent
             * paused is not silence. A ping still goes out each interval (a peer that
             * vanished without FIN fails it at the TCP level; pausewatch.h sees that). */
            if (silent >= ping_ms) {
                if (gw_ws_control(c, WS_OP_PING, "wsgw", 4) < 0)
                    log_rl_warn("ping write failed", "conn_id=%llu", (unsigned long long)c->id);
                c->alive_ms = now;
                c->pinged = false;
            }
        } else if (silent >= hup_ms) {
            log_rl_info("no pong: closing", "conn_id=%llu silent_ms=%u",
                        (unsigned long long)c->id, silent);
            /* counted as wsgw_closes_total{code="1006"} by on_closed: no close frame,
             * the peer is gone */
            gw_ws_hangup(c);
        } else if (silent >= ping_ms && !c->pinged) {
            /* a whole frame: if lws still holds part of an earlier one, it goes after that */
            if (gw_ws_control(c, WS_OP_PING, "wsgw", 4) < 0)
                log_rl_warn("ping write failed", "conn_id=%llu", (unsigned long long)c->id);
            c->pinged = true;
        }
    }
}
