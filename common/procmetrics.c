/* procmetrics.c: process_* metrics from /proc/self (see procmetrics.h). */
#include "procmetrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics.h"
#include "version.h"

void procmetrics_build_info(const char *name)
{
    char labels[128];
    snprintf(labels, sizeof labels, "version=\"%s\"", wsgw_version);
    metrics_gauge_set(metrics_gauge(name, labels,
                                    "A metric with a constant 1, labelled with the version "
                                    "of the program (--version)."),
                      1);
}

static void family(buf_t *out, const char *name, const char *type, const char *help,
                   double v)
{
    buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/* Seconds since the epoch at boot: the "btime" line of /proc/stat, or -1. */
static long long boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[256];
    long long bt = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lld", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the descriptor of the listing itself */
}

void procmetrics_render(buf_t *out)
{
    double tick = (double)sysconf(_SC_CLK_TCK);
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    /* the command name (field 2) is in parentheses and may hold spaces: count after the last
     * ')'. Fields from there: 3 state ... 14 utime 15 stime ... 22 starttime 23 vsize. */
    const char *p = strrchr(buf, ')');
    unsigned long long utime, stime, start, vsize;
    if (p && tick > 0 &&
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                      "%*d %*d %llu %llu", &utime, &stime, &start, &vsize) == 4) {
        family(out, "process_cpu_seconds_total", "counter",
               "Total user and system CPU time spent in seconds.",
               (double)(utime + stime) / tick);
        family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
               (double)vsize);
        long long bt = boot_time();
        if (bt >= 0)
            family(out, "process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.",
                   (double)bt + (double)start / tick);
    }
    f = fopen("/proc/self/statm", "r");
    unsigned long long size, resident;
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &resident) == 2)
            family(out, "process_resident_memory_bytes", "gauge",
                   "Resident memory size in bytes.",
                   (double)resident * (double)sysconf(_SC_PAGESIZE));
        fclose(f);
    }
    int fds = count_fds();
    if (fds >= 0)
        family(out, "process_open_fds", "gauge", "Number of open file descriptors.", fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
               (double)rl.rlim_cur);
}
