/* cpus.h: how many CPUs this process can use, which is what "number of cores" means for a
 * default such as ws-gateway's --threads: the CPUs of its affinity mask (taskset, a cpuset),
 * fewer when its cgroup caps its CPU time, rounded up. A container limited to 1 CPU on a
 * 64-core host then starts one service thread, not 64 that the kernel's CFS quota would
 * throttle (every thread stopped for the rest of the period once the quota is spent).
 *
 * The cgroup limit is read where /proc/self/mountinfo says the hierarchy is mounted: cgroup v2
 * (cpu.max: "QUOTA PERIOD" or "max PERIOD") and cgroup v1's cpu controller
 * (cpu.cfs_quota_us, -1 = none, and cpu.cfs_period_us). It is read in the process's own
 * cgroup (/proc/self/cgroup) and in every ancestor the mount shows, since a parent's limit
 * holds for its children; the lowest wins. A cgroup outside the mount's part of the
 * hierarchy is read at the mount's root only (a container's own cgroup is mounted as the
 * root of what it sees).
 *
 * Parsing (cpus_parse_*) does no I/O; cpus_cgroup_limit takes a root prefix for every path it
 * opens, so that a test can lay out a /proc and a /sys of its own. Any thread may call these;
 * they keep no state. */
#ifndef WSGW_CPUS_H
#define WSGW_CPUS_H

/* cpus_parse_v2: the text of a cgroup v2 cpu.max -> the CPUs it allows (1.5 for
 * "150000 100000"), 0 for no limit ("max ..."), -1 when the text is not such a file. */
double cpus_parse_v2(const char *text);

/* cpus_parse_v1: the texts of cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us -> the same. */
double cpus_parse_v1(const char *quota, const char *period);

/* cpus_cgroup_limit: the lowest CPU limit of the process's cgroups (v1 cpu and v2), 0 when
 * none is set or none can be read. root is prepended to every path ("" for the real one). */
double cpus_cgroup_limit(const char *root);

/* cpus_affinity: the CPUs in this process's affinity mask; the online CPUs when the mask
 * cannot be read; at least 1. */
int cpus_affinity(void);

/* cpus_from: min(affinity, limit rounded up), at least 1; limit <= 0 means none. */
int cpus_from(int affinity, double limit);

#endif
