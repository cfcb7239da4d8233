/* recover.c: Recover -> history read -> Recovered commands (see recover.h). Loop thread. */
#include "recover.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "history.h"
#include "history_metrics.h"
#include "log.h"
#include "metrics.h"

/* One request while its answer comes. */
typedef struct rq_ctx {
    router_t *r;
    api_stream_t *s;   /* the stream it came on, while the call lasts; then NULL */
    char *gateway;     /* the gateway's id, to find a stream for a later answer */
    uint64_t conn_id;
    uint32_t id;
    char *channel;
    int rv;
    bool done;         /* the last page came */
    bool async;        /* the store answers after recover_handle returned: free on the last */
} rq_ctx_t;

static void ctx_free(rq_ctx_t *x)
{
    free(x->gateway);
    free(x->channel);
    free(x);
}

/* A stream to the connection's gateway: the one the Recover came on, else its newest live. */
static api_stream_t *stream_for(rq_ctx_t *x)
{
    if (x->s)
        return x->s;
    pres_gateway_t *g = x->gateway ? presence_gateway(x->r->pres, x->gateway) : NULL;
    return g ? g->streams : NULL;
}

static void emit(rq_ctx_t *x, const hist_page_t *pg)
{
    Wsgw__V1__Publication pubs[64], *pp[64];
    size_t n = pg->status == HIST_OK ? pg->n : 0;
    if (n > 64)
        n = 64; /* (a store's page holds at most 64) */
    for (size_t i = 0; i < n; i++) {
        wsgw__v1__publication__init(&pubs[i]);
        pubs[i].payload.data = (uint8_t *)pg->pubs[i].data;
        pubs[i].payload.len = pg->pubs[i].len;
        pubs[i].binary = pg->pubs[i].binary;
        pubs[i].offset = pg->pubs[i].offset;
        pp[i] = &pubs[i];
    }
    Wsgw__V1__Recovered rc = WSGW__V1__RECOVERED__INIT;
    rc.conn_id = x->conn_id;
    rc.channel = x->channel;
    rc.id = x->id;
    rc.n_publications = n;
    rc.publications = pp;
    bool last = pg->status != HIST_OK || !pg->more;
    rc.more = !last;
    rc.epoch = (char *)(pg->status == HIST_OK && pg->epoch ? pg->epoch : ""); /* every page */
    if (last) {
        rc.offset = pg->status == HIST_OK ? pg->top : 0;
        rc.recovered = pg->status == HIST_OK && pg->recovered;
        metrics_inc(pg->status != HIST_OK ? hist_m.read_error
                    : rc.recovered        ? hist_m.read_recovered
                                          : hist_m.read_missed);
    }
    Wsgw__V1__Command cmd = WSGW__V1__COMMAND__INIT;
    cmd.kind_case = WSGW__V1__COMMAND__KIND_RECOVERED;
    cmd.recovered = &rc;
    api_stream_t *s = stream_for(x);
    int rv = s ? router_emit(x->r, s, &cmd) : ROUTER_ERR_CLOSED;
    if (rv == ROUTER_ERR_NOMEM)
        x->rv = rv;
    else if (rv < 0)
        log_rl_info("recovery answer dropped: no stream to its gateway", "conn_id=%llu",
                    (unsigned long long)x->conn_id);
}

static void on_page(void *ud, const hist_page_t *pg)
{
    rq_ctx_t *x = ud;
    emit(x, pg);
    if (pg->status != HIST_OK || !pg->more) {
        x->done = true;
        if (x->async)
            ctx_free(x);
    }
}

/* The whole answer at once: recovered=false, nothing (no history, or not this reader's). */
static void refuse(rq_ctx_t *x, int status)
{
    hist_page_t pg = {.status = status};
    emit(x, &pg);
}

int recover_handle(router_t *r, api_stream_t *s, uint64_t conn_id, const char *user_id,
                   const Wsgw__V1__Recover *rq)
{
    metrics_inc(hist_m.ev_recover);
    const char *chan = rq->channel ? rq->channel : "";
    size_t clen = strlen(chan);
    rq_ctx_t *x = calloc(1, sizeof *x);
    if (!x || !(x->channel = strdup(chan)) ||
        (s->gw && s->gw->id && !(x->gateway = strdup(s->gw->id)))) {
        if (x)
            ctx_free(x);
        return ROUTER_ERR_NOMEM;
    }
    x->r = r;
    x->s = s;
    x->conn_id = conn_id;
    x->id = rq->id;
    bool user = clen > 5 && memcmp(chan, "user:", 5) == 0;
    bool mine = user && user_id && strcmp(chan + 5, user_id) == 0;
    if ((user && !mine) || !history_channel_ok(chan, clen)) {
        metrics_inc(hist_m.read_refused);
        char q[96];
        log_rl_warn("Recover for a channel the connection may not read: answered with nothing",
                    "conn_id=%llu channel=%s", (unsigned long long)conn_id,
                    log_quote(q, sizeof q, chan));
        refuse(x, HIST_ERR_BAD);
    } else if (!r->hist) {
        refuse(x, HIST_OK);
    } else {
        int hv = history_read(r->hist, chan, clen, rq->offset, rq->epoch ? rq->epoch : "",
                              (uint64_t)(clock_wall_ns() / 1000000), on_page, x);
        if (hv != HIST_OK) {
            log_rl_warn("history read failed: client told recovered=false", "error=%d", hv);
            refuse(x, hv);
        } else if (!x->done) {
            /* the store answers later (Redis): its pages find a stream of the gateway then */
            x->s = NULL;
            x->async = true;
            return x->rv;
        }
    }
    int rv = x->rv;
    ctx_free(x);
    return rv;
}
