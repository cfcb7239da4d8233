"""History in Redis Streams (ws-api --redis, api/history_redis.c) and the recovery of
wsgw.v1.json clients through it, with Debian's redis-server started on a free loopback port:
- the issue's case: a client offline for 5 s while 100 messages are pushed to it through node
  A comes back through a gateway connected to node B only, and gets all 100 in order, the
  notice, then live messages; B restarted still serves a recovery;
- pushes through one node race recoveries answered by another: nothing lost, doubled or out of
  order;
- a room: pushes through one node and chat through another share one sequence, recovered at
  the Join;
- the history is what Redis holds: stream and position keys with one hash tag, trimmed by size
  and by age, and a ws-api node restarted knows it at once;
- Redis gone or not answering: pushes with history answer 503 (not delivered without an
  offset; a log line, a metric), recoveries answer recovered=false at once, and it all works
  again once Redis is back.
The same protocol over ws-api's memory store: test_recovery.py."""
import asyncio
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import wsgwtest as T  # noqa: E402
from test_recovery import (connect, frames, position_then_away, race_recovery,  # noqa: E402
                           wait_online)


def api_node(r, extra=()):
    args = ["--redis", r.url, "--presence-heartbeat", "200ms", "--presence-ttl", "1500ms",
            "--redis-timeout", "500ms", "--shutdown-timeout", "300ms"] + list(extra)
    api = T.Api(extra=args)
    api.args = args
    return api


def gateway(apis, extra=()):
    """A gateway to the ws-api nodes apis; its drain is short (at the end of a test the nodes
    may be gone before it, and it would wait for their acks)."""
    return T.Gateway([a.grpc_addr for a in apis], extra=["--drain-timeout", "1s"] + list(extra))


def push_ok(api, user, text, tries=50, room=None):
    """POST /v1/push with history to user (or room); retried while ws-api answers 503
    (presence not whole yet, Redis not up yet). Returns the answer."""
    target = {"room": room} if room else {"user_ids": [user]}
    for _ in range(tries):
        st, js = api.push(data=text, history=True, **target)
        if st == 200:
            return js
        T.eq(st, 503, js)
        time.sleep(0.1)
    raise AssertionError("push kept failing: %r" % (js,))


def test_offline_5s_100_pushes_then_back_through_another_node():
    """The issue's case, across nodes: the client is on a gateway connected to node A only;
    100 messages are pushed through A while it is away for 5 s; it comes back through a
    gateway connected to node B only, which reads what it missed from Redis: all 100 in
    order, the notice, live messages. Then B is restarted (a new process, nothing in its
    memory) and still serves a recovery."""
    r = T.Redis()
    a, b = api_node(r), api_node(r)
    gw_a, gw_b = gateway([a]), gateway([b])

    async def main():
        ws = await connect(gw_a, "alice")
        await wait_online(a, "alice")
        js = push_ok(a, "alice", "before")
        f = (await frames(ws, 1))[0]
        T.eq((f["offset"], f["epoch"]), (js["history"]["user:alice"]["offset"],
                                         js["history"]["user:alice"]["epoch"]))
        off, epoch = f["offset"], f["epoch"]
        await ws.close()
        t0 = time.monotonic()
        offs = []
        for i in range(100):  # 5 s away
            js = push_ok(a, "alice", "m%d" % i)
            offs.append(js["history"]["user:alice"]["offset"])
            await asyncio.sleep(0.05)
        T.check(time.monotonic() - t0 >= 5.0)
        T.eq(offs, list(range(off + 1, off + 101)))
        ws = await connect(gw_b, "alice", [("user:alice", off, epoch)])
        got = await frames(ws, 101)
        T.eq([g["data"] for g in got[:100]], ["m%d" % i for i in range(100)])
        T.eq([g["offset"] for g in got[:100]], offs)
        T.eq(got[100], {"type": "recovery", "channel": "user:alice", "recovered": True,
                        "offset": off + 100, "epoch": epoch})
        await wait_online(a, "alice")
        push_ok(a, "alice", "live")  # through A, to a gateway A has no session to
        g = (await frames(ws, 1))[0]
        T.eq((g["data"], g["offset"]), ("live", off + 101))
        await ws.close()
        return off + 101, epoch
    last, epoch = asyncio.run(main())
    # the history is in Redis: the stream and the position, one hash tag
    T.eq(r.cmd("HGET", "wsgw:{h:user:alice}:m", "s"), b"%d" % last)
    T.eq(r.cmd("XLEN", "wsgw:{h:user:alice}:s"), last)
    reads = [T.parse_metric(n.http("GET", "/metrics")[1], "wsapi_history_reads_total",
                            {"result": "recovered"}) for n in (a, b)]
    T.eq(reads, [0, 1])  # one recovery, read by the node of the connection
    for i in range(5):
        push_ok(a, "alice", "n%d" % i)
    T.stop(b.proc, signal.SIGKILL)
    b = T.Api(extra=b.args, ports=(b.grpc_port, b.http_port))
    gw_b.wait_ready()

    async def after_restart():
        ws = await connect(gw_b, "alice", [("user:alice", last, epoch)])
        got = await frames(ws, 6)
        T.eq([(g["data"], g["offset"]) for g in got[:5]],
             [("n%d" % i, last + 1 + i) for i in range(5)])
        T.eq((got[5]["type"], got[5]["recovered"], got[5]["offset"]), ("recovery", True, last + 5))
        await ws.close()
    asyncio.run(after_restart())


def test_push_during_recovery_through_redis():
    """Pushes race recoveries read by node B, the only node of the client's gateway (the
    history and the presence in Redis, the reads and adds asynchronous): first through node A
    alone (live messages through A's publish to B): every offset once, in order, one notice
    each; then through A and B at once, from two threads, so that later pushes overtake earlier
    ones on the way and the gateway recovers the gaps from Redis: still every offset once, in
    order, and every notice recovered."""
    r = T.Redis()
    a, b = api_node(r, ["--history-size", "5000"]), api_node(r, ["--history-size", "5000"])
    for pushers in ([a], [a, b]):
        gw = gateway([b], ["--recover-gap-wait", "0"])
        t0 = time.monotonic()
        n = race_recovery(pushers, gw, rounds=4)
        print("%d pushes through %d node(s) raced 4 recoveries on B (%.1f s), %d gaps recovered"
              % (n, len(pushers), time.monotonic() - t0,
                 gw.metric("wsgw_recovery_events_total", {"event": "gap"})))
        T.stop(gw.proc)


def test_room_through_redis():
    """A room's history in Redis: pushes to the room through node A (HTTP, with history) and a
    chat message said through node B (the chat handler keeps it with --history-all: an add
    answered after the handler returned) share one sequence; a member that comes back through
    B's gateway recovers them at its Join."""
    r = T.Redis()
    a = api_node(r, ["--handler", "chat", "--history-all"])
    b = api_node(r, ["--handler", "chat", "--history-all"])
    gw = gateway([b])

    async def main():
        ws = await connect(gw, "dan")
        await ws.send(json.dumps({"op": "join", "room": "r"}))
        await ws.send(json.dumps({"op": "say", "room": "r", "text": "hi"}))
        f = (await frames(ws, 1))[0]
        T.eq((f["channel"], json.loads(f["data"])["text"]), ("room:r", "hi"))
        await ws.close()
        for i in range(5):
            js = push_ok(a, None, "p%d" % i, room="r")
            T.eq(js["history"]["room:r"]["offset"], f["offset"] + 1 + i)
        ws = await connect(gw, "dan", [("room:r", f["offset"], f["epoch"])])
        await ws.send(json.dumps({"op": "join", "room": "r"}))
        got = await frames(ws, 6)
        T.eq([(g["data"], g["offset"]) for g in got[:5]],
             [("p%d" % i, f["offset"] + 1 + i) for i in range(5)])
        T.eq((got[5]["type"], got[5]["recovered"], got[5]["offset"]),
             ("recovery", True, f["offset"] + 5))
        await ws.send(json.dumps({"op": "say", "room": "r", "text": "back"}))
        g = (await frames(ws, 1))[0]
        T.eq((json.loads(g["data"])["text"], g["offset"]), ("back", f["offset"] + 6))
        await ws.close()
    asyncio.run(main())


def test_trimmed_by_size_and_age_says_missed():
    r = T.Redis()
    api = api_node(r, ["--history-size", "10", "--history-recover-max", "100",
                       "--history-ttl", "1s"])
    gw = gateway([api])

    async def main():
        f = await position_then_away(api, gw, "bob", push_ok)
        for i in range(30):
            push_ok(api, "bob", "x%d" % i)
        T.eq(r.cmd("XLEN", "wsgw:{h:user:bob}:s"), 10)  # trimmed by size
        ws = await connect(gw, "bob", [("user:bob", f["offset"], f["epoch"])])
        got = await frames(ws, 11)
        T.eq([g["data"] for g in got[:10]], ["x%d" % i for i in range(20, 30)])
        T.eq((got[10]["type"], got[10]["recovered"], got[10]["offset"]),
             ("recovery", False, f["offset"] + 30))
        await ws.close()
        time.sleep(1.2)  # past --history-ttl: everything aged out
        ws = await connect(gw, "bob", [("user:bob", f["offset"] + 25, f["epoch"])])
        got = await frames(ws, 1)
        T.eq((got[0]["type"], got[0]["recovered"], got[0]["offset"]),
             ("recovery", False, f["offset"] + 30))
        push_ok(api, "bob", "fresh")  # an add drops what aged out from the stream's head
        g = (await frames(ws, 1))[0]
        T.eq((g["data"], g["offset"]), ("fresh", f["offset"] + 31))
        await ws.close()
    asyncio.run(main())
    T.eq(r.cmd("XLEN", "wsgw:{h:user:bob}:s"), 1)


def test_redis_away_then_back():
    """Redis paused, then killed: a push with history gets 503 (not delivered), a recovery is
    answered recovered=false at once; Redis back (empty: a restart without persistence): the
    history starts a new epoch, and a client from the old one is told so."""
    r = T.Redis()
    api = api_node(r, ["--presence-grace", "300ms"])
    gw = gateway([api])

    async def main():
        f = await position_then_away(api, gw, "carol", push_ok)
        # Redis stops answering (the link still looks up): the add times out, the push is
        # refused, not delivered without the offset its client would need
        r.pause()
        try:
            st, js = api.push(user_ids=["carol"], data="lost", history=True)
        finally:
            r.resume()
        T.eq((st, js), (503, {"error": "redis unavailable"}))
        T.eq(T.parse_metric(api.http("GET", "/metrics")[1], "wsapi_history_push_refused_total"),
             1)
        T.wait_until(lambda: "push with history refused" in T.proc_log(api.proc, 100000), 5, what="log")
        r.kill()
        time.sleep(0.7)
        st, js = api.push(user_ids=["carol"], data="lost", history=True)
        T.eq(st, 503, js)
        ws = await connect(gw, "carol", [("user:carol", f["offset"], f["epoch"])])
        got = await frames(ws, 1, timeout=5)
        T.eq((got[0]["type"], got[0]["recovered"]), ("recovery", False))
        await ws.close()
        r.start()
        t0 = time.monotonic()
        js = push_ok(api, "carol", "two", tries=100)  # (503 until presence is rebuilt)
        print("pushes accepted again %.1f s after Redis restarted" % (time.monotonic() - t0))
        T.check(js["history"]["user:carol"]["epoch"] != f["epoch"], js)
        ws = await connect(gw, "carol", [("user:carol", f["offset"], f["epoch"])])
        got = await frames(ws, 1)
        T.eq((got[0]["type"], got[0]["recovered"], got[0]["epoch"]),
             ("recovery", False, js["history"]["user:carol"]["epoch"]))
        push_ok(api, "carol", "three")
        g = (await frames(ws, 1))[0]
        T.eq((g["data"], g["offset"]), ("three", js["history"]["user:carol"]["offset"] + 1))
        await ws.close()
    asyncio.run(main())
    T.check(api.proc.poll() is None)


if __name__ == "__main__":
    T.run(globals())
