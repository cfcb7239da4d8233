/* upstream_node.c: setting up and tearing down a writer (main thread), and following the
 * address of a dynamic node slot (writer thread). See upstream.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "config.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "upstream_priv.h"

/* ---- set-up and teardown (main thread) ------------------------------------------------ */

/* "host:port", "[v6]:port" or "unix:PATH" into u->host, u->port, u->unix_path, u->name. */
static int split_addr(gw_up_t *u, const char *addr, char *err, size_t errlen)
{
    u->unix_path[0] = 0;
    if (strncmp(addr, "unix:", 5) == 0) {
        size_t n = strlen(addr + 5);
        if (n == 0 || n >= sizeof u->unix_path) {
            snprintf(err, errlen, "--upstream: '%s': a unix: path takes 1-%zu bytes", addr,
                     sizeof u->unix_path - 1);
            return -1;
        }
        memcpy(u->unix_path, addr + 5, n + 1);
        snprintf(u->host, sizeof u->host, "localhost");
        u->port[0] = 0;
        snprintf(u->name, sizeof u->name, "%s", addr);
        return 0;
    }
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1]) {
        snprintf(err, errlen, "--upstream: '%s' is not host:port", addr);
        return -1;
    }
    size_t hl = (size_t)(colon - addr);
    const char *h = addr;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [v6]:port */
        h++;
        hl -= 2;
    }
    if (hl >= sizeof u->host || strlen(colon + 1) >= sizeof u->port) {
        snprintf(err, errlen, "--upstream: '%s' is too long", addr);
        return -1;
    }
    memcpy(u->host, h, hl);
    u->host[hl] = 0;
    snprintf(u->port, sizeof u->port, "%s", colon + 1);
    snprintf(u->name, sizeof u->name, "%s", addr);
    return 0;
}

static pthread_mutex_t addr_lock = PTHREAD_MUTEX_INITIALIZER; /* next_addr; rare, not per message */

void gw_up_set_addr(gw_up_t *u, const char *addr)
{
    pthread_mutex_lock(&addr_lock);
    snprintf(u->next_addr, sizeof u->next_addr, "%s", addr);
    atomic_fetch_add(&u->addr_gen, 1);
    pthread_mutex_unlock(&addr_lock);
    gw_up_wake(u);
}

/* Writer thread: follows an address change of a dynamic slot. */
void upstream__follow_addr(gw_up_t *u)
{
    gw_up_priv_t *p = u->priv;
    uint32_t gen = atomic_load(&u->addr_gen);
    if (!u->dynamic || gen == p->seen_gen)
        return;
    char addr[300];
    pthread_mutex_lock(&addr_lock);
    snprintf(addr, sizeof addr, "%s", u->next_addr);
    gen = atomic_load(&u->addr_gen);
    pthread_mutex_unlock(&addr_lock);
    p->seen_gen = gen;
    bool had = u->host[0] != 0;
    if (had && strcmp(addr, u->name) == 0)
        return;
    atomic_store(&u->node->presence, GW_PRES_UNKNOWN); /* a new node answers for itself */
    if (had) {
        log_info("API node removed", "node=%s", u->name);
        if (p->tstate != T_NONE)
            upstream__close(u, "address changed"); /* hands messages back */
        metrics_gauge_set(p->m_connected, 0);
    }
    char err[160];
    if (!*addr || split_addr(u, addr, err, sizeof err) < 0) {
        u->host[0] = 0;
        snprintf(u->name, sizeof u->name, "unassigned-%d", u->idx);
        atomic_store(&u->node->assigned, 0);
        return;
    }
    atomic_store(&u->node->seed, gw_hash64(u->name, strlen(u->name), 0));
    atomic_store(&u->node->assigned, 1);
    p->m_connected = gwm_up_connected(u->name);
    p->m_reconnects = gwm_up_reconnects(u->name);
    p->connects = 0;
    log_info("API node added", "node=%s slot=%d", u->name, u->idx);
}

static dlv_t *new_machine(gw_up_t *u)
{
    dlv_cfg_t cfg = {
        .nsvc = u->gw->nsvc,
        .nstreams = (int)gw_cfg.streams,
        .batch_max_events = (size_t)gw_cfg.batch_max_events,
        .batch_max_bytes = (size_t)gw_cfg.batch_max_bytes,
        .replay_max_bytes = (size_t)gw_cfg.replay_max_bytes,
        .max_attempts = (int)gw_cfg.upstream_max_attempts,
        .ping_interval_ns = gw_cfg.upstream_ping_interval_us * US,
        .ping_timeout_ns = gw_cfg.upstream_ping_timeout_us * US,
        .connect_timeout_ns = gw_cfg.upstream_connect_timeout_us * US,
        .headers_timeout_ns = gw_cfg.upstream_headers_timeout_us * US,
        .backoff_min_ns = 100 * 1000000LL,
        .backoff_max_ns = 2000 * 1000000LL,
        .renew_interval_ns = gw_cfg.presence_renew_interval_us * US,
        .gateway_id = gw_cfg.gateway_id,
        .name = u->name,
    };
    dlv_io_t io = upstream__io(u);
    dlv_t *d = dlv_new(&cfg, &io);
    if (d)
        dlv_seed(d, (uint64_t)upstream__now() ^ ((uint64_t)u->idx << 32));
    return d;
}

gw_up_t *gw_up_new(gw_t *g, int idx, const char *addr, char *err, size_t errlen)
{
    gw_up_t *u = calloc(1, sizeof *u);
    gw_up_priv_t *p = calloc(1, sizeof *p);
    if (!u || !p)
        goto nomem;
    u->priv = p;
    u->idx = idx;
    u->gw = g;
    u->node = &g->nodes[idx];
    p->sock.fd = -1;
    p->epfd = -1;
    if (!*addr) {
        u->dynamic = true;
        snprintf(u->name, sizeof u->name, "unassigned-%d", idx);
    } else if (split_addr(u, addr, err, errlen) < 0) {
        goto fail;
    }
    atomic_store(&u->node->seed, gw_hash64(u->name, strlen(u->name), 0));
    atomic_store(&u->node->assigned, u->dynamic ? 0 : 1);
    atomic_store(&u->node->connected, 0);
    atomic_store(&u->node->idle, 1);
    atomic_init(&u->addr_gen, 0);
    atomic_init(&u->stop_req, 0);
    u->hosted = gw_cfg.inline_writers == 1;
    sem_init(&u->hosted_done, 0, 0);
    if (wake_init(&u->wake) < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (gw_cfg.upstream_tls && !(p->tls = gw_sock_client_ctx(gw_cfg.upstream_ca, err, errlen)))
        goto fail;
    p->nstreams = (int)gw_cfg.streams;
    p->st = calloc((size_t)p->nstreams, sizeof *p->st);
    p->rbuf = malloc(READ_CHUNK);
    u->links = calloc((size_t)g->nsvc, sizeof *u->links);
    u->rc_peers = calloc((size_t)g->nsvc, sizeof *u->rc_peers);
    p->d = new_machine(u);
    if (p->epfd < 0 || !p->st || !p->rbuf || !u->links || !u->rc_peers || !p->d)
        goto nomem;
    for (int i = 0; i < p->nstreams; i++) {
        grpc_dec_init(&p->st[i].dec, MAX_DOWNSTREAM);
        grpc_dec_trust(&p->st[i].dec, DOWNSTREAM_KEEP);
    }
    /* per-node series exist once a node does (dynamic slots register on assignment) */
    p->m_connected = u->dynamic ? -1 : gwm_up_connected(u->name);
    p->m_reconnects = u->dynamic ? -1 : gwm_up_reconnects(u->name);
    return u;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    gw_up_free(u);
    return NULL;
}

int gw_up_start(gw_up_t *u)
{
    if (u->hosted) {
        u->await_host = true; /* its host begins it (gw_up_host) and ends it */
        return 0;
    }
    int rv = pthread_create(&u->tid, NULL, upstream__main, u);
    return rv ? -rv : 0;
}

void gw_up_request(gw_up_t *u, int what)
{
    atomic_store(&u->stop_req, what);
    gw_up_wake(u);
}

void gw_up_join(gw_up_t *u)
{
    if (u && u->await_host) {
        while (sem_wait(&u->hosted_done) < 0 && errno == EINTR)
            ;
        u->await_host = false;
    }
    if (u && u->tid) {
        pthread_join(u->tid, NULL);
        u->tid = 0;
    }
}

/* Main thread, after the writer thread ended (or was never started). */
void gw_up_free(gw_up_t *u)
{
    if (!u)
        return;
    gw_up_priv_t *p = u->priv;
    gw_up_join(u);
    if (p) {
        dlv_free(p->d);
        for (int i = 0; p->st && i < p->nstreams; i++)
            grpc_dec_free(&p->st[i].dec);
        free(p->st);
        free(p->rbuf);
        iovq_free(&p->out);
        if (p->epfd >= 0)
            close(p->epfd);
        if (p->tls)
            SSL_CTX_free(p->tls);
        free(p);
    }
    if (u->wake.fd > 0)
        wake_destroy(&u->wake);
    sem_destroy(&u->hosted_done);
    free(u->links);
    free(u->rc_peers);
    free(u);
}

void gw_up_wake_fn(void *ud)
{
    gw_up_wake(ud);
}
