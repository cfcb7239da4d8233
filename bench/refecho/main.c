/* main.c: ws-refecho, the reference direct echo server (see refecho.h).
 *
 *   ws-refecho --listen 127.0.0.1:9000 --threads 2
 *
 * Main thread: flags, listening sockets, service threads, then waits for SIGINT/SIGTERM and
 * stops them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "flags.h"
#include "log.h"
#include "refecho.h"

static const char *listen_addr, *level;
static int64_t nthreads, max_queue;

static const flag_t tab[] = {
    {"listen", FLAG_STR, "127.0.0.1:9000", &listen_addr, "address to listen on (host:port)"},
    {"threads", FLAG_INT, "1", &nthreads,
     "service threads, each with its own lws context and SO_REUSEPORT socket", 1, 64},
    {"max-queue", FLAG_INT, "1048576", &max_queue,
     "bytes of echoes queued to one client before its input is paused", 1024, 1LL << 34},
    {"log-level", FLAG_STR, "warn", &level, "error, warn, info, debug"},
    {"raw", FLAG_BOOL, "false", &refecho_cfg.raw,
     "lws raw sockets: the upgrade and the framing done by ws-refecho itself, not by lws' "
     "WebSocket role (to measure what that role costs)"},
    {NULL},
};

static const char usage[] =
    "usage: ws-refecho [flags]\n\n"
    "Reference WebSocket echo server for benchmarks: the gateway's libwebsockets set-up\n"
    "(libuv loop per thread, rx_buffer_size 512, no permessage-deflate) with no upstream\n"
    "hop. Every message is sent back to its connection, in order. Any path is accepted.";

int main(int argc, char **argv)
{
    char err[FLAGS_ERR_LEN];
    static const flags_prog_t prog = {"ws-refecho", "WSREFECHO_", usage};
    int rv = flags_parse(tab, &prog, argc, argv, NULL, err);
    if (rv == FLAGS_HELP)
        return 0;
    if (rv != FLAGS_OK) {
        fprintf(stderr, "ws-refecho: %s\n", err);
        return 2;
    }
    if (log_set_level(level) < 0) {
        fprintf(stderr, "ws-refecho: unknown --log-level '%s'\n", level);
        return 2;
    }
    const char *colon = strrchr(listen_addr, ':');
    if (!colon) {
        fprintf(stderr, "ws-refecho: --listen wants host:port, not '%s'\n", listen_addr);
        return 2;
    }
    static char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen_addr), listen_addr);
    if (host[0] == '[') { /* [v6] */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    refecho_cfg.listen_host = host;
    refecho_cfg.listen_port = atoi(colon + 1);
    refecho_cfg.max_queue = max_queue;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* lws sizes its fd table from this at context creation */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    refecho_log_init();

    /* signals go to this thread only (sigwait below) */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int n = (int)nthreads;
    refecho_svc_t *svc = calloc((size_t)n, sizeof *svc);
    if (!svc) {
        fprintf(stderr, "ws-refecho: out of memory\n");
        return 2;
    }
    int started = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        svc[i].idx = i;
        svc[i].listen_fd = refecho_listen(host, refecho_cfg.listen_port, err, sizeof err);
        if (svc[i].listen_fd < 0) {
            log_error("listen failed", "err=\"%s\"", err);
            rc = 2;
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        if (refecho_svc_start(&svc[i]) < 0) {
            log_error("thread start failed", "thread=%d", i);
            rc = 2;
            goto out;
        }
        started++;
    }
    log_info("listening", "addr=%s threads=%d", listen_addr, n);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("stopping", "signal=%d", sig);
out:
    for (int i = 0; i < started; i++)
        refecho_svc_stop(&svc[i]);
    uint64_t accepted = 0, messages = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(svc[i].tid, NULL);
        accepted += atomic_load(&svc[i].accepted);
        messages += atomic_load(&svc[i].messages);
    }
    for (int i = started; i < n; i++)
        if (svc[i].listen_fd > 0)
            close(svc[i].listen_fd);
    log_info("stopped", "accepted=%llu messages=%llu", (unsigned long long)accepted,
             (unsigned long long)messages);
    free(svc);
    return rc;
}
