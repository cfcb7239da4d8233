#!/usr/bin/env python3
"""--threads' default (0): the cores the gateway can use (common/cpus.h), not the machine's.
A gateway started on fewer CPUs than the machine has (taskset, a cpuset) or in a cgroup whose
CPU quota is lower (a container's `cpus: "1"`, Kubernetes' CPU limit) starts that many service
threads, says so in its log, and serves on them. On one core, --inline-writers' default (auto)
runs the writers on the service thread: a writer thread would only take turns with it."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))

import wsgwtest  # noqa: E402
import test_faults  # noqa: E402
from wsgwtest import Api, Gateway, check, eq, run  # noqa: E402

NOTE = "fewer threads than online CPUs"


def thread_names(gw, prefix):
    names = [open("/proc/%d/task/%s/comm" % (gw.proc.pid, t)).read().strip()
             for t in os.listdir("/proc/%d/task" % gw.proc.pid)]
    return sorted(n for n in names if n.startswith(prefix))


def svc_threads(gw):
    return thread_names(gw, "gw-svc-")


def writer_threads(gw):
    return thread_names(gw, "gw-up-")


def echo_works(gw, users=4):
    """every client (spread over the service threads by the kernel) gets its echo back"""
    async def one(k):
        ws = await test_faults.connect(gw.url("thr%d" % k))
        await ws.send("hello %d" % k)
        got = await asyncio.wait_for(ws.recv(), 10)
        eq(got, "hello %d" % k)
        await ws.close()

    async def main():
        await asyncio.gather(*(one(k) for k in range(users)))
    asyncio.run(main())


def test_the_default_on_an_unrestricted_process_is_every_cpu_it_may_use():
    """(the baseline: no cgroup limit on the test machine's own cgroup is assumed; when there
    is one, the gateway must not start more threads than the affinity mask allows)"""
    api = Api()
    gw = Gateway([api.grpc_addr], threads=0)
    n = len(svc_threads(gw))
    check(1 <= n <= len(os.sched_getaffinity(0)), "%d service threads" % n)
    if n == os.cpu_count():
        check(not gw.proc_log_has(NOTE), "the note is logged only when it applies")
    if n > 1:  # more than one core: the writer keeps a thread of its own
        eq(len(writer_threads(gw)), 1)
        check(gw.proc_log_has("inline_writers=0"), wsgwtest.proc_log(gw.proc))
    echo_works(gw)


def test_a_gateway_pinned_to_one_cpu_starts_one_service_thread():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("skip: one CPU here, nothing to restrict", flush=True)
        return
    api = Api()
    saved = set(cpus)
    os.sched_setaffinity(0, {cpus[-1]})  # inherited by the gateway started now
    try:
        gw = Gateway([api.grpc_addr], threads=0)
    finally:
        os.sched_setaffinity(0, saved)
    eq(svc_threads(gw), ["gw-svc-0"])
    eq(writer_threads(gw), [])  # inline on the one service thread
    check(gw.proc_log_has(NOTE) and gw.proc_log_has("affinity=1") and
          gw.proc_log_has("inline_writers=1"), wsgwtest.proc_log(gw.proc))
    echo_works(gw)
    # explicit flags still win
    os.sched_setaffinity(0, {cpus[-1]})
    try:
        gw2 = Gateway([api.grpc_addr], threads=2, extra=["--inline-writers", "false"])
    finally:
        os.sched_setaffinity(0, saved)
    eq(svc_threads(gw2), ["gw-svc-0", "gw-svc-1"])
    eq(len(writer_threads(gw2)), 1)
    echo_works(gw2)


def v1_cpu_dir():
    """this process's cgroup v1 cpu directory when the cpu controller is mounted at
    /sys/fs/cgroup/cpu (or cpu,cpuacct) and writable; else None"""
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        return None
    for ln in lines:
        _, ctl, path = ln.split(":", 2)
        if "cpu" in ctl.split(","):
            for mnt in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
                d = mnt + path.rstrip("/")
                if os.access(os.path.join(d, "cgroup.procs"), os.W_OK):
                    return d
    return None


def test_a_gateway_in_a_cgroup_with_a_one_cpu_quota_starts_one_service_thread():
    """A real cgroup v1 child with cpu.cfs_quota_us = cpu.cfs_period_us (one CPU's worth): the
    test process steps into it to start the gateway (which inherits it) and steps back out."""
    if os.cpu_count() < 2:
        print("skip: one CPU here, nothing to restrict", flush=True)
        return
    home = v1_cpu_dir()
    if not home:
        print("skip: no writable cgroup v1 cpu controller here (not root, or cgroup v2 only)",
              flush=True)
        return
    sub = os.path.join(home, "wsgw-test-%d" % os.getpid())
    os.mkdir(sub)
    api = Api()
    gw = None
    try:
        period = int(open(os.path.join(sub, "cpu.cfs_period_us")).read())
        with open(os.path.join(sub, "cpu.cfs_quota_us"), "w") as f:
            f.write(str(period))
        with open(os.path.join(sub, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        try:
            gw = Gateway([api.grpc_addr], threads=0)
        finally:
            with open(os.path.join(home, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        eq(svc_threads(gw), ["gw-svc-0"])
        eq(writer_threads(gw), [])
        check(gw.proc_log_has("cgroup_cpu_limit=1.00"), wsgwtest.proc_log(gw.proc))
        echo_works(gw)
    finally:
        if gw:
            wsgwtest.stop(gw.proc)
        os.rmdir(sub)


if __name__ == "__main__":
    run(globals())
