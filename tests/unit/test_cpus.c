/* test_cpus.c: the CPUs a process can use: cgroup v1 and v2 limits read from a /proc and a
 * /sys laid out in a temporary directory, the parsers, and the rounding. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpus.h"
#include "test.h"

static char root[PATH_MAX];

/* write text to root + rel, making the directories on the way */
static void put(const char *rel, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void fresh_root(void)
{
    if (*root) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            exit(2);
    }
    snprintf(root, sizeof root, "/tmp/test_cpus.XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        exit(2);
    }
}

#define NEAR(a, b) CHECK((a) > (b)-1e-9 && (a) < (b) + 1e-9)

static void test_parse_v2(void)
{
    NEAR(cpus_parse_v2("150000 100000\n"), 1.5);
    NEAR(cpus_parse_v2("50000 100000"), 0.5);
    NEAR(cpus_parse_v2("max 100000\n"), 0);
    NEAR(cpus_parse_v2(""), -1);
    NEAR(cpus_parse_v2("max"), -1);
    NEAR(cpus_parse_v2("100000"), -1);
    NEAR(cpus_parse_v2("0 100000"), -1);
    NEAR(cpus_parse_v2("100000 0"), -1);
    NEAR(cpus_parse_v2("-5 100000"), -1);
    NEAR(cpus_parse_v2("maximum 100000"), -1);
    NEAR(cpus_parse_v2("100000 100000 junk"), -1);
}

static void test_parse_v1(void)
{
    NEAR(cpus_parse_v1("200000\n", "100000\n"), 2);
    NEAR(cpus_parse_v1("-1\n", "100000\n"), 0);
    NEAR(cpus_parse_v1("25000", "100000"), 0.25);
    NEAR(cpus_parse_v1("x", "100000"), -1);
    NEAR(cpus_parse_v1("100000", "0"), -1);
    NEAR(cpus_parse_v1("0", "100000"), -1);
    NEAR(cpus_parse_v1("-2", "100000"), -1);
}

static void test_rounding_and_affinity(void)
{
    CHECK_EQ(cpus_from(8, 0), 8);
    CHECK_EQ(cpus_from(8, 1), 1);
    CHECK_EQ(cpus_from(8, 1.0000000001), 1);
    CHECK_EQ(cpus_from(8, 1.5), 2);
    CHECK_EQ(cpus_from(8, 0.1), 1);
    CHECK_EQ(cpus_from(2, 16), 2); /* a limit above the mask changes nothing */
    CHECK_EQ(cpus_from(0, 0), 1);
    CHECK(cpus_affinity() >= 1);
    CHECK(cpus_affinity() <= sysconf(_SC_NPROCESSORS_CONF));
}

/* a container's view of cgroup v2: its own cgroup is the mount's root */
static void test_v2_container(void)
{
    fresh_root();
    put("/proc/self/mountinfo",
        "22 1 0:20 / / rw - overlay overlay rw\n"
        "30 22 0:26 / /sys/fs/cgroup ro,nosuid master:9 - cgroup2 cgroup2 rw,nsdelegate\n");
    put("/proc/self/cgroup", "0::/\n");
    put("/sys/fs/cgroup/cpu.max", "100000 100000\n");
    NEAR(cpus_cgroup_limit(root), 1);
    put("/sys/fs/cgroup/cpu.max", "max 100000\n");
    NEAR(cpus_cgroup_limit(root), 0);
}

/* a host's view of cgroup v2: the lowest limit on the way up wins, not the nearest */
static void test_v2_host_walks_up(void)
{
    fresh_root();
    put("/proc/self/mountinfo",
        "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n");
    put("/proc/self/cgroup", "0::/system.slice/wsgw.service\n");
    put("/sys/fs/cgroup/system.slice/wsgw.service/cpu.max", "400000 100000\n");
    put("/sys/fs/cgroup/system.slice/cpu.max", "250000 100000\n");
    NEAR(cpus_cgroup_limit(root), 2.5);
    put("/sys/fs/cgroup/system.slice/wsgw.service/cpu.max", "120000 100000\n");
    NEAR(cpus_cgroup_limit(root), 1.2);
    CHECK_EQ(cpus_from(16, cpus_cgroup_limit(root)), 2);
    /* a cgroup the mount does not show (another namespace): the mount's root only */
    put("/proc/self/cgroup", "0::/elsewhere/x\n");
    NEAR(cpus_cgroup_limit(root), 0);
    put("/sys/fs/cgroup/cpu.max", "300000 100000\n");
    NEAR(cpus_cgroup_limit(root), 3);
}

/* cgroup v1 beside a v2 mount without the cpu controller (a hybrid host, as on this one);
 * the mount point has a blank in it, escaped in mountinfo */
static void test_v1_hybrid(void)
{
    fresh_root();
    put("/proc/self/mountinfo",
        "25 24 0:22 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "26 24 0:23 / /sys/fs/cgroup/memory rw shared:6 - cgroup cgroup rw,memory\n"
        "27 24 0:24 / /sys/fs/cgroup/cpu\\040x rw shared:7 - cgroup cgroup rw,cpu,cpuacct\n");
    put("/proc/self/cgroup",
        "9:memory:/a\n"
        "3:cpu,cpuacct:/a/b\n"
        "0::/a\n");
    put("/sys/fs/cgroup/cpu x/a/b/cpu.cfs_quota_us", "-1\n");
    put("/sys/fs/cgroup/cpu x/a/b/cpu.cfs_period_us", "100000\n");
    put("/sys/fs/cgroup/cpu x/a/cpu.cfs_quota_us", "150000\n");
    put("/sys/fs/cgroup/cpu x/a/cpu.cfs_period_us", "100000\n");
    put("/sys/fs/cgroup/memory/a/cpu.cfs_quota_us", "10000\n"); /* not the cpu hierarchy */
    put("/sys/fs/cgroup/memory/a/cpu.cfs_period_us", "100000\n");
    NEAR(cpus_cgroup_limit(root), 1.5);
    /* "cpuacct" alone is not "cpu" */
    put("/proc/self/mountinfo",
        "27 24 0:24 / /sys/fs/cgroup/cpu\\040x rw shared:7 - cgroup cgroup rw,cpuacct\n");
    NEAR(cpus_cgroup_limit(root), 0);
}

/* a v1 container: the mount's root is the container's cgroup, and /proc/self/cgroup shows
 * the host's path to it */
static void test_v1_container_mount_root(void)
{
    fresh_root();
    put("/proc/self/mountinfo",
        "40 35 0:30 /docker/abc /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu\n");
    put("/proc/self/cgroup", "4:cpu:/docker/abc\n");
    put("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "50000\n");
    put("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    NEAR(cpus_cgroup_limit(root), 0.5);
    CHECK_EQ(cpus_from(64, cpus_cgroup_limit(root)), 1);
    /* /docker/abcdef is not below /docker/abc: read at the mount's root only */
    put("/proc/self/cgroup", "4:cpu:/docker/abcdef\n");
    put("/sys/fs/cgroup/cpu/def/cpu.cfs_quota_us", "10000\n");
    put("/sys/fs/cgroup/cpu/def/cpu.cfs_period_us", "100000\n");
    NEAR(cpus_cgroup_limit(root), 0.5);
}

/* what cannot be read is no limit: no mountinfo, junk lines, junk files */
static void test_unreadable_is_no_limit(void)
{
    fresh_root();
    NEAR(cpus_cgroup_limit(root), 0);
    put("/proc/self/mountinfo", "garbage\n\n1 2 3\n30 22 0:26 / /sys/fs/cgroup rw - cgroup2\n");
    NEAR(cpus_cgroup_limit(root), 0);
    put("/proc/self/mountinfo", "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
    NEAR(cpus_cgroup_limit(root), 0); /* no /proc/self/cgroup */
    put("/proc/self/cgroup", "0::/\n");
    put("/sys/fs/cgroup/cpu.max", "lots\n");
    NEAR(cpus_cgroup_limit(root), 0);
    /* the real machine's: whatever it is, it is no less than nothing */
    CHECK(cpus_cgroup_limit("") >= 0);
    fresh_root();
    rmdir(root);
    *root = 0;
}

int main(void)
{
    RUN(test_parse_v2);
    RUN(test_parse_v1);
    RUN(test_rounding_and_affinity);
    RUN(test_v2_container);
    RUN(test_v2_host_walks_up);
    RUN(test_v1_hybrid);
    RUN(test_v1_container_mount_root);
    RUN(test_unreadable_is_no_limit);
    return TEST_REPORT();
}
