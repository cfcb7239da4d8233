#!/usr/bin/python3
"""What a presence resync costs ws-api when its Opens carry the connections' rooms (Open.rooms,
session 14), and what a hostile gateway's room list costs it.

  bench/resync_rooms.py ROUNDS BIN [BIN...]

For each round, each BIN's ws-api (chat handler, no Redis) in turn, alternating:
  - resync: a python3-grpcio stand-in gateway sends 50 000 Opens in batches of 1 000 (the last
    says presence_complete), each with K rooms (K = 0, then 3, from 1 000 names); ws-api's CPU
    (every thread's, from /proc/PID/task/*/schedstat) from the first batch to the last ack;
  - hostile: one Open naming 200 000 rooms (~1.8 MiB, under --max-message), CPU to its ack.
Prints one line per run and the medians per BIN. ws-api's CPU, not the stand-in's: the stand-in
(Python protobuf) is the slow side here, so wall times say little."""
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import wsgwtest as w  # noqa: E402
from test_api_exchange import Gateway, ev_open  # noqa: E402



def cpu_s(pid):
    """CPU time of every thread of pid so far, from schedstat (ns; /proc/PID/stat counts
    10 ms ticks)."""
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
            total += int(f.read().split()[0])
    return total / 1e9


def api(binary):
    gp, hp = w.free_port(), w.free_port()
    p = w.start([os.path.join(binary, "ws-api"), "--grpc-listen", "127.0.0.1:%d" % gp,
                 "--http-listen", "127.0.0.1:%d" % hp, "--handler", "chat", "--log-level",
                 "error"], env={"WSAPI_PRESENCE_GRACE": "0"})
    w.wait_port(gp, proc=p)
    return p, gp


def resync(binary, k, n=50000, per=1000):
    p, gp = api(binary)
    g = Gateway(gp, "gw-bench")
    s = g.stream()
    batches = []
    for b in range(0, n, per):
        evs = []
        for i in range(b, b + per):
            e = ev_open(i + 1, "u%d" % i, "gw-bench")
            e.open.rooms.extend("room-%d" % ((i * k + j) % 1000) for j in range(k))
            evs.append(e)
        batches.append(evs)
    c0 = cpu_s(p.pid)
    for i, evs in enumerate(batches):
        seq = s.send(evs, presence_complete=i == len(batches) - 1)
    s.wait_ack(seq, timeout=60)
    used = cpu_s(p.pid) - c0
    g.close()
    w.stop(p)
    return used


def hostile(binary, names=200000):
    p, gp = api(binary)
    g = Gateway(gp, "gw-bench")
    s = g.stream()
    e = ev_open(1, "u", "gw-bench")
    e.open.rooms.extend("x%d" % i for i in range(names))
    c0 = cpu_s(p.pid)
    seq = s.send([e], presence_complete=True)
    s.wait_ack(seq, timeout=60)
    used = cpu_s(p.pid) - c0
    g.close()
    w.stop(p)
    return used


def main():
    rounds, bins = int(sys.argv[1]), sys.argv[2:]
    got = {(b, what): [] for b in bins for what in ("k0", "k3", "hostile")}
    for r in range(rounds):
        for b in bins:
            for what, fn in (("k0", lambda: resync(b, 0)), ("k3", lambda: resync(b, 3)),
                             ("hostile", lambda: hostile(b))):
                v = fn()
                got[(b, what)].append(v)
                print("round %d %s %s: ws-api CPU %.3f s" % (r + 1, b, what, v), flush=True)
    print("\nmedians (ws-api CPU, s):")
    for b in bins:
        med = {what: statistics.median(got[(b, what)]) for what in ("k0", "k3", "hostile")}
        print("%s: resync 50 000 Opens, no rooms %.3f, 3 rooms each %.3f (%.2fx); one Open "
              "naming 200 000 rooms %.3f" % (b, med["k0"], med["k3"], med["k3"] / med["k0"]
                                             if med["k0"] else 0, med["hostile"]))


if __name__ == "__main__":
    main()
