/* cluster_bus.c: commands between ws-api nodes over Redis pub/sub. A command for gateways this
 * node has no stream of is published, once per gateway, to ONE node that serves it (the
 * rendezvous choice among the gateway's live nodes in the registry, so successive commands to
 * a gateway take the same path and keep their order), on that node's channel wsgw:{n:NODE};
 * that node hands it to one stream of the gateway. A gateway connected to several nodes thus
 * gets each command once. A publish nobody received (the node went away) goes once more
 * through another node, and a node that gets a command for a gateway it has no stream of
 * (its registry entry was older than that: the gateway left it, or it restarted under the same
 * name) passes it on once to another node that serves the gateway; a command no node could
 * take is counted as undeliverable (pub/sub is at most once, as a push to a stream that
 * breaks is).
 *
 * Message: 0x01 (0x02 once passed on), gateway count (u16 BE), per gateway its id (u16 BE
 * length + bytes), then the serialized wsgw.v1.Command. Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_priv.h"
#include "log.h"
#include "metrics.h"
#include "router.h"

#define BUS_VERSION 1   /* from the node that took the push */
#define BUS_FORWARDED 2 /* passed on once by a node that did not serve the gateway (any more) */
#define BUS_MAX_GATEWAYS 4096

api_stream_t *cl__local_stream(cluster_t *cl, const char *gw)
{
    pres_gateway_t *g = presence_gateway(cl->pres, gw);
    return g ? g->streams : NULL;
}

/* ---- receiving ------------------------------------------------------------------------------ */

static const char *pick_node(const cluster_t *cl, const cl_gw_t *g, const char *skip);
static int republish(cluster_t *cl, const char *gw, const char *node, const uint8_t *cmd,
                     size_t cmdlen, uint8_t version);

static void on_bus(void *ud, const char *data, size_t len)
{
    cluster_t *cl = ud;
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    if (len < 3 || (p[0] != BUS_VERSION && p[0] != BUS_FORWARDED)) {
        log_rl_warn("bad message on our channel: dropped", "len=%zu", len);
        return;
    }
    unsigned n = (unsigned)p[1] << 8 | p[2];
    p += 3;
    const uint8_t *ids = p;
    for (unsigned i = 0; i < n; i++) {
        if (end - p < 2 || (size_t)(end - p - 2) < ((size_t)p[0] << 8 | p[1])) {
            log_rl_warn("bad message on our channel: dropped", "len=%zu", len);
            return;
        }
        p += 2 + ((size_t)p[0] << 8 | p[1]);
    }
    Wsgw__V1__Command *cmd = wsgw__v1__command__unpack(NULL, (size_t)(end - p), p);
    if (!cmd) {
        log_rl_warn("undecodable command on our channel: dropped", "len=%zu", len);
        return;
    }
    const uint8_t *cmdp = p;
    size_t cmdlen = (size_t)(end - p);
    bool first_hop = ((const uint8_t *)data)[0] == BUS_VERSION;
    p = ids;
    for (unsigned i = 0; i < n; i++) {
        size_t gl = (size_t)p[0] << 8 | p[1];
        char gw[CL_ID_MAX + 1];
        if (gl > CL_ID_MAX)
            gl = CL_ID_MAX;
        memcpy(gw, p + 2, gl);
        gw[gl] = 0;
        p += 2 + ((size_t)p[0] << 8 | p[1]);
        api_stream_t *s = cl__local_stream(cl, gw);
        if (s)
            cluster_gateway_attached(cl, gw); /* (what was held for it goes first) */
        if (s && router_emit(cl->router, s, cmd) == ROUTER_OK) {
            metrics_inc(cl->m_forwarded);
        } else if (!s && first_hop && cl__bus_pass_on(cl, gw, cmdp, cmdlen)) {
            /* passed on once to a node that serves it */
        } else if (!s && cl__hold(cl, gw, cmdp, cmdlen, first_hop)) {
            /* the registry names us: the gateway has not reconnected here yet */
        } else {
            metrics_inc(cl->m_fwd_lost);
            char q[96];
            log_rl_warn("command for a gateway we do not serve (any more): dropped",
                        "gateway=%s", log_quote(q, sizeof q, gw));
        }
    }
    wsgw__v1__command__free_unpacked(cmd, NULL);
}

int cl__bus_start(cluster_t *cl)
{
    return redis_subscribe(cl->r, cl->channel, on_bus, cl);
}

/* ---- sending -------------------------------------------------------------------------------- */

static uint64_t fnv(const char *a, const char *b)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *s = a; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    h = (h ^ 0xff) * 0x100000001b3ULL;
    for (const char *s = b; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    h ^= h >> 31;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 29;
    return h;
}

/* The node to reach gateway g through: the best-ranked live one that is not us and not
 * `skip` (NULL: none). */
static const char *pick_node(const cluster_t *cl, const cl_gw_t *g, const char *skip)
{
    const char *best = NULL;
    uint64_t best_score = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const char *n = g->nodes[i];
        if (strcmp(n, cl->node_id) == 0 || (skip && strcmp(n, skip) == 0))
            continue;
        uint64_t sc = fnv(g->id, n);
        if (!best || sc > best_score) {
            best = n;
            best_score = sc;
        }
    }
    return best;
}

/* One publish in flight: its message and where it went (for one retry elsewhere). */
typedef struct pub {
    cluster_t *cl;
    char *node;
    bool retry;      /* this is the retry: no other after it */
    uint8_t version; /* BUS_VERSION, or BUS_FORWARDED */
    size_t ngw;
    char **gws;
    uint8_t *cmd;    /* serialized Command */
    size_t cmdlen;
} pub_t;

static void pub_free(pub_t *pb)
{
    for (size_t i = 0; i < pb->ngw; i++)
        free(pb->gws[i]);
    free(pb->gws);
    free(pb->node);
    free(pb->cmd);
    free(pb);
}

static int publish(pub_t *pb);

/* A new publish of one gateway's command through node (a retry, or passed on). 0, or -1 (not
 * sent). */
static int republish(cluster_t *cl, const char *gw, const char *node, const uint8_t *cmd,
                     size_t cmdlen, uint8_t version)
{
    pub_t *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    r->cl = cl;
    r->retry = true;
    r->version = version;
    r->node = strdup(node);
    r->gws = calloc(1, sizeof *r->gws);
    r->cmd = malloc(cmdlen ? cmdlen : 1);
    r->cmdlen = cmdlen;
    if (r->gws && (r->gws[0] = strdup(gw)))
        r->ngw = 1;
    if (!r->node || !r->ngw || !r->cmd) {
        pub_free(r);
        return -1;
    }
    memcpy(r->cmd, cmd, cmdlen);
    return publish(r);
}

bool cl__bus_pass_on(cluster_t *cl, const char *gw, const uint8_t *cmd, size_t len)
{
    const cl_gw_t *g = cl__reg_find(cl, gw);
    const char *alt = g ? pick_node(cl, g, NULL) : NULL;
    if (!alt || republish(cl, gw, alt, cmd, len, BUS_FORWARDED) < 0)
        return false;
    metrics_inc(cl->m_pub_retry);
    return true;
}

static void on_published(void *ud, redisReply *reply)
{
    pub_t *pb = ud;
    cluster_t *cl = pb->cl;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        pub_free(pb);
        return;
    }
    /* nobody got it (that node is gone): once more through another node */
    for (size_t i = 0; i < pb->ngw; i++) {
        const cl_gw_t *g = reply && !pb->retry ? cl__reg_find(cl, pb->gws[i]) : NULL;
        const char *alt = g ? pick_node(cl, g, pb->node) : NULL;
        if (alt && republish(cl, pb->gws[i], alt, pb->cmd, pb->cmdlen, pb->version) == 0) {
            metrics_inc(cl->m_pub_retry);
            continue;
        }
        if (cl__hold(cl, pb->gws[i], pb->cmd, pb->cmdlen, false))
            continue; /* no other node, but the registry names us: until it reconnects */
        metrics_inc(cl->m_fwd_lost);
        char g2[96];
        log_rl_warn("command for a remote gateway not delivered: no node took it",
                    "gateway=%s", log_quote(g2, sizeof g2, pb->gws[i]));
    }
    pub_free(pb);
}

/* Publishes pb (takes it). Returns 0, or -1 (not sent; pb freed). */
static int publish(pub_t *pb)
{
    cluster_t *cl = pb->cl;
    size_t len = 3 + pb->cmdlen;
    for (size_t i = 0; i < pb->ngw; i++)
        len += 2 + strlen(pb->gws[i]);
    uint8_t *msg = malloc(len);
    char ch[CL_KEY_MAX];
    snprintf(ch, sizeof ch, "wsgw:{n:%s}", pb->node);
    if (!msg) {
        pub_free(pb);
        return -1;
    }
    uint8_t *p = msg;
    *p++ = pb->version ? pb->version : BUS_VERSION;
    *p++ = (uint8_t)(pb->ngw >> 8);
    *p++ = (uint8_t)pb->ngw;
    for (size_t i = 0; i < pb->ngw; i++) {
        size_t gl = strlen(pb->gws[i]);
        *p++ = (uint8_t)(gl >> 8);
        *p++ = (uint8_t)gl;
        memcpy(p, pb->gws[i], gl);
        p += gl;
    }
    memcpy(p, pb->cmd, pb->cmdlen);
    const char *argv[] = {"PUBLISH", ch, (const char *)msg};
    size_t lens[] = {7, strlen(ch), len};
    int rv = redis_cmd_argv(cl->r, on_published, pb, 3, argv, lens);
    free(msg);
    if (rv != REDIS_C_OK) {
        pub_free(pb);
        return -1;
    }
    metrics_add(cl->m_published, pb->ngw);
    return 0;
}

/* cl__bus_send of a serialized Command (cbuf, clen: borrowed). */
static int bus_send_packed(cluster_t *cl, const cl_gw_t *const *gws, size_t n,
                           const uint8_t *cbuf, size_t clen)
{
    if (!n)
        return 0;
    /* group the gateways by the node each goes through: one message per node */
    const char **via = calloc(n, sizeof *via);
    bool *done = calloc(n, sizeof *done);
    int sent = 0;
    if (!via || !done)
        goto out;
    for (size_t i = 0; i < n; i++) {
        via[i] = pick_node(cl, gws[i], NULL);
        if (!via[i] && cl__hold(cl, gws[i]->id, cbuf, clen, false)) {
            done[i] = true; /* no other node, but the registry names us: until it reconnects */
            sent++;
        } else if (!via[i]) {
            done[i] = true;
            metrics_inc(cl->m_fwd_lost);
            char g[96];
            log_rl_warn("command for a gateway no live node serves: dropped", "gateway=%s",
                        log_quote(g, sizeof g, gws[i]->id));
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        pub_t *pb = calloc(1, sizeof *pb);
        if (!pb)
            break;
        pb->cl = cl;
        pb->node = strdup(via[i]);
        pb->gws = calloc(n - i < BUS_MAX_GATEWAYS ? n - i : BUS_MAX_GATEWAYS, sizeof *pb->gws);
        pb->cmd = malloc(clen ? clen : 1);
        pb->cmdlen = clen;
        if (!pb->node || !pb->gws || !pb->cmd) {
            pub_free(pb);
            break;
        }
        memcpy(pb->cmd, cbuf, clen);
        for (size_t j = i; j < n && pb->ngw < BUS_MAX_GATEWAYS; j++) {
            if (done[j] || strcmp(via[j], via[i]) != 0)
                continue;
            if (!(pb->gws[pb->ngw] = strdup(gws[j]->id)))
                break;
            pb->ngw++;
            done[j] = true;
        }
        size_t k = pb->ngw;
        if (publish(pb) == 0)
            sent += (int)k;
    }
out:
    free(via);
    free(done);
    return sent;
}

int cl__bus_send(cluster_t *cl, const cl_gw_t *const *gws, size_t n,
                 const Wsgw__V1__Command *cmd)
{
    if (!n)
        return 0;
    size_t clen = wsgw__v1__command__get_packed_size(cmd);
    uint8_t *cbuf = malloc(clen ? clen : 1);
    if (!cbuf)
        return 0;
    wsgw__v1__command__pack(cmd, cbuf);
    int sent = bus_send_packed(cl, gws, n, cbuf, clen);
    free(cbuf);
    return sent;
}

/* ---- broadcasts ------------------------------------------------------------------------------
 * Room and all go to every live gateway in the registry, which is read every heartbeat: a
 * gateway that bound since (new, or on a new node) would miss a broadcast sent from the last
 * read, though Redis already had its members' Joins. Every bind bumps wsgw:{reg}:ver after it
 * registered the gateway, on the link its Opens and Joins follow. A broadcast waits in order
 * (cl->bq_*) until a GET of that version, sent after the broadcast was taken, comes back: the
 * same value as the registry's, it goes to the registry's gateways; another, the registry is
 * read again first. So a broadcast reaches every gateway whose Join or Open Redis had before
 * the broadcast was taken, for one Redis round trip (broadcasts taken meanwhile share the
 * next check). */

/* The gateways of the registry this node has no stream of (the caller frees *out). */
static size_t far_gateways(cluster_t *cl, const cl_gw_t ***out)
{
    const cl_gw_t **far = malloc((cl->reg.n ? cl->reg.n : 1) * sizeof *far);
    size_t n = 0;
    if (far)
        for (size_t i = 0; i < cl->reg.n; i++)
            if (!cl__local_stream(cl, cl->reg.v[i]->id))
                far[n++] = cl->reg.v[i];
    *out = far;
    return n;
}

static cl_bq_t *bq_pop(cluster_t *cl)
{
    cl_bq_t *q = cl->bq_head;
    if (q && !(cl->bq_head = q->next))
        cl->bq_tail = NULL;
    if (q)
        cl->bq_n--;
    return q;
}

/* The broadcasts the check covered: sent (ok) or counted as undeliverable. */
static void bq_release(cluster_t *cl, bool ok)
{
    cl_bq_t *last = cl->bq_cover;
    cl->bq_cover = NULL;
    const cl_gw_t **far = NULL;
    size_t n = ok ? far_gateways(cl, &far) : 0;
    size_t lost = 0;
    for (cl_bq_t *q; last && (q = bq_pop(cl));) {
        bool end = q == last;
        if (!ok || !far)
            lost++;
        else
            bus_send_packed(cl, far, n, q->cmd, q->len);
        free(q);
        if (end)
            break;
    }
    free(far);
    if (lost) {
        metrics_add(cl->m_fwd_lost, lost);
        log_rl_warn("broadcasts to other nodes' gateways not sent: the registry check failed",
                    "broadcasts=%zu", lost);
    }
}

static void bq_check(cluster_t *cl);

/* The registry was read again. A read that was under way already may have asked for the
 * version before the check did: then once more (a read started now asks after it). */
static void on_reread(void *ud)
{
    cluster_t *cl = ud;
    if (cl->reg_ver < cl->bq_need && !cl->bq_again && !cl->stopped) {
        cl->bq_again = true;
        if (cl__reg_wait(cl, on_reread, cl) == 0)
            return;
    }
    bq_release(cl, true);
    bq_check(cl);
}

static void on_bq_ver(void *ud, redisReply *reply)
{
    cluster_t *cl = ud;
    if (redis_reply_is_error(reply) || cl->stopped) {
        bq_release(cl, false);
    } else if (cl__reg_ver_parse(reply) == cl->reg_ver) {
        bq_release(cl, true);
    } else {
        metrics_inc(cl->m_bq_reread);
        cl->bq_need = cl__reg_ver_parse(reply);
        cl->bq_again = false;
        if (cl__reg_wait(cl, on_reread, cl) == 0)
            return; /* (on_reread goes on) */
        bq_release(cl, false);
    }
    bq_check(cl);
}

/* A check for what waits, unless one is under way. */
static void bq_check(cluster_t *cl)
{
    if (cl->bq_cover || !cl->bq_tail || cl->stopped)
        return;
    cl->bq_cover = cl->bq_tail;
    if (redis_cmd(cl->r, on_bq_ver, cl, "GET %s", cl__key_reg_ver) != REDIS_C_OK)
        bq_release(cl, false);
}

int cluster_broadcast_remote(cluster_t *cl, Wsgw__V1__Command *cmd)
{
    if (!redis_up(cl->r))
        return 0;
    size_t max = cl->cfg.max_queued ? cl->cfg.max_queued : 100000;
    if (cl->bq_n >= max) {
        metrics_inc(cl->m_fwd_lost);
        log_rl_warn("broadcast to other nodes' gateways refused: too many wait for Redis",
                    "waiting=%zu max=%zu", cl->bq_n, max);
        return 0;
    }
    size_t clen = wsgw__v1__command__get_packed_size(cmd);
    cl_bq_t *q = malloc(sizeof *q + (clen ? clen : 1));
    size_t n = 0; /* (the answer counts them; bq_release lists them) */
    for (size_t i = 0; i < cl->reg.n; i++)
        n += !cl__local_stream(cl, cl->reg.v[i]->id);
    if (!q) {
        metrics_inc(cl->m_fwd_lost);
        log_rl_warn("broadcast to other nodes' gateways not sent: out of memory", "bytes=%zu",
                    clen);
        return 0;
    }
    wsgw__v1__command__pack(cmd, q->cmd);
    q->len = clen;
    q->next = NULL;
    if (cl->bq_tail)
        cl->bq_tail->next = q;
    else
        cl->bq_head = q;
    cl->bq_tail = q;
    cl->bq_n++;
    bq_check(cl);
    return (int)n;
}

void cl__bus_free(cluster_t *cl)
{
    cl->bq_cover = NULL;
    for (cl_bq_t *q; (q = bq_pop(cl));)
        free(q);
}
