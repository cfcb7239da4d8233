/* main.c: ws-gateway: flags, file-descriptor limit, start-up of the service threads and
 * upstream writers, signals, and the graceful drain. Runs on the main thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "admit.h"
#include "clock.h"
#include "config.h"
#include "cpus.h"
#include "event.h"
#include "flags.h"
#include "gw.h"
#include "gwm.h"
#include "log.h"
#include "metrics.h"
#include "pausewatch.h"
#include "recycle.h"
#include "resolver.h"
#include "subset.h"
#include "route.h"
#include "svc.h"
#include "link.h"
#include "tlspolicy.h"
#include "upstream.h"
#include "httpd.h"
#include "ws.h"



static const flag_t flag_table[] = {
    {"listen", FLAG_STR, "0.0.0.0:8080", &gw_cfg.listen,
     "WebSocket endpoint ws://HOST:PORT/gateway/ws; GET /healthz, /readyz, /metrics on the same port"},
    {"upstream", FLAG_STR, "127.0.0.1:8081", &gw_cfg.upstream,
     "comma-separated API nodes (gRPC, host:port): an IP address is one node; a host name "
     "(name:port or dns:///name:port) is every A/AAAA record of the name, re-resolved every "
     "--dns-interval (with --upstream-tls, a plain name's nodes are verified by that name); "
     "unix:PATH is a node on this host behind a Unix domain socket (less CPU per message "
     "than TCP loopback)"},
    {"dns-interval", FLAG_DURATION, "5", &gw_cfg.dns_interval_us,
     "how often host-name upstreams are re-resolved"},
    {"max-upstreams", FLAG_INT, "8", &gw_cfg.max_upstreams,
     "writer slots per host-name upstream (most API nodes it can use at once)", 1, 64},
    {"upstream-subset", FLAG_INT, "0", &gw_cfg.upstream_subset,
     "connect to this many of the API nodes (0: all), chosen by rendezvous hash of "
     "--gateway-id, so gateways spread over the nodes; only with API nodes that share presence "
     "(ws-api --redis): pushes reach this gateway through any node", 0, 4096},
    {"upstream-subset-fallback", FLAG_DURATION, "5s", &gw_cfg.upstream_subset_fallback_us,
     "--upstream-subset: a chosen node that is down this long is replaced by the next one "
     "(until it is back)"},
    {"streams", FLAG_INT, "4", &gw_cfg.streams, "concurrent HTTP/2 streams per API node", 1, 100},
    {"upstream-ping-interval", FLAG_DURATION, "1s", &gw_cfg.upstream_ping_interval_us,
     "while an API node owes an answer (acks, response headers, room in its socket), this much "
     "silence sends an HTTP/2 PING; 0 = no PINGs"},
    {"upstream-ping-timeout", FLAG_DURATION, "1s", &gw_cfg.upstream_ping_timeout_us,
     "a PING unanswered this long ends the session like a closed connection (messages go to "
     "another node or wait, in order): with the interval, a hung node is left within ~2 s"},
    {"upstream-connect-timeout", FLAG_DURATION, "3s", &gw_cfg.upstream_connect_timeout_us,
     "a connection to an API node not up within this is abandoned and retried"},
    {"upstream-headers-timeout", FLAG_DURATION, "2s", &gw_cfg.upstream_headers_timeout_us,
     "a stream that has no response headers this long, from a node that answers PINGs, is "
     "taken to be without acks (a plain gRPC server): its batches count once written"},
    {"presence-renew-interval", FLAG_DURATION, "5s", &gw_cfg.presence_renew_interval_us,
     "with API nodes that share presence (ws-api --redis): at least this long between two "
     "renewals of this process's x-wsgw-instance after Closes were lost (each makes ws-api "
     "rebuild all of the gateway's presence), per API node; Closes lost meanwhile wait"},
    {"upstream-max-attempts", FLAG_INT, "5", &gw_cfg.upstream_max_attempts,
     "failures of a batch (its stream or session ended with it unacknowledged) before it is "
     "split into one batch per event; an event that fails alone that often is lost, counted, "
     "and its client closed (1011, or 1009 for grpc-status 8)", 2, 100},
    {"threads", FLAG_INT, "0", &gw_cfg.threads,
     "lws service threads (0 = the cores this process can use: its affinity mask, "
     "fewer under a cgroup CPU limit)", 0, 63},
    {"gateway-id", FLAG_STR, "", &gw_cfg.gateway_id,
     "id sent to API nodes in x-gateway-id (empty = hostname:port)"},
    {"auth-secret", FLAG_STR, "", &gw_cfg.auth_secret,
     "HS256 JWT secret; when set a token is required (Authorization: Bearer T or ?token=T), "
     "user id = claim sub, exp/nbf enforced; 401 otherwise"},
    {"jwt-leeway", FLAG_DURATION, "30s", &gw_cfg.jwt_leeway_us,
     "clock skew allowed on a token's exp and nbf (RFC 7519 §4.1.4: \"some small leeway\")"},
    {"allowed-origins", FLAG_STR, "", &gw_cfg.allowed_origins,
     "comma-separated Origin values allowed at the handshake (empty = any; * = any); others 403"},
    {"require-origin", FLAG_BOOL, "false", &gw_cfg.require_origin,
     "refuse handshakes without an Origin header (403)"},
    {"max-conns-per-ip", FLAG_INT, "0", &gw_cfg.max_conns_per_ip,
     "open connections per client address; past it the handshake gets 429 (0 = no limit)", 0,
     1LL << 32},
    {"tls-cert", FLAG_STR, "", &gw_cfg.tls_cert, "PEM certificate: serve wss:// on --listen"},
    {"tls-key", FLAG_STR, "", &gw_cfg.tls_key, "PEM private key for --tls-cert"},
    {"tls-min-version", FLAG_STR, "1.2", &gw_cfg.tls_min_version,
     "oldest TLS version wss:// accepts: 1.2 or 1.3"},
    {"tls-ciphers", FLAG_STR, GW_TLS_DEFAULT_CIPHERS, &gw_cfg.tls_ciphers,
     "TLS 1.2 cipher suites of wss:// (OpenSSL cipher list; the default is ECDHE with AEAD "
     "only, as ws-api; TLS 1.3 suites are OpenSSL's, all AEAD)"},
    {"upstream-tls", FLAG_BOOL, "false", &gw_cfg.upstream_tls,
     "talk to API nodes over TLS (h2, ALPN), verifying their certificate and host name"},
    {"upstream-ca", FLAG_STR, "", &gw_cfg.upstream_ca,
     "PEM CA bundle for --upstream-tls (empty = the system's trust store)"},
    {"gateway-token", FLAG_STR, "", &gw_cfg.gateway_token,
     "sent as authorization: Bearer TOKEN on Exchange streams (ws-api --gateway-token)"},
    {"static-dir", FLAG_STR, "", &gw_cfg.static_dir,
     "directory served at / (the browser demo); empty = the installed demo if present"},
    {"max-message", FLAG_INT, "65536", &gw_cfg.max_message,
     "largest client message in bytes; larger: close 1009", 1, 1LL << 30},
    {"send-queue", FLAG_INT, "1048576", &gw_cfg.send_queue,
     "bytes queued to one client behind the message being written before it is closed 1008 "
     "\"slow consumer\" (one message is always accepted, whatever its size)", 1, 1LL << 40},
    {"max-rooms-per-conn", FLAG_INT, "128", &gw_cfg.max_rooms_per_conn,
     "rooms one connection may be in; an API node's Join past it is refused (logged, "
     "wsgw_room_join_refusals_total)", 1, 1 << 20},
    {"max-room-name", FLAG_INT, "255", &gw_cfg.max_room_name,
     "bytes of a room name; a Join with a longer one is refused (logged, "
     "wsgw_room_join_refusals_total)", 1, 1 << 20},
    {"ping-interval", FLAG_DURATION, "25", &gw_cfg.ping_interval_us,
     "time between server pings; no pong within two intervals: close; 0 = off"},
    {"max-connections", FLAG_INT, "1000000", &gw_cfg.max_connections,
     "connections beyond this get HTTP 503 at the handshake", 1, 1LL << 32},
    {"drain-timeout", FLAG_DURATION, "10", &gw_cfg.drain_timeout_us,
     "on SIGTERM/SIGINT: stop accepting, flush upstream, close clients 1001 (what they sent "
     "before they saw it still goes upstream and is acked), exit within this"},
    {"ring-size", FLAG_INT, "16384", &gw_cfg.ring_size,
     "items per SPSC ring between a service thread and a writer", 64, 1 << 24},
    {"batch-max-events", FLAG_INT, "1024", &gw_cfg.batch_max_events,
     "events per Upstream batch", 1, 1 << 20},
    {"batch-max-bytes", FLAG_INT, "262144", &gw_cfg.batch_max_bytes,
     "bytes per Upstream batch (a single larger event still goes alone)", 1024, 1LL << 30},
    {"replay-max-bytes", FLAG_INT, "67108864", &gw_cfg.replay_max_bytes,
     "queued + unacknowledged bytes per API node before clients are paused", 65536, 1LL << 40},
    {"coalesce", FLAG_DURATION_AUTO, "auto", &gw_cfg.coalesce_us,
     "writer wake-up coalescing: auto = only while it pays (many events per wake-up, arrivals "
     "that do not wait on our answers), windows of at most 1ms; a duration W (e.g. 200us) = "
     "while events flow, each API-node writer takes them once per W instead of once per event "
     "(adds up to W of latency); 0 = off (wake per event); at most 100ms",
     0, 100000},
    {"inline-writers", FLAG_BOOL_AUTO, "auto", &gw_cfg.inline_writers,
     "run each API node's writer on a service thread's event loop (node i on thread i mod "
     "--threads) instead of a thread of its own: its hand-offs with that thread cost no "
     "context switch; auto = when the process can use one core (where a writer thread would "
     "only take turns with the service thread)", 0, 0},
    {"svc-coalesce", FLAG_DURATION_AUTO, "auto", &gw_cfg.svc_coalesce_us,
     "service-thread coalescing: auto = only while it pays (as --coalesce), windows of at "
     "most 1ms; a duration W (e.g. 500us) = while messages flow, each service thread takes "
     "its ready client reads and the writers' commands once per W instead of being woken for "
     "each (adds up to W of latency on each pass through the thread); 0 = off; at most 100ms",
     0, 100000},
    {"rcvbuf", FLAG_INT, "0", &gw_cfg.rcvbuf,
     "SO_RCVBUF of client sockets (0 = kernel default; smaller makes backpressure bite "
     "sooner, but a few KB also cap each client's upload rate through the TCP window)",
     0, 1 << 30},
    {"upstream-sndbuf", FLAG_INT, "4m", &gw_cfg.upstream_sndbuf,
     "SO_SNDBUF and SO_RCVBUF of API-node sockets: what the kernel holds per node each way "
     "(the writer keeps what the socket does not take; wsgw_upstream_send_blocked_total counts "
     "the times)", 4096, 1 << 30},
    {"paused-check", FLAG_DURATION, "200ms", &gw_cfg.paused_check_us,
     "how often the sockets of clients paused for backpressure are checked for a FIN or RST "
     "(a paused client is not read, so its leaving is not seen otherwise): those that left are "
     "closed 1006 and their unread bytes discarded; 50ms to 10s, 0 = never"},
    {"recover-timeout", FLAG_DURATION, "5s", &gw_cfg.recover_timeout_us,
     "wsgw.v1.json: a recovery (Recover sent to the API) without its answer this long is given "
     "up: the client is told recovered=false and gets the live messages held meanwhile"},
    {"recover-gap-wait", FLAG_DURATION, "100ms", &gw_cfg.recover_gap_wait_us,
     "wsgw.v1.json: a message whose offset skips some is held this long for the missing ones "
     "(overtaken on the way) before they are recovered from the history; 0 = at once"},
    {"recover-hold", FLAG_INT, "1m", &gw_cfg.recover_hold,
     "wsgw.v1.json: live bytes held per channel while it recovers; past it the recovery is "
     "abandoned (recovered=false) and they go out", 1024, 1LL << 32},
    {"log-level", FLAG_STR, "info", &gw_cfg.log_level, "error, warn, info or debug"},
    {NULL},
};

static const char usage[] =
    "usage: ws-gateway [options]\n"
    "WebSocket gateway: clients on ws://HOST:PORT/gateway/ws, events to API nodes over gRPC.";

#define MAX_DNS 16     /* names in --upstream (dns:/// or plain) */
#define MAX_NODES 254  /* writer slots in all: conn.h keeps a node index in a byte, 0xFF = none */
static gw_resolver_t resolvers[MAX_DNS];
static int nresolvers;

/* Node u's address for --upstream-subset: the static one, or what its name's resolver put in
 * the slot ("" while empty). Main thread. */
static const char *node_addr(void *ud, int u)
{
    (void)ud;
    if (gw_cfg.upstreams[u][0])
        return gw_cfg.upstreams[u];
    for (int i = 0; i < nresolvers; i++)
        if (u >= resolvers[i].first && u < resolvers[i].first + resolvers[i].n)
            return resolvers[i].assigned[u - resolvers[i].first];
    return "";
}

static int add_upstream(const char *addr, int *n, char *err, size_t errlen)
{
    char **nu = realloc(gw_cfg.upstreams, (size_t)(*n + 1) * sizeof *nu);
    if (!nu || !(nu[*n] = strdup(addr))) {
        if (nu)
            gw_cfg.upstreams = nu;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    gw_cfg.upstreams = nu;
    (*n)++;
    return 0;
}

/* True when the host of "host:port" is an IP literal ("1.2.3.4", "[::1]", "::1"). */
static bool host_is_ip(const char *hostport)
{
    const char *colon = strrchr(hostport, ':');
    size_t hl = colon ? (size_t)(colon - hostport) : strlen(hostport);
    char host[INET6_ADDRSTRLEN + 2];
    if (hl >= sizeof host)
        return false;
    memcpy(host, hostport, hl);
    host[hl] = 0;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        memmove(host, host + 1, hl - 1);
    }
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* A name whose every A/AAAA record is a node: --max-upstreams writer slots, filled at run time
 * by the main loop's resolver (resolver.h). spec is "name:port". */
static int add_resolved(const char *spec, int *n, char *err, size_t errlen)
{
    if (nresolvers == MAX_DNS) {
        snprintf(err, errlen, "--upstream: at most %d host names", MAX_DNS);
        return -1;
    }
    if (gw_resolver_init(&resolvers[nresolvers], spec, *n, (int)gw_cfg.max_upstreams, err,
                         errlen) < 0)
        return -1;
    nresolvers++;
    for (int i = 0; i < gw_cfg.max_upstreams; i++)
        if (add_upstream("", n, err, errlen) < 0)
            return -1;
    return 0;
}

/* --upstream: IP literals and unix:PATH are static nodes; dns:///name:port and plain name:port are every
 * address the name resolves to, re-resolved every --dns-interval. With --upstream-tls each
 * node of a plain name must present a certificate for that name (SNI and the host check use
 * the name, the connection the address), and a dns:/// node one for its address. */
static int split_upstreams(char *err, size_t errlen)
{
    char *copy = strdup(gw_cfg.upstream);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int n = 0;
    for (char *s = copy, *tok; (tok = strsep(&s, ","));) {
        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        bool dns = strncmp(tok, "dns:///", 7) == 0;
        bool path = strncmp(tok, "unix:", 5) == 0; /* a Unix domain socket: one static node */
        int rv;
        if (!path && (dns || !host_is_ip(tok))) {
            rv = add_resolved(dns ? tok + 7 : tok, &n, err, errlen);
            if (rv == 0)
                resolvers[nresolvers - 1].tls_by_name = !dns && gw_cfg.upstream_tls;
        }
        else
            rv = add_upstream(tok, &n, err, errlen);
        if (rv < 0) {
            free(copy);
            return -1;
        }
    }
    free(copy);
    if (n == 0) {
        snprintf(err, errlen, "--upstream: no API node given");
        return -1;
    }
    if (n > MAX_NODES) {
        snprintf(err, errlen, "--upstream: %d writer slots (a host name takes --max-upstreams); "
                 "at most %d", n, MAX_NODES);
        return -1;
    }
    gw_cfg.nupstreams = n;
    return 0;
}

static int parse_listen(char *err, size_t errlen)
{
    const char *colon = strrchr(gw_cfg.listen, ':');
    if (!colon) {
        snprintf(err, errlen, "--listen: '%s' is not host:port", gw_cfg.listen);
        return -1;
    }
    size_t hl = (size_t)(colon - gw_cfg.listen);
    const char *h = gw_cfg.listen;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof gw_cfg.listen_host) {
        snprintf(err, errlen, "--listen: host too long");
        return -1;
    }
    memcpy(gw_cfg.listen_host, h, hl);
    gw_cfg.listen_host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        snprintf(err, errlen, "--listen: bad port in '%s'", gw_cfg.listen);
        return -1;
    }
    gw_cfg.listen_port = (int)port;
    return 0;
}

/* Raises the soft fd limit to the hard one; returns the limit. */
static long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("cannot raise the file descriptor limit", "err=%s", strerror(errno));
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

static bool all_writers_idle(gw_t *g)
{
    for (int i = 0; i < g->nup; i++)
        if (!atomic_load(&g->nodes[i].idle))
            return false;
    for (int i = 0; i < g->nsvc * g->nup; i++)
        if (gw_link_busy(g->links[i]))
            return false;
    return true;
}

static int64_t conns_left(gw_t *g)
{
    return atomic_load(&g->nconns);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* The graceful drain: stop accepting and reading, let the writers flush and collect acks,
 * close every client 1001 "going away" (what a client sent before it saw that still goes
 * upstream: ws.c), let the writers flush and collect acks for that and the Close events, stop.
 * Bounded by --drain-timeout in total. */
static void drain(gw_t *g)
{
    int64_t t0 = clock_mono_ns();
    int64_t total = gw_cfg.drain_timeout_us * 1000;
    int64_t close_budget = total / 5 < 1000000000 ? total / 5 : 1000000000;
    atomic_store(&g->draining, 1);
    log_info("draining", "connections=%lld timeout_ms=%lld", (long long)conns_left(g),
             (long long)(total / 1000000));
    for (int k = 0; k < g->nsvc; k++)
        gw_svc_request(g->svc[k], GW_SVC_QUIESCE);
    for (int u = 0; u < g->nup; u++)
        gw_up_request(g->up[u], 1);
    /* flush: events in rings, batches not acked, replies on their way to clients */
    int settled = 0;
    while (clock_mono_ns() - t0 < total - close_budget) {
        if (all_writers_idle(g)) {
            if (++settled >= 5) /* idle for 5 consecutive looks (~100 ms) */
                break;
        } else {
            settled = 0;
        }
        sleep_ms(20);
    }
    bool flushed = settled >= 5;
    for (int k = 0; k < g->nsvc; k++)
        gw_svc_request(g->svc[k], GW_SVC_CLOSE_ALL);
    /* the clients answer with their close frames; what they sent before is read on */
    while (conns_left(g) > 0 && clock_mono_ns() - t0 < total - 100000000)
        sleep_ms(10);
    /* those messages and the Close events go upstream and are acked (idle for 3 looks in a
     * row: an event may wait a moment in a service thread's overflow, which is not counted) */
    int idle = 0;
    while (idle < 3 && clock_mono_ns() - t0 < total - 50000000) {
        idle = all_writers_idle(g) ? idle + 1 : 0;
        if (idle < 3)
            sleep_ms(10);
    }
    log_info("drained", "flushed=%d closed_flushed=%d connections_left=%lld elapsed_ms=%lld",
             flushed, idle >= 3, (long long)conns_left(g),
             (long long)((clock_mono_ns() - t0) / 1000000));
}

int main(int argc, char **argv)
{
    char err[FLAGS_ERR_LEN];
    static const flags_prog_t prog = {"ws-gateway", "WSGW_", usage};
    int rc = flags_parse(flag_table, &prog, argc, argv, NULL, err);
    if (rc == FLAGS_HELP)
        return 0;
    if (rc != FLAGS_OK) {
        fprintf(stderr, "ws-gateway: %s\n", err);
        return 2;
    }
    if (log_set_level(gw_cfg.log_level) < 0) {
        fprintf(stderr, "ws-gateway: --log-level: unknown level '%s'\n", gw_cfg.log_level);
        return 2;
    }
    if (parse_listen(err, sizeof err) < 0 || split_upstreams(err, sizeof err) < 0) {
        fprintf(stderr, "ws-gateway: %s\n", err);
        return 2;
    }
    if (strcmp(gw_cfg.tls_min_version, "1.2") != 0 && strcmp(gw_cfg.tls_min_version, "1.3") != 0) {
        fprintf(stderr, "ws-gateway: --tls-min-version: '%s' (1.2 or 1.3)\n",
                gw_cfg.tls_min_version);
        return 2;
    }
    if ((*gw_cfg.tls_cert != 0) != (*gw_cfg.tls_key != 0)) {
        fprintf(stderr, "ws-gateway: --tls-cert and --tls-key go together\n");
        return 2;
    }
    /* lws would only find a bad certificate or key inside its context creation, on a
     * service thread (it crashed there); checked here, before any thread starts */
    if (*gw_cfg.tls_cert && gw_tls_check(gw_cfg.tls_cert, gw_cfg.tls_key, gw_cfg.tls_min_version,
                                         gw_cfg.tls_ciphers, err, sizeof err) < 0) {
        fprintf(stderr, "ws-gateway: %s\n", err);
        return 1;
    }
    /* the cores this process can use (cpus.h): --threads' and --inline-writers' defaults */
    int aff = cpus_affinity();
    double limit = cpus_cgroup_limit("");
    int cores = cpus_from(aff, limit);
    if (gw_cfg.inline_writers == FLAGS_AUTO)
        gw_cfg.inline_writers = cores == 1;
    if (gw_cfg.threads == 0) {
        gw_cfg.threads = cores > 63 ? 63 : cores;
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        if (gw_cfg.threads < online)
            log_info("fewer threads than online CPUs",
                     "threads=%lld online=%ld affinity=%d cgroup_cpu_limit=%.2f",
                     (long long)gw_cfg.threads, online, aff, limit);
    }
    static char idbuf[320];
    if (!*gw_cfg.gateway_id) {
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(idbuf, sizeof idbuf, "%s:%d", host, gw_cfg.listen_port);
        gw_cfg.gateway_id = idbuf;
    }

    /* Signals are taken by sigtimedwait on this thread only: block them before any thread
     * starts so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    long nofile = raise_nofile();
    gw_t *g = calloc(1, sizeof *g);
    if (!g)
        return 1;
    g->nsvc = (int)gw_cfg.threads;
    g->nup = gw_cfg.nupstreams;
    g->nstreams = (int)gw_cfg.streams;
    /* descriptors kept for listeners, upstream sockets, epoll/eventfds, lws internals, and
     * HTTP requests in flight */
    long reserve = 64 + 8L * g->nsvc + 4L * g->nup + 256;
    int64_t fd_cap = nofile > reserve ? nofile - reserve : 1;
    g->conn_cap = gw_cfg.max_connections < fd_cap ? gw_cfg.max_connections : fd_cap;
    uint64_t seed = (uint64_t)clock_wall_ns() ^ ((uint64_t)getpid() << 32);
    uint64_t h = gw_hash64(gw_cfg.gateway_id, strlen(gw_cfg.gateway_id), seed);
    g->prefix = (uint16_t)(h ^ h >> 16 ^ h >> 32 ^ h >> 48);
    snprintf(g->instance, sizeof g->instance, "%016llx",
             (unsigned long long)gw_hash64(&seed, sizeof seed, h));
    atomic_init(&g->instance_gen, 0);
    atomic_init(&g->draining, 0);
    atomic_init(&g->nconns, 0);

    gwm_init();
    gw_pausewatch_init();
    gw_svc_log_init();
    if (gw_admit_init(gw_cfg.allowed_origins) < 0)
        return 1;
    gw_static_dir_init(gw_cfg.static_dir, argv[0]);
    if (gw_cfg.paused_check_us != 0 &&
        (gw_cfg.paused_check_us < 50000 || gw_cfg.paused_check_us > 10000000)) {
        fprintf(stderr, "ws-gateway: --paused-check: 0, or 50ms to 10s\n");
        return 2;
    }
    if (gw_cfg.send_queue < gw_cfg.max_message)
        log_warn("--send-queue is below --max-message",
                 "send_queue=%lld max_message=%lld hint=\"a client that does not read as fast "
                 "as it is sent messages of that size is closed 1008 after one such message\"",
                 (long long)gw_cfg.send_queue, (long long)gw_cfg.max_message);
    int m_cap = metrics_gauge("wsgw_connection_limit", NULL,
                              "Connections this process accepts (flag and descriptor limit).");
    metrics_gauge_set(m_cap, g->conn_cap);

    g->svc = calloc((size_t)g->nsvc, sizeof *g->svc);
    g->up = calloc((size_t)g->nup, sizeof *g->up);
    g->nodes = calloc((size_t)g->nup, sizeof *g->nodes);
    g->links = calloc((size_t)(g->nsvc * g->nup), sizeof *g->links);
    if (!g->svc || !g->up || !g->nodes || !g->links)
        return 1;
    for (int u = 0; u < g->nup; u++) {
        g->up[u] = gw_up_new(g, u, gw_cfg.upstreams[u], err, sizeof err);
        if (!g->up[u]) {
            fprintf(stderr, "ws-gateway: %s\n", err);
            return 1;
        }
    }
    for (int i = 0; i < nresolvers; i++) {
        const gw_resolver_t *r = &resolvers[i];
        _Static_assert(sizeof r->host == sizeof g->up[0]->tls_name, "host fits tls_name");
        for (int u = r->first; r->tls_by_name && u < r->first + r->n; u++)
            memcpy(g->up[u]->tls_name, r->host, sizeof r->host);
    }
    for (int k = 0; k < g->nsvc; k++) {
        g->svc[k] = gw_svc_new(g, k, err, sizeof err);
        if (!g->svc[k]) {
            fprintf(stderr, "ws-gateway: %s\n", err);
            return 1;
        }
        gwm_thread_conns(k);
        for (int u = 0; u < g->nup; u++) {
            gw_link_t *l = gw_link_new(k, u, g->nstreams, (size_t)gw_cfg.ring_size, gw_svc_wake_fn,
                                       g->svc[k], gw_up_wake_fn, g->up[u]);
            if (!l) {
                fprintf(stderr, "ws-gateway: out of memory\n");
                return 1;
            }
            g->links[k * g->nup + u] = l;
            g->svc[k]->links[u] = l;
            g->up[u]->links[k] = l;
        }
    }
    log_info("starting", "listen=%s threads=%d inline_writers=%d upstreams=%d streams=%lld "
             "gateway_id=%s fd_limit=%ld max_connections=%lld",
             gw_cfg.listen, g->nsvc, gw_cfg.inline_writers, g->nup, (long long)gw_cfg.streams,
             gw_cfg.gateway_id, nofile, (long long)g->conn_cap);
    if (g->conn_cap < gw_cfg.max_connections)
        log_warn("connection cap lowered to fit the file descriptor limit",
                 "fd_limit=%ld connections=%lld hint=\"raise LimitNOFILE / ulimit -n\"", nofile,
                 (long long)g->conn_cap);
    static gw_subset_t subset;
    if (gw_subset_init(&subset, g, (int)gw_cfg.upstream_subset,
                       gw_cfg.upstream_subset_fallback_us * 1000, gw_cfg.gateway_id) < 0) {
        fprintf(stderr, "ws-gateway: out of memory\n");
        return 1;
    }
    if (gw_cfg.upstream_subset && nresolvers)
        for (int i = 0; i < nresolvers; i++) /* (addresses first: the subset is chosen among them) */
            gw_resolver_tick(&resolvers[i], g);
    gw_subset_tick(&subset, g, node_addr, NULL, clock_mono_ns());
    for (int u = 0; u < g->nup; u++)
        if (gw_up_start(g->up[u]) < 0) {
            log_error("cannot start writer thread", "node=%s", g->up[u]->name);
            return 1;
        }
    for (int k = 0; k < g->nsvc; k++)
        if (gw_svc_start(g->svc[k]) < 0) {
            log_error("cannot start service thread", "thread=%d", k);
            return 1;
        }

    int sig = 0;
    int64_t next_resolve = 0;
    while (!sig) {
        if (nresolvers && clock_mono_ns() >= next_resolve) {
            for (int i = 0; i < nresolvers; i++)
                gw_resolver_tick(&resolvers[i], g);
            next_resolve = clock_mono_ns() + gw_cfg.dns_interval_us * 1000;
        }
        struct timespec ts = {1, 0};
        if (nresolvers && gw_cfg.dns_interval_us < 1000000)
            ts = (struct timespec){0, (long)gw_cfg.dns_interval_us * 1000};
        if (gw_cfg.upstream_subset) {
            gw_subset_tick(&subset, g, node_addr, NULL, clock_mono_ns());
            if (ts.tv_sec || ts.tv_nsec > 250000000)
                ts = (struct timespec){0, 250000000}; /* (fallbacks within a quarter second) */
        }
        int s = sigtimedwait(&sigs, NULL, &ts);
        if (s > 0)
            sig = s;
        for (int k = 0; k < g->nsvc; k++)
            metrics_gauge_set(gwm_thread_conns(k), atomic_load(&g->svc[k]->nconns));
        for (int k = 0; !sig && k < g->nsvc; k++)
            if (atomic_load(&g->svc[k]->ended)) {
                log_error("service thread ended unexpectedly", "thread=%d", k);
                sig = -1;
            }
    }
    if (sig > 0)
        log_info("signal received", "signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    drain(g);

    /* Teardown order: writers end first (nothing calls lws_cancel_service any more), then
     * the service threads destroy their lws contexts, then memory both sides shared. */
    for (int u = 0; u < g->nup; u++)
        gw_up_request(g->up[u], 2);
    for (int u = 0; u < g->nup; u++)
        gw_up_join(g->up[u]);
    for (int k = 0; k < g->nsvc; k++)
        gw_svc_request(g->svc[k], GW_SVC_STOP);
    for (int k = 0; k < g->nsvc; k++)
        gw_svc_join(g->svc[k]);
    for (int u = 0; u < g->nup; u++)
        gw_up_free(g->up[u]);
    for (int i = 0; i < g->nsvc * g->nup; i++)
        gw_link_free(g->links[i]); /* with the events and commands still in flight */
    for (int k = 0; k < g->nsvc; k++)
        free(g->svc[k]);
    gw_subset_free(&subset);
    for (int i = 0; i < nresolvers; i++)
        gw_resolver_free(&resolvers[i]);
    for (int i = 0; i < gw_cfg.nupstreams; i++)
        free(gw_cfg.upstreams[i]);
    free(gw_cfg.upstreams);
    free(g->svc);
    free(g->up);
    free(g->links);
    free(g->nodes);
    free(g);
    log_info("stopped", "%s", "");
    return sig < 0 ? 1 : 0;
}
