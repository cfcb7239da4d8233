/* cli.h: ws-bench's command line: the flag table (websocket-benchmark-cli's flags kept, with
 * their camelCase spellings as aliases) and turning it into a bench_cfg_t: resolved hosts,
 * source addresses, the payload.
 *
 * Thread: main thread, before anything starts. */
#ifndef WSGW_BENCH_CLI_H
#define WSGW_BENCH_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

#define CLI_ERR_LEN 512

typedef struct bench_opts {
    const char *mode_name;
    const char *host, *path, *content, *file, *json, *source_ips, *user_param, *header;
    const char *push_url, *push_token, *target, *room, *log_level;
    int64_t users, times, inflight, threads, procs, max_pending, size;
    int64_t connect_interval_us, interval_us, duration_us, timeout_us, drain_us, close_wait_us;
    int64_t late_threshold_us, tick_us;
    int64_t sleep_us, settle_us, offline_us, offline_after_us;
    double connect_rate, rate;
    bool binary;
} bench_opts_t;

/* cli_parse: parses argv into o and cfg (cfg->payload points into memory kept for the life of
 * the process). Returns 0, 1 after --help (printed), or -1 with a message in err. */
int cli_parse(int argc, char **argv, bench_opts_t *o, bench_cfg_t *cfg, char err[CLI_ERR_LEN]);

/* cli_parse_hostport: "host:port" / "[v6]:port" resolved (IPv4 preferred) into t.
 * Returns 0 or -1 with a message in err. */
int cli_parse_hostport(const char *s, engine_target_t *t, char err[CLI_ERR_LEN]);

/* cli_parse_sources: "127.0.0.1-127.0.0.8,10.0.0.1" (IPv4 ranges, single IPv4/IPv6 literals)
 * into cfg->src. Returns 0 or -1 with a message in err. */
int cli_parse_sources(const char *s, bench_cfg_t *cfg, char err[CLI_ERR_LEN]);

/* cli_usage: the one-paragraph usage printed above the flag table. */
extern const char cli_usage[];

#endif
