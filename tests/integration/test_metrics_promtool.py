"""Metrics of ws-gateway and ws-api after real traffic: both /metrics outputs pass
`promtool check metrics` (Debian package prometheus) with no error and no lint warning, and
every metric DESIGN.md names is there with its labels and values that follow the traffic.

The traffic (traffic_and_scrape) is shared with test_deploy.py, which checks that every metric
the Grafana dashboard queries exists in these scrapes."""
import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import ROOT, Api, Gateway, check, eq, proto, run, wait_until  # noqa: E402

PROMTOOL = shutil.which("promtool")


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(url):
    return await websockets.connect(url, max_size=None, ping_interval=None)


async def recv(ws, timeout=10):
    return await asyncio.wait_for(ws.recv(), timeout)


def raw_ws_connect(port, path, rcvbuf=4096):
    """A bare WebSocket client socket with a tiny receive buffer that never reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(1)
        if not chunk:
            break
        resp += chunk
    check(resp.startswith(b"HTTP/1.1 101"), resp)
    return s


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)(\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """(types, samples) of a Prometheus text exposition: types = {family: type},
    samples = [(name, {label: value}, float)]."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(None, 3)
            types[fam] = typ
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            check(m, "unparsable sample line %r" % line)
            labels = dict(LABEL.findall(m.group(3) or ""))
            samples.append((m.group(1), labels, float(m.group(4))))
    return types, samples


def value(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels` (None when there is none)."""
    vals = [v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items())]
    return sum(vals) if vals else None


def traffic_and_scrape():
    """Starts ws-api (chat handler) + ws-gateway, drives echo, chat, binary, HTTP and gRPC pushes,
    a bad push, a kick, a 404 handshake and a slow consumer through them; returns
    (api, gw, gateway /metrics text, ws-api /metrics text)."""
    import grpc
    api = Api(handler="chat")
    gw = Gateway([api.grpc_addr], threads=2, extra=["--send-queue", "65536", "--rcvbuf", "4096"])

    async def clients():
        a = await connect(gw.url("alice"))
        b = await connect(gw.url("bob"))
        for u in ("alice", "bob"):
            wait_until(lambda: api.conns_of(u), 5, what="presence of " + u)
        # echo (text and binary) through the chat handler: anything not a command is echoed
        for i in range(20):
            await a.send("echo %d" % i)
            eq(await recv(a), "echo %d" % i)
        await a.send(b"\x00\x01binary\xff")
        eq(await recv(a), b"\x00\x01binary\xff")
        # a chat room round trip
        await a.send(json.dumps({"op": "join", "room": "metrics"}))
        await b.send(json.dumps({"op": "join", "room": "metrics"}))
        await asyncio.sleep(0.3)
        await b.send(json.dumps({"op": "say", "room": "metrics", "text": "hello"}))
        want = {"op": "said", "room": "metrics", "from": "bob", "text": "hello"}
        eq(json.loads(await recv(a)), want)
        eq(json.loads(await recv(b)), want)
        # HTTP push to a user, a bad push (400)
        st, js = api.push(user_ids=["alice"], data="pushed")
        eq(st, 200, js)
        eq(await recv(a), "pushed")
        st, _ = api.http("POST", "/v1/push", "{not json")
        eq(st, 400)
        # gRPC Push to the room
        pb2, pb2_grpc = proto()
        with grpc.insecure_channel(api.grpc_addr) as ch:
            rep = pb2_grpc.PushStub(ch).Push(pb2.PushRequest(
                target=pb2.Target(room="metrics"), payload=b"grpc-push"), timeout=5)
        eq(rep.gateways, 1)
        eq(await recv(a), "grpc-push")
        eq(await recv(b), "grpc-push")
        # kick bob with 4001
        st, js = api.http("POST", "/v1/kick", {"user_ids": ["bob"], "code": 4001, "reason": "bye"})
        eq(st, 200, js)
        try:
            while True:
                await recv(b)
        except websockets.ConnectionClosed as e:
            eq(e.code, 4001)
        # a refused handshake (404)
        try:
            await connect("ws://127.0.0.1:%d/elsewhere" % gw.port)
            check(False, "handshake on a wrong path succeeded")
        except websockets.InvalidStatusCode as e:
            eq(e.status_code, 404)
        await a.close()

    arun(clients())

    # a slow consumer: never reads; pushes to it until the gateway closes it 1008
    slow = raw_ws_connect(gw.port, "/gateway/ws?user=slow")
    wait_until(lambda: api.conns_of("slow"), 5, what="presence of slow")
    payload = "s" * 16384
    for _ in range(512):
        st, _ = api.push(user_ids=["slow"], data=payload)
        eq(st, 200)
        if gw.metric("wsgw_slow_consumer_closes_total") >= 1:
            break
    wait_until(lambda: gw.metric("wsgw_closes_total", {"code": "1008"}) == 1, 10,
               what="slow consumer closed 1008")
    slow.close()
    wait_until(lambda: gw.metric("wsgw_connections") == 0, 10, what="all connections closed")
    wait_until(lambda: value(parse(api.http("GET", "/metrics")[1])[1],
                             "wsapi_presence_connections") == 0, 10, what="presence emptied")
    gw_text = gw.get("/metrics")[1]
    st, api_text = api.http("GET", "/metrics")
    eq(st, 200)
    return api, gw, gw_text, api_text


def promtool_check(text):
    """(exit code, output) of `promtool check metrics` on text."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip()


def test_promtool_and_design_names_after_traffic():
    if not PROMTOOL:
        print("skip: promtool not found (Debian package prometheus; `make deps` installs it)",
              flush=True)
        return
    api, gw, gw_text, api_text = traffic_and_scrape()
    logdir = os.path.join(os.environ.get("BUILD", "build"), "test-logs")
    os.makedirs(logdir, exist_ok=True)
    for name, text in (("gateway", gw_text), ("ws-api", api_text)):
        with open(os.path.join(logdir, "metrics-%s.txt" % name), "w") as f:
            f.write(text)
        rc, out = promtool_check(text)
        print("promtool check metrics (%s): rc=%d %s" % (name, rc, out or "(no output)"), flush=True)
        eq(rc, 0, "promtool on %s /metrics:\n%s" % (name, out))
        eq(out, "", "promtool lint output on %s /metrics" % name)

    # ---- ws-gateway: DESIGN.md names, types, labels, values
    types, s = parse(gw_text)
    for fam, typ in (("wsgw_connections", "gauge"), ("wsgw_connections_accepted_total", "counter"),
                     ("wsgw_messages_total", "counter"), ("wsgw_bytes_total", "counter"),
                     ("wsgw_closes_total", "counter"), ("wsgw_backpressure_pauses_total", "counter"),
                     ("wsgw_upstream_connected", "gauge"),
                     ("wsgw_upstream_reconnects_total", "counter"),
                     ("wsgw_upstream_lost_messages_total", "counter"),
                     ("wsgw_stage_seconds", "histogram")):
        eq(types.get(fam), typ, "TYPE of " + fam)
    eq(value(s, "wsgw_connections"), 0.0)
    eq(value(s, "wsgw_connections_accepted_total"), 3.0)  # alice, bob, slow
    # in: 20 echoes + binary + 2 joins + say; out: 21 echoes + 2 said + push + 2 gRPC pushes
    # + the pushes the slow consumer was sent (at least one)
    eq(value(s, "wsgw_messages_total", direction="in"), 24.0)
    check(value(s, "wsgw_messages_total", direction="out") >= 27.0, gw_text)
    check(value(s, "wsgw_bytes_total", direction="in") > 0)
    check(value(s, "wsgw_bytes_total", direction="out") > 16384)
    eq(value(s, "wsgw_closes_total", code="4001"), 1.0)
    eq(value(s, "wsgw_closes_total", code="1008"), 1.0)
    eq(value(s, "wsgw_closes_total", code="1000"), 1.0)
    check(value(s, "wsgw_backpressure_pauses_total") is not None)
    eq(value(s, "wsgw_upstream_connected", node=api.grpc_addr), 1.0)
    eq(value(s, "wsgw_upstream_reconnects_total", node=api.grpc_addr), 0.0)
    eq(value(s, "wsgw_upstream_lost_messages_total"), 0.0)
    eq(value(s, "wsgw_slow_consumer_closes_total"), 1.0)
    eq(value(s, "wsgw_handshake_rejects_total", status="404"), 1.0)
    for stage in ("ingress", "api", "egress"):
        n = value(s, "wsgw_stage_seconds_count", stage=stage)
        check(n and n > 0, "no %s samples in wsgw_stage_seconds" % stage)
        eq(value(s, "wsgw_stage_seconds_bucket", stage=stage, le="+Inf"), n, stage)
        check(value(s, "wsgw_stage_seconds_sum", stage=stage) > 0, stage)
    eq(value(s, "wsgw_stage_seconds_count", stage="ingress"), 24.0)

    # ---- ws-api
    types, s = parse(api_text)
    for fam, typ in (("wsapi_gateway_streams", "gauge"), ("wsapi_events_total", "counter"),
                     ("wsapi_push_requests_total", "counter"),
                     ("wsapi_presence_connections", "gauge")):
        eq(types.get(fam), typ, "TYPE of " + fam)
    eq(value(s, "wsapi_gateway_streams"), 4.0)  # --streams 4 of one gateway
    eq(value(s, "wsapi_presence_connections"), 0.0)
    eq(value(s, "wsapi_events_total", kind="open"), 3.0)
    eq(value(s, "wsapi_events_total", kind="close"), 3.0)
    eq(value(s, "wsapi_events_total", kind="message"), 24.0)
    check(value(s, "wsapi_push_requests_total", code="200") >= 3, api_text)  # pushes + kick
    eq(value(s, "wsapi_push_requests_total", code="400"), 1.0)
    eq(value(s, "wsapi_grpc_push_requests_total", status="0"), 1.0)

    # ---- both: build info and the standard process_* metrics (issue 17 item 9)
    with open(os.path.join(ROOT, "VERSION")) as f:
        version = f.read().strip()
    for text, info, proc in ((gw_text, "wsgw_build_info", gw.proc), (api_text, "wsapi_build_info",
                                                                      api.proc)):
        types, s = parse(text)
        eq(types.get(info), "gauge", info)
        eq([(ls, v) for n, ls, v in s if n == info], [({"version": version}, 1.0)], info)
        for fam, typ in (("process_cpu_seconds_total", "counter"),
                         ("process_resident_memory_bytes", "gauge"),
                         ("process_virtual_memory_bytes", "gauge"),
                         ("process_open_fds", "gauge"), ("process_max_fds", "gauge"),
                         ("process_start_time_seconds", "gauge")):
            eq(types.get(fam), typ, "TYPE of %s (%s)" % (fam, info))
        # the values are the process's own, as /proc and the clock tell them
        with open("/proc/%d/status" % proc.pid) as f:
            rss_kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        rss = value(s, "process_resident_memory_bytes")
        check(0.5 * rss_kb * 1024 < rss < 2 * rss_kb * 1024, "RSS %s vs %d kB" % (rss, rss_kb))
        nfd = len(os.listdir("/proc/%d/fd" % proc.pid))
        check(abs(value(s, "process_open_fds") - nfd) <= 8, "open fds %s vs %d" %
              (value(s, "process_open_fds"), nfd))
        start = value(s, "process_start_time_seconds")
        check(time.time() - 600 < start <= time.time() + 1, "start time %s" % start)
        check(value(s, "process_cpu_seconds_total") >= 0, info)
        check(value(s, "process_max_fds") >= nfd, info)


if __name__ == "__main__":
    run(globals())
