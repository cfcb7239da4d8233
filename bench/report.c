/* report.c: merging, printing and JSON export of bench results (see report.h). */
#include "report.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

static const char *const err_names[ERR_KINDS] = {
    [ERR_CONNECT_REFUSED] = "connect_refused",
    [ERR_CONNECT] = "connect_error",
    [ERR_CONNECT_TIMEOUT] = "connect_timeout",
    [ERR_HANDSHAKE_STATUS] = "handshake_status",
    [ERR_HANDSHAKE] = "handshake_invalid",
    [ERR_CLOSED_BY_SERVER] = "closed_by_server",
    [ERR_CLOSED] = "closed_unexpectedly",
    [ERR_PROTOCOL] = "protocol_error",
    [ERR_UNANSWERED] = "unanswered",
    [ERR_PUSH] = "push_failed",
    [ERR_UNDELIVERED] = "undelivered",
    [ERR_NOT_RECOVERED] = "not_recovered",
    [ERR_OUT_OF_ORDER] = "out_of_order",
    [ERR_GAP] = "gap",
};

const char *report_err_name(err_kind_t k)
{
    return k < ERR_KINDS ? err_names[k] : "unknown";
}

void report_init(report_t *r)
{
    memset(r, 0, sizeof *r);
    hist_init(&r->latency);
    hist_init(&r->latency_sent);
    hist_init(&r->send_lag);
    hist_init(&r->connect);
    hist_init(&r->recovery);
}

void report_code_add(code_count_t *tab, uint32_t code, uint64_t n)
{
    for (int i = 0; i < REPORT_CODES - 1; i++) {
        if (tab[i].count && tab[i].code == code) {
            tab[i].count += n;
            return;
        }
        if (!tab[i].count) {
            tab[i].code = code;
            tab[i].count = n;
            return;
        }
    }
    /* full: the last slot collects every other code as code 0 */
    tab[REPORT_CODES - 1].code = 0;
    tab[REPORT_CODES - 1].count += n;
}

static int64_t tmin(int64_t a, int64_t b) { return !a ? b : !b ? a : a < b ? a : b; }
static int64_t tmax(int64_t a, int64_t b) { return a > b ? a : b; }

void report_merge(report_t *d, const report_t *s)
{
    d->conns_target += s->conns_target;
    d->conns_attempted += s->conns_attempted;
    d->conns_opened += s->conns_opened;
    d->conns_ready += s->conns_ready;
    d->conns_at_end += s->conns_at_end;
    d->sent += s->sent;
    d->received += s->received;
    d->bytes_sent += s->bytes_sent;
    d->bytes_received += s->bytes_received;
    d->unmatched += s->unmatched;
    d->deliveries_expected += s->deliveries_expected;
    d->pings += s->pings;
    d->pongs += s->pongs;
    for (int k = 0; k < ERR_KINDS; k++)
        d->errors[k] += s->errors[k];
    for (int i = 0; i < REPORT_CODES; i++) {
        if (s->close_codes[i].count)
            report_code_add(d->close_codes, s->close_codes[i].code, s->close_codes[i].count);
        if (s->http_status[i].count)
            report_code_add(d->http_status, s->http_status[i].code, s->http_status[i].count);
    }
    d->t_start = tmin(d->t_start, s->t_start);
    d->t_ready = tmax(d->t_ready, s->t_ready);
    d->t_first_send = tmin(d->t_first_send, s->t_first_send);
    d->t_last_send = tmax(d->t_last_send, s->t_last_send);
    d->t_last_recv = tmax(d->t_last_recv, s->t_last_recv);
    d->t_end = tmax(d->t_end, s->t_end);
    d->rss_base_kb += s->rss_base_kb;
    d->rss_ready_kb += s->rss_ready_kb;
    d->rss_end_kb += s->rss_end_kb;
    d->rss_peak_kb += s->rss_peak_kb;
    d->cpu_s += s->cpu_s;
    d->procs += s->procs;
    d->threads += s->threads;
    d->open_loop |= s->open_loop;
    d->late_sends += s->late_sends;
    if (s->late_threshold_ns > d->late_threshold_ns)
        d->late_threshold_ns = s->late_threshold_ns;
    hist_merge(&d->latency, &s->latency);
    hist_merge(&d->latency_sent, &s->latency_sent);
    hist_merge(&d->send_lag, &s->send_lag);
    hist_merge(&d->connect, &s->connect);
    d->rc_away += s->rc_away;
    d->rc_recovered += s->rc_recovered;
    d->rc_ok += s->rc_ok;
    d->rc_missed += s->rc_missed;
    d->rc_gaps += s->rc_gaps;
    d->rc_dups += s->rc_dups;
    hist_merge(&d->recovery, &s->recovery);
}

uint64_t report_errors(const report_t *r)
{
    uint64_t n = 0;
    for (int k = 0; k < ERR_KINDS; k++)
        n += r->errors[k];
    return n;
}

double report_mem_per_conn(const report_t *r)
{
    if (!r->conns_ready || r->rss_ready_kb <= r->rss_base_kb)
        return 0;
    return (double)(r->rss_ready_kb - r->rss_base_kb) * 1024.0 / (double)r->conns_ready;
}

/* the measuring window for rates: first send to last receive, in seconds */
static double window_s(const report_t *r)
{
    if (!r->t_first_send || r->t_last_recv <= r->t_first_send)
        return 0;
    return (double)(r->t_last_recv - r->t_first_send) / 1e9;
}

static unsigned long long us(uint64_t ns) { return (unsigned long long)((ns + 500) / 1000); }

static void print_hist(FILE *out, const char *name, const hist_t *h)
{
    if (!h->total) {
        fprintf(out, "%s: none\n", name);
        return;
    }
    fprintf(out,
            "%s (us): n=%llu min=%llu p50=%llu p90=%llu p99=%llu p99.9=%llu max=%llu "
            "mean=%.0f\n",
            name, (unsigned long long)h->total, us(h->min), us(hist_percentile(h, 50)),
            us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
            us(hist_percentile(h, 99.9)), us(h->max), hist_mean(h) / 1000.0);
}

void report_print(const report_t *r, const char *mode, int with_conns, FILE *out)
{
    double run_s = r->t_end > r->t_start ? (double)(r->t_end - r->t_start) / 1e9 : 0;
    double w = window_s(r);
    fprintf(out, "mode=%s procs=%u threads=%u run=%.2fs\n", mode, r->procs, r->threads, run_s);
    fprintf(out, "connections: target=%llu attempted=%llu opened=%llu open_at_ready=%llu "
                 "open_at_end=%llu\n",
            (unsigned long long)r->conns_target, (unsigned long long)r->conns_attempted,
            (unsigned long long)r->conns_opened, (unsigned long long)r->conns_ready,
            (unsigned long long)r->conns_at_end);
    print_hist(out, "connect time", &r->connect);
    fprintf(out, "messages: sent=%llu received=%llu unmatched=%llu bytes_sent=%llu "
                 "bytes_received=%llu\n",
            (unsigned long long)r->sent, (unsigned long long)r->received,
            (unsigned long long)r->unmatched, (unsigned long long)r->bytes_sent,
            (unsigned long long)r->bytes_received);
    if (r->deliveries_expected)
        fprintf(out, "deliveries: expected=%llu received=%llu\n",
                (unsigned long long)r->deliveries_expected, (unsigned long long)r->received);
    if (w > 0)
        fprintf(out, "throughput: %.0f msg/s received, %.2f MB/s received (window %.2fs)\n",
                (double)r->received / w, (double)r->bytes_received / w / 1e6, w);
    if (r->open_loop) {
        /* open loop: wrk2's correction for coordinated omission */
        print_hist(out, "latency, from the scheduled send time", &r->latency);
        print_hist(out, "latency, from the actual send (uncorrected)", &r->latency_sent);
        print_hist(out, "send lag behind the schedule", &r->send_lag);
        fprintf(out, "late sends: %llu of %llu (%.1f%%) more than %lldus behind the schedule\n",
                (unsigned long long)r->late_sends, (unsigned long long)r->send_lag.total,
                r->send_lag.total ? 100.0 * (double)r->late_sends / (double)r->send_lag.total
                                  : 0.0,
                (long long)us((uint64_t)r->late_threshold_ns));
    } else {
        print_hist(out, "latency", &r->latency);
    }
    if (r->rc_ok || r->rc_missed || r->rc_away) {
        fprintf(out, "recovery: away=%llu (pushed while the clients were away) recovered=%llu "
                     "(%.3f%% in order before the notice) notices ok=%llu missed=%llu gaps=%llu "
                     "repeats=%llu\n",
                (unsigned long long)r->rc_away, (unsigned long long)r->rc_recovered,
                r->rc_away ? 100.0 * (double)r->rc_recovered / (double)r->rc_away : 100.0,
                (unsigned long long)r->rc_ok, (unsigned long long)r->rc_missed,
                (unsigned long long)r->rc_gaps, (unsigned long long)r->rc_dups);
        print_hist(out, "recovery time, reconnect to notice", &r->recovery);
    }
    fprintf(out, "errors:");
    int any = 0;
    for (int k = 0; k < ERR_KINDS; k++)
        if (r->errors[k]) {
            fprintf(out, " %s=%llu", err_names[k], (unsigned long long)r->errors[k]);
            any = 1;
        }
    fprintf(out, "%s\n", any ? "" : " none");
    if (r->close_codes[0].count) {
        fprintf(out, "close codes from server:");
        for (int i = 0; i < REPORT_CODES && r->close_codes[i].count; i++)
            fprintf(out, " %u=%llu", r->close_codes[i].code,
                    (unsigned long long)r->close_codes[i].count);
        fprintf(out, "\n");
    }
    if (r->http_status[0].count) {
        fprintf(out, "http statuses:");
        for (int i = 0; i < REPORT_CODES && r->http_status[i].count; i++)
            fprintf(out, " %u=%llu", r->http_status[i].code,
                    (unsigned long long)r->http_status[i].count);
        fprintf(out, "\n");
    }
    fprintf(out, "bench memory: rss_base=%lldKB rss_ready=%lldKB rss_end=%lldKB "
                 "per_conn=%.0fB\n",
            (long long)r->rss_base_kb, (long long)r->rss_ready_kb, (long long)r->rss_end_kb,
            report_mem_per_conn(r));
    fprintf(out, "bench cpu: %.2fs (%.0f%% of one core over the run)\n", r->cpu_s,
            run_s > 0 ? 100.0 * r->cpu_s / run_s : 0);
    fprintf(out, "sent=%llu received=%llu errors=%llu p50_us=%llu p99_us=%llu",
            (unsigned long long)r->sent, (unsigned long long)r->received,
            (unsigned long long)report_errors(r), us(hist_percentile(&r->latency, 50)),
            us(hist_percentile(&r->latency, 99)));
    if (with_conns)
        fprintf(out, " conns=%llu", (unsigned long long)r->conns_at_end);
    fprintf(out, "\n");
    fflush(out);
}

static json_t *hist_json(const hist_t *h, int with_buckets)
{
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)h->total));
    if (h->total) {
        json_object_set_new(o, "min", json_real((double)h->min / 1000.0));
        json_object_set_new(o, "p50", json_real((double)hist_percentile(h, 50) / 1000.0));
        json_object_set_new(o, "p90", json_real((double)hist_percentile(h, 90) / 1000.0));
        json_object_set_new(o, "p99", json_real((double)hist_percentile(h, 99) / 1000.0));
        json_object_set_new(o, "p999", json_real((double)hist_percentile(h, 99.9) / 1000.0));
        json_object_set_new(o, "max", json_real((double)h->max / 1000.0));
        json_object_set_new(o, "mean", json_real(hist_mean(h) / 1000.0));
    }
    if (with_buckets) {
        /* non-empty buckets: [low_us, high_us, count] for plots */
        json_t *b = json_array();
        for (unsigned i = 0; i < HIST_BUCKETS; i++)
            if (h->counts[i])
                json_array_append_new(
                    b, json_pack("[f,f,I]", (double)hist_bucket_low(i) / 1000.0,
                                 (double)hist_bucket_high(i) / 1000.0,
                                 (json_int_t)h->counts[i]));
        json_object_set_new(o, "buckets", b);
    }
    return o;
}

static json_t *codes_json(const code_count_t *tab)
{
    json_t *o = json_object();
    for (int i = 0; i < REPORT_CODES && tab[i].count; i++) {
        char k[16];
        snprintf(k, sizeof k, "%u", tab[i].code);
        json_object_set_new(o, k, json_integer((json_int_t)tab[i].count));
    }
    return o;
}

int report_json(const report_t *r, const char *mode, void *config, const char *path,
                char *err, size_t errlen)
{
    double w = window_s(r);
    json_t *root = json_object();
    json_object_set_new(root, "mode", json_string(mode));
    if (config)
        json_object_set_new(root, "config", (json_t *)config);
    json_object_set_new(root, "procs", json_integer(r->procs));
    json_object_set_new(root, "threads", json_integer(r->threads));
    json_object_set_new(root, "run_s",
                        json_real(r->t_end > r->t_start ? (double)(r->t_end - r->t_start) / 1e9
                                                        : 0));
    json_object_set_new(root, "conns",
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "target",
                                  (json_int_t)r->conns_target, "attempted",
                                  (json_int_t)r->conns_attempted, "opened",
                                  (json_int_t)r->conns_opened, "open_at_ready",
                                  (json_int_t)r->conns_ready, "open_at_end",
                                  (json_int_t)r->conns_at_end));
    json_object_set_new(root, "connect_us", hist_json(&r->connect, 0));
    json_object_set_new(root, "messages",
                        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "sent",
                                  (json_int_t)r->sent, "received", (json_int_t)r->received,
                                  "unmatched", (json_int_t)r->unmatched, "bytes_sent",
                                  (json_int_t)r->bytes_sent, "bytes_received",
                                  (json_int_t)r->bytes_received, "deliveries_expected",
                                  (json_int_t)r->deliveries_expected, "pings",
                                  (json_int_t)r->pings, "pongs", (json_int_t)r->pongs));
    json_object_set_new(root, "window_s", json_real(w));
    json_object_set_new(root, "msgs_per_s", json_real(w > 0 ? (double)r->received / w : 0));
    json_object_set_new(root, "mb_per_s",
                        json_real(w > 0 ? (double)r->bytes_received / w / 1e6 : 0));
    json_object_set_new(root, "latency_us", hist_json(&r->latency, 1));
    /* open loop: latency_us is timed from each message's due time; these say how far the
     * bench itself fell behind (closed loop: no schedule, send_lag_us is empty) */
    json_object_set_new(root, "latency_from", json_string(r->open_loop ? "due" : "send"));
    json_object_set_new(root, "latency_uncorrected_us", hist_json(&r->latency_sent, 0));
    json_object_set_new(root, "send_lag_us", hist_json(&r->send_lag, 1));
    json_object_set_new(root, "late_sends",
                        json_pack("{s:I,s:f,s:f}", "count", (json_int_t)r->late_sends,
                                  "threshold_us", (double)r->late_threshold_ns / 1000.0, "pct",
                                  r->send_lag.total ? 100.0 * (double)r->late_sends /
                                                          (double)r->send_lag.total
                                                    : 0.0));
    json_object_set_new(
        root, "recovery",
        json_pack("{s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:o}", "away", (json_int_t)r->rc_away,
                  "recovered", (json_int_t)r->rc_recovered, "recovered_pct",
                  r->rc_away ? 100.0 * (double)r->rc_recovered / (double)r->rc_away : 100.0,
                  "notices_ok", (json_int_t)r->rc_ok, "notices_missed",
                  (json_int_t)r->rc_missed, "gaps", (json_int_t)r->rc_gaps, "repeats",
                  (json_int_t)r->rc_dups, "time_us", hist_json(&r->recovery, 0)));
    json_t *errs = json_object();
    json_object_set_new(errs, "total", json_integer((json_int_t)report_errors(r)));
    for (int k = 0; k < ERR_KINDS; k++)
        json_object_set_new(errs, err_names[k], json_integer((json_int_t)r->errors[k]));
    json_object_set_new(root, "errors", errs);
    json_object_set_new(root, "close_codes", codes_json(r->close_codes));
    json_object_set_new(root, "http_status", codes_json(r->http_status));
    json_object_set_new(root, "bench_memory",
                        json_pack("{s:I,s:I,s:I,s:I,s:f}", "rss_base_kb",
                                  (json_int_t)r->rss_base_kb, "rss_ready_kb",
                                  (json_int_t)r->rss_ready_kb, "rss_end_kb",
                                  (json_int_t)r->rss_end_kb, "rss_peak_kb",
                                  (json_int_t)r->rss_peak_kb, "bytes_per_conn",
                                  report_mem_per_conn(r)));
    double run_s = r->t_end > r->t_start ? (double)(r->t_end - r->t_start) / 1e9 : 0;
    json_object_set_new(root, "bench_cpu",
                        json_pack("{s:f,s:f}", "seconds", r->cpu_s, "pct_of_core",
                                  run_s > 0 ? 100.0 * r->cpu_s / run_s : 0.0));
    int rv = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (rv < 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    json_decref(root);
    return rv < 0 ? -1 : 0;
}
