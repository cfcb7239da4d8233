/* cluster_hold.c: commands for a gateway that the registry says this node serves, while it has
 * no stream of that gateway.
 *
 * A node that restarted under the same name is still listed for its gateways (wsgw:{g:G}:m's
 * n:<node>) until they reconnect to it or --presence-ttl passes. A command for such a gateway
 * that reached it (a push it took, or one another node passed on) had nowhere to go: the
 * gateway's other nodes may be in the same state, and pub/sub passes a command on once. It was
 * dropped and counted undeliverable, while the push API had counted the gateway as reached.
 * Now the node holds it until a stream of the gateway attaches here (cluster_gateway_attached:
 * the held commands go to it first, in the order they came, before anything newer), or until
 * --presence-ttl passes without one (then it is counted undeliverable, as before). At most
 * --redis-max-pending commands are held; past that, undeliverable at once.
 *
 * A node that has just started subscribes to its channel before it has read the registry: a
 * command passed on to it then could not be checked against the registry and was dropped,
 * though the registry named it (seen in CI, 2026-12-07). While the registry is unread (or not
 * read within two heartbeats) a command is held unchecked; at the next complete read
 * (cl__hold_reg_read) it is held on if the registry names this node, passed on once to a node
 * it names if it may be (it came first-hand), or else counted undeliverable.
 *
 * Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "cluster_priv.h"
#include "log.h"
#include "metrics.h"
#include "router.h"

struct cl_hold {
    struct cl_hold *next;
    uint64_t until_ms; /* monotonic: undeliverable after this */
    bool unchecked;    /* held before the registry was read: checked at the next read */
    bool may_pass;     /* (unchecked) may be passed on to a node the registry names */
    size_t len;        /* of the serialized Command at cmd */
    char *gw;          /* -> after cmd */
    uint8_t cmd[];
};

bool cl__names_us(const cluster_t *cl, const char *gw)
{
    const cl_gw_t *g = cl__reg_find(cl, gw);
    for (int i = 0; g && i < g->nnodes; i++)
        if (strcmp(g->nodes[i], cl->node_id) == 0)
            return true;
    return false;
}

static void lost(cluster_t *cl, const char *gw, const char *why)
{
    metrics_inc(cl->m_fwd_lost);
    char q[96];
    log_rl_warn("held command for a gateway dropped", "gateway=%s why=\"%s\"",
                log_quote(q, sizeof q, gw), why);
}

bool cl__hold(cluster_t *cl, const char *gw, const uint8_t *cmd, size_t len, bool may_pass)
{
    bool unchecked = !cl__reg_fresh(cl);
    if (cl->stopped || (!unchecked && !cl__names_us(cl, gw)))
        return false;
    size_t max = cl->cfg.max_queued ? cl->cfg.max_queued : 100000;
    if (cl->nhold >= max) {
        char q[96];
        log_rl_warn("too many commands held for gateways that have not reconnected",
                    "gateway=%s held=%zu max=%zu", log_quote(q, sizeof q, gw), cl->nhold, max);
        return false;
    }
    size_t gl = strlen(gw);
    cl_hold_t *h = malloc(sizeof *h + len + gl + 1);
    if (!h)
        return false;
    h->next = NULL;
    h->unchecked = unchecked;
    h->may_pass = may_pass;
    h->until_ms = cl__now_ms() + cl->cfg.ttl_ms;
    h->len = len;
    memcpy(h->cmd, cmd, len);
    h->gw = (char *)h->cmd + len;
    memcpy(h->gw, gw, gl + 1);
    if (cl->hold_tail)
        cl->hold_tail->next = h;
    else
        cl->hold_head = h;
    cl->hold_tail = h;
    cl->nhold++;
    metrics_inc(cl->m_cmd_held);
    metrics_gauge_add(cl->m_holding, 1);
    return true;
}

/* Emits h to gateway gw's stream s; false when the router did not take it. */
static bool emit(cluster_t *cl, api_stream_t *s, const cl_hold_t *h)
{
    Wsgw__V1__Command *cmd = wsgw__v1__command__unpack(NULL, h->len, h->cmd);
    if (!cmd)
        return false; /* (it was packed here or checked on arrival: memory) */
    bool ok = router_emit(cl->router, s, cmd) == ROUTER_OK;
    wsgw__v1__command__free_unpacked(cmd, NULL);
    return ok;
}

/* Walks the held commands: those of gateway `gw` (NULL: any gateway with a stream here now)
 * go to its stream; those past their time (when expire) are undeliverable; those held
 * unchecked (when check: the registry was just read) are checked against it. */
static void walk(cluster_t *cl, const char *gw, bool expire, bool check)
{
    uint64_t now = expire ? cl__now_ms() : 0;
    cl_hold_t **pp = &cl->hold_head, *prev = NULL;
    while (*pp) {
        cl_hold_t *h = *pp;
        api_stream_t *s = !gw || strcmp(h->gw, gw) == 0 ? cl__local_stream(cl, h->gw) : NULL;
        bool gone = false;
        if (s) {
            if (emit(cl, s, h))
                metrics_inc(cl->m_forwarded);
            else
                lost(cl, h->gw, "its stream did not take it");
            gone = true;
        } else if (expire && now >= h->until_ms) {
            lost(cl, h->gw, "the gateway did not reconnect within --presence-ttl");
            gone = true;
        } else if (check && h->unchecked) {
            if (cl__names_us(cl, h->gw))
                h->unchecked = false; /* held on, as any other */
            else if (h->may_pass && cl__bus_pass_on(cl, h->gw, h->cmd, h->len))
                gone = true;
            else {
                lost(cl, h->gw, "the registry does not name this node for its gateway");
                gone = true;
            }
        }
        if (!gone) {
            prev = h;
            pp = &h->next;
            continue;
        }
        *pp = h->next;
        if (cl->hold_tail == h)
            cl->hold_tail = prev;
        cl->nhold--;
        metrics_gauge_add(cl->m_holding, -1);
        free(h);
    }
}

void cluster_gateway_attached(cluster_t *cl, const char *gw)
{
    if (cl && cl->hold_head)
        walk(cl, gw, false, false);
}

void cl__hold_sweep(cluster_t *cl)
{
    if (cl->hold_head)
        walk(cl, NULL, true, false);
}

void cl__hold_reg_read(cluster_t *cl)
{
    if (cl->hold_head)
        walk(cl, NULL, false, true);
}

void cl__hold_free(cluster_t *cl)
{
    while (cl->hold_head) {
        cl_hold_t *h = cl->hold_head;
        cl->hold_head = h->next;
        free(h);
    }
    cl->hold_tail = NULL;
    cl->nhold = 0;
}
