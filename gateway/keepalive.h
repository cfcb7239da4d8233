/* keepalive.h: server pings and dead-peer hang-ups, without lws' validity timers.
 *
 * lws 4.1.6 keeps every connection's validity timer in one sorted linked list per thread and
 * (re)arms it on each handshake, ping and pong by walking that list: O(n) per event, O(n^2)
 * per ping round. Measured: six gateways holding 13 000 idle connections each spent 29 % of
 * a core apiece, 88 % of it in lws_dll2_add_sorted. Here each connection keeps the time it
 * was last known alive, and one sweep of the thread's connection table per tick (a quarter
 * of --ping-interval, 50 ms to 1 s) pings the ones silent for an interval and hangs up on
 * those silent for three: O(n) per tick, nothing per event. Service thread only. */
#ifndef GW_KEEPALIVE_H
#define GW_KEEPALIVE_H

#include <stdint.h>

#include "conn.h"

struct gw_svc;

/* gw_keepalive_tick_ms: the sweep period for a ping interval (0 = no pings, no sweep). */
uint64_t gw_keepalive_tick_ms(int64_t ping_interval_us);

/* gw_keepalive_alive: c proved alive now (handshake done, pong received). */
void gw_keepalive_alive(struct gw_svc *s, gw_conn_t *c);

/* gw_keepalive_sweep: pings connections silent for an interval, closes (1006, no close frame:
 * the peer is gone) those silent for three. A paused connection (backpressure: not read, so
 * its pongs are not seen) is pinged each interval but never counted silent. Runs from the
 * thread's uv timer. */
void gw_keepalive_sweep(struct gw_svc *s);

#endif
