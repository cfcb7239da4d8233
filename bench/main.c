/* main.c: ws-bench, the WebSocket load generator (usage: cli.c; design: engine.h, group.h).
 *
 * The main thread parses the flags, forks the worker processes, drives the phases of the
 * mode (conn: hold for --sleep; push: settle, push at --rate, drain), merges the results and
 * prints them, the fixed summary line last. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "group.h"
#include "log.h"
#include "pusher.h"
#include "report.h"

/* What the run was asked to do, embedded in --json. */
static json_t *config_json(const bench_opts_t *o, const bench_cfg_t *cfg)
{
    char hostname[256] = "";
    gethostname(hostname, sizeof hostname - 1);
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:f,s:I,s:s,s:I}", "mode", o->mode_name, "host", o->host,
        "path", o->path, "users", (json_int_t)o->users, "threads", (json_int_t)o->threads,
        "procs", (json_int_t)o->procs, "connect_rate", cfg->connect_rate * (double)o->procs,
        "source_ips", (json_int_t)cfg->nsrc, "machine", hostname, "nproc",
        (json_int_t)sysconf(_SC_NPROCESSORS_ONLN));
    if (!j)
        return NULL;
    if (cfg->mode == MODE_MESSAGE) {
        json_object_set_new(j, "payload_bytes", json_integer((json_int_t)cfg->payload_len));
        json_object_set_new(j, "binary", json_boolean(o->binary));
        json_object_set_new(j, "interval_us", json_integer(o->interval_us));
        json_object_set_new(j, "times", json_integer((json_int_t)cfg->times));
        json_object_set_new(j, "duration_us", json_integer(o->duration_us));
        json_object_set_new(j, "inflight", json_integer(o->inflight));
        json_object_set_new(j, "late_threshold_us", json_integer(o->late_threshold_us));
        json_object_set_new(j, "tick_us", json_integer(o->tick_us));
        if (*o->file)
            json_object_set_new(j, "file", json_string(o->file));
    } else if (cfg->mode == MODE_CONN) {
        json_object_set_new(j, "sleep_us", json_integer(o->sleep_us));
    } else {
        if (cfg->mode == MODE_RECOVER) {
            json_object_set_new(j, "offline_us", json_integer(o->offline_us));
            json_object_set_new(j, "offline_after_us", json_integer(o->offline_after_us));
        }
        json_object_set_new(j, "target", json_string(o->target));
        json_object_set_new(j, "room", json_string(o->room));
        json_object_set_new(j, "rate", json_real(o->rate));
        json_object_set_new(j, "pushes", json_integer(o->times));
        json_object_set_new(j, "duration_us", json_integer(o->duration_us));
        json_object_set_new(j, "size", json_integer(o->size));
        json_object_set_new(j, "push_url", json_string(o->push_url));
    }
    return j;
}

/* RLIMIT_NOFILE: soft raised to hard; each process needs its connections + a few. */
static int check_fds(const bench_opts_t *o, char *err, size_t errlen)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    uint64_t per = ((uint64_t)o->users + (uint64_t)o->procs - 1) / (uint64_t)o->procs;
    uint64_t room = rl.rlim_cur > 64 ? (uint64_t)rl.rlim_cur - 64 : 0;
    if (per > room) {
        uint64_t need = room ? ((uint64_t)o->users + room - 1) / room : 0;
        snprintf(err, errlen,
                 "%llu connections per process exceed the descriptor limit (%llu): use "
                 "--procs %llu or more",
                 (unsigned long long)per, (unsigned long long)rl.rlim_cur,
                 (unsigned long long)need);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static bench_cfg_t cfg;
    bench_opts_t o;
    char err[CLI_ERR_LEN];
    int rv = cli_parse(argc, argv, &o, &cfg, err);
    if (rv == 1)
        return 0;
    if (rv < 0) {
        fprintf(stderr, "ws-bench: %s\n", err);
        return 2;
    }
    if (check_fds(&o, err, sizeof err) < 0) {
        fprintf(stderr, "ws-bench: %s\n", err);
        return 2;
    }
    int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0) {
        fprintf(stderr, "ws-bench: eventfd: %s\n", strerror(errno));
        return 2;
    }
    group_signals(stop_fd);
    if (cfg.mode == MODE_RECOVER) {
        /* when the clients go away: set below, read by the workers (forked next) */
        void *shm = mmap(NULL, sizeof(int64_t), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (shm == MAP_FAILED) {
            fprintf(stderr, "ws-bench: mmap: %s\n", strerror(errno));
            return 2;
        }
        cfg.drop_at = shm;
        atomic_init(cfg.drop_at, 0);
    }

    char gerr[ENGINE_ERR_LEN];
    group_t *g = group_start(&cfg, (int)o.procs, gerr);
    if (!g) {
        fprintf(stderr, "ws-bench: %s\n", gerr);
        return 2;
    }
    bool all_ready = false;
    uint64_t open = group_wait_ready(g, stop_fd, -1, &all_ready);
    log_info("connected", "open=%llu all_ready=%d", (unsigned long long)open, all_ready);

    report_t *push_rep = calloc(1, sizeof *push_rep);
    report_t *rep = calloc(1, sizeof *rep);
    if (!push_rep || !rep) {
        fprintf(stderr, "ws-bench: out of memory\n");
        return 2;
    }
    report_init(rep);
    report_init(push_rep);
    int setup_failed = 0;
    if (cfg.mode == MODE_CONN && all_ready) {
        group_sleep(g, stop_fd, o.sleep_us / 1000);
        group_stop(g);
    } else if (bench_pushes(&cfg) && all_ready) {
        pusher_opts_t po = {
            .url = o.push_url,
            .token = o.push_token,
            .room = o.room,
            .target = strcmp(o.target, "room") == 0  ? PUSH_TARGET_ROOM
                      : strcmp(o.target, "all") == 0 ? PUSH_TARGET_ALL
                                                     : PUSH_TARGET_USER,
            .rate = o.rate,
            .count = (uint64_t)o.times,
            .duration_ns = o.duration_us * 1000,
            .size = (size_t)o.size,
            .users = (uint64_t)o.users,
            .history = cfg.mode == MODE_RECOVER,
        };
        char perr[PUSHER_ERR_LEN];
        if (group_sleep(g, stop_fd, o.settle_us / 1000)) {
            if (cfg.drop_at) /* the clients go away that long into the pushes */
                atomic_store(cfg.drop_at, clock_mono_ns() + o.offline_after_us * 1000);
            if (pusher_run(&po, stop_fd, push_rep, perr) < 0) {
                fprintf(stderr, "ws-bench: %s\n", perr);
                setup_failed = 1;
            }
        }
        push_rep->deliveries_expected =
            po.target == PUSH_TARGET_USER ? push_rep->sent : push_rep->sent * open;
        group_stop(g);
    } else if (cfg.mode != MODE_MESSAGE) {
        group_stop(g);
    }
    int died = group_collect(g, stop_fd, rep);
    struct rusage ru; /* this process: the pusher, the coordination */
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        rep->cpu_s += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    if (bench_pushes(&cfg)) {
        report_merge(rep, push_rep);
        if (rep->received < rep->deliveries_expected)
            rep->errors[ERR_UNDELIVERED] = rep->deliveries_expected - rep->received;
    }
    report_print(rep, o.mode_name, 1, stdout);
    if (died)
        fprintf(stderr, "ws-bench: %d worker process(es) ended without a result\n", died);
    int rc = died || setup_failed ? 2 : report_errors(rep) ? 1 : 0;
    if (*o.json) {
        char jerr[256];
        if (report_json(rep, o.mode_name, config_json(&o, &cfg), o.json, jerr, sizeof jerr) <
            0) {
            fprintf(stderr, "ws-bench: %s\n", jerr);
            rc = 2;
        }
    }
    free(rep);
    free(push_rep);
    close(stop_fd);
    return rc;
}
