"""History and recovery for clients of the WebSocket subprotocol wsgw.v1.json (README "Client
protocol"), end to end through the real ws-gateway and ws-api with python3-websockets clients:
the subprotocol is negotiated (and not imposed on clients that do not ask), every message comes
in its envelope, a client offline for a while reconnects with its position and gets what it
missed, in order, before live messages, and is told when the history no longer reaches back.
The ordering case pushes continuously from another thread while the client reconnects with its
position, again and again. Stores: ws-api's memory here; Redis Streams in
test_recovery_redis.py."""
import asyncio
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import (BIN, SLOW, Api, Gateway, check, eq, grpc_exchange_server,  # noqa: E402
                      proto, run)

PROTO = "wsgw.v1.json"


def recover_arg(channel, offset, epoch):
    return "recover=" + urllib.parse.quote("%d.%s.%s" % (offset, epoch, channel), safe="")


async def connect(gw, user, positions=(), proto=True):
    q = "&".join(recover_arg(*p) for p in positions) or None
    ws = await websockets.connect(gw.url(user, query=q), ping_interval=None,
                                  subprotocols=[PROTO] if proto else None)
    return ws


async def frames(ws, n, timeout=10):
    out = []
    for _ in range(n):
        out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout * SLOW)))
    return out


async def wait_online(api, user, n=1):
    """The user's connections reached ws-api's presence (a push would find them)."""
    for _ in range(200):
        if len(api.conns_of(user)) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("%s not online in ws-api" % user)


def push(api, user, text, history=True):
    st, js = api.push(user_ids=[user], data=text, history=history)
    eq(st, 200, js)
    return js


async def position_then_away(api, gw, user, push_fn=None):
    """user connects, gets one kept push ("first") and goes away: its first frame (the
    position it will come back with)."""
    ws = await connect(gw, user)
    await wait_online(api, user)
    (push_fn or push)(api, user, "first")
    f = (await frames(ws, 1))[0]
    await ws.close()
    return f


def test_negotiated_only_when_asked():
    api = Api()
    gw = Gateway([api.grpc_addr])

    async def main():
        plain = await connect(gw, "p", proto=False)
        eq(plain.subprotocol, None)
        other = await websockets.connect(gw.url("o"), ping_interval=None,
                                         subprotocols=["chat.v2", "mqtt"])
        eq(other.subprotocol, None)  # offered others only: plain (RFC 6455 §4.2.2)
        ws = await connect(gw, "j")
        eq(ws.subprotocol, PROTO)
        await plain.send("hi")
        eq(await asyncio.wait_for(plain.recv(), 5), "hi")  # raw, as before
        await ws.send("hi")
        f = (await frames(ws, 1))[0]
        eq(f, {"type": "message", "data": "hi"})  # the echo: a message without a channel
        await wait_online(api, "j")
        js = push(api, "j", "kept")
        pos = js["history"]["user:j"]
        f = (await frames(ws, 1))[0]
        eq(f, {"type": "message", "channel": "user:j", "offset": pos["offset"],
               "epoch": pos["epoch"], "data": "kept"})
        st, js = api.push(user_ids=["j"], data_base64="AAEC/w==")
        eq(st, 200, js)
        f = (await frames(ws, 1))[0]
        eq(f, {"type": "message", "channel": "user:j", "data_base64": "AAEC/w=="})
        for w in (plain, other, ws):
            await w.close()
    asyncio.run(main())
    check(gw.metric("wsgw_subprotocol_connections_total", {"protocol": PROTO}) == 1)


def test_offline_client_recovers_100_in_order_then_live():
    """The issue's case: offline 5 s while 100 messages are pushed; back with its offset, all
    100 in order, the notice, then live messages."""
    api = Api()
    gw = Gateway([api.grpc_addr])

    async def main():
        ws = await connect(gw, "alice")
        await wait_online(api, "alice")
        push(api, "alice", "before")
        f = (await frames(ws, 1))[0]
        offset, epoch = f["offset"], f["epoch"]
        await ws.close()
        await asyncio.sleep(0.2)
        t0 = asyncio.get_running_loop().time()
        for i in range(100):  # over 5 s while alice is away
            push(api, "alice", "missed %d" % i)
            await asyncio.sleep(0.05)
        check(asyncio.get_running_loop().time() - t0 >= 5.0, "pushes took under 5 s")
        ws = await connect(gw, "alice", [("user:alice", offset, epoch)])
        got = await frames(ws, 101)
        eq([g.get("data") for g in got[:100]], ["missed %d" % i for i in range(100)])
        eq([g["offset"] for g in got[:100]], list(range(offset + 1, offset + 101)))
        eq(got[100], {"type": "recovery", "channel": "user:alice", "recovered": True,
                      "offset": offset + 100, "epoch": epoch})
        push(api, "alice", "live")
        f = (await frames(ws, 1))[0]
        eq((f["data"], f["offset"]), ("live", offset + 101))
        await ws.close()
    asyncio.run(main())
    eq(gw.metric("wsgw_recovery_events_total", {"event": "recovered"}), 1)


def test_trimmed_history_says_missed():
    """Trimmed by size: the client gets what is left and recovered=false. Missing more than
    --history-recover-max (default: the size): nothing, recovered=false, the position now. An
    epoch the history no longer has: the same."""
    api = Api(extra=["--history-size", "10", "--history-recover-max", "100"])
    gw = Gateway([api.grpc_addr])

    async def main():
        f = await position_then_away(api, gw, "bob")
        for i in range(30):
            push(api, "bob", "m%d" % i)
        ws = await connect(gw, "bob", [("user:bob", f["offset"], f["epoch"])])
        got = await frames(ws, 11)
        eq([g["data"] for g in got[:10]], ["m%d" % i for i in range(20, 30)])  # what is left
        eq(got[10], {"type": "recovery", "channel": "user:bob", "recovered": False,
                     "offset": f["offset"] + 30, "epoch": f["epoch"]})
        await ws.close()
        for i in range(101):
            push(api, "bob", "n%d" % i)
        ws = await connect(gw, "bob", [("user:bob", f["offset"] + 30, f["epoch"])])
        got = await frames(ws, 1)
        eq(got[0], {"type": "recovery", "channel": "user:bob", "recovered": False,
                    "offset": f["offset"] + 131, "epoch": f["epoch"]})
        push(api, "bob", "live")
        eq((await frames(ws, 1))[0]["offset"], f["offset"] + 132)
        await ws.close()
        ws = await connect(gw, "bob", [("user:bob", 5, "oldepoch")])
        got = await frames(ws, 1)
        eq((got[0]["type"], got[0]["recovered"], got[0]["offset"]),
           ("recovery", False, f["offset"] + 132))
        await ws.close()
    asyncio.run(main())
    eq(gw.metric("wsgw_recovery_events_total", {"event": "missed"}), 3)


def test_room_recovers_at_join():
    """A room's position waits for the Join (chat handler), then recovers; live chat after."""
    api = Api(handler="chat", extra=["--history-all"])
    gw = Gateway([api.grpc_addr])

    async def main():
        a = await connect(gw, "a")
        b = await connect(gw, "b")
        for w in (a, b):  # each hears itself: its Join is in effect
            await w.send(json.dumps({"op": "join", "room": "r"}))
            await w.send(json.dumps({"op": "say", "room": "r", "text": "hi"}))
            await frames(w, 1)
        await frames(a, 1)  # b's hi
        await b.send(json.dumps({"op": "say", "room": "r", "text": "one"}))
        fa = (await frames(a, 1))[0]
        eq(fa["channel"], "room:r")
        await frames(b, 1)
        await a.close()
        for t in ("two", "three"):
            await b.send(json.dumps({"op": "say", "room": "r", "text": t}))
        await frames(b, 2)
        a = await connect(gw, "a", [("room:r", fa["offset"], fa["epoch"])])
        await asyncio.sleep(0.3)  # not joined yet: nothing comes
        await b.send(json.dumps({"op": "say", "room": "r", "text": "not for a"}))
        await frames(b, 1)
        await a.send(json.dumps({"op": "join", "room": "r"}))
        got = await frames(a, 4)
        eq([json.loads(g["data"])["text"] for g in got[:3]], ["two", "three", "not for a"])
        eq(got[3]["type"], "recovery")
        eq(got[3]["recovered"], True)
        await b.send(json.dumps({"op": "say", "room": "r", "text": "four"}))
        eq(json.loads((await frames(a, 1))[0]["data"])["text"], "four")
        await a.close()
        await b.close()
    asyncio.run(main())


def test_other_users_channel_is_not_read():
    api = Api()
    gw = Gateway([api.grpc_addr])

    async def main():
        v = await connect(gw, "victim")
        await wait_online(api, "victim")
        push(api, "victim", "secret")
        f = (await frames(v, 1))[0]
        # a position in someone else's channel is ignored: nothing is asked for
        m = await connect(gw, "mallory", [("user:victim", 0, f["epoch"])])
        await m.send("ping")
        eq((await frames(m, 1))[0], {"type": "message", "data": "ping"})
        await m.close()
        await v.close()
    asyncio.run(main())
    eq(gw.metric("wsgw_recover_requests_total"), 0)


def test_bad_recover_argument_is_400():
    api = Api()
    gw = Gateway([api.grpc_addr])

    async def main():
        for bad in ("x.y.user:a", "1.ep.chan:a", "1.e!p.user:a", "1", "1.ep"):
            try:
                await websockets.connect(gw.url("a", query="recover=" + urllib.parse.quote(bad)),
                                         subprotocols=[PROTO])
                raise AssertionError("accepted recover=%r" % bad)
            except websockets.exceptions.InvalidStatusCode as e:
                eq(e.status_code, 400, bad)
        # without the subprotocol a recover argument means nothing: ignored
        ws = await websockets.connect(gw.url("a", query="recover=nonsense"))
        await ws.close()
    asyncio.run(main())


def race_recovery(pushers, gw, rounds=6):
    """Live pushes (from other threads, one per ws-api node in `pushers`, at once) race the
    recovery while a client reconnects with its position, rounds times: every offset
    arrives once, in order, recovered before live. Through several nodes a later push may
    overtake an earlier one on its way to the gateway: the gateway then recovers the gap from
    the history, which ends with a notice of its own (recovered, at the offset reached).
    Returns the number of pushes that went."""
    stop = threading.Event()
    sent = []

    def pusher(api, tag):
        i = 0
        while not stop.is_set():
            st, js = api.push(user_ids=["racer"], data="%s%d" % (tag, i), history=True)
            if st == 200:
                sent.append(js["history"]["user:racer"]["offset"])
            i += 1
            stop.wait(0.002)

    async def main():
        ws = await connect(gw, "racer")
        await wait_online(pushers[0], "racer")
        push(pushers[0], "racer", "start")
        f = (await frames(ws, 1))[0]
        last, epoch = f["offset"], f["epoch"]
        ths = [threading.Thread(target=pusher, args=(api, "r%d." % k))
               for k, api in enumerate(pushers)]
        for th in ths:
            th.start()
        try:
            for _ in range(rounds):
                await ws.close()
                await asyncio.sleep(0.1)
                ws = await connect(gw, "racer", [("user:racer", last, epoch)])
                deadline = asyncio.get_running_loop().time() + 0.4
                notice = False
                while asyncio.get_running_loop().time() < deadline or not notice:
                    g = (await frames(ws, 1))[0]
                    if g["type"] == "recovery":
                        check(g["recovered"], g)
                        check(not notice or len(pushers) > 1, "two notices")
                        notice = True
                        eq(g["offset"], last)
                        continue
                    eq(g["offset"], last + 1, "after %d" % last)
                    last = g["offset"]
        finally:
            stop.set()
            for th in ths:
                th.join(10)
        # the rest of what was pushed, live
        want = max(sent)
        while last < want:
            g = (await frames(ws, 1))[0]
            if g["type"] == "recovery" and len(pushers) > 1:
                eq((g["recovered"], g["offset"]), (True, last), g)
                continue
            eq(g["offset"], last + 1)
            last = g["offset"]
        await ws.close()
    asyncio.run(main())
    check(gw.metric("wsgw_recovery_events_total", {"event": "recovered"}) >= rounds)
    return len(sent)


def test_push_during_recovery_neither_lost_nor_duplicated():
    api = Api(extra=["--history-size", "5000"])
    gw = Gateway([api.grpc_addr], extra=["--recover-gap-wait", "0"])
    race_recovery([api], gw)


class ScriptedApi(proto()[1].ExchangeServicer):
    """A wsgw.v1.Exchange server in python3-grpcio that the test drives: it acks every batch,
    hands the events it gets to the test (events) and sends the commands the test gives it
    (send), when the test wants: e.g. live messages while a Recover waits for its answer."""

    def __init__(self):
        self.events = queue.Queue()
        self.out = queue.Queue()  # one stream (the gateway runs with --streams 1)

    def Stream(self, request_iterator, context):
        pb2 = proto()[0]
        context.send_initial_metadata((("x-wsgw-ack", "1"),))

        def reader():
            try:
                for up in request_iterator:
                    for ev in up.events:
                        self.events.put(ev)
                    self.out.put(pb2.Downstream(ack=up.seq))
            finally:
                self.out.put(None)
        threading.Thread(target=reader, daemon=True).start()
        while True:
            d = self.out.get()
            if d is None:
                return
            yield d

    def send(self, *cmds):
        self.out.put(proto()[0].Downstream(commands=list(cmds)))

    def next_event(self, kind, timeout=10):
        while True:
            ev = self.events.get(timeout=timeout * SLOW)
            if ev.WhichOneof("kind") == kind:
                return ev

    @staticmethod
    def live(user, offset, epoch="ep1", text=None):
        pb2 = proto()[0]
        return pb2.Command(send=pb2.Send(target=pb2.Target(user_ids=[user]),
                                         payload=(text or str(offset)).encode(),
                                         channel="user:" + user, offset=offset, epoch=epoch))

    @staticmethod
    def recovered(rec, offsets, top, ok=True, epoch="ep1", more=False):
        pb2 = proto()[0]
        return pb2.Command(recovered=pb2.Recovered(
            conn_id=rec.conn_id, channel=rec.recover.channel, id=rec.recover.id,
            publications=[pb2.Publication(payload=str(o).encode(), offset=o) for o in offsets],
            more=more, offset=top, epoch=epoch, recovered=ok))


def scripted(extra=()):
    api = ScriptedApi()
    server, port = grpc_exchange_server(api)
    gw = Gateway(["127.0.0.1:%d" % port], streams=1, extra=list(extra))
    return api, server, gw


async def quiet(ws, secs):
    """Nothing arrives for secs."""
    try:
        f = await asyncio.wait_for(ws.recv(), secs)
        raise AssertionError("unexpected frame %r" % f)
    except asyncio.TimeoutError:
        pass


def summary(fs):
    return [f["offset"] if f["type"] == "message" else ("ok" if f["recovered"] else "missed",
                                                        f["offset"]) for f in fs]


def test_live_during_recovery_waits_behind_it():
    """Live messages that arrive while the Recover waits for its answer (9, 10, and 7, which
    the answer holds too) are held; the answer's 6, 7, 8 go first, the notice, then 9, 10:
    neither lost, nor twice, nor out of order."""
    api, server, gw = scripted()
    try:
        async def main():
            ws = await connect(gw, "u", [("user:u", 5, "ep1")])
            rec = api.next_event("recover")
            eq((rec.recover.channel, rec.recover.offset, rec.recover.epoch),
               ("user:u", 5, "ep1"))
            api.send(api.live("u", 9), api.live("u", 10), api.live("u", 7))
            await quiet(ws, 0.3)
            api.send(api.recovered(rec, [6, 7], 0, more=True))
            api.send(api.recovered(rec, [8], 8))
            got = await frames(ws, 6)
            eq(summary(got), [6, 7, 8, ("ok", 8), 9, 10])
            eq(got[0]["data"], "6")
            api.send(api.recovered(rec, [8], 8))  # the same answer again: ignored
            api.send(api.live("u", 10), api.live("u", 11))
            eq(summary(await frames(ws, 1)), [11])
            await ws.close()
        asyncio.run(main())
        eq(gw.metric("wsgw_recovery_events_total", {"event": "late"}), 1)
        eq(gw.metric("wsgw_recovery_events_total", {"event": "duplicate"}), 2)
    finally:
        server.stop(0)


def test_unanswered_recover_times_out():
    """An API that never answers (a server that knows nothing of history): after
    --recover-timeout the held messages go out and the client is told recovered=false."""
    api, server, gw = scripted(["--recover-timeout", "500ms"])
    try:
        async def main():
            ws = await connect(gw, "u", [("user:u", 5, "ep1")])
            api.next_event("recover")
            api.send(api.live("u", 8))
            await quiet(ws, 0.3)
            got = await frames(ws, 2, timeout=3)
            eq(summary(got), [8, ("missed", 8)])
            await ws.close()
        asyncio.run(main())
        eq(gw.metric("wsgw_recovery_events_total", {"event": "timeout"}), 1)
    finally:
        server.stop(0)


def test_live_gap_is_recovered():
    """A live message skips an offset (the one between was lost on the way): after
    --recover-gap-wait the gateway asks for what follows its last, and the client gets the
    missing one first, no notice; the lost one turning up late is dropped."""
    api, server, gw = scripted(["--recover-gap-wait", "100ms"])
    try:
        async def main():
            ws = await connect(gw, "u")
            api.next_event("open")
            api.send(api.live("u", 1))
            eq(summary(await frames(ws, 1)), [1])
            api.send(api.live("u", 3))
            await quiet(ws, 0.05)
            rec = api.next_event("recover")
            eq((rec.recover.channel, rec.recover.offset, rec.recover.epoch), ("user:u", 1, "ep1"))
            api.send(api.live("u", 4))
            api.send(api.recovered(rec, [2, 3], 3))
            eq(summary(await frames(ws, 3)), [2, 3, 4])
            api.send(api.live("u", 2), api.live("u", 5))
            eq(summary(await frames(ws, 1)), [5])
            # a gap filled by the late message itself, within the wait: no Recover
            api.send(api.live("u", 7), api.live("u", 6))
            eq(summary(await frames(ws, 2)), [6, 7])
            await ws.close()
        asyncio.run(main())
        eq(gw.metric("wsgw_recover_requests_total"), 1)
        eq(gw.metric("wsgw_recovery_events_total", {"event": "gap_filled"}), 1)
    finally:
        server.stop(0)


def bench_recover(api, gw, users, rate, duration, offline="1s", after="1s"):
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    r = subprocess.run([os.path.join(BIN, "ws-bench"), "recover", "--host",
                        "127.0.0.1:%d" % gw.port, "--user", str(users), "--push-url",
                        "http://127.0.0.1:%d" % api.http_port, "--rate", str(rate),
                        "--offline", offline, "--offline-after", after, "--duration", duration,
                        "--settle", "200ms", "--drain", "3s", "--json", out], capture_output=True, text=True, timeout=60 * SLOW)
    print(r.stdout[-1500:], flush=True)
    with open(out) as f:
        js = json.load(f)
    os.unlink(out)
    return r.returncode, js


def test_bench_recover_mode():
    """ws-bench recover: 50 clients away 1 s while 100 pushes/s go to them: everything pushed
    meanwhile comes back in order before the notice; with a history too short for that, the
    bench says so (not_recovered errors, exit 1)."""
    api = Api(extra=["--history-size", "100"])
    gw = Gateway([api.grpc_addr])
    rc, js = bench_recover(api, gw, 50, 100, "3s")
    rec = js["recovery"]
    eq(rc, 0, js["errors"])
    check(rec["away"] >= 80, rec)  # ~100 pushed in the second away
    eq(rec["recovered"], rec["away"])
    eq((rec["notices_ok"], rec["notices_missed"], rec["gaps"], rec["repeats"]), (50, 0, 0, 0))
    eq(js["messages"]["received"], js["messages"]["sent"])
    short = Api(extra=["--history-size", "1"])
    gw2 = Gateway([short.grpc_addr])
    rc, js = bench_recover(short, gw2, 20, 100, "2.2s")
    eq(rc, 1)
    check(js["errors"]["not_recovered"] > 0, js["errors"])


if __name__ == "__main__":
    run(globals())
