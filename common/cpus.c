/* cpus.c: the CPUs this process can use: affinity mask and cgroup CPU limit (see cpus.h). */
#include "cpus.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* a whole number >= 0 (or -1 for v1's "no quota") followed only by blanks */
static bool parse_num(const char *s, char **end, long long *out)
{
    errno = 0;
    char *e;
    long long v = strtoll(s, &e, 10);
    if (e == s || errno)
        return false;
    *out = v;
    if (end)
        *end = e;
    return true;
}

static bool only_space(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    return *s == 0;
}

double cpus_parse_v2(const char *text)
{
    const char *s = text;
    while (*s == ' ')
        s++;
    bool unlimited = strncmp(s, "max", 3) == 0 && (s[3] == ' ' || s[3] == '\t');
    long long quota = 0, period;
    char *e;
    if (unlimited)
        e = (char *)s + 3;
    else if (!parse_num(s, &e, &quota) || quota <= 0)
        return -1;
    if (!parse_num(e, &e, &period) || period <= 0 || !only_space(e))
        return -1;
    return unlimited ? 0 : (double)quota / (double)period;
}

double cpus_parse_v1(const char *quota, const char *period)
{
    long long q, p;
    char *e1, *e2;
    if (!parse_num(quota, &e1, &q) || !only_space(e1) || !parse_num(period, &e2, &p) ||
        !only_space(e2) || p <= 0 || q == 0 || q < -1)
        return -1;
    return q == -1 ? 0 : (double)q / (double)p;
}

/* the first line of a small file, or false */
static bool read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    return ok;
}

/* the limit set in one cgroup directory, 0 when none, -1 when it has no such files */
static double dir_limit(const char *dir, bool v2)
{
    char path[PATH_MAX + 32], a[64], b[64];
    if (v2) {
        snprintf(path, sizeof path, "%s/cpu.max", dir);
        return read_small(path, a, sizeof a) ? cpus_parse_v2(a) : -1;
    }
    snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
    if (!read_small(path, a, sizeof a))
        return -1;
    snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
    return read_small(path, b, sizeof b) ? cpus_parse_v1(a, b) : -1;
}

/* the lowest limit from mount + rel up to the mount's root (0 = none) */
static double walk_up(const char *root, const char *mnt, const char *rel, bool v2)
{
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s%s%s", root, mnt, rel);
    if (n < 0 || (size_t)n >= sizeof dir)
        return 0;
    size_t floor = strlen(root) + strlen(mnt); /* never above the mount point */
    double best = 0;
    for (;;) {
        double l = dir_limit(dir, v2);
        if (l > 0 && (best == 0 || l < best))
            best = l;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < floor)
            break;
        *slash = 0;
    }
    return best;
}

/* undo mountinfo's octal escapes (\040 for a blank) in place */
static void unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

/* does a comma-separated list hold the word? */
static bool has_word(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && memcmp(p, w, n) == 0)
            return true;
        p = c ? c + 1 : NULL;
    }
    return false;
}

/* the process's cgroup path: v2's "0::PATH" or the v1 hierarchy with the cpu controller */
static bool own_cgroup(const char *root, bool v2, char *out, size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t lcap = 0;
    bool found = false;
    while (!found && getline(&line, &lcap, f) > 0) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *ctl = c1 + 1;
        bool match = v2 ? (strncmp(line, "0:", 2) == 0 && *ctl == 0) : has_word(ctl, "cpu");
        if (match && strlen(c2 + 1) < cap) {
            strcpy(out, c2 + 1);
            found = true;
        }
    }
    free(line);
    fclose(f);
    return found;
}

/* one line of mountinfo: fields 4 (root) and 5 (mount point), then after " - " the type and
 * the super options */
static double mount_limit(const char *root, char *line)
{
    char *field[6] = {0};
    char *save = NULL, *tok = strtok_r(line, " ", &save);
    for (int i = 0; tok && i < 6; i++, tok = strtok_r(NULL, " ", &save))
        field[i] = tok;
    if (!field[5])
        return 0;
    while (tok && strcmp(tok, "-") != 0) /* optional fields up to the separator */
        tok = strtok_r(NULL, " ", &save);
    char *type = tok ? strtok_r(NULL, " ", &save) : NULL;
    char *src = type ? strtok_r(NULL, " ", &save) : NULL;
    char *opts = src ? strtok_r(NULL, " \n", &save) : NULL;
    if (!opts)
        return 0;
    bool v2 = strcmp(type, "cgroup2") == 0;
    if (!v2 && !(strcmp(type, "cgroup") == 0 && has_word(opts, "cpu")))
        return 0;
    char *mroot = field[3], *mnt = field[4];
    unescape(mroot);
    unescape(mnt);
    char own[PATH_MAX];
    if (!own_cgroup(root, v2, own, sizeof own))
        return 0;
    /* the part of the process's path below the mount's root; at the root when outside it */
    size_t rl = strcmp(mroot, "/") == 0 ? 0 : strlen(mroot);
    const char *rel = "";
    if (strncmp(own, mroot, rl) == 0 && (own[rl] == '/' || own[rl] == 0))
        rel = own + rl;
    if (strcmp(rel, "/") == 0)
        rel = "";
    if (strcmp(mnt, "/") == 0)
        mnt = "";
    return walk_up(root, mnt, rel, v2);
}

double cpus_cgroup_limit(const char *root)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/proc/self/mountinfo", root);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    double best = 0;
    while (getline(&line, &cap, f) > 0) {
        double l = mount_limit(root, line);
        if (l > 0 && (best == 0 || l < best))
            best = l;
    }
    free(line);
    fclose(f);
    return best;
}

int cpus_affinity(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN); /* more CPUs than cpu_set_t holds, or no mask */
    return n > 0 ? (n > INT_MAX ? INT_MAX : (int)n) : 1;
}

int cpus_from(int affinity, double limit)
{
    int n = affinity > 0 ? affinity : 1;
    if (limit > 0 && limit < n) {
        n = (int)limit; /* rounded up; 1.0000000001 from a division is still 1 */
        if (limit - n > 1e-9)
            n++;
    }
    return n > 0 ? n : 1;
}
