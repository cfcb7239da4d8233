"""Nothing lost, nothing stuck: ws-gateway under upstream faults, drain, and bad client input.
Real peers: python3-websockets clients, bin/ws-api, python3-grpcio servers."""
import asyncio
import base64
import os
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import (Api, Gateway, check, eq, free_port, grpc_exchange_server, proto,  # noqa: E402
                      raw_http, run, start, wait_port, wait_until)


def arun(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(url, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)
    return await websockets.connect(url, **kw)


def restartable_api(port_grpc=None, port_http=None, handler="echo"):
    g = port_grpc or free_port()
    h = port_http or free_port()
    p = start(["ws-api", "--grpc-listen", "127.0.0.1:%d" % g, "--http-listen",
               "127.0.0.1:%d" % h, "--handler", handler])
    wait_port(g, proc=p)
    return p, g, h


def test_kill9_api_every_message_echoed_and_ready_within_2s():
    api, gport, hport = restartable_api()
    gw = Gateway(["127.0.0.1:%d" % gport], threads=2, streams=4)
    nclients, nmsg = 50, 100
    state = {}

    async def client(i):
        ws = await connect(gw.url("k%d" % i))
        want = {"c%d-%d" % (i, k) for k in range(nmsg)}
        got = set()

        async def reader():
            while got != want:
                m = await asyncio.wait_for(ws.recv(), 30)
                got.add(m)
        rt = asyncio.create_task(reader())
        for k in range(nmsg):
            await ws.send("c%d-%d" % (i, k))
            await asyncio.sleep(0.02)
        await rt
        await ws.close()
        return len(got)

    async def chaos():
        await asyncio.sleep(0.6)
        api.send_signal(signal.SIGKILL)
        api.wait()
        await asyncio.sleep(0.5)
        t_restart = time.monotonic()
        p2, _, _ = restartable_api(gport, hport)
        state["api2"] = p2
        while not gw.ready():
            await asyncio.sleep(0.02)
        state["ready_after"] = time.monotonic() - t_restart

    async def main():
        res = await asyncio.gather(chaos(), *[client(i) for i in range(nclients)])
        return res[1:]
    counts = arun(main(), 120)
    eq(counts, [nmsg] * nclients)
    check(state["ready_after"] < 2.0, "ready %.2fs after restart" % state["ready_after"])
    check(gw.metric("wsgw_upstream_reconnects_total", {"node": "127.0.0.1:%d" % gport}) >= 1)
    eq(gw.metric("wsgw_upstream_lost_messages_total"), 0)


def test_resync_larger_than_the_rings():
    """After ws-api restarts, the gateway re-sends an Open for every live connection; with
    300 connections and rings of 64 the service threads send them over several wakes."""
    api, gport, hport = restartable_api()
    gw = Gateway(["127.0.0.1:%d" % gport], threads=2, extra=["--ring-size", "64"])

    async def main():
        socks = [await connect(gw.url("r%d" % i)) for i in range(300)]
        api.send_signal(signal.SIGKILL)
        api.wait()
        restartable_api(gport, hport)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_until(gw.ready, 5, what="ready after restart"))
        for i, ws in enumerate(socks):
            await ws.send("after-%d" % i)
        got = [await asyncio.wait_for(ws.recv(), 10) for ws in socks]
        for ws in socks:
            await ws.close()
        return got
    eq(arun(main()), ["after-%d" % i for i in range(300)])
    with open(gw.proc.log_path) as f:
        check("presence resync" in f.read() and "opens=300" in open(gw.proc.log_path).read(),
              "resync of 300 Opens not logged")


def test_message_queued_before_the_first_connect_reaches_the_api():
    """The gateway starts before ws-api; a client sends and leaves before ws-api is up. No
    connection is live at the first resync (0 Opens) and no stream was ever open: the queued
    message must still reach ws-api (a regression: that resync once took such batches for
    handed over and freed them unsent, uncounted)."""
    import urllib.request
    gport, hport = free_port(), free_port()
    gw = Gateway(["127.0.0.1:%d" % gport], threads=2, wait_ready=False)

    async def main():
        ws = await connect(gw.url("early"))
        await ws.send("sent before the API was up")
        await ws.close()
    arun(main())
    time.sleep(0.2)  # the writer has queued it as a batch
    restartable_api(gport, hport)

    def api_messages():
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % hport, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('wsapi_events_total{kind="message"}'):
                    return float(line.split()[-1])
        return 0
    wait_until(gw.ready, 5, what="ready once ws-api is up")
    wait_until(lambda: api_messages() == 1, 5, what="the queued message at ws-api")
    eq(gw.metric("wsgw_upstream_lost_messages_total"), 0)


def test_two_api_nodes_one_killed_echoes_continue():
    a, ga, _ = restartable_api()
    b, gb, _ = restartable_api()
    gw = Gateway(["127.0.0.1:%d" % ga, "127.0.0.1:%d" % gb], threads=2)
    users = ["user%d" % i for i in range(20)]

    async def round_trip(socks, tag):
        for u, ws in socks.items():
            await ws.send("%s-%s" % (tag, u))
        out = {}
        for u, ws in socks.items():
            out[u] = await asyncio.wait_for(ws.recv(), 10)
        return out

    async def main():
        socks = {u: await connect(gw.url(u)) for u in users}
        before = await round_trip(socks, "before")
        a.send_signal(signal.SIGKILL)
        a.wait()
        t0 = time.monotonic()
        after = await round_trip(socks, "after")
        took = time.monotonic() - t0
        for ws in socks.values():
            await ws.close()
        return before, after, took
    before, after, took = arun(main())
    eq(before, {u: "before-%s" % u for u in users})
    eq(after, {u: "after-%s" % u for u in users})
    check(took < 1.0, "echoes after failover took %.2fs" % took)
    check(gw.ready())


def test_failover_and_return_keep_each_connections_order():
    """Two API nodes; A is killed while clients stream, then restarted. Every connection's
    echoes arrive in order (duplicates allowed: at least once), none missing, and traffic moves
    back to A once it returns."""
    a, ga, ha = restartable_api()
    b, gb, _ = restartable_api()
    gw = Gateway(["127.0.0.1:%d" % ga, "127.0.0.1:%d" % gb], threads=2, streams=2)
    nclients, nmsg = 20, 150
    state = {}

    async def client(i):
        ws = await connect(gw.url("o%d" % i))
        got = []

        async def reader():
            while len(set(got)) < nmsg:
                got.append(int(await asyncio.wait_for(ws.recv(), 30)))
        rt = asyncio.create_task(reader())
        for k in range(nmsg):
            await ws.send(str(k))
            await asyncio.sleep(0.02)
        await rt
        await ws.close()
        return got

    async def chaos():
        await asyncio.sleep(0.8)
        # frozen first: messages sent to A in this window are written but never acked, so the
        # gateway must hand them back to go to B, ahead of newer ones
        a.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.4)
        a.send_signal(signal.SIGKILL)
        a.wait()
        await asyncio.sleep(0.8)
        p2, _, _ = restartable_api(ga, ha)
        state["a2"] = p2

    async def main():
        res = await asyncio.gather(chaos(), *[client(i) for i in range(nclients)])
        return res[1:]
    results = arun(main(), 120)
    for i, got in enumerate(results):
        eq(sorted(set(got)), list(range(nmsg)), "client %d missing echoes" % i)
        check(all(x <= y for x, y in zip(got, got[1:])), "client %d reordered: %r" % (i, got))
    # A gets traffic back after its restart. The clients may be done before the gateway is
    # back on A (a slow restart: under TSan ws-api takes most of a second to start): then more
    # clients send until A sees messages, for up to 10 s.
    import http.client
    from wsgwtest import parse_metric

    def a_messages():
        c = http.client.HTTPConnection("127.0.0.1", ha, timeout=5)
        c.request("GET", "/metrics")
        return parse_metric(c.getresponse().read().decode(), "wsapi_events_total",
                            {"kind": "message"}) or 0

    async def late():
        wss = [await connect(gw.url("late%d" % i)) for i in range(20)]
        deadline = time.monotonic() + 10
        while a_messages() == 0 and time.monotonic() < deadline:
            for ws in wss:
                await ws.send("x")
            for ws in wss:
                await asyncio.wait_for(ws.recv(), 10)
            await asyncio.sleep(0.05)
        for ws in wss:
            await ws.close()
    if a_messages() == 0:
        arun(late(), 30)
    check(a_messages() > 0, "no message reached the restarted node")
    check(gw.proc_log_has("messages handed back"), "the handback path was not exercised")


def test_replay_buffer_full_pauses_clients_and_loses_nothing():
    """ws-api frozen (SIGSTOP): the gateway keeps unacked batches up to --replay-max-bytes, then
    stops draining its rings, and the client is paused (backpressure) instead of anything being
    dropped; after SIGCONT every message is echoed, in order."""
    api, gport, _ = restartable_api()
    gw = Gateway(["127.0.0.1:%d" % gport], threads=1, streams=1,
                 extra=["--replay-max-bytes", "65536", "--ring-size", "64"])
    n = 3000
    payload = "x" * 1000

    async def main():
        ws = await connect(gw.url("bp"))
        await ws.send("warm")
        eq(await asyncio.wait_for(ws.recv(), 5), "warm")
        api.send_signal(signal.SIGSTOP)

        async def sender():
            for i in range(n):
                await ws.send("%d:%s" % (i, payload))
        st = asyncio.create_task(sender())
        await asyncio.sleep(1.5)
        paused = gw.metric("wsgw_backpressure_pauses_total")
        api.send_signal(signal.SIGCONT)
        await asyncio.wait_for(st, 30)
        got = [await asyncio.wait_for(ws.recv(), 30) for _ in range(n)]
        await ws.close()
        return paused, got
    paused, got = arun(main(), 90)
    check(paused >= 1, "the client was never paused")
    eq([int(m.split(":", 1)[0]) for m in got], list(range(n)))
    eq(gw.metric("wsgw_upstream_lost_messages_total"), 0)


def big_echoes_through_a_frozen_api(gw, api, nclients, n):
    """nclients send n messages each of 1-9 KB with distinct contents, with api frozen for
    0.5 s in the middle: every message comes back byte for byte, in order, nothing lost."""
    def body(c, i):
        head = ("%d:%d:" % (c, i)).encode()
        return (head + bytes((c * 7 + i * 13 + k) % 251
                             for k in range(1000 + (c * 131 + i * 977) % 8000))).hex()

    async def client(c):
        ws = await connect(gw.url("big%d" % c))
        got = []

        async def reader():
            while len(got) < n:
                got.append(await asyncio.wait_for(ws.recv(), 30))
        rt = asyncio.create_task(reader())
        for i in range(n):
            await ws.send(body(c, i))
            if i % 10 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(rt, 60)
        await ws.close()
        return got

    async def main():
        tasks = [asyncio.create_task(client(c)) for c in range(nclients)]
        await asyncio.sleep(0.3)
        api.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.5)
        api.send_signal(signal.SIGCONT)
        return await asyncio.gather(*tasks)
    results = arun(main(), 120)
    for c, got in enumerate(results):
        eq(len(got), n, "client %d" % c)
        bad = [i for i in range(n) if got[i] != body(c, i)]
        eq(bad, [], "client %d: messages that came back different or out of order" % c)
    eq(gw.metric("wsgw_upstream_lost_messages_total"), 0)


def test_api_socket_that_takes_little_corrupts_nothing():
    """--upstream-sndbuf 4096: the API node's socket takes a few KB at a time, so most sends
    leave bytes behind (wsgw_upstream_send_blocked_total). The writer sends its batches
    straight from the delivery machine's memory (gathered writes); what the socket does not
    take must become the writer's own copy before the machine may ack, free, reuse or renumber
    those batches. 20 clients x 150 messages through a frozen API (big_echoes_through_a_frozen_api)."""
    api, gport, _ = restartable_api()
    gw = Gateway(["127.0.0.1:%d" % gport], threads=2, streams=4,
                 extra=["--upstream-sndbuf", "4096"])
    big_echoes_through_a_frozen_api(gw, api, 20, 150)
    check(gw.metric("wsgw_upstream_send_blocked_total") > 10,
          "the API socket took everything: the test did not test gathered writes left behind")
    api.kill()


def test_full_command_rings_wake_the_writer_and_lose_nothing():
    """Rings of 64. ws-api is stopped (SIGSTOP) while a client sends a burst of 1 000
    messages, then continued: its echoes arrive at the writer all at once, hundreds of
    commands per read, and the writer finds its ring to the service thread full
    (wsgw_command_ring_full_total) with nothing else to wake it: the client waits, the API
    has answered. Only the service thread, having taken commands, can wake the writer to hand
    over the rest. Five bursts: every echo arrives, in order, each burst well within the
    writer's 1 s idle timeout that a missing wake-up would cost."""
    api = Api()
    gw = Gateway([api.grpc_addr], threads=1, streams=1, extra=["--ring-size", "64"])
    bursts, n = 5, 1000

    async def main():
        ws = await connect(gw.url("full"))
        await ws.send("warm")
        eq(await asyncio.wait_for(ws.recv(), 5), "warm")
        times = []
        for b in range(bursts):
            sent = ["b%d-%d" % (b, i) for i in range(n)]
            api.proc.send_signal(signal.SIGSTOP)
            for m in sent:
                await ws.send(m)
            await asyncio.sleep(0.3)  # the batches wait in ws-api's socket
            t0 = time.monotonic()
            api.proc.send_signal(signal.SIGCONT)
            got = [await asyncio.wait_for(ws.recv(), 20) for _ in range(n)]
            times.append(time.monotonic() - t0)
            eq(got, sent)
        await ws.close()
        return times
    try:
        times = arun(main(), 90)
    finally:
        api.proc.send_signal(signal.SIGCONT)
    stalls = gw.metric("wsgw_command_ring_full_total")
    check(stalls >= bursts, "the command ring filled only %s times" % stalls)
    mid = sorted(times)[len(times) // 2]
    check(mid < 0.7, "bursts took %s s after SIGCONT: a full ring waited for the idle "
          "timeout" % ["%.2f" % x for x in times])
    eq(gw.metric("wsgw_messages_total", {"direction": "out"}), bursts * n + 1)


def test_sigterm_drain_every_client_gets_1001():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--drain-timeout", "5"])

    async def main():
        socks = [await connect(gw.url("d%d" % i)) for i in range(10)]
        for ws in socks:
            await ws.send("last words")
        for ws in socks:
            eq(await asyncio.wait_for(ws.recv(), 5), "last words")
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        codes = []
        for ws in socks:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as e:
                codes.append((e.code, e.reason))
        return codes, t0
    codes, t0 = arun(main())
    eq(codes, [(1001, "going away")] * 10)
    rc = gw.proc.wait(10)
    took = time.monotonic() - t0
    eq(rc, 0)
    check(took < 5.0, "exit took %.2fs (drain timeout 5 s)" % took)


def test_sigterm_flushes_in_flight_echoes():
    """Messages the gateway has read before SIGTERM still get their echo before the 1001 close
    (messages still unread in the socket when reads stop are not the gateway's yet)."""
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--drain-timeout", "5"])

    async def main():
        ws = await connect(gw.url("flush"))
        for i in range(200):
            await ws.send("m%d" % i)
        await asyncio.get_running_loop().run_in_executor(None, lambda: wait_until(
            lambda: gw.metric("wsgw_messages_total", {"direction": "in"}) == 200, 10,
            what="all 200 read by the gateway"))
        gw.proc.send_signal(signal.SIGTERM)
        got = []
        try:
            while True:
                got.append(await asyncio.wait_for(ws.recv(), 10))
        except websockets.ConnectionClosed as e:
            return got, e.code
    got, code = arun(main())
    eq(code, 1001)
    eq(got, ["m%d" % i for i in range(200)])
    eq(gw.proc.wait(10), 0)


def test_api_sigterm_goaway_gateway_half_closes_and_reconnects():
    api, gport, hport = restartable_api()
    gw = Gateway(["127.0.0.1:%d" % gport], streams=4)

    async def main():
        ws = await connect(gw.url("g"))
        await ws.send("one")
        eq(await asyncio.wait_for(ws.recv(), 5), "one")
        t0 = time.monotonic()
        api.send_signal(signal.SIGTERM)
        rc = await asyncio.get_running_loop().run_in_executor(None, api.wait, 10)
        took = time.monotonic() - t0
        p2, _, _ = restartable_api(gport, hport)
        await ws.send("two")
        got = await asyncio.wait_for(ws.recv(), 10)
        await ws.close()
        return rc, took, got
    rc, took, got = arun(main())
    eq(rc, 0)
    # the gateway half-closes its streams on GOAWAY, so ws-api need not wait out its
    # 3 s shutdown timeout
    check(took < 2.0, "ws-api took %.2fs to exit" % took)
    eq(got, "two")


def raw_connect(port, request):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    return s


def read_http_status(s):
    """Reads the response head byte by byte (nothing after it is consumed); the status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1)
        if not chunk:
            break
        data += chunk
    line = data.split(b"\r\n", 1)[0].decode()
    return int(line.split()[1]) if line.startswith("HTTP/1.1 ") else line


def test_bad_handshake_400():
    api = Api()
    gw = Gateway([api.grpc_addr])
    # no Sec-WebSocket-Key
    s = raw_connect(gw.port, b"GET /gateway/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    eq(read_http_status(s), 400)
    s.close()
    # wrong version
    s = raw_connect(gw.port, b"GET /gateway/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             b"Sec-WebSocket-Version: 8\r\n\r\n")
    eq(read_http_status(s), 400)
    s.close()
    check(gw.metric("wsgw_handshake_rejects_total", {"status": "400"}) >= 2)
    eq(gw.get("/healthz")[0], 200)


def ws_handshake(port, path="/gateway/ws?user=raw"):
    key = base64.b64encode(os.urandom(16))
    s = raw_connect(port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                    b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    eq(read_http_status(s), 101)
    return s


def read_close_code(s, timeout=10):
    """Reads frames until a close frame; returns its code (None on EOF)."""
    s.settimeout(timeout)
    buf = b""
    while True:
        while len(buf) < 2:
            c = s.recv(65536)
            if not c:
                return None
            buf += c
        op, ln = buf[0] & 0x0F, buf[1] & 0x7F
        hdr = 2
        if ln == 126:
            hdr, ln = 4, None
        elif ln == 127:
            hdr, ln = 10, None
        while len(buf) < hdr:
            c = s.recv(65536)
            if not c:
                return None
            buf += c
        if ln is None:
            ln = struct.unpack(">H", buf[2:4])[0] if hdr == 4 else struct.unpack(">Q", buf[2:10])[0]
        while len(buf) < hdr + ln:
            c = s.recv(65536)
            if not c:
                return None
            buf += c
        payload, buf = buf[hdr:hdr + ln], buf[hdr + ln:]
        if op == 8:
            return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005


def masked(op, payload, fin=True, rsv=0):
    mask = os.urandom(4)
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    hdr = bytes([b0, 0x80 | n]) if n < 126 else bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    return hdr + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def test_protocol_violations_close_1002():
    api = Api()
    gw = Gateway([api.grpc_addr])
    cases = {
        "unmasked client frame": bytes([0x81, 1]) + b"x",
        "control frame over 125 bytes": masked(0x9, b"p" * 126),
        "reserved opcode": masked(0x3, b"x"),
        "rsv bit without extension": masked(0x1, b"x", rsv=0x40),
        "continuation without start": masked(0x0, b"x"),
        "fragmented control frame": masked(0x9, b"x", fin=False),
        "new message inside a fragmented one": masked(0x1, b"a", fin=False) + masked(0x1, b"b"),
        "close frame with an invalid code": masked(0x8, b"\x03\xe7"),
    }
    for what, frame in cases.items():
        s = ws_handshake(gw.port)
        s.sendall(frame)
        code = read_close_code(s)
        s.close()
        eq(code, 1002, what)
    wait_until(lambda: gw.metric("wsgw_closes_total", {"code": "1002"}) == len(cases), 5,
               what="1002 counted for every case")
    eq(gw.get("/healthz")[0], 200)


class FrameReader:
    """Whole server frames from a socket: next() -> (opcode, payload), None on EOF."""

    def __init__(self, s, timeout=10):
        self.s, self.buf = s, b""
        s.settimeout(timeout)

    def need(self, n):
        while len(self.buf) < n:
            c = self.s.recv(65536)
            if not c:
                return False
            self.buf += c
        return True

    def next(self):
        if not self.need(2):
            return None
        op, ln, hdr = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
        check(self.buf[1] & 0x80 == 0, "server frames are not masked")
        hdr = 4 if ln == 126 else 10 if ln == 127 else 2
        if not self.need(hdr):
            return None
        if hdr == 4:
            ln = struct.unpack(">H", self.buf[2:4])[0]
        elif hdr == 10:
            ln = struct.unpack(">Q", self.buf[2:10])[0]
        if not self.need(hdr + ln):
            return None
        f, self.buf = (op, self.buf[hdr:hdr + ln]), self.buf[hdr + ln:]
        return f


def test_handshake_in_pieces_frames_behind_it_and_plain_http():
    """The request head may arrive in any pieces and frames may follow it in the same packet;
    plain HTTP requests get a complete answer; HTTP/1.0 and other methods are refused."""
    api = Api()
    gw = Gateway([api.grpc_addr])
    key = base64.b64encode(os.urandom(16))
    head = (b"GET /gateway/ws?user=al%20ice&room=a%26b HTTP/1.1\r\nHost: x\r\n"
            b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(head) - 1):  # one byte per send: the head spans many reads
        s.sendall(head[i:i + 1])
        if i % 16 == 0:
            time.sleep(0.002)
    # the last byte of the head, a ping and four messages (one fragmented, with a ping between
    # its fragments, one empty, one binary) in one send
    s.sendall(head[-1:] + masked(0x9, b"hi") + masked(0x1, b"first") +
              masked(0x1, b"sec", fin=False) + masked(0x9, b"") + masked(0x0, b"ond") +
              masked(0x1, b"") + masked(0x2, b"\x00\xff"))
    eq(read_http_status(s), 101)
    fr = FrameReader(s)
    got = [fr.next() for _ in range(6)]
    # pongs come straight from the gateway, echoes through the API node: each kind in order
    eq([f for f in got if f[0] == 0xA], [(0xA, b"hi"), (0xA, b"")])
    eq([f for f in got if f[0] != 0xA], [(0x1, b"first"), (0x1, b"second"), (0x1, b""),
                                         (0x2, b"\x00\xff")])
    # the decoded user name reached the API node's presence
    wait_until(lambda: len(api.conns_of("al%20ice")) == 1, 5, what="presence of 'al ice'")
    eq(api.conns_of("al%2520ice"), [], "the user id is decoded once, not kept as 'al%20ice'")
    s.sendall(masked(0x8, struct.pack(">H", 1000)))
    eq(fr.next(), (0x8, struct.pack(">H", 1000)))
    s.close()
    wait_until(lambda: gw.metric("wsgw_closes_total", {"code": "1000"}) == 1, 5,
               what="the client's 1000 counted")

    def http(req):
        return raw_http(gw.port, req)
    r = http(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 200 ") and r.endswith(b"\r\n\r\n"), r)
    check(b"content-length: 3\r\n" in r, r)
    r = http(b"POST /healthz HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 405 "), r)
    r = http(b"GET /healthz HTTP/1.0\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 200 ") and r.endswith(b"\r\n\r\nok\n"), r)
    r = http(b"GET /gateway/ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 400 "), r)
    r = http(b"GET /healthz HTTP/1.1\nHost: x\n\n")  # bare LF
    check(r.startswith(b"HTTP/1.1 400 "), r)
    r = http(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")  # head over 8 KB
    check(r.startswith(b"HTTP/1.1 400 "), r[:100])
    eq(gw.get("/healthz")[0], 200)


def test_ping_timeout_closes_silent_client():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--ping-interval", "1"])

    async def polite():
        ws = await connect(gw.url("polite"))  # websockets answers pings by itself
        await asyncio.sleep(4.5)
        await ws.send("still here")
        r = await asyncio.wait_for(ws.recv(), 5)
        await ws.close()
        return r

    silent = ws_handshake(gw.port, "/gateway/ws?user=silent")
    t0 = time.monotonic()
    eq(arun(polite()), "still here")
    # the silent client never answered: closed within 3 intervals (+ slack)
    silent.settimeout(5)
    data = b""
    try:
        while True:
            c = silent.recv(4096)
            if not c:
                break
            data += c
    except (ConnectionResetError, socket.timeout):
        pass
    took = time.monotonic() - t0
    check(took < 8, "silent client still open after %.1fs" % took)
    eq(data[:1], b"\x89", "the silent client should have been pinged first")
    silent.close()
    wait_until(lambda: gw.metric("wsgw_closes_total", {"code": "1006"}) >= 1, 5,
               what="the silent client counted as closed abnormally (1006)")


def test_undecodable_downstream_fails_one_stream_only():
    """A gRPC API node that answers one stream with bytes that are not a Downstream: that stream
    fails (logged, counted) and is reopened; other connections keep working."""
    import grpc
    pb2, pb2_grpc = proto()
    bad_once = {"done": False}

    def stream(request_iterator, context):
        for up in request_iterator:
            for ev in up.events:
                if ev.WhichOneof("kind") != "message":
                    continue
                if ev.message.payload == b"poison" and not bad_once["done"]:
                    bad_once["done"] = True
                    yield b"\x0a\xff\xff\xff\xff\x0f"  # truncated field: not a Downstream
                else:
                    yield pb2.Downstream(commands=[pb2.Command(send=pb2.Send(
                        target=pb2.Target(conn_ids=[ev.conn_id]),
                        payload=ev.message.payload))]).SerializeToString()

    handler = grpc.method_handlers_generic_handler("wsgw.v1.Exchange", {
        "Stream": grpc.stream_stream_rpc_method_handler(
            stream, request_deserializer=pb2.Upstream.FromString,
            response_serializer=lambda b: b)})
    server, port = grpc_exchange_server(handler=handler)
    try:
        gw = Gateway(["127.0.0.1:%d" % port], streams=4)

        async def main():
            socks = [await connect(gw.url("p%d" % i)) for i in range(8)]
            await socks[0].send("poison")
            await asyncio.sleep(0.5)
            out = []
            for i, ws in enumerate(socks):
                await ws.send("after%d" % i)
            for ws in socks:
                m = await asyncio.wait_for(ws.recv(), 10)
                if m == "poison":  # replay is not promised without acks; skip if it came back
                    m = await asyncio.wait_for(ws.recv(), 10)
                out.append(m)
            for ws in socks:
                await ws.close()
            return out
        eq(arun(main()), ["after%d" % i for i in range(8)])
        eq(gw.metric("wsgw_upstream_decode_errors_total"), 1)
        check(gw.ready())
    finally:
        server.stop(0)


if __name__ == "__main__":
    run(globals())
