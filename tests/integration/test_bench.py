"""ws-bench against a stock python3-websockets (10.4) server: counts, latencies, close codes,
fragmented replies and pings, HTTP rejections, refused connects, several processes, conn mode.
Against ws-refecho (fast): open loop with the bench itself paused (SIGSTOP) for 1 s: latency
timed from the schedule (no coordinated omission) and the send lag reported.

The server (written to $BUILD/test-logs/bench_ws_server.py, started as a subprocess on a free
port) echoes every message, optionally after a delay, as fragments, after pinging the client,
or closes with a given code; it logs each request path on stdout."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wsgwtest import BIN, BUILD, ROOT, SLOW, check, eq, free_port, proc_log, run, start, wait_port, wait_until  # noqa: E402

PY = "/usr/bin/python3"

SERVER = r'''
import asyncio, http, sys, websockets
port = int(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "echo"
arg = float(sys.argv[3]) if len(sys.argv) > 3 else 0

async def handler(ws, path):
    print("path", path, flush=True)
    if mode == "close":           # close with code `arg` at the first message
        async for m in ws:
            await ws.close(code=int(arg), reason="bench test")
            return
        return
    async for m in ws:
        if mode == "delay":
            await asyncio.sleep(arg)
        if mode == "frag":        # reply in fragments, after a ping the client must answer
            pong = await ws.ping(b"bench")
            await asyncio.wait_for(pong, 5)
            if isinstance(m, str):
                await ws.send([m[:1], m[1:2], m[2:]])
            else:
                await ws.send([m[:1], m[1:]])
            continue
        await ws.send(m)

async def process_request(path, headers):
    if mode == "reject":
        return (http.HTTPStatus.FORBIDDEN, [], b"")
    return None

async def main():
    async with websockets.serve(handler, "127.0.0.1", port, compression=None, max_queue=None,
                                process_request=process_request, ping_interval=None,
                                max_size=None):
        await asyncio.Future()

asyncio.run(main())
'''


def server(mode="echo", arg=0):
    path = os.path.join(BUILD, "test-logs", "bench_ws_server.py")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(SERVER)
    port = free_port()
    p = start([PY, path, str(port), mode, str(arg)], name="ws-server-" + mode)
    wait_port(port, proc=p)
    return p, port


def bench(*args, timeout=60):
    """Runs ws-bench with --json; returns (exit code, last line as dict, json, stdout)."""
    fd, jpath = tempfile.mkstemp(prefix="bench-", suffix=".json", dir=os.path.join(BUILD, "test-logs"))
    os.close(fd)
    cmd = [os.path.join(BIN, "ws-bench")] + list(args) + ["--json", jpath]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * SLOW)
    lines = r.stdout.strip().splitlines()
    check(lines, "no output; stderr:\n" + r.stderr)
    last = lines[-1]
    kv = dict(x.split("=", 1) for x in last.split())
    check(set(["sent", "received", "errors", "p50_us", "p99_us"]) <= set(kv),
          "last line is not the summary: %r\nstderr:\n%s" % (last, r.stderr))
    kv = {k: int(v) for k, v in kv.items()}
    with open(jpath) as f:
        doc = json.load(f)
    os.unlink(jpath)
    return r.returncode, kv, doc, r.stdout + r.stderr


def test_counts_open_loop_and_user_ids():
    p, port = server()
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port, "--path", "/ws",
                             "--user", "20", "--interval", "50ms", "--times", "10")
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"], kv["conns"]), (200, 200, 0, 20), out)
    eq(doc["messages"]["bytes_received"], 200 * len("hello"))
    eq(doc["conns"]["opened"], 20)
    eq(doc["latency_us"]["count"], 200)
    eq(doc["close_codes"], {"1000": 20})  # our close 1000, echoed by the server
    paths = sorted(l.split()[1] for l in open(p.log_path) if l.startswith("path "))
    eq(paths, sorted("/ws?user=u%d" % i for i in range(20)))
    check(kv["p50_us"] > 0 and kv["p99_us"] >= kv["p50_us"])


def test_closed_loop_inflight_1k_file():
    p, port = server()
    f = os.path.join(ROOT, "testdata", "1k.txt")
    eq(os.path.getsize(f), 1411)
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port, "--user", "5",
                             "--interval", "0", "--inflight", "8", "--times", "200",
                             "--file", f, "--binary")
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"]), (1000, 1000, 0), out)
    eq(doc["messages"]["bytes_sent"], 1000 * 1411)
    eq(doc["messages"]["bytes_received"], 1000 * 1411)
    check(doc["msgs_per_s"] > 0 and doc["mb_per_s"] > 0)
    # closed loop has no schedule: timed from the send, no lag recorded
    eq(doc["latency_from"], "send")
    eq(doc["send_lag_us"]["count"], 0)
    eq(doc["latency_uncorrected_us"]["count"], 1000)
    check("late sends" not in out, out)


def test_latency_tracks_a_20ms_server_delay():
    p, port = server("delay", 0.020)
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port, "--user", "5",
                             "--interval", "100ms", "--times", "10")
    eq(rc, 0, out)
    eq(kv["received"], 50)
    check(20000 <= kv["p50_us"] < 40000, "p50 %d us with a 20 ms delay\n%s" % (kv["p50_us"], out))
    check(doc["latency_us"]["min"] >= 20000, out)
    p2, port2 = server()
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port2, "--user", "5",
                             "--interval", "100ms", "--times", "10")
    eq(rc, 0, out)
    check(kv["p50_us"] < 10000 * SLOW, "immediate echo p50 %d us\n%s" % (kv["p50_us"], out))


def test_server_close_code_is_reported():
    p, port = server("close", 4001)
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port, "--user", "3",
                             "--interval", "50ms", "--times", "5", "--drain", "1s")
    eq(rc, 1, out)  # errors > 0
    eq(doc["close_codes"], {"4001": 3}, out)
    eq(doc["errors"]["closed_by_server"], 3)
    eq(kv["sent"], 3)       # one each, then the server closed
    eq(kv["received"], 0)
    eq(doc["errors"]["unanswered"], 3)
    eq(kv["errors"], 6)
    check("close codes from server: 4001=3" in out, out)


def test_fragmented_replies_and_pings():
    p, port = server("frag")
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port, "--user", "4",
                             "--interval", "0", "--inflight", "2", "--times", "20",
                             "--content", "fragmented-reply")
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"]), (80, 80, 0), out)
    eq(doc["messages"]["pings"], 80)  # each answered with a pong, or the server would stall
    eq(doc["messages"]["bytes_received"], 80 * len("fragmented-reply"))


def test_http_rejection_counts_status():
    p, port = server("reject")
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port, "--user", "4",
                             "--times", "1")
    eq(rc, 1, out)
    eq(doc["errors"]["handshake_status"], 4)
    eq(doc["http_status"], {"403": 4})
    eq(kv["conns"], 0)


def test_refused_connects():
    port = free_port()
    rc, kv, doc, out = bench("conn", "--host", "127.0.0.1:%d" % port, "--user", "5",
                             "--sleep", "100ms")
    eq(rc, 1, out)
    eq(doc["errors"]["connect_refused"], 5)
    eq((kv["conns"], kv["errors"]), (0, 5))


def test_procs_threads_hosts_merge_exactly():
    p1, port1 = server()
    p2, port2 = server()
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d,127.0.0.1:%d" % (port1, port2),
                             "--user", "40", "--procs", "2", "--threads", "2",
                             "--interval", "20ms", "--times", "5",
                             "--source-ips", "127.0.0.1-127.0.0.4")
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"], kv["conns"]), (200, 200, 0, 40), out)
    eq(doc["procs"], 2)
    eq(doc["threads"], 4)
    eq(doc["latency_us"]["count"], 200)
    eq(sum(b[2] for b in doc["latency_us"]["buckets"]), 200)  # merged counts, not averaged
    n1 = sum(1 for l in open(p1.log_path) if l.startswith("path "))
    n2 = sum(1 for l in open(p2.log_path) if l.startswith("path "))
    eq((n1, n2), (20, 20))  # spread evenly over the hosts


def test_conn_mode_holds_and_reports_memory():
    p, port = server()
    rc, kv, doc, out = bench("conn", "--host", "127.0.0.1:%d" % port, "--user", "300",
                             "--sleep", "1s")
    eq(rc, 0, out)
    eq((kv["conns"], kv["errors"], kv["sent"]), (300, 0, 0), out)
    eq(doc["conns"]["open_at_ready"], 300)
    check(doc["bench_memory"]["bytes_per_conn"] > 0, out)
    check("per_conn=" in out)


def test_idle_hold_does_not_spin():
    # --duration only bounds sending in message mode; in conn/push mode a deadline the loop
    # never acted on made epoll_wait return at once, forever (a busy loop on one core)
    p, port = server()
    rc, kv, doc, out = bench("conn", "--host", "127.0.0.1:%d" % port, "--user", "5",
                             "--sleep", "2s", "--duration", "100ms")
    eq(rc, 0, out)
    check(doc["bench_cpu"]["pct_of_core"] < 50, "bench CPU while idle: %s\n%s"
          % (doc["bench_cpu"], out))


LAST_LINE = re.compile(r"^sent=\d+ received=\d+ errors=\d+ p50_us=\d+ p99_us=\d+ conns=\d+$")


def refecho():
    port = free_port()
    p = start(["ws-refecho", "--listen", "127.0.0.1:%d" % port, "--threads", "1"])
    wait_port(port, proc=p)
    return p, port


def paused_bench(port, args, pause_after, pause=1.0):
    """Runs ws-bench message in its own process group; `pause_after` s after every connection
    is up (its "connected" log line) stops the whole group (parent and worker) with SIGSTOP
    for `pause` s. Returns (exit code, last line as dict, json, output)."""
    fd, jpath = tempfile.mkstemp(prefix="bench-", suffix=".json", dir=os.path.join(BUILD, "test-logs"))
    os.close(fd)
    b = start(["ws-bench", "message", "--host", "127.0.0.1:%d" % port, "--log-level", "info",
               "--json", jpath] + list(args), name="ws-bench-paused")
    wait_until(lambda: "msg=connected" in proc_log(b, 200) or b.poll() is not None,
               timeout=10 * SLOW, what="ws-bench connected")
    if pause:
        time.sleep(pause_after)
        os.killpg(b.pid, signal.SIGSTOP)
        time.sleep(pause)
        os.killpg(b.pid, signal.SIGCONT)
    rc = b.wait(30 * SLOW)
    out = proc_log(b, 400)
    lines = [l for l in out.splitlines() if l.startswith("sent=")]
    check(lines, "no summary line:\n" + out)
    check(LAST_LINE.match(lines[-1]), "summary line changed: %r" % lines[-1])
    kv = {k: int(v) for k, v in (x.split("=", 1) for x in lines[-1].split())}
    with open(jpath) as f:
        doc = json.load(f)
    os.unlink(jpath)
    return rc, kv, doc, out


def test_open_loop_paused_bench_keeps_its_delays():
    # issue 18: paused for 1 s mid-run, the old ws-bench reported p99 of a few ms (it timed
    # each message from when it went out, and the ~100 sends per connection it owed went out
    # in a burst after the pause) while ~40 % of the sends were up to 1 s late
    p, port = refecho()
    rc, kv, doc, out = paused_bench(port, ["--user", "20", "--interval", "10ms", "--times", "250"],
                                    pause_after=0.5)
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"], kv["conns"]), (5000, 5000, 0, 20), out)
    # 2.5 s of schedule, 1 s of it paused: ~40 % of the sends late by 0..1 s
    check(kv["p99_us"] >= 500000, "p99 %d us after a 1 s pause\n%s" % (kv["p99_us"], out))
    check(doc["latency_us"]["max"] >= 900000, out)
    eq(doc["latency_from"], "due")
    lag = doc["send_lag_us"]
    eq(lag["count"], 5000)
    check(lag["max"] >= 900000 and lag["p99"] >= 500000, "send lag %r\n%s" % (lag, out))
    late = doc["late_sends"]
    eq(late["threshold_us"], 1000.0)
    check(late["count"] >= 1250, "late sends %r (want ~2000 of 5000)\n%s" % (late, out))
    check(re.search(r"^late sends: %d of 5000 " % late["count"], out, re.M), out)
    check(re.search(r"^send lag behind the schedule \(us\): n=5000 ", out, re.M), out)
    # what the old figure was: timed from the actual send the pause nearly vanishes (at most
    # the 20 messages in flight when it began saw it)
    unc = doc["latency_uncorrected_us"]
    eq(unc["count"], 5000)
    check(unc["p99"] < min(300000, kv["p99_us"] / 2), "uncorrected %r\n%s" % (unc, out))


def test_open_loop_sends_owed_before_the_duration_ends_still_go_out():
    # a pause across the end of --duration: the sends that fell due before the end go out
    # late (and count), instead of vanishing because the clock has passed the end
    p, port = refecho()
    rc, kv, doc, out = paused_bench(port, ["--user", "10", "--interval", "10ms",
                                           "--duration", "1s"], pause_after=0.4)
    eq(rc, 0, out)
    eq(kv["errors"], 0, out)
    check(kv["sent"] >= 900 and kv["sent"] <= 1000, "sent %d of ~1000 due\n%s" % (kv["sent"], out))
    eq(kv["received"], kv["sent"], out)
    check(doc["send_lag_us"]["max"] >= 400000, out)


def test_open_loop_unpaused_figures_stay_small():
    # without a pause the correction adds only the bench's wake-up delay: p50 within a few
    # ms of the uncorrected figure, few late sends (the timeout is in ns: epoll_pwait2; the
    # default --tick 1ms groups sends on a 1 ms grid and times them from the grid point)
    p, port = refecho()
    rc, kv, doc, out = paused_bench(port, ["--user", "20", "--interval", "10ms", "--times", "100"],
                                    pause_after=0, pause=0)
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"]), (2000, 2000, 0), out)
    unc = doc["latency_uncorrected_us"]
    check(kv["p50_us"] <= unc["p50"] + 2000 * SLOW, "p50 %d vs uncorrected %r\n%s"
          % (kv["p50_us"], unc, out))
    check(kv["p99_us"] < 100000 * SLOW, out)
    check(doc["send_lag_us"]["p50"] < 2000 * SLOW, out)
    # (a busy 2-core VM: 29.8 % of sends more than 1 ms late with a send lag p50 of 0.45 ms;
    # a bench whose timer is off by a tick makes nearly all of them late)
    check(doc["late_sends"]["pct"] < 50, out)
    eq(doc["config"]["tick_us"], 1000)
    # --tick 0: every send at its own time (no 1 ms grid), the same bounds
    rc, kv, doc, out = paused_bench(port, ["--user", "20", "--interval", "10ms", "--times", "50",
                                           "--tick", "0"], pause_after=0, pause=0)
    eq((rc, kv["sent"], kv["received"]), (0, 1000, 1000), out)
    eq(doc["config"]["tick_us"], 0)
    check(kv["p50_us"] <= doc["latency_uncorrected_us"]["p50"] + 2000 * SLOW, out)
    check(doc["send_lag_us"]["p50"] < 2000 * SLOW, out)


run(globals())
