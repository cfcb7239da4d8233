/* pausewatch.h: paused clients that leave. A client paused for backpressure (svc.h
 * gw_svc_pause: lws_rx_flow_control off) is not polled for reading, so lws sees neither its
 * FIN nor its RST: without this, clients that left while their API node stalled stayed
 * counted and held their slots (--max-connections filled up; issue 14, case 4). Every
 * --paused-check the service thread looks at the TCP state of its paused connections
 * (getsockopt TCP_INFO: the kernel's view of the TCP socket, so it works under TLS too) and
 * hangs up on those whose peer has gone (CLOSE_WAIT after a FIN, CLOSE after an RST):
 * reported as 1006, the Close event goes upstream after the events already read, the slot and
 * the per-address count are freed. Bytes the client sent that were never read are discarded
 * and counted. At most GW_PAUSEWATCH_BURST sockets per tick (a round over more paused clients
 * spans several ticks). Service thread only, but for gw_pausewatch_init. */
#ifndef GW_PAUSEWATCH_H
#define GW_PAUSEWATCH_H

#include <stdbool.h>

struct gw_svc;

#define GW_PAUSEWATCH_BURST 1024

/* gw_pausewatch_init: registers wsgw_paused_leaves_total and
 * wsgw_paused_discarded_bytes_total. Main thread, before the service threads start. */
void gw_pausewatch_init(void);

/* gw_pausewatch_tick: continues the current round over s's paused connections, or starts one
 * when --paused-check has passed since the last began. Called from the thread's tick timer
 * (outside lws callbacks). */
void gw_pausewatch_tick(struct gw_svc *s);

/* gw_pausewatch_peer_gone: true when the TCP peer of fd has sent FIN or RST (any state but
 * ESTABLISHED); false when fd is not a TCP socket. */
bool gw_pausewatch_peer_gone(int fd);

#endif
