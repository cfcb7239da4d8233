"""Clients paused for backpressure (issue 14, case 4): the keepalive does not take a paused
client's silence for death, and a paused client that leaves (FIN or RST) is noticed at once and
frees its slot. The API node is frozen with SIGSTOP so that backpressure bites (small
--replay-max-bytes and --ring-size)."""
import asyncio
import base64
import os
import signal
import socket
import ssl
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import Api, Gateway, check, eq, parse_metric, run, stop, wait_until  # noqa: E402
from test_faults import masked, read_http_status  # noqa: E402
from test_security import make_cert  # noqa: E402

BP_FLAGS = ["--replay-max-bytes", "65536", "--ring-size", "64"]


def arun(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_paused_client_answering_pings_is_not_closed():
    """--ping-interval 1s; the API is frozen for 4.5 s (over three intervals) while a client
    streams: the client is paused, its pongs sit unread, and it must not be hung up. Once the
    API runs again every message is echoed in order."""
    api = Api()
    gw = Gateway([api.grpc_addr], threads=1, streams=1,
                 extra=["--ping-interval", "1"] + BP_FLAGS)
    n = 3000
    payload = "x" * 1000

    async def main():
        ws = await websockets.connect(gw.url("paused"), max_size=None, ping_interval=None)
        await ws.send("warm")
        eq(await asyncio.wait_for(ws.recv(), 5), "warm")
        api.proc.send_signal(signal.SIGSTOP)
        try:
            async def sender():
                for i in range(n):
                    await ws.send("%d:%s" % (i, payload))
            st = asyncio.create_task(sender())
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: wait_until(
                lambda: gw.metric("wsgw_backpressure_pauses_total") >= 1, 10,
                what="the client paused"))
            await asyncio.sleep(4.5)
            closed_1006 = gw.metric("wsgw_closes_total", {"code": "1006"})
            open_now = gw.metric("wsgw_connections")
        finally:
            api.proc.send_signal(signal.SIGCONT)
        await asyncio.wait_for(st, 30)
        got = [await asyncio.wait_for(ws.recv(), 30) for _ in range(n)]
        await ws.close()
        return closed_1006, open_now, got
    closed_1006, open_now, got = arun(main())
    eq(closed_1006, 0, "a paused client was hung up for silence")
    eq(open_now, 1)
    eq([int(m.split(":", 1)[0]) for m in got], list(range(n)))
    eq(gw.metric("wsgw_upstream_lost_messages_total"), 0)
    eq(stop(gw.proc), 0)


def open_ws(port, user, ctx=None):
    """A raw WebSocket client (TLS with ctx) after its handshake; (socket, HTTP status)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if ctx:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"GET /gateway/ws?user=" + user.encode() + b" HTTP/1.1\r\nHost: x\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
              base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return s, read_http_status(s)


def ws(port, user, ctx=None):
    s, status = open_ws(port, user, ctx)
    eq(status, 101, user)
    return s


def flood(port, user, ctx=None, nbytes=3 << 20):
    """A raw client that sends up to nbytes of 1 KB text messages without blocking (what the
    socket buffers take); the socket."""
    s = ws(port, user, ctx)
    s.setblocking(False)
    frame = masked(0x1, b"f" * 1000)
    sent = 0
    while sent < nbytes:
        try:
            sent += s.send(frame * 64)
        except (BlockingIOError, ssl.SSLWantWriteError):
            break
    s.setblocking(True)
    return s


def leave(s, rst):
    if rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def paused_leavers(n, ctx=None, extra=()):
    """n clients paused behind a frozen API (their Opens wait in the overflow list) leave, half
    with FIN and half with RST, some with a message still unread in the gateway's socket: every
    one is closed within 1 s (wsgw_connections 0) and counted; n new clients then fit under the
    same --max-connections and --max-conns-per-ip; once the API runs again the leavers'
    presence is gone from it."""
    api = Api()
    # (the API stays frozen as long as the test needs: a gateway that left it as hung, ~2 s in
    # on a busy box, resynced and re-paused its clients meanwhile: one CI failure in ~50 runs)
    gw = Gateway([api.grpc_addr], threads=1, streams=1, wait_ready=False,
                 extra=["--max-connections", str(n + 1), "--max-conns-per-ip", str(n + 1),
                        "--upstream-ping-timeout", "60s"] + BP_FLAGS + list(extra))
    metric = (lambda name, labels=None: https_metric(gw.port, ctx, name, labels)) if ctx \
        else gw.metric
    wait_until(lambda: metric("wsgw_upstream_connected", {"node": api.grpc_addr}) == 1, 10,
               what="the API node connected")
    warm = ws(gw.port, "warm", ctx)
    warm.sendall(masked(0x1, b"warm"))
    warm.settimeout(5)
    eq(warm.recv(100)[2:], b"warm")
    warm.close()
    wait_until(lambda: metric("wsgw_connections") == 0, 5, what="warm-up client gone")
    closed0 = metric("wsgw_closes_total", {"code": "1006"})
    api.proc.send_signal(signal.SIGSTOP)
    try:
        flooder = flood(gw.port, "flooder", ctx)
        wait_until(lambda: metric("wsgw_backpressure_pauses_total") >= 1, 10,
                   what="the flooder paused")
        socks = [ws(gw.port, "p%d" % i, ctx) for i in range(n)]
        for i in range(0, n, 3):
            socks[i].sendall(masked(0x1, b"never read %d" % i))
        # paused now, not pauses so far: the flooder may have been paused, resumed and paused
        # again, and a client not yet paused when it leaves is not a paused leave
        wait_until(lambda: metric("wsgw_paused_connections") == n + 1, 5,
                   what="all %d clients and the flooder paused" % n)
        extra_client, status = open_ws(gw.port, "one-too-many", ctx)
        eq(status, 503, "at the limit")
        extra_client.close()
        t0 = time.monotonic()
        for i, s in enumerate(socks):
            leave(s, rst=i % 2 == 1)
        leave(flooder, rst=True)
        wait_until(lambda: metric("wsgw_connections") == 0, 3,
                   what="paused clients that left to be closed")
        took = time.monotonic() - t0
        check(took < 1.0, "closing %d paused clients that left took %.2fs" % (n + 1, took))
        eq(metric("wsgw_paused_leaves_total"), n + 1)
        check(metric("wsgw_paused_discarded_bytes_total") > 0,
              "the unread bytes of paused leavers were not counted")
        eq(metric("wsgw_closes_total", {"code": "1006"}) - closed0, n + 1)
        # the slots and per-address counts are free again (the API is still frozen: these are
        # paused at once too, but their handshakes succeed)
        again = [ws(gw.port, "q%d" % i, ctx) for i in range(n + 1)]
    finally:
        api.proc.send_signal(signal.SIGCONT)
    for s in again:
        s.close()
    # the leavers' Close events reached the API after their Opens
    wait_until(lambda: all(not api.conns_of("p%d" % i) for i in (0, 1, n - 1)) and
               not api.conns_of("flooder"), 10, what="presence of the leavers gone at the API")
    wait_until(lambda: metric("wsgw_connections") == 0, 5, what="all gone")
    wait_until(lambda: metric("wsgw_paused_connections") == 0, 5, what="no client paused")
    eq(stop(gw.proc), 0)  # while the API is up (its drain flushes to it)


def https_metric(port, ctx, name, labels=None):
    import http.client
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    return parse_metric(body, name, labels)


def test_paused_clients_that_leave_free_their_slots():
    paused_leavers(300)


def test_paused_wss_clients_that_leave_free_their_slots():
    """The same over wss:// (40 clients): the TCP state is checked under TLS."""
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d)
        ctx = ssl.create_default_context(cafile=cert)
        paused_leavers(40, ctx, ["--tls-cert", cert, "--tls-key", key])


if __name__ == "__main__":
    run(globals())
