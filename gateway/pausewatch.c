/* pausewatch.c: paused clients that left are hung up on (see pausewatch.h). */
#include "pausewatch.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "clock.h"
#include "config.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "svc.h"
#include "ws.h"

static int m_leaves = -1, m_discarded = -1;

void gw_pausewatch_init(void)
{
    m_leaves = metrics_counter("wsgw_paused_leaves_total", NULL,
                               "Clients paused for backpressure that left (FIN or RST) and were "
                               "closed 1006 by the paused-socket check (--paused-check).");
    m_discarded = metrics_counter("wsgw_paused_discarded_bytes_total", NULL,
                                  "Bytes paused clients sent but the gateway never read before "
                                  "they left (discarded with the socket).");
}

bool gw_pausewatch_peer_gone(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || len < 1)
        return false;
    return ti.tcpi_state != TCP_ESTABLISHED;
}

/* c's peer is gone: count what it left unread, hang up. */
static void leave(gw_conn_t *c)
{
    int fd = lws_get_socket_fd(c->wsi);
    int unread = 0;
    if (ioctl(fd, FIONREAD, &unread) < 0 || unread < 0)
        unread = 0;
    metrics_inc(m_leaves);
    metrics_add(m_discarded, (uint64_t)unread);
    log_rl_info("paused client left: closing", "conn_id=%llu unread_bytes=%d",
                (unsigned long long)c->id, unread);
    gw_ws_hangup(c);
}

void gw_pausewatch_tick(gw_svc_t *s)
{
    if (gw_cfg.paused_check_us <= 0 || !s->npaused)
        return;
    int64_t now = clock_mono_ns();
    if (s->pw_cursor == 0 && now < s->pw_next)
        return; /* no round in progress, and not time for the next */
    if (s->pw_cursor == 0)
        s->pw_next = now + gw_cfg.paused_check_us * 1000;
    for (int budget = GW_PAUSEWATCH_BURST; budget > 0 && s->pw_cursor < s->npaused; budget--) {
        gw_conn_t *c = gw_conn_table_get(&s->conns, s->paused[s->pw_cursor]);
        if (!c) {
            /* closed since it was paused: drop the entry (the list is unordered) */
            s->paused[s->pw_cursor] = s->paused[--s->npaused];
            metrics_gauge_add(gwm.paused, -1);
            continue;
        }
        if (c->paused && !c->closing && gw_pausewatch_peer_gone(lws_get_socket_fd(c->wsi)))
            leave(c);
        s->pw_cursor++;
    }
    if (s->pw_cursor >= s->npaused)
        s->pw_cursor = 0; /* round done */
}
