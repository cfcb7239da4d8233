"""ws-gateway end to end with real peers: python3-websockets clients, bin/ws-api (or a
python3-grpcio Exchange server) behind it."""
import asyncio
import base64
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from attackkit import cpu_seconds  # noqa: E402
from wsgwtest import (SLOW, Api, Gateway, check, eq, grpc_exchange_server, proto, run,  # noqa: E402
                      stop, thread_of, wait_until)


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(url, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)
    return await websockets.connect(url, **kw)


async def recv(ws, timeout=10):
    return await asyncio.wait_for(ws.recv(), timeout)


async def close_code(ws, timeout=10):
    """Waits for the server to close; returns (code, reason)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        return e.code, e.reason


def test_endpoints():
    api = Api()
    gw = Gateway([api.grpc_addr])
    eq(gw.get("/healthz"), (200, "ok\n"))
    eq(gw.get("/readyz")[0], 200)
    st, body = gw.get("/metrics")
    eq(st, 200)
    check("# TYPE wsgw_connections gauge" in body, body[:500])
    check('wsgw_upstream_connected{node="%s"} 1' % api.grpc_addr in body)
    eq(gw.get("/nope")[0], 404)
    eq(gw.get("/gateway/ws")[0], 400)  # plain GET, no upgrade

    async def wrong_path():
        try:
            await connect("ws://127.0.0.1:%d/other/ws" % gw.port)
        except websockets.InvalidStatusCode as e:
            return e.status_code
        return None
    eq(arun(wrong_path()), 404)
    check(gw.metric("wsgw_handshake_rejects_total", {"status": "404"}) >= 1)


def test_echo_200_conns_100_messages_in_order():
    api = Api()
    gw = Gateway([api.grpc_addr], threads=2, streams=4)
    nconn, nmsg = (200, 100) if not SLOW else (60, 40)

    async def client(i):
        ws = await connect(gw.url("u%d" % (i % 50)))
        sent = []
        for k in range(nmsg):
            if k % 3 == 0:
                m = ("c%d-m%d-" % (i, k)).encode() + bytes([k % 256, 0, 255])
            else:
                m = "c%d-m%d-é" % (i, k)
            sent.append(m)
            await ws.send(m)
        for k in range(nmsg):
            got = await recv(ws, 20)
            if got != sent[k]:
                raise AssertionError("conn %d message %d: got %r want %r" % (i, k, got, sent[k]))
        await ws.close()
        return nmsg

    async def main():
        res = await asyncio.gather(*[client(i) for i in range(nconn)])
        return sum(res)
    eq(arun(main(), 120), nconn * nmsg)
    eq(gw.metric("wsgw_messages_total", {"direction": "in"}), nconn * nmsg)
    eq(gw.metric("wsgw_messages_total", {"direction": "out"}), nconn * nmsg)
    # both service threads served clients (SO_REUSEPORT spread)
    wait_until(lambda: gw.metric("wsgw_connections") == 0, 10, what="connections closed")


def paced_load(gw, nconn, nmsg, counter, tag):
    """nconn clients each send nmsg messages, one every 2 ms, and check that every echo comes
    back in order; returns (growth of the metric `counter`, seconds taken)."""
    async def client(i):
        ws = await connect(gw.url("%s%d" % (tag, i)))
        sent = ["%s%d-%d" % (tag, i, k) for k in range(nmsg)]

        async def reader():
            for k in range(nmsg):
                got = await recv(ws, 20)
                if got != sent[k]:
                    raise AssertionError("conn %d message %d: %r != %r" % (i, k, got, sent[k]))
        rd = asyncio.ensure_future(reader())
        for m in sent:
            await ws.send(m)
            await asyncio.sleep(0.002)
        await rd
        await ws.close()
        return nmsg

    async def main():
        return sum(await asyncio.gather(*[client(i) for i in range(nconn)]))
    before = gw.metric(counter)
    out0 = gw.metric("wsgw_messages_total", {"direction": "out"})
    t0 = time.monotonic()
    eq(arun(main(), 120), nconn * nmsg)
    elapsed = time.monotonic() - t0
    eq(gw.metric("wsgw_messages_total", {"direction": "out"}) - out0, nconn * nmsg)
    return gw.metric(counter) - before, elapsed


def test_coalescing_writer_wakes_per_window_and_loses_nothing():
    """--coalesce: while messages flow, the writer wakes once per window, not once per event.
    Ten clients send a message every 2 ms each for 0.6 s (about 3 000 events upstream and as
    many echoes back, spread out in time so that without coalescing nearly every one is a
    wake-up of its own); every echo arrives in order, and the writer loop turned only a few
    times per 20 ms window. Control: the same load without --coalesce turns it far more often."""
    api = Api()

    def load(gw):
        return paced_load(gw, 10, 300, "wsgw_writer_wakeups_total", "co")

    gw = Gateway([api.grpc_addr], threads=2, extra=["--coalesce", "20ms"])
    turns, elapsed = load(gw)
    # per window: its end, plus the API node's answers (one per stream that got a batch: at
    # most 4), a few quiet windows at the end, and the 1 s idle timeout
    bound = elapsed / 0.020 * 6 + 20
    check(turns <= bound, "coalescing writer turned %d times in %.2f s (bound %d)"
          % (turns, elapsed, bound))
    stop(gw.proc)
    gw = Gateway([api.grpc_addr], threads=2, env={"WSGW_COALESCE": "0"})
    control, _ = load(gw)
    check(control > 3 * turns, "without --coalesce: %d turns, with: %d" % (control, turns))


def test_coalescing_service_threads_turn_per_window_and_lose_nothing():
    """--svc-coalesce: while messages flow, a service thread sleeps out the rest of each window
    and then takes every ready client read and the writers' commands in one loop turn. Twenty
    clients on two threads send a message every 2 ms each for 0.6 s (about 6 000 messages in
    and as many echoes out, so without coalescing the threads turn for nearly each one); every
    echo arrives in order, and the loops turned a few times per 20 ms window. Then a Kick
    while polling, and a drain (SIGTERM) while polling, still close the clients. Control: the
    same load without --svc-coalesce turns the loops far more often."""
    api = Api()

    def load(gw):
        return paced_load(gw, 20, 300, "wsgw_service_loop_turns_total", "sc")

    gw = Gateway([api.grpc_addr], threads=2, extra=["--svc-coalesce", "20ms"])
    turns, elapsed = load(gw)
    # per thread and window: one turn, a few more for the handshakes, closes, timers (50 ms
    # tick, keepalive) and the quiet windows at the end
    bound = 2 * (elapsed / 0.020 * 2) + 200
    check(turns <= bound, "coalescing service threads turned %d times in %.2f s (bound %d)"
          % (turns, elapsed, bound))

    async def kick_and_drain():
        kicked = await connect(gw.url("kick-me"))
        other = await connect(gw.url("drained"))

        async def chatter(ws, n):
            try:
                for k in range(n):
                    await ws.send("x%d" % k)
                    await asyncio.sleep(0.002)
            except websockets.ConnectionClosed:
                pass  # the drain closed it
        # both threads are polling while messages flow; the Kick comes in the middle
        feeder = asyncio.ensure_future(chatter(other, 1000))
        wait_until(lambda: api.conns_of("kick-me"), 5, what="presence")
        await chatter(kicked, 20)
        st, js = await asyncio.get_running_loop().run_in_executor(
            None, api.http, "POST", "/v1/kick",
            {"user_ids": ["kick-me"], "code": 4001, "reason": "bye"})
        eq(st, 200, js)
        eq(await close_code(kicked), (4001, "bye"))
        gw.proc.terminate()  # drain while the other client is still sending
        code, _ = await close_code(other, 15)
        feeder.cancel()
        return code
    eq(arun(kick_and_drain()), 1001)
    eq(gw.proc.wait(15), 0)

    gw = Gateway([api.grpc_addr], threads=2, env={"WSGW_SVC_COALESCE": "0"})
    control, _ = load(gw)
    check(control > 3 * turns, "without --svc-coalesce: %d turns, with: %d" % (control, turns))


def test_connections_spread_over_threads():
    api = Api()
    gw = Gateway([api.grpc_addr], threads=2)

    async def main():
        socks = [await connect(gw.url("spread%d" % i)) for i in range(40)]
        threads = set()
        for i in range(40):
            for cid in api.conns_of("spread%d" % i):
                threads.add(thread_of(cid))
        for s in socks:
            await s.close()
        return threads
    eq(arun(main()), {0, 1})


def test_one_mib_message_both_ways():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--max-message", "2097152", "--send-queue", "8m"])
    big = os.urandom(1 << 20)
    text = ("0123456789abcdef" * 65536)

    async def main():
        ws = await connect(gw.url("big"))
        await ws.send(big)
        got = await recv(ws, 30)
        await ws.send(text)
        got2 = await recv(ws, 30)
        await ws.close()
        return got, got2
    got, got2 = arun(main())
    check(got == big, "binary 1 MiB differs (len %d)" % len(got))
    check(got2 == text, "text 1 MiB differs (len %d)" % len(got2))


def test_oversize_message_closes_1009():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--max-message", "1000"])

    async def main():
        ws = await connect(gw.url("big"))
        await ws.send("x" * 900)
        eq(await recv(ws), "x" * 900)
        await ws.send("y" * 1001)
        return await close_code(ws)
    eq(arun(main())[0], 1009)
    wait_until(lambda: gw.metric("wsgw_closes_total", {"code": "1009"}) == 1, 5, what="1009 metric")


def test_invalid_utf8_closes_1007():
    api = Api()
    gw = Gateway([api.grpc_addr])

    async def main():
        ws = await connect(gw.url("utf"))
        await ws.write_frame(True, 0x1, b"ok \xff\xfe not utf-8")
        return await close_code(ws)
    eq(arun(main())[0], 1007)
    wait_until(lambda: gw.metric("wsgw_closes_total", {"code": "1007"}) == 1, 5, what="1007 metric")
    eq(gw.get("/healthz")[0], 200)


def test_chat_rooms_across_threads():
    api = Api(handler="chat")
    gw = Gateway([api.grpc_addr], threads=2)

    async def main():
        # connect until two members sit on different service threads
        conns = {}
        users = []
        for i in range(64):
            u = "member%d" % i
            ws = await connect(gw.url(u))
            ids = wait_until(lambda: api.conns_of(u), 5, what="presence of " + u)
            conns[u] = (ws, thread_of(ids[0]))
            if len({t for _, t in conns.values()}) == 2:
                break
        by_thread = {}
        for u, (ws, t) in conns.items():
            by_thread.setdefault(t, u)
        check(len(by_thread) == 2, "could not get connections on two threads")
        a, b = by_thread.values()
        users = [a, b]
        for u in users:
            await conns[u][0].send('{"op":"join","room":"lobby"}')
        await asyncio.sleep(0.3)  # joins travel gateway -> api -> gateway
        await conns[a][0].send('{"op":"say","room":"lobby","text":"hi from a"}')
        got = {}
        for u in users:
            import json
            got[u] = json.loads(await recv(conns[u][0]))
        for ws, _ in conns.values():
            await ws.close()
        return a, got
    a, got = arun(main())
    for u, msg in got.items():
        eq(msg, {"op": "said", "room": "lobby", "from": a, "text": "hi from a"})


def test_http_push_reaches_exactly_the_targets():
    api = Api(handler="chat")
    gw = Gateway([api.grpc_addr], threads=2)

    async def drain(ws, t=0.5):
        out = []
        try:
            while True:
                out.append(await asyncio.wait_for(ws.recv(), t))
        except asyncio.TimeoutError:
            return out

    async def main():
        ws = {u: await connect(gw.url(u)) for u in ("alice", "bob", "carol")}
        for u in ("alice", "bob", "carol"):
            wait_until(lambda: api.conns_of(u), 5, what="presence " + u)
        await ws["alice"].send('{"op":"join","room":"r1"}')
        await ws["bob"].send('{"op":"join","room":"r1"}')
        await asyncio.sleep(0.3)
        res = {}
        st, js = api.push(user_ids=["alice"], data="to-alice")
        eq(st, 200, js)
        res["user"] = {u: await drain(w) for u, w in ws.items()}
        api.push(room="r1", data="to-room")
        res["room"] = {u: await drain(w) for u, w in ws.items()}
        api.push(all=True, data_base64=base64.b64encode(b"\x00all\xff").decode())
        res["all"] = {u: await drain(w) for u, w in ws.items()}
        carol = api.conns_of("carol")[0]
        api.push(conn_ids=[str(carol)], data="to-carol-conn")
        res["conn"] = {u: await drain(w) for u, w in ws.items()}
        for w in ws.values():
            await w.close()
        return res
    r = arun(main())
    eq(r["user"], {"alice": ["to-alice"], "bob": [], "carol": []})
    eq(r["room"], {"alice": ["to-room"], "bob": ["to-room"], "carol": []})
    eq(r["all"], {u: [b"\x00all\xff"] for u in ("alice", "bob", "carol")})
    eq(r["conn"], {"alice": [], "bob": [], "carol": ["to-carol-conn"]})


def test_kick_closes_with_code_and_reason():
    api = Api()
    gw = Gateway([api.grpc_addr])

    async def main():
        ws = await connect(gw.url("kicked"))
        wait_until(lambda: api.conns_of("kicked"), 5, what="presence")
        st, js = api.http("POST", "/v1/kick", {"user_ids": ["kicked"], "code": 4001,
                                               "reason": "bye now"})
        eq(st, 200, js)
        return await close_code(ws)
    eq(arun(main()), (4001, "bye now"))
    # presence follows the Close event
    wait_until(lambda: not api.conns_of("kicked"), 5, what="presence cleared")


def test_max_connections_503():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--max-connections", "3"])

    async def main():
        socks = [await connect(gw.url("c%d" % i)) for i in range(3)]
        try:
            await connect(gw.url("c4"))
            status = None
        except websockets.InvalidStatusCode as e:
            status = e.status_code
        for s in socks:
            await s.close()
        return status
    eq(arun(main()), 503)
    eq(gw.metric("wsgw_handshake_rejects_total", {"status": "503"}), 1)


def raw_ws_connect(port, path, rcvbuf=4096):
    """A bare WebSocket client socket with a tiny receive buffer that never reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
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


def test_slow_consumer_closed_1008_reader_unaffected():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--send-queue", "65536", "--rcvbuf", "4096"])
    slow = raw_ws_connect(gw.port, "/gateway/ws?user=slow")
    wait_until(lambda: api.conns_of("slow"), 5, what="presence of slow")
    n, size = 256, 16384  # 4 MiB: more than kernel buffers absorb
    payload = "p" * size

    async def main():
        ws = await connect(gw.url("fast"))
        wait_until(lambda: api.conns_of("fast"), 5, what="presence of fast")
        got = 0
        for i in range(n):
            st, _ = api.push(user_ids=["slow", "fast"], data=payload)
            eq(st, 200)
            m = await recv(ws)
            eq(len(m), size)
            got += 1
        await ws.close()
        return got
    eq(arun(main(), 120), n)
    wait_until(lambda: gw.metric("wsgw_closes_total", {"code": "1008"}) == 1, 10,
               what="slow consumer closed 1008")
    check(gw.metric("wsgw_slow_consumer_closes_total") == 1)
    slow.close()


def test_dns_upstream():
    """--upstream dns:///name:port: every address record is an API node (here localhost ->
    127.0.0.1), connected without being listed."""
    api = Api()
    gw = Gateway(["dns:///localhost:%d" % api.grpc_port], extra=["--dns-interval", "200ms",
                                                                 "--max-upstreams", "3"])

    async def main():
        ws = await connect(gw.url("dns"))
        await ws.send("via dns")
        r = await recv(ws)
        await ws.close()
        return r
    eq(arun(main()), "via dns")
    eq(gw.metric("wsgw_upstream_connected", {"node": "127.0.0.1:%d" % api.grpc_port}), 1)


def test_writers_that_cannot_connect_sleep():
    """A writer with nothing to connect to (an unassigned dns:/// slot, a node outside the
    --upstream-subset) waits for a wake-up. Each spun on its machine's "connect now" before:
    a gateway on dns:/// with the default 8 slots used both cores (3.9 s of CPU in 2 s)."""
    api = Api()
    spare = Api()
    setups = [
        (["dns:///localhost:%d" % api.grpc_port], ["--dns-interval", "200ms"]),
        (["127.0.0.1:%d" % api.grpc_port, "127.0.0.1:%d" % spare.grpc_port],
         ["--upstream-subset", "1"]),
    ]
    for inline in ([], ["--inline-writers"]):
        for ups, extra in setups:
            gw = Gateway(ups, extra=extra + ["--threads", "1"] + inline)
            wait_until(lambda: sum(gw.metric("wsgw_upstream_connected", {"node": "127.0.0.1:%d" % a.grpc_port}) or 0
                                   for a in (api, spare)) == 1, 10, what="one node connected")
            t0 = cpu_seconds(gw.proc.pid)
            time.sleep(2)
            used = cpu_seconds(gw.proc.pid) - t0
            print("  %s %s: %.2f s of CPU in 2 s" % (ups[0].split(":")[0], inline, used))
            check(used < 0.4, "the idle gateway used %.2f s of CPU in 2 s" % used)
            stop(gw.proc)


def test_grpcio_api_without_ack():
    """A stock grpcio server implementing wsgw.v1.Exchange (no x-wsgw-ack) as the API."""
    pb2, pb2_grpc = proto()
    seen = []

    class Exchange(pb2_grpc.ExchangeServicer):
        def Stream(self, request_iterator, context):
            gwid = dict(context.invocation_metadata()).get("x-gateway-id")
            for up in request_iterator:
                seen.append((gwid, up.seq, len(up.events)))
                cmds = []
                for ev in up.events:
                    if ev.WhichOneof("kind") == "message":
                        cmds.append(pb2.Command(send=pb2.Send(
                            target=pb2.Target(conn_ids=[ev.conn_id]),
                            payload=b"py:" + ev.message.payload, binary=ev.message.binary)))
                if cmds:
                    yield pb2.Downstream(commands=cmds)

    server, port = grpc_exchange_server(Exchange(), workers=8)
    try:
        gw = Gateway(["127.0.0.1:%d" % port], streams=4, extra=["--gateway-id", "gw-py"])

        async def main():
            ws = await connect(gw.url("py"))
            out = []
            for i in range(20):
                await ws.send("m%d" % i)
            for i in range(20):
                out.append(await recv(ws))
            await ws.close()
            return out
        eq(arun(main()), ["py:m%d" % i for i in range(20)])
        check(all(g == "gw-py" for g, _, _ in seen), seen[:3])
        seqs = [s for _, s, _ in seen]
        check(all(s >= 1 for s in seqs), seqs)
    finally:
        server.stop(0)



def test_burst_to_one_connection_in_order_then_kick():
    """One Downstream with 40 Sends to one connection (so one ring drain on its thread, where
    small messages are framed together into one write) of every length class (7-bit, 16-bit,
    64-bit; empty; above the copy limit), text and binary, then a Kick: every message arrives
    intact and in order, before the close."""
    pb2, pb2_grpc = proto()
    sizes = [0, 1, 125, 126, 127, 200, 4095, 4096, 4097, 65535, 65536, 70000]

    def payload(i):
        n = sizes[i % len(sizes)]
        return bytes((i * 7 + k) % 251 for k in range(n))

    class Exchange(pb2_grpc.ExchangeServicer):
        def Stream(self, request_iterator, context):
            for up in request_iterator:
                for ev in up.events:
                    if ev.WhichOneof("kind") != "message":
                        continue
                    t = pb2.Target(conn_ids=[ev.conn_id])
                    cmds = []
                    for i in range(40):
                        b = i % 3 != 0
                        data = payload(i) if b else payload(i).hex().encode()[:len(payload(i))]
                        cmds.append(pb2.Command(send=pb2.Send(target=t, payload=data, binary=b)))
                    cmds.append(pb2.Command(kick=pb2.Kick(target=t, code=4001, reason="bye")))
                    yield pb2.Downstream(commands=cmds)

    server, port = grpc_exchange_server(Exchange(), workers=4)
    try:
        gw = Gateway(["127.0.0.1:%d" % port], streams=2)

        async def main():
            ws = await connect(gw.url("burst"))
            await ws.send("go")
            got = []
            try:
                while True:
                    got.append(await recv(ws))
            except websockets.ConnectionClosed as e:
                return got, e.code, e.reason
        got, code, reason = arun(main())
        want = []
        for i in range(40):
            b = i % 3 != 0
            want.append(payload(i) if b else payload(i).hex()[:len(payload(i))])
        eq(len(got), 40)
        for i, (g, w) in enumerate(zip(got, want)):
            check(type(g) is type(w) and g == w, "message %d: %r... != %r..." % (i, g[:20], w[:20]))
        eq((code, reason), (4001, "bye"))
        eq(gw.metric("wsgw_messages_total", {"direction": "out"}), 40)
    finally:
        server.stop(0)

if __name__ == "__main__":
    run(globals())
