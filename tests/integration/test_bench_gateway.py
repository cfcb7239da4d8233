"""ws-bench end to end: bin/ws-gateway --upstream bin/ws-api (echo / chat handler).
Counts through the gateway (open and closed loop), push delivery for target user/room/all,
idle connections seen by the gateway's metrics, and 503s past --max-connections.
Each test is skipped (reported, not failed) while bin/ws-gateway or bin/ws-api is not built."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wsgwtest import (BIN, BUILD, ROOT, SLOW, Api, Gateway, check, eq, run,  # noqa: E402
                      wait_until)


def have_bins():
    missing = [b for b in ("ws-gateway", "ws-api") if not os.access(os.path.join(BIN, b), os.X_OK)]
    if missing:
        print("skip: %s not built in %s" % (", ".join(missing), BIN), flush=True)
        return False
    return True


def bench_cmd(*args, json_path=None):
    cmd = [os.path.join(BIN, "ws-bench")] + list(args)
    if json_path:
        cmd += ["--json", json_path]
    return cmd


def parse(stdout):
    last = stdout.strip().splitlines()[-1]
    return {k: int(v) for k, v in (x.split("=", 1) for x in last.split())}


def bench(*args):
    fd, jpath = tempfile.mkstemp(prefix="bench-", suffix=".json", dir=os.path.join(BUILD, "test-logs"))
    os.close(fd)
    r = subprocess.run(bench_cmd(*args, json_path=jpath), capture_output=True, text=True,
                       timeout=60 * SLOW)
    out = r.stdout + r.stderr
    kv = parse(r.stdout)
    with open(jpath) as f:
        doc = json.load(f)
    os.unlink(jpath)
    return r.returncode, kv, doc, out


def test_echo_counts_through_gateway():
    if not have_bins():
        return
    api = Api("echo")
    gw = Gateway([api.grpc_addr], threads=2)
    host = "127.0.0.1:%d" % gw.port
    rc, kv, doc, out = bench("message", "--host", host, "--user", "50", "--interval", "20ms",
                             "--times", "10")
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"], kv["conns"]), (500, 500, 0, 50), out)
    rc, kv, doc, out = bench("message", "--host", host, "--user", "20", "--interval", "0",
                             "--inflight", "8", "--times", "100", "--file",
                             os.path.join(ROOT, "testdata", "1k.txt"))
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"]), (2000, 2000, 0), out)
    eq(doc["messages"]["bytes_received"], 2000 * 1411)
    check(gw.metric("wsgw_messages_total", {"direction": "in"}) >= 2500)


def test_push_user_room_all():
    if not have_bins():
        return
    api = Api("chat")
    gw = Gateway([api.grpc_addr], threads=2)
    host = "127.0.0.1:%d" % gw.port
    url = "http://127.0.0.1:%d" % api.http_port
    for target, per_push in (("user", 1), ("room", 100), ("all", 100)):
        rc, kv, doc, out = bench("push", "--host", host, "--user", "100", "--target", target,
                                 "--rate", "50", "--times", "20", "--push-url", url,
                                 "--settle", "500ms")
        eq(rc, 0, target + "\n" + out)
        eq((kv["sent"], kv["received"], kv["errors"], kv["conns"]), (20, 20 * per_push, 0, 100),
           target + "\n" + out)
        eq(doc["messages"]["deliveries_expected"], 20 * per_push)
        eq(doc["latency_us"]["count"], 20 * per_push)
        check(doc["latency_us"]["p50"] > 0)


def test_idle_connections_seen_by_gateway():
    if not have_bins():
        return
    api = Api("echo")
    gw = Gateway([api.grpc_addr], threads=2)
    n = 500
    b = subprocess.Popen(bench_cmd("conn", "--host", "127.0.0.1:%d" % gw.port, "--user", str(n),
                                   "--sleep", "%ds" % (3 * SLOW)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: gw.metric("wsgw_connections") == n, 20 * SLOW,
                   what="gateway holding %d connections" % n)
        out, err = b.communicate(timeout=30 * SLOW)
    finally:
        if b.poll() is None:
            b.kill()
    kv = parse(out)
    eq((kv["conns"], kv["errors"]), (n, 0), out + err)
    eq(b.returncode, 0)
    wait_until(lambda: gw.metric("wsgw_connections") == 0, 10 * SLOW, what="all closed")
    eq(gw.metric("wsgw_closes_total", {"code": "1000"}), n)


def test_http_503_past_max_connections():
    if not have_bins():
        return
    api = Api("echo")
    gw = Gateway([api.grpc_addr], threads=1, extra=["--max-connections", "10"])
    rc, kv, doc, out = bench("conn", "--host", "127.0.0.1:%d" % gw.port, "--user", "15",
                             "--sleep", "500ms", "--connect-rate", "100")
    eq(rc, 1, out)
    eq(kv["conns"], 10, out)
    eq(doc["errors"]["handshake_status"], 5)
    eq(doc["http_status"], {"503": 5})


def test_auto_coalescing_follows_the_load():
    """Wake-up coalescing as shipped (--coalesce / --svc-coalesce auto, gateway/pace.h):
    sparse traffic (5 clients, one message each per 100 ms) never switches a thread to
    polling; 10 messages a millisecond spread evenly (200 clients x 50/s, --tick 0) do, the
    windows carry several items each, and the threads go back to sleeping on events once it
    stops; one closed-loop client (the round-trip benchmark) may be tried, but every try ends
    as a back-off (windows of at most two items: it did not pay, even under a sanitizer).
    Every message is echoed."""
    if not have_bins():
        return
    api = Api("echo")
    gw = Gateway([api.grpc_addr], threads=1)
    host = "127.0.0.1:%d" % gw.port
    loops = ("service", "writer")

    def m(name, loop):
        return gw.metric("wsgw_coalesce_%s" % name, {"loop": loop}) or 0

    def snap():
        return {(n, lp): m(n, lp) for n in ("spells_total", "backoffs_total", "windows_total",
                                             "items_total") for lp in loops}
    rc, kv, doc, out = bench("message", "--host", host, "--user", "5", "--interval", "100ms",
                             "--times", "10", "--tick", "0")
    eq((rc, kv["sent"], kv["received"], kv["errors"]), (0, 50, 50, 0), out)
    s0 = snap()
    for lp in loops:
        eq(s0[("spells_total", lp)], 0, "sparse traffic polled on the %s loop" % lp)

    rc, kv, doc, out = bench("message", "--host", host, "--user", "200", "--interval", "20ms",
                             "--times", "50", "--tick", "0")
    eq((rc, kv["sent"], kv["received"], kv["errors"]), (0, 10000, 10000, 0), out)
    s1 = snap()
    check(s1[("spells_total", "service")] >= 1, "dense traffic: the service thread never polled")
    win = s1[("windows_total", "service")] - s0[("windows_total", "service")]
    items = s1[("items_total", "service")] - s0[("items_total", "service")]
    check(win > 0 and items >= 3 * win, "service windows %d carried %d items" % (win, items))
    wait_until(lambda: all(m("polling", lp) == 0 for lp in loops), 5 * SLOW,
               what="threads back to sleeping on events")

    rc, kv, doc, out = bench("message", "--host", host, "--user", "1", "--interval", "0",
                             "--inflight", "1", "--duration", "1s")
    eq((rc, kv["errors"]), (0, 0), out)
    eq(kv["sent"], kv["received"], out)
    s2 = snap()
    for lp in loops:
        tries = s2[("spells_total", lp)] - s1[("spells_total", lp)]
        backoffs = s2[("backoffs_total", lp)] - s1[("backoffs_total", lp)]
        # a try still running when the run ends has not been judged yet
        check(backoffs >= tries - 1, "closed loop on the %s loop: %d tries, %d backed off"
              % (lp, tries, backoffs))


run(globals())
