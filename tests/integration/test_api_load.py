"""ws-api under load from grpcio gateway stand-ins: 8 concurrent streams x 10 000 messages
(batched 100 per Upstream) all echoed, none lost, in order per connection, acks reaching the
last seq; a 50 MiB burst both ways without a stall; and an informational throughput figure
(messages/s echoed over 4 streams, printed, never asserted)."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_api_exchange import Gateway, ev_msg, finish, metric, pb, start_api, w  # noqa: E402

import grpc  # noqa: E402


def run_stream(st, batches, expect_cmds, timeout, result, key):
    """Sends pre-built Upstreams on st, then waits for every command and the last ack."""
    try:
        for b in batches:
            st.send_raw(b)
        st.wait_commands(expect_cmds, timeout=timeout)
        st.wait_ack(len(batches), timeout=timeout)
        result[key] = None
    except Exception as e:  # reported by the main thread
        result[key] = e


def build_batches(stream_idx, nmsgs, per_batch, nconns, payload_len=0):
    """Upstream bytes: messages round-robin over nconns conns; payload names conn and seq."""
    batches = []
    seqs = {}
    events = []
    pad = b"." * payload_len
    for i in range(nmsgs):
        conn = stream_idx * 1000 + i % nconns
        seqs[conn] = seqs.get(conn, 0) + 1
        events.append(ev_msg(conn, b"%d:%d:" % (conn, seqs[conn]) + pad, seq=seqs[conn]))
        if len(events) == per_batch:
            batches.append(pb.Upstream(seq=len(batches) + 1, events=events).SerializeToString())
            events = []
    if events:
        batches.append(pb.Upstream(seq=len(batches) + 1, events=events).SerializeToString())
    return batches


def check_echoes(st, stream_idx, nmsgs, nconns):
    nextseq = {}
    for c in st.commands:
        w.eq(c.WhichOneof("kind"), "send")
        conn = c.send.target.conn_ids[0]
        w.eq(conn // 1000, stream_idx, "echo came back on its own stream")
        got_conn, got_seq = c.send.payload.split(b":")[:2]
        w.eq(int(got_conn), conn)
        want = nextseq.get(conn, 1)
        w.eq(int(got_seq), want, "conn %d in order, none lost or doubled" % conn)
        nextseq[conn] = want + 1
    w.eq(sum(v - 1 for v in nextseq.values()), nmsgs, "all echoed")
    w.eq(len(nextseq), nconns)


def test_8_streams_10k_messages_each():
    p, gp, hp = start_api()
    nstreams, nmsgs, per_batch, nconns = 8, 10000, 100, 10
    gws = [Gateway(gp, "gw-load-%d" % g) for g in range(2)]
    streams = [gws[i % 2].stream(raw=True) for i in range(nstreams)]
    batches = [build_batches(i, nmsgs, per_batch, nconns) for i in range(nstreams)]
    result = {}
    t0 = time.monotonic()
    threads = [threading.Thread(target=run_stream,
                                args=(streams[i], batches[i], nmsgs, 60, result, i))
               for i in range(nstreams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120 * w.SLOW)
    dt = time.monotonic() - t0
    for i in range(nstreams):
        if result.get(i, "missing") is not None:
            raise AssertionError("stream %d: %s" % (i, result.get(i, "did not finish")))
        w.eq(streams[i].ack, nmsgs // per_batch, "acks reach the last seq")
        check_echoes(streams[i], i, nmsgs, nconns)
    print("info: %d streams x %d messages echoed in %.2fs (%.0f msg/s, python client bound)"
          % (nstreams, nmsgs, dt, nstreams * nmsgs / dt), flush=True)
    for g in gws:
        g.close()
    finish(p)


def test_50mib_burst_both_ways():
    p, gp, hp = start_api()
    gw = Gateway(gp, "gw-burst")
    nstreams, nbatches, size = 4, 50, 256 * 1024  # 4 x 50 x 256 KiB = 50 MiB each way
    streams = [gw.stream(raw=True) for _ in range(nstreams)]
    blob = os.urandom(size)
    batches = []
    for i in range(nstreams):
        batches.append([pb.Upstream(seq=k + 1, events=[ev_msg(i * 1000 + 1, b"%08d" % k + blob,
                                                              binary=True, seq=k + 1)])
                        .SerializeToString() for k in range(nbatches)])
    result = {}
    t0 = time.monotonic()
    threads = [threading.Thread(target=run_stream,
                                args=(streams[i], batches[i], nbatches, 60, result, i))
               for i in range(nstreams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120 * w.SLOW)
    dt = time.monotonic() - t0
    total = 0
    for i, st in enumerate(streams):
        if result.get(i, "missing") is not None:
            raise AssertionError("stream %d: %s" % (i, result.get(i, "did not finish")))
        w.eq(len(st.commands), nbatches)
        for k, c in enumerate(st.commands):
            w.eq(c.send.payload[:8], b"%08d" % k, "order")
            w.check(c.send.payload[8:] == blob, "payload intact")
            w.check(c.send.binary, "binary kept")
            total += len(c.send.payload)
    w.eq(total, nstreams * nbatches * (size + 8))
    print("info: %.1f MiB each way in %.2fs" % (total / 2**20, dt), flush=True)
    gw.close()
    finish(p)


def test_backpressure_gateway_that_does_not_read():
    """A gateway that sends but does not read: ws-api's queue for that stream hits
    --stream-queue, it stops returning stream window, and the gateway's sends stall (ws-api does
    not grow); once the gateway reads, everything arrives in order."""
    p, gp, hp = start_api("--stream-queue", "1m", "--stream-window", "1m")
    gw = Gateway(gp, "gw-slow")
    n, blob = 400, os.urandom(64 * 1024)  # 25 MiB in total
    pulled = [0]

    def gen():
        for k in range(n):
            pulled[0] += 1
            yield pb.Upstream(seq=k + 1, events=[ev_msg(1, b"%08d" % k + blob, binary=True)])

    call = gw.stub.Stream(gen(), metadata=[("x-gateway-id", "gw-slow")])
    w.wait_until(lambda: metric(hp, "wsapi_backpressure_pauses_total") >= 1, timeout=20,
                 what="backpressure on the stream")
    time.sleep(1.0)
    stalled_at = pulled[0]
    time.sleep(1.0)
    w.eq(pulled[0], stalled_at, "the gateway's sends are stalled")
    w.check(stalled_at < n // 2, "stalled early: %d of %d sent" % (stalled_at, n))
    rss_kb = int(open("/proc/%d/status" % p.pid).read().split("VmRSS:")[1].split()[0])
    print("info: stalled after %d x 64 KiB, ws-api RSS %d KiB" % (stalled_at, rss_kb), flush=True)
    got = []
    for d in call:
        got.extend(c.send.payload[:8] for c in d.commands)
        if d.ack == n:
            break
    w.eq(got, [b"%08d" % k for k in range(n)], "all echoed, in order")
    gw.close()
    finish(p)


def test_throughput_4_streams():
    """Informational: messages/s echoed over 4 streams (printed; the load is python, so this is
    a floor for ws-api, not its ceiling)."""
    p, gp, hp = start_api("--log-level", "warn")
    nstreams, nmsgs, per_batch = 4, 50000 // w.SLOW, 100
    gw = Gateway(gp, "gw-tput")
    streams = [gw.stream(raw=True) for _ in range(nstreams)]
    batches = [build_batches(i, nmsgs, per_batch, 50, payload_len=40) for i in range(nstreams)]
    result = {}
    t0 = time.monotonic()
    threads = [threading.Thread(target=run_stream,
                                args=(streams[i], batches[i], nmsgs, 120, result, i))
               for i in range(nstreams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    dt = time.monotonic() - t0
    for i in range(nstreams):
        if result.get(i, "missing") is not None:
            raise AssertionError("stream %d: %s" % (i, result.get(i, "did not finish")))
    print("figure: ws-api echoed %d messages (%d B payloads, %d per batch) over %d streams in "
          "%.2fs = %.0f msg/s" % (nstreams * nmsgs, len(b"0:0:") + 40, per_batch, nstreams, dt,
                                  nstreams * nmsgs / dt), flush=True)
    gw.close()
    finish(p)


# ---- benchmark mode (not a test) -------------------------------------------------------------
# /usr/bin/python3 tests/integration/test_api_load.py --bench [PROCS] [MSGS_PER_STREAM] [BATCH]
# 4 streams spread over PROCS client processes (python is the bottleneck: more processes, more
# load), every batch queued at once; prints echoed msg/s and ws-api's own CPU use.

def _bench_worker(gp, idx, nstreams, nmsgs, batch, q_out, q_go):
    gw = Gateway(gp, "gw-bench-%d" % idx)
    streams = [gw.stream(raw=True) for _ in range(nstreams)]
    batches = [build_batches(idx * 10 + i, nmsgs, batch, 50, payload_len=40)
               for i in range(nstreams)]
    res = {}
    q_out.put(("ready", idx))
    q_go.get()
    t0 = time.monotonic()
    th = [threading.Thread(target=run_stream, args=(streams[i], batches[i], nmsgs, 300, res, i))
          for i in range(nstreams)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    ok = all(v is None for v in res.values()) and all(len(st.commands) == nmsgs for st in streams)
    q_out.put(("done", idx, nstreams * nmsgs, time.monotonic() - t0, ok))
    gw.close()


def _cpu_seconds(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def bench(nprocs=4, nmsgs=500000, batch=100):
    import multiprocessing as mp
    p, gp, hp = start_api("--log-level", "warn")
    q_out, q_go = mp.Queue(), mp.Queue()
    procs = [mp.Process(target=_bench_worker, args=(gp, i, 4 // nprocs, nmsgs, batch, q_out, q_go))
             for i in range(nprocs)]
    for pr in procs:
        pr.start()
    for _ in procs:
        q_out.get()
    c0, t0 = _cpu_seconds(p.pid), time.monotonic()
    for _ in procs:
        q_go.put(1)
    total, ok = 0, True
    for _ in procs:
        m = q_out.get()
        total += m[2]
        ok = ok and m[4]
    dt, cpu = time.monotonic() - t0, _cpu_seconds(p.pid) - c0
    for pr in procs:
        pr.join()
    print("bench streams=4 procs=%d batch=%d payload~50B echoed=%d all_ok=%s secs=%.2f "
          "msg_per_s=%.0f ws_api_cpu=%.0f%% msg_per_ws_api_cpu_second=%.0f"
          % (nprocs, batch, total, ok, dt, total / dt, 100 * cpu / dt, total / max(cpu, 0.01)))
    finish(p)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bench":
        bench(*[int(a) for a in sys.argv[2:5]])
    else:
        w.run(globals())
