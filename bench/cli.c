/* cli.c: ws-bench flags and configuration (see cli.h). */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "log.h"
#include "ws_frame.h"

const char cli_usage[] =
    "usage: ws-bench message|conn|push|recover [flags]\n"
    "\n"
    "  message  every connection sends --content/--file every --interval, --times times (or\n"
    "           until --duration); --interval 0 is closed loop with --inflight messages\n"
    "           outstanding per connection. Replies are matched to sends in order (an echo\n"
    "           service): round-trip latency, messages/s, MB/s. Open loop (--interval > 0)\n"
    "           times each round trip from the message's scheduled send time, not from when\n"
    "           it went out, so delays of the bench itself count (no coordinated omission,\n"
    "           as wrk2); it also reports how far sends fell behind the schedule (send lag,\n"
    "           late sends over --late-threshold) and the uncorrected latency.\n"
    "  conn     opens --user connections and holds them idle for --sleep; reports how many\n"
    "           are established and the bench's own memory per connection.\n"
    "  push     --user clients connect as u0..uN-1 (--target room: each joins --room through\n"
    "           the chat handler), then POST /v1/push to --push-url at --rate with the send\n"
    "           time in the data; clients measure delivery latency and deliveries/s.\n"
    "  recover  push mode (--target user, \"history\": true) over the subprotocol\n"
    "           wsgw.v1.json: --offline-after the pushes began every client goes away, and\n"
    "           --offline later comes back with its position; counts what the recovery gave\n"
    "           back in order before its notice, against what was pushed meanwhile, and\n"
    "           every gap, repeat and recovered=false notice as an error.\n"
    "\n"
    "Connection i uses user id u<i> (?user=u<i> added to --path) and host number\n"
    "i mod (number of hosts).\n"
    "--user beyond ~19 000 per process needs --procs (RLIMIT_NOFILE 20 000 here); beyond\n"
    "~28 000 per destination needs --source-ips (ephemeral ports).\n"
    "\n"
    "Output: a summary, and as the last line always\n"
    "  sent=N received=N errors=N p50_us=N p99_us=N conns=N\n"
    "(push: sent = pushes accepted, received = deliveries; open loop: p50/p99 timed from the\n"
    "scheduled send times). --json FILE writes everything.\n"
    "Exit status: 0 when errors=0, 1 when errors>0 (connect/handshake failures, unexpected\n"
    "closes, unanswered messages, failed pushes), 2 on bad usage or set-up failure.";

static bench_opts_t O;

static const flag_t tab[] = {
    {"host", FLAG_STR, "127.0.0.1:8080", &O.host,
     "server host:port; a comma-separated list spreads connections evenly"},
    {"path", FLAG_STR, "/gateway/ws", &O.path, "request path (may hold a query)"},
    {"user", FLAG_INT, "500", &O.users, "number of connections (users u0..uN-1)", 0, 10000000},
    {"connect-interval", FLAG_DURATION, "0", &O.connect_interval_us,
     "pause between two connects over the whole run (0: --connect-rate decides); e.g. 10ms",
     0, 0, "connectInterval"},
    {"connect-rate", FLAG_DOUBLE, "10000", &O.connect_rate,
     "connects per second over all processes (0 = unpaced, --max-pending bounds)"},
    {"max-pending", FLAG_INT, "1000", &O.max_pending,
     "connects + handshakes in progress per process", 1, 1000000},
    {"content", FLAG_STR, "hello", &O.content, "message text (message mode)"},
    {"file", FLAG_STR, "", &O.file, "message payload read from this file (wins over --content)"},
    {"binary", FLAG_BOOL, "false", &O.binary, "send binary frames instead of text"},
    {"interval", FLAG_DURATION, "1s", &O.interval_us,
     "time between two messages of a connection; 0 = closed loop (see --inflight)"},
    {"times", FLAG_INT, "0", &O.times,
     "messages per connection (push: pushes in total); 0 = until --duration ends, or 10 "
     "(push: 100) when there is no --duration",
     0, 1000000000},
    {"duration", FLAG_DURATION, "0", &O.duration_us,
     "stop sending after this long (from the start), then wait --drain for replies"},
    {"tick", FLAG_DURATION, "1ms", &O.tick_us,
     "open loop: sends are grouped on a grid of this period (each due time rounded up to it, "
     "and timed from there): the sends of one tick go out together, as when the bench slept in "
     "whole milliseconds; 0 = every send at its own time (evenly spread)"},
    {"late-threshold", FLAG_DURATION, "1ms", &O.late_threshold_us,
     "open loop: a send more than this behind its schedule is counted as late (reported, not an "
     "error)"},
    {"inflight", FLAG_INT, "1", &O.inflight,
     "closed loop (--interval 0): messages outstanding per connection", 1, 65536},
    {"json", FLAG_STR, "", &O.json, "write the full results as JSON to this file"},
    {"source-ips", FLAG_STR, "", &O.source_ips,
     "client source addresses, e.g. 127.0.0.1-127.0.0.8 (IP_BIND_ADDRESS_NO_PORT)"},
    {"threads", FLAG_INT, "1", &O.threads, "epoll threads per process", 1, 256},
    {"procs", FLAG_INT, "1", &O.procs,
     "worker processes splitting the connections (fd limit per process)", 1, 256},
    {"timeout", FLAG_DURATION, "10s", &O.timeout_us, "connect + handshake timeout"},
    {"drain", FLAG_DURATION, "5s", &O.drain_us,
     "after the last send: wait at most this long for replies (push: for deliveries, ending "
     "early after 2 s without one)"},
    {"close-wait", FLAG_DURATION, "2s", &O.close_wait_us,
     "wait for the server's close frame before resetting"},
    {"sleep", FLAG_DURATION, "10s", &O.sleep_us, "conn mode: hold the connections this long"},
    {"user-param", FLAG_STR, "user", &O.user_param,
     "query parameter carrying the user id u<i> (empty: none; not added when the query of "
     "--path already has it)"},
    {"header", FLAG_STR, "", &O.header,
     "extra request header(s) for the handshake, \"Name: value\"; several separated by \\n"},
    {"push-url", FLAG_STR, "http://127.0.0.1:8082", &O.push_url, "push mode: ws-api's HTTP API"},
    {"push-token", FLAG_STR, "", &O.push_token, "push mode: Authorization: Bearer token"},
    {"target", FLAG_STR, "user", &O.target,
     "push mode: user (one user per push, round robin), room (--room) or all"},
    {"room", FLAG_STR, "bench", &O.room, "push mode: room joined with {\"op\":\"join\"}"},
    {"rate", FLAG_DOUBLE, "100", &O.rate, "push mode: pushes per second"},
    {"size", FLAG_INT, "64", &O.size, "push mode: bytes of data per push (>= 20)", 20, 65536},
    {"offline", FLAG_DURATION, "5s", &O.offline_us,
     "recover mode: how long the clients stay away"},
    {"offline-after", FLAG_DURATION, "2s", &O.offline_after_us,
     "recover mode: when they go away, after the pushes began (at least 1s)"},
    {"settle", FLAG_DURATION, "1s", &O.settle_us,
     "push mode: pause after the clients connected (joins take effect) before pushing"},
    {"log-level", FLAG_STR, "warn", &O.log_level, "error, warn, info, debug"},
    {NULL},
};

int cli_parse_hostport(const char *s, engine_target_t *t, char err[CLI_ERR_LEN])
{
    char host[128], port[16];
    const char *colon;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') {
            snprintf(err, CLI_ERR_LEN, "bad host '%s' (want [v6]:port)", s);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(rb - s - 1), s + 1);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s) {
            snprintf(err, CLI_ERR_LEN, "bad host '%s' (want host:port)", s);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
    }
    snprintf(port, sizeof port, "%s", colon + 1);
    if (strlen(s) >= sizeof t->name) {
        snprintf(err, CLI_ERR_LEN, "host '%s' too long", s);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rv = getaddrinfo(host, port, &hints, &res);
    if (rv || !res) {
        snprintf(err, CLI_ERR_LEN, "cannot resolve '%s': %s", s, gai_strerror(rv));
        return -1;
    }
    struct addrinfo *pick = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    memcpy(&t->addr, pick->ai_addr, pick->ai_addrlen);
    t->addr_len = pick->ai_addrlen;
    snprintf(t->name, sizeof t->name, "%s", s);
    freeaddrinfo(res);
    return 0;
}

static int add_src(bench_cfg_t *cfg, const struct sockaddr *sa, socklen_t len, char *err)
{
    if (cfg->nsrc >= ENGINE_MAX_SRC) {
        snprintf(err, CLI_ERR_LEN, "more than %d source addresses", ENGINE_MAX_SRC);
        return -1;
    }
    memcpy(&cfg->src[cfg->nsrc], sa, len);
    cfg->src_len[cfg->nsrc] = len;
    cfg->nsrc++;
    return 0;
}

int cli_parse_sources(const char *s, bench_cfg_t *cfg, char err[CLI_ERR_LEN])
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", s);
    char *save = NULL;
    for (char *item = strtok_r(tmp, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        char *dash = strchr(item, '-');
        struct in_addr a, b;
        if (dash) {
            *dash = 0;
            if (inet_pton(AF_INET, item, &a) != 1 || inet_pton(AF_INET, dash + 1, &b) != 1 ||
                ntohl(b.s_addr) < ntohl(a.s_addr)) {
                snprintf(err, CLI_ERR_LEN, "bad source range '%s-%s'", item, dash + 1);
                return -1;
            }
            for (uint32_t x = ntohl(a.s_addr); x <= ntohl(b.s_addr); x++) {
                struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(x)};
                if (add_src(cfg, (struct sockaddr *)&sin, sizeof sin, err) < 0)
                    return -1;
                if (x == UINT32_MAX)
                    break;
            }
            continue;
        }
        struct sockaddr_in sin = {.sin_family = AF_INET};
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
        if (inet_pton(AF_INET, item, &sin.sin_addr) == 1) {
            if (add_src(cfg, (struct sockaddr *)&sin, sizeof sin, err) < 0)
                return -1;
        } else if (inet_pton(AF_INET6, item, &sin6.sin6_addr) == 1) {
            if (add_src(cfg, (struct sockaddr *)&sin6, sizeof sin6, err) < 0)
                return -1;
        } else {
            snprintf(err, CLI_ERR_LEN, "bad source address '%s'", item);
            return -1;
        }
    }
    return 0;
}

/* The whole file, kept for the life of the process (cfg->payload points into it). */
static int read_file(const char *path, uint8_t **out, size_t *len, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, CLI_ERR_LEN, "--file %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *p = malloc(cap);
    while (p) {
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            uint8_t *np = realloc(p, cap * 2);
            if (!np) {
                free(p);
                p = NULL;
                break;
            }
            p = np;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!p || bad) {
        free(p);
        snprintf(err, CLI_ERR_LEN, "--file %s: read failed", path);
        return -1;
    }
    *out = p;
    *len = n;
    return 0;
}

static char *extra_headers(const char *h)
{
    /* "A: b\nC: d" (a newline or the two characters backslash n) -> "A: b\r\nC: d\r\n" */
    size_t n = strlen(h);
    char *out = malloc(n * 2 + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '\r')
            continue;
        bool nl = h[i] == '\n' || (h[i] == '\\' && h[i + 1] == 'n' && ++i);
        if (nl) {
            out[o++] = '\r';
            out[o++] = '\n';
        } else {
            out[o++] = h[i];
        }
    }
    if (o && out[o - 1] != '\n') {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    out[o] = 0;
    return out;
}

int cli_parse(int argc, char **argv, bench_opts_t *o, bench_cfg_t *cfg, char err[CLI_ERR_LEN])
{
    char ferr[FLAGS_ERR_LEN];
    int npos = 0;
    static const flags_prog_t prog = {"ws-bench", "WSBENCH_", cli_usage};
    int rv = flags_parse(tab, &prog, argc, argv, &npos, ferr);
    if (rv == FLAGS_HELP)
        return 1;
    if (rv != FLAGS_OK) {
        snprintf(err, CLI_ERR_LEN, "%s", ferr);
        return -1;
    }
    *o = O;
    if (npos != 1) {
        snprintf(err, CLI_ERR_LEN, "give one mode: message, conn or push (see --help)");
        return -1;
    }
    o->mode_name = argv[0];
    memset(cfg, 0, sizeof *cfg);
    if (strcmp(o->mode_name, "message") == 0)
        cfg->mode = MODE_MESSAGE;
    else if (strcmp(o->mode_name, "conn") == 0)
        cfg->mode = MODE_CONN;
    else if (strcmp(o->mode_name, "push") == 0)
        cfg->mode = MODE_PUSH;
    else if (strcmp(o->mode_name, "recover") == 0)
        cfg->mode = MODE_RECOVER;
    else {
        snprintf(err, CLI_ERR_LEN, "unknown mode '%s': message, conn, push or recover",
                 o->mode_name);
        return -1;
    }
    if (log_set_level(o->log_level) < 0) {
        snprintf(err, CLI_ERR_LEN, "--log-level: unknown level '%s'", o->log_level);
        return -1;
    }

    char hosts[4096];
    snprintf(hosts, sizeof hosts, "%s", o->host);
    char *save = NULL;
    for (char *h = strtok_r(hosts, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
        while (*h == ' ')
            h++;
        if (!*h)
            continue;
        if (cfg->nhosts >= ENGINE_MAX_HOSTS) {
            snprintf(err, CLI_ERR_LEN, "more than %d hosts", ENGINE_MAX_HOSTS);
            return -1;
        }
        if (cli_parse_hostport(h, &cfg->hosts[cfg->nhosts], err) < 0)
            return -1;
        cfg->nhosts++;
    }
    if (!cfg->nhosts) {
        snprintf(err, CLI_ERR_LEN, "--host is empty");
        return -1;
    }
    if (*o->source_ips && cli_parse_sources(o->source_ips, cfg, err) < 0)
        return -1;
    if (o->path[0] != '/') {
        snprintf(err, CLI_ERR_LEN, "--path must start with '/': '%s'", o->path);
        return -1;
    }
    cfg->path = o->path;
    cfg->user_param = o->user_param;
    if (*o->header && !(cfg->extra_headers = extra_headers(o->header))) {
        snprintf(err, CLI_ERR_LEN, "out of memory");
        return -1;
    }
    cfg->users = (uint64_t)o->users;
    cfg->threads = (int)o->threads;

    double rate = o->connect_rate;
    if (rate < 0) {
        snprintf(err, CLI_ERR_LEN, "--connect-rate must be >= 0");
        return -1;
    }
    if (o->connect_interval_us > 0) {
        double r = 1e6 / (double)o->connect_interval_us;
        if (rate == 0 || r < rate)
            rate = r;
    }
    cfg->connect_rate = rate / (double)o->procs; /* per process */
    cfg->max_pending = (uint32_t)o->max_pending;
    cfg->timeout_ns = o->timeout_us * 1000;
    cfg->close_wait_ns = o->close_wait_us * 1000;
    cfg->drain_ns = o->drain_us * 1000;
    cfg->duration_ns = o->duration_us * 1000;
    cfg->interval_ns = o->interval_us * 1000;
    cfg->late_threshold_ns = o->late_threshold_us * 1000;
    cfg->tick_ns = o->tick_us * 1000;
    cfg->inflight = (uint32_t)o->inflight;
    cfg->opcode = o->binary ? WS_OP_BINARY : WS_OP_TEXT;

    if (cfg->mode == MODE_MESSAGE) {
        if (*o->file) {
            uint8_t *p;
            size_t n;
            if (read_file(o->file, &p, &n, err) < 0)
                return -1;
            cfg->payload = p;
            cfg->payload_len = n;
        } else {
            cfg->payload = (const uint8_t *)o->content;
            cfg->payload_len = strlen(o->content);
        }
        cfg->times = (uint64_t)o->times;
        if (!cfg->times && !cfg->duration_ns)
            cfg->times = 10;
    }
    if (cfg->mode == MODE_RECOVER) {
        if (strcmp(o->target, "user") != 0) {
            snprintf(err, CLI_ERR_LEN, "recover mode pushes to users: --target user");
            return -1;
        }
        if (o->offline_after_us < 1000000 || o->offline_us <= 0) {
            snprintf(err, CLI_ERR_LEN, "recover mode: --offline-after at least 1s, --offline > 0");
            return -1;
        }
        if (!o->duration_us && !o->times) /* away, back, and some live after */
            o->duration_us = o->offline_after_us + o->offline_us + 3000000;
        cfg->offline_ns = o->offline_us * 1000;
        /* the subprotocol, next to any --header lines */
        static char hdrs[4096];
        snprintf(hdrs, sizeof hdrs, "%sSec-WebSocket-Protocol: wsgw.v1.json\r\n",
                 cfg->extra_headers ? cfg->extra_headers : "");
        cfg->extra_headers = hdrs;
    }
    if (bench_pushes(cfg)) {
        if (strcmp(o->target, "user") && strcmp(o->target, "room") && strcmp(o->target, "all")) {
            snprintf(err, CLI_ERR_LEN, "--target must be user, room or all: '%s'", o->target);
            return -1;
        }
        if (o->rate <= 0) {
            snprintf(err, CLI_ERR_LEN, "--rate must be > 0");
            return -1;
        }
        if (strcmp(o->target, "room") == 0) {
            static char join[300];
            if (strlen(o->room) > 200 || strpbrk(o->room, "\"\\")) {
                snprintf(err, CLI_ERR_LEN, "--room: at most 200 bytes, no quotes or backslashes");
                return -1;
            }
            snprintf(join, sizeof join, "{\"op\":\"join\",\"room\":\"%s\"}", o->room);
            cfg->join_msg = join;
        }
        if (!o->times && !o->duration_us)
            o->times = 100;
    }
    return 0;
}
