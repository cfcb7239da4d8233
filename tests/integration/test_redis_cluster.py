"""test_redis_cluster: ws-api nodes sharing presence and delivery through Redis (issue 16).

2 gateways x 3 ws-api x 1 Redis (Debian's redis-server on a free loopback port), each gateway
connected to only 2 of the 3 nodes (--upstream-subset 2, chosen by its id):
- pushes to a connection, a user, a room and everyone, through every node, reach every target
  exactly once: 20 rounds in one test, every message accounted for, nothing extra;
- kill -9 a gateway: its connections leave presence within --presence-ttl (other gateways'
  stay);
- restart the ws-api nodes: presence is right at once on a restarted node (no resync window);
- Redis killed, then restarted, and Redis stopped (SIGSTOP): pushes and presence queries get a
  clear 503 meanwhile, ws-api stays up, and everything works again after (presence rebuilt).
"""
import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import wsgwtest as T  # noqa: E402
import websockets  # noqa: E402

HB = "200ms"
TTL = "1500ms"


def cluster(napis=3, ngws=2, subset=2, handler="chat", redis=None, api_extra=()):
    r = redis or T.Redis()
    apis = [T.Api(handler=handler,
                  extra=["--redis", r.url, "--presence-heartbeat", HB, "--presence-ttl", TTL,
                         "--presence-grace", "500ms", "--redis-timeout", "500ms",
                         "--shutdown-timeout", "300ms"]
                  + list(api_extra)) for _ in range(napis)]
    ups = [a.grpc_addr for a in apis]
    gws = [T.Gateway(ups, extra=["--upstream-subset", str(subset), "--gateway-id", "gw%d" % i,
                                 "--drain-timeout", "1s"])
           for i in range(ngws)]
    return r, apis, gws


def users_conns(api, user):
    st, js = api.http("GET", "/v1/users/" + user)
    return st, sorted((int(c["conn_id"]), c["gateway_id"]) for c in js.get("connections", [])) \
        if st == 200 else js


def connected_nodes(gw):
    body = gw.get("/metrics")[1]
    return sum(float(l.split()[-1]) for l in body.splitlines()
               if l.startswith("wsgw_upstream_connected{"))


def room_users(api, room):
    st, js = api.http("GET", "/v1/rooms/" + room)
    return sorted(m["user_id"] for m in js.get("members", [])) if st == 200 else None


def metric(api, name, labels=None):
    return T.parse_metric(api.http("GET", "/metrics")[1], name, labels)


class Client:
    """A websocket client that collects what it receives."""

    def __init__(self, ws, name):
        self.ws, self.name, self.got = ws, name, []
        self.task = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for m in self.ws:
                self.got.append(m)
        except websockets.ConnectionClosed:
            pass


async def async_wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        await asyncio.sleep(0.02)


async def connect(gw, user, room=None):
    ws = await websockets.connect(gw.url(user))
    if room:
        await ws.send(json.dumps({"op": "join", "room": room}))
    return Client(ws, user)


def test_pushes_exactly_once_through_every_node():
    r, apis, gws = cluster()
    # each gateway is connected to 2 nodes, not 3
    for g in gws:
        T.wait_until(lambda: connected_nodes(g) == 2, 5, what="2 connected nodes")
    for a in apis:
        T.wait_until(lambda: metric(a, "wsapi_cluster_gateways") == 2, 5,
                     what="both gateways in every node's registry")
    served = [metric(a, "wsapi_cluster_sessions") for a in apis]
    T.eq(sum(served), 4.0, "2 gateways x 2 nodes each: %s" % served)

    async def run():
        clients = []
        for gi, g in enumerate(gws):
            clients.append(await connect(g, "solo%d" % gi))
            clients.append(await connect(g, "both", room="R"))
            clients.append(await connect(g, "roomie%d" % gi, room="R"))
        both = [c for c in clients if c.name == "both"]
        roomies = [c for c in clients if c.name in ("both", "roomie0", "roomie1")]
        # presence: from every node, both connections of "both" on their gateways
        want_both = None
        for a in apis:
            st, conns = T.wait_until(lambda: (lambda x: x if x[0] == 200 and len(x[1]) == 2
                                              else None)(users_conns(a, "both")), 5,
                                     what="both's 2 connections in presence")
            T.eq(sorted(g for _, g in conns), ["gw0", "gw1"])
            want_both = want_both or conns
            T.eq(conns, want_both, "every node answers the same")
        solo_ids = {}
        for gi in range(2):
            st, conns = T.wait_until(lambda: (lambda x: x if x[0] == 200 and len(x[1]) == 1
                                              else None)(users_conns(apis[0], "solo%d" % gi)),
                                     5, what="solo%d in presence" % gi)
            solo_ids[gi] = conns[0][0]
        # room membership reached Redis (the chat handler's joins)
        T.wait_until(lambda: apis[1].http("GET", "/v1/rooms/R")[1].get("count") == 4, 5,
                     what="room R has 4 members")
        expect = {id(c): [] for c in clients}
        t0 = time.monotonic()
        npush = 0
        for rnd in range(20):
            for i, a in enumerate(apis):
                tag = "%d-%d" % (rnd, i)
                gi = (rnd + i) % 2
                st, js = a.push(conn_ids=[str(solo_ids[gi])], data="c" + tag)
                T.eq((st, js), (200, {"gateways": 1}), "conn push via node %d" % i)
                expect[id(clients[3 * gi])].append("c" + tag)
                st, js = a.push(user_ids=["both"], data="u" + tag)
                T.eq((st, js), (200, {"gateways": 2}), "user push via node %d" % i)
                for c in both:
                    expect[id(c)].append("u" + tag)
                st, js = a.push(room="R", data="r" + tag)
                T.eq((st, js), (200, {"gateways": 2}), "room push via node %d" % i)
                for c in roomies:
                    expect[id(c)].append("r" + tag)
                st, js = a.push(all=True, data="a" + tag)
                T.eq((st, js), (200, {"gateways": 2}), "push to all via node %d" % i)
                for c in clients:
                    expect[id(c)].append("a" + tag)
                npush += 4
        pushed_s = time.monotonic() - t0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(len(c.got) < len(expect[id(c)])
                                                  for c in clients):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # anything extra (a duplicate) would have come by now
        delivered = 0
        for c in clients:
            got = [m for m in c.got if not m.startswith("{")]  # (chat echoes of the join)
            T.eq(sorted(got), sorted(expect[id(c)]), "client %s: each message exactly once"
                 % c.name)
            delivered += len(got)
        print("pushes=%d deliveries=%d push_phase_s=%.2f, all exactly once" %
              (npush, delivered, pushed_s))
        for c in clients:
            await c.ws.close()
    asyncio.get_event_loop().run_until_complete(run())
    fwd = sum(metric(a, "wsapi_cluster_forwarded_total") for a in apis)
    lost = sum(metric(a, "wsapi_cluster_undeliverable_total") for a in apis)
    T.check(fwd > 0, "some pushes went through another node")
    T.eq(lost, 0.0, "nothing undeliverable")



def test_chat_joins_past_the_cap_are_refused_in_redis():
    """With --redis, rooms per connection are counted in Redis (the connection's room list,
    over every node's joins): a join past --max-rooms-per-conn is refused there, nothing of it
    recorded (before: every join was, and the list Redis parses on each join grew without
    bound), the gateway told to leave again (it had been told to join: its own cap is 128)
    and the client told, as without --redis."""
    r, apis, gws = cluster(napis=2, ngws=1, subset=2, api_extra=["--max-rooms-per-conn", "3"])
    T.wait_until(lambda: connected_nodes(gws[0]) == 2, 5, what="2 connected nodes")
    rooms = ["cap%d" % k for k in range(6)]

    async def run():
        c = await connect(gws[0], "joiner")
        for room in rooms:
            await c.ws.send(json.dumps({"op": "join", "room": room}))
        errors = lambda: [json.loads(m) for m in c.got
                          if m.startswith("{") and json.loads(m).get("op") == "error"]
        await async_wait(lambda: len(errors()) >= 3, 5, "3 refusals")
        await asyncio.sleep(0.3)  # (a 4th would have come by now)
        T.eq(sorted(e.get("room") for e in errors()), rooms[3:], "refused: %s" % errors())
        T.check(all(e.get("reason") == "too_many_rooms" for e in errors()), str(errors()))
        for a in apis:
            for room in rooms:
                T.eq(a.http("GET", "/v1/rooms/" + room)[1].get("count"),
                     1 if room in rooms[:3] else 0, "members of %s" % room)
        # the gateway left the refused rooms again: a push to one reaches nobody
        for room in rooms[2:4]:
            apis[0].push(room=room, data="to-" + room)
        await async_wait(lambda: "to-" + rooms[2] in c.got, 5, "the push to a joined room")
        await asyncio.sleep(0.3)
        T.check("to-" + rooms[3] not in c.got, "a refused room's push arrived: %s" % c.got)
        await c.ws.close()
    asyncio.get_event_loop().run_until_complete(run())
    refused = sum(metric(a, "wsapi_chat_refusals_total", {"reason": "too_many_rooms"})
                  for a in apis)
    T.eq(refused, 3.0, "refusals counted")

def test_a_refused_join_taken_back_does_not_undo_a_later_join_of_the_same_room():
    """A join past the cap is refused by Redis after the gateway was told to join, so it is
    taken back with a Leave. A client at the cap that joins room C (refused), leaves A and joins
    C again before Redis answered the first join ended up out of C on its gateway, while Redis
    listed it in C (the Leave of the refusal came after the second Join): pushes to C listed it
    and never reached it (session 10's note). Now a refusal takes the join back only when no
    later join of the same room by the connection is in flight: the last one decides. Redis is
    paused (CLIENT PAUSE) while the three ops go in, so all three wait for its answers."""
    r, apis, gws = cluster(napis=1, ngws=1, subset=1, api_extra=["--max-rooms-per-conn", "2"])

    async def run():
        c = await connect(gws[0], "racer")
        for room in ("ra", "rb"):
            await c.ws.send(json.dumps({"op": "join", "room": room}))
        T.wait_until(lambda: [apis[0].http("GET", "/v1/rooms/" + k)[1].get("count")
                              for k in ("ra", "rb")] == [1, 1], 5, what="in ra and rb")
        r.cmd("CLIENT", "PAUSE", "300", "ALL")
        for op, room in (("join", "rc"), ("leave", "ra"), ("join", "rc")):
            await c.ws.send(json.dumps({"op": op, "room": room}))
        errors = lambda: [json.loads(m) for m in c.got
                          if m.startswith("{") and json.loads(m).get("op") == "error"]
        await async_wait(lambda: len(errors()) >= 1, 5, "the first join of rc refused")
        T.eq([(e.get("reason"), e.get("room")) for e in errors()], [("too_many_rooms", "rc")],
             "refused")
        T.wait_until(lambda: [apis[0].http("GET", "/v1/rooms/" + k)[1].get("count")
                              for k in ("ra", "rb", "rc")] == [0, 1, 1], 5,
                     what="Redis: in rb and rc")
        st, js = apis[0].push(room="rc", data="to-rc")
        T.eq((st, js.get("connections", js.get("gateways"))), (200, 1), "push to rc: %s" % js)
        await async_wait(lambda: "to-rc" in c.got, 3, "the push to rc (the client is in it)")
        await c.ws.close()
    asyncio.get_event_loop().run_until_complete(run())


def test_killed_gateway_leaves_presence_within_ttl():
    r, apis, gws = cluster()

    async def run():
        a = await connect(gws[0], "dies")
        b = await connect(gws[1], "lives")
        T.wait_until(lambda: len(users_conns(apis[2], "dies")[1]) == 1, 5, what="dies online")
        T.wait_until(lambda: len(users_conns(apis[2], "lives")[1]) == 1, 5, what="lives online")
        os.killpg(gws[0].proc.pid, signal.SIGKILL)
        t0 = time.monotonic()
        T.wait_until(lambda: users_conns(apis[0], "dies") == (200, []), 5,
                     what="the killed gateway's user offline")
        gone = time.monotonic() - t0
        print("killed gateway's connections left presence after %.2fs (--presence-ttl %s)"
              % (gone, TTL))
        T.check(gone <= 1.5 + 1.0, "within the TTL (+ a heartbeat and margin): %.2fs" % gone)
        for api in apis:
            T.eq(len(users_conns(api, "lives")[1]), 1, "the other gateway's user stays")
            T.eq(users_conns(api, "dies"), (200, []))
        # the registry forgets it within a heartbeat or two (no node serves it any more)
        T.wait_until(lambda: apis[1].push(all=True, data="after")[1].get("gateways") == 1, 3,
                     what="push to all reaches the one gateway left")
        await asyncio.sleep(0.2)
        T.check("after" in b.got)
        await b.ws.close()
    asyncio.get_event_loop().run_until_complete(run())


def test_restarted_api_nodes_answer_presence_at_once():
    r, apis, gws = cluster()

    async def run():
        cs = [await connect(gws[0], "x"), await connect(gws[1], "x")]
        T.wait_until(lambda: len(users_conns(apis[0], "x")[1]) == 2, 5, what="x online twice")
        want = users_conns(apis[0], "x")
        for i in range(3):
            old = apis[i]
            T.stop(old.proc, signal.SIGKILL)
            new = T.Api(handler="chat", extra=["--redis", r.url, "--presence-heartbeat", HB,
                                                "--presence-ttl", TTL, "--presence-grace",
                                                "500ms", "--shutdown-timeout", "300ms"],
                        ports=(old.grpc_port, old.http_port))
            apis[i] = new
            # the first answers of a restarted node: right at once (presence is in Redis);
            # only while its Redis link and registry come up (milliseconds) a 503
            t0 = time.monotonic()
            st, got = users_conns(new, "x")
            while st == 503 and time.monotonic() - t0 < 1.0:
                time.sleep(0.01)
                st, got = users_conns(new, "x")
            T.eq((st, got), want, "node %d right after its restart" % i)
            print("node %d: right %.0f ms after it listened" % (i, 1000 * (time.monotonic() - t0)))
        # and pushes reach both connections through the new nodes, once the gateways are back
        # on them: a command that a node takes for a gateway before that gateway reconnected
        # to it is undeliverable (pub/sub between nodes is at most once, cluster_bus.c), and
        # was the one failure of this test (CI under ASan, 2026-12-07)
        for g in gws:
            T.wait_until(lambda: connected_nodes(g) == 2, 10, what="gateway back on 2 nodes")
        for i, a in enumerate(apis):
            ok = T.wait_until(lambda: a.push(user_ids=["x"], data="n%d" % i)[1].get("gateways")
                              == 2, 10, what="push via restarted node %d reaches 2 gateways" % i)
            T.check(ok)
        for c in cs:
            await async_wait(lambda: any(m.startswith("n2") for m in c.got), 3,
                             "pushes via the new nodes arrive")
            await c.ws.close()
        T.eq([metric(a, "wsapi_cluster_undeliverable_total") for a in apis], [0, 0, 0],
             "commands no node could take")
    asyncio.get_event_loop().run_until_complete(run())


def test_redis_down_then_back():
    r, apis, gws = cluster()

    async def run():
        c0 = await connect(gws[0], "p")
        c1 = await connect(gws[1], "q")
        T.wait_until(lambda: len(users_conns(apis[0], "q")[1]) == 1, 5, what="q online")
        await c0.ws.send(json.dumps({"op": "join", "room": "before"}))
        T.wait_until(lambda: room_users(apis[2], "before") == ["p"], 5, what="p listed in before")
        # Redis killed: 503, ws-api up, echo (the handler, no Redis needed) still works
        r.kill()
        T.wait_until(lambda: apis[0].push(all=True, data="x")[0] == 503, 3, what="503 on push")
        for a in apis:
            st, js = a.push(user_ids=["p"], data="no")
            T.eq(st, 503)
            T.check("redis" in js["error"], js)
            T.eq(a.http("GET", "/v1/users/p")[0], 503)
            T.eq(a.http("GET", "/healthz")[0], 200)
            st, js = a.http("GET", "/readyz")
            T.check(st == 503 and "redis" in js["error"], (st, js))
        await c0.ws.send("echo while redis is away")
        await asyncio.sleep(0.3)
        T.check("echo while redis is away" in c0.got, "messages still flow: %s" % c0.got)
        # a client that connects and one that leaves while Redis is away, and a join
        c2 = await connect(gws[1], "newcomer")
        await c1.ws.close()
        await c0.ws.send(json.dumps({"op": "join", "room": "away"}))
        # Redis back (empty: restarted without persistence): presence rebuilt
        time.sleep(0.5)
        r.start()
        t0 = time.monotonic()
        for a in apis:
            T.wait_until(lambda: (lambda st_c: st_c[0] == 200 and [g for _, g in st_c[1]] ==
                                  ["gw1"])(users_conns(a, "newcomer")), 15,
                         what="newcomer in presence again")
            T.wait_until(lambda: users_conns(a, "q") == (200, []), 5, what="q gone")
            T.eq(len(users_conns(a, "p")[1]), 1)
        print("presence rebuilt %.2fs after Redis came back" % (time.monotonic() - t0))
        # Redis lost the room memberships too, and never heard of the join while it was away:
        # the gateway's resync brought them (Open.rooms; before, both listed nobody until p
        # joined them again)
        T.wait_until(lambda: room_users(apis[1], "before") == ["p"] and
                     room_users(apis[0], "away") == ["p"], 3, what="p listed in before and away")
        T.eq(sum(metric(a, "wsapi_rooms_restored_total", {"result": "recorded"}) for a in apis),
             2.0, "memberships restored from the gateway, counted once")
        T.eq([a.http("GET", "/readyz")[0] for a in apis], [200, 200, 200])
        st, js = apis[2].push(user_ids=["p", "newcomer"], data="back")
        T.eq((st, js["gateways"]), (200, 2))
        await asyncio.sleep(0.3)
        T.check("back" in c0.got and "back" in c2.got)
        await c0.ws.send(json.dumps({"op": "join", "room": "rp"}))
        T.wait_until(lambda: room_users(apis[1], "rp") == ["p"], 5, what="p listed in rp")
        # Redis stopped (SIGSTOP: up but silent): 503 after --redis-timeout, back after; a
        # client that connects meanwhile to p's gateway makes its node miss a write, so that
        # gateway gets a new token once Redis answers again
        def opens():
            return sum(metric(a, "wsapi_events_total", {"kind": "open"}) for a in apis)
        r.pause()
        try:
            T.wait_until(lambda: apis[1].push(all=True, data="x")[0] == 503, 5,
                         what="503 while Redis does not answer")
            opens_before = opens()
            c3 = await connect(gws[0], "late")
            T.wait_until(lambda: opens() > opens_before, 5, what="the late client's Open read")
            # a join Redis does not hear of (the gateway does: rooms live there)
            await c0.ws.send(json.dumps({"op": "join", "room": "paused"}))
            await asyncio.sleep(0.7)  # (its write, if it was queued, past --redis-timeout)
        finally:
            r.resume()
        T.wait_until(lambda: apis[1].push(user_ids=["p"], data="again")[0] == 200, 10,
                     what="pushes again after SIGCONT")
        await asyncio.sleep(0.3)
        T.check("again" in c0.got)
        T.wait_until(lambda: len(users_conns(apis[1], "late")[1]) == 1, 10,
                     what="the late client in presence (its gateway's presence rebuilt)")
        T.check(sum(metric(a, "wsapi_cluster_token_events_total", {"event": "rotated"})
                    for a in apis) >= 1, "a new token for the gateway whose write was missed")
        # its room listing survives the new token (before, rp listed nobody from then on)
        T.wait_until(lambda: room_users(apis[1], "rp") == ["p"], 3, what="p still listed in rp")
        # and the join made while Redis was silent is listed (its write ran when Redis woke,
        # or the resync's Open carried it)
        T.wait_until(lambda: room_users(apis[0], "paused") == ["p"], 3,
                     what="p listed in paused")
        for c in (c0, c2, c3):
            await c.ws.close()
    asyncio.get_event_loop().run_until_complete(run())
    for a in apis:
        T.check(a.proc.poll() is None, "ws-api stayed up")


def test_presence_waits_for_a_late_node_after_redis_restarted_empty():
    """Redis restarts empty while gw0's only node is stopped: the node that is back answers
    503 for gw0's users (it listed gw0 before Redis went away) until gw0's node is back and
    its presence re-sent, never 200 "offline". Found by repeating this file 20 times: its
    Redis restart test failed once in 11 runs, when the nodes of one gateway reconnected to
    Redis (backoff up to 2 s) after another node's --presence-grace had passed."""
    r = T.Redis()
    flags = ["--redis", r.url, "--presence-heartbeat", HB, "--presence-ttl", "4s",
             "--presence-grace", "500ms", "--redis-timeout", "500ms", "--shutdown-timeout",
             "300ms"]
    a = T.Api(handler="chat", extra=flags)  # serves gw1
    b = T.Api(handler="chat", extra=flags)  # serves gw0, alone
    g0 = T.Gateway([b.grpc_addr], extra=["--gateway-id", "gw0", "--drain-timeout", "1s"])
    g1 = T.Gateway([a.grpc_addr], extra=["--gateway-id", "gw1", "--drain-timeout", "1s"])

    async def run():
        cp = await connect(g0, "p")
        cq = await connect(g1, "q")
        T.wait_until(lambda: len(users_conns(a, "p")[1]) == 1 and
                     len(users_conns(a, "q")[1]) == 1, 5, what="p and q online")
        # a has read both gateways in the registry (it knows of gw0 only from there; a gateway
        # registered less than a heartbeat before Redis went away is not awaited)
        T.wait_until(lambda: metric(a, "wsapi_cluster_gateways") == 2, 5,
                     what="both gateways in a's registry")
        want = users_conns(a, "p")
        r.kill()
        os.kill(b.proc.pid, signal.SIGSTOP)
        answers = []
        try:
            T.wait_until(lambda: users_conns(a, "p")[0] == 503, 3, what="503 while Redis is away")
            r.start()
            T.wait_until(lambda: metric(a, "wsapi_redis_up", {"link": "cmd"}) == 1, 5,
                         what="node a back on Redis")
            # past a's grace (500 ms) with b still stopped: gw0 is not in Redis at all
            t_end = time.monotonic() + 1.2
            while time.monotonic() < t_end:
                answers.append(users_conns(a, "p"))
                time.sleep(0.02)
        finally:
            os.kill(b.proc.pid, signal.SIGCONT)
        T.wait_until(lambda: answers.append(users_conns(a, "p")) or answers[-1] == want, 10,
                     what="p in presence again once gw0's node is back")
        wrong = [x for x in answers if x[0] == 200 and x != want]
        T.eq(wrong[:1], [], "answers 503 or the truth (%d answers, %d with 503)" %
             (len(answers), sum(1 for x in answers if x[0] == 503)))
        T.eq(len(users_conns(a, "q")[1]), 1, "q too")
        await cp.ws.close()
        await cq.ws.close()
    asyncio.get_event_loop().run_until_complete(run())


def test_chat_reaches_room_members_on_gateways_of_other_nodes():
    """The chat handler's room messages (a Say handled by whichever node the sender's gateway
    sent it to) reach the room's members on every gateway, including gateways that hold no
    session to that node: 3 gateways, gateway i connected to node i only. Heartbeats of 5 s:
    the nodes' registries, read at their start, do not list the gateways yet."""
    r, apis, _ = cluster(ngws=0, api_extra=["--presence-heartbeat", "5s", "--presence-ttl", "15s"])
    gws = [T.Gateway([a.grpc_addr], extra=["--gateway-id", "gw%d" % i, "--drain-timeout", "1s"])
           for i, a in enumerate(apis)]

    async def run():
        cs = [await connect(gws[i % 3], "c%d" % i, room="R") for i in range(6)]
        for a in apis:  # every member in the room's presence before anyone speaks
            T.wait_until(lambda: a.http("GET", "/v1/rooms/R")[1].get("count") == 6, 5,
                         what="6 members in room R")
        for i, c in enumerate(cs):
            await c.ws.send(json.dumps({"op": "say", "room": "R", "text": "t%d" % i}))

        def said(c):
            return sorted(json.loads(m)["text"] for m in c.got if '"said"' in m)
        want = sorted("t%d" % i for i in range(6))
        try:
            await async_wait(lambda: all(said(c) == want for c in cs), 10, "")
        except TimeoutError:
            pass  # (the check below says what is missing)
        await asyncio.sleep(0.3)  # nothing more comes (no duplicates)
        T.eq([said(c) for c in cs], [want] * 6, "every member gets every message once")
        # and a push to the room through one node's HTTP API
        T.eq(apis[1].push(room="R", data="pushed")[0], 200)
        try:
            await async_wait(lambda: all("pushed" in c.got for c in cs), 5, "")
        except TimeoutError:
            pass
        await asyncio.sleep(0.2)
        T.eq([c.got.count("pushed") for c in cs], [1] * 6, "the room push, once each")
        for c in cs:
            await c.ws.close()
    asyncio.get_event_loop().run_until_complete(run())


def push_while_both_nodes_restart(ttl):
    """One gateway on 2 nodes with client x; the gateway SIGSTOPped, both nodes killed and
    restarted under the same names, then a push to x through node 0 (200, gateways: 1). Returns
    (apis, gw, client) with the gateway still stopped."""
    r = T.Redis()
    extra = ["--redis", r.url, "--presence-heartbeat", HB, "--presence-ttl", ttl,
             "--presence-grace", "500ms", "--redis-timeout", "500ms", "--shutdown-timeout",
             "300ms"]
    apis = [T.Api(handler="chat", extra=extra) for _ in range(2)]
    gw = T.Gateway([a.grpc_addr for a in apis], extra=["--gateway-id", "gw0"])

    async def run():
        c = await connect(gw, "x")
        T.wait_until(lambda: len(users_conns(apis[0], "x")[1]) == 1, 5, what="x online")
        T.wait_until(lambda: connected_nodes(gw) == 2, 5, what="gateway on both nodes")
        os.kill(gw.proc.pid, signal.SIGSTOP)
        for i in range(2):
            old = apis[i]
            T.stop(old.proc, signal.SIGKILL)
            apis[i] = T.Api(handler="chat", extra=extra, ports=(old.grpc_port, old.http_port))
        st = {}
        T.wait_until(lambda: st.update(r=apis[0].push(user_ids=["x"], data="held"))
                     or st["r"][0] == 200, 3, what="the restarted node takes the push")
        T.eq(st["r"][1].get("gateways"), 1, "the push API's answer")
        return c
    try:
        c = asyncio.get_event_loop().run_until_complete(run())
    except BaseException:
        os.kill(gw.proc.pid, signal.SIGCONT)
        raise
    return apis, gw, c


def held(apis):
    return [metric(a, "wsapi_cluster_commands_held") for a in apis]


def test_a_push_through_a_restarted_node_waits_for_its_gateway():
    """A node restarted under the same name is still named for its gateways in the registry
    until they reconnect to it (or --presence-ttl passes). A push it takes for such a gateway
    before the gateway is back went to the other node that serves it, which had no stream of
    it either and passed it back: dropped and counted undeliverable, while the push API had
    answered gateways: 1 (seen in CI, 2026-12-07). Now the node holds it until a stream of the
    gateway attaches (cluster_hold.c). The gateway is kept from reconnecting with SIGSTOP
    while both of its nodes restart and the push goes in."""
    apis, gw, c = push_while_both_nodes_restart("6s")
    T.wait_until(lambda: sum(held(apis)) == 1, 3, what="the push held while the gateway is away")
    os.kill(gw.proc.pid, signal.SIGCONT)

    async def run():
        await async_wait(lambda: "held" in c.got, 8, "the push once the gateway is back")
        await c.ws.close()
    asyncio.get_event_loop().run_until_complete(run())
    T.eq(held(apis), [0, 0], "nothing held any more")
    T.eq([metric(a, "wsapi_cluster_undeliverable_total") for a in apis], [0, 0],
         "commands no node could take")
    T.eq(sum(metric(a, "wsapi_cluster_commands_held_total") for a in apis), 1,
         "a node held the push")


def test_a_held_push_whose_gateway_never_returns_is_counted_undeliverable():
    """The other end: the gateway dies while held for (kill -9 instead of SIGCONT). The hold
    ends with --presence-ttl: counted undeliverable, as any command no node could take, with
    a log line, and nothing is held after."""
    apis, gw, c = push_while_both_nodes_restart("2s")
    T.wait_until(lambda: sum(held(apis)) == 1, 3, what="the push held while the gateway is away")
    os.kill(gw.proc.pid, signal.SIGCONT)
    T.stop(gw.proc, signal.SIGKILL)
    T.wait_until(lambda: sum(held(apis)) == 0, 6, what="the hold ends with --presence-ttl")
    T.eq(sum(metric(a, "wsapi_cluster_undeliverable_total") for a in apis), 1,
         "the push, undeliverable")
    logs = "".join(open(a.proc.log_path, errors="replace").read() for a in apis)
    T.check("held command for a gateway dropped" in logs, "a log line says so")


def registry_unreadable_restart(ttl):
    """One node (--node-id n0) and gateway gw0 with client x. The gateway is SIGSTOPped, the
    node killed, the registry made unreadable (a gateway listed in wsgw:{reg}:gw whose meta is
    not a hash: every node's read of the registry fails), and the node restarted under the
    same name. Returns (redis, api, gw, client, conn_id) once the node listens on its channel
    without having read the registry."""
    r = T.Redis()
    extra = ["--redis", r.url, "--presence-heartbeat", HB, "--presence-ttl", ttl,
             "--presence-grace", "500ms", "--redis-timeout", "500ms", "--shutdown-timeout",
             "300ms", "--node-id", "n0"]
    api = T.Api(handler="chat", extra=extra)
    gw = T.Gateway([api.grpc_addr], extra=["--gateway-id", "gw0", "--drain-timeout", "1s"])

    async def run():
        c = await connect(gw, "x")
        T.wait_until(lambda: len(users_conns(api, "x")[1]) == 1, 5, what="x online")
        return c
    c = asyncio.get_event_loop().run_until_complete(run())
    cid = users_conns(api, "x")[1][0][0]
    os.kill(gw.proc.pid, signal.SIGSTOP)
    try:
        T.stop(api.proc, signal.SIGKILL)
        r.cmd("SET", "wsgw:{g:bogus}:m", "not a hash")
        r.cmd("ZADD", "wsgw:{reg}:gw", "99999999999999", "bogus")
        api = T.Api(handler="chat", extra=extra, ports=(api.grpc_port, api.http_port))
        T.wait_until(lambda: r.cmd("PUBSUB", "NUMSUB", "wsgw:{n:n0}")[1] == 1, 5,
                     what="the restarted node on its channel")
        T.eq(api.http("GET", "/readyz")[0], 503, "the node has not read the registry")
    except BaseException:
        os.kill(gw.proc.pid, signal.SIGCONT)
        raise
    return r, api, gw, c, cid


def pass_on(r, gw_id, cmd, version=2):
    """Publishes cmd to node n0 as another node does (cluster_bus.c: the version, 1 first-hand
    or 2 passed on; the gateway count; each gateway id with its length; the serialized
    wsgw.v1.Command)."""
    g = gw_id.encode()
    msg = bytes([version]) + struct.pack(">HH", 1, len(g)) + g + cmd.SerializeToString()
    T.eq(r.cmd("PUBLISH", "wsgw:{n:n0}", msg), 1, "node n0 got the command")


def registry_readable(r, api):
    r.cmd("ZREM", "wsgw:{reg}:gw", "bogus")
    r.cmd("DEL", "wsgw:{g:bogus}:m")
    T.wait_until(lambda: api.http("GET", "/readyz")[0] == 200, 5, what="the registry read")


def test_a_command_passed_on_before_the_registry_is_read_is_held():
    """A node that has just restarted subscribes to its channel before it has read the
    registry. A command another node passed on to it meanwhile, for a gateway the registry
    names it for, was dropped (undeliverable: "a gateway we do not serve"), though the push
    API had counted the gateway reached (seen in ASan CI, 2026-12-07: the race of the test
    above, node 1 asked before its first read). Now it is held until the registry is read,
    then held for the gateway as any other, and delivered when the gateway is back."""
    pb2, _ = T.proto()
    r, api, gw, c, cid = registry_unreadable_restart("6s")
    try:
        pass_on(r, "gw0", pb2.Command(send=pb2.Send(target=pb2.Target(conn_ids=[cid]),
                                                    payload=b"held")))
        T.wait_until(lambda: held([api]) != [0]
                     or metric(api, "wsapi_cluster_undeliverable_total") != 0, 3,
                     what="the command held or dropped")
        T.eq(held([api]), [1], "held while the registry is unread")
        registry_readable(r, api)
        T.eq(held([api]), [1], "held for its gateway once the registry names this node")
    finally:
        os.kill(gw.proc.pid, signal.SIGCONT)

    async def run():
        await async_wait(lambda: "held" in c.got, 8, "the command once the gateway is back")
        await c.ws.close()
    asyncio.get_event_loop().run_until_complete(run())
    T.eq(held([api]), [0], "nothing held any more")
    T.eq(metric(api, "wsapi_cluster_undeliverable_total"), 0, "undeliverable")


def test_a_command_held_before_the_registry_is_read_for_a_gateway_not_ours_is_dropped_then():
    """The other ends: the registry, once read, does not name this node for the gateway. A
    command for a gateway the registry names another node for is passed on to that node once
    (it came first-hand: version 1); one for a gateway no node serves is counted undeliverable,
    with a log line. Both at that read, not after --presence-ttl."""
    pb2, _ = T.proto()
    r, api, gw, c, cid = registry_unreadable_restart("6s")
    sub = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    try:
        # gw1 is served by node n1 only (a synced gateway, as its node would have written it)
        tok = "0123456789abcdef"
        r.cmd("HSET", "wsgw:{g:gw1}:m", "tok", tok, "syn", tok,
              "n:n1", str(int(time.time() * 1000) + 60000))
        r.cmd("ZADD", "wsgw:{reg}:gw", "99999999999999", "gw1")
        sub.sendall(T._resp(["SUBSCRIBE", "wsgw:{n:n1}"]))
        f = sub.makefile("rb")
        T.eq(T._resp_read(f)[0], b"subscribe", "the test listens as node n1")
        cmd = pb2.Command(send=pb2.Send(target=pb2.Target(conn_ids=[7]), payload=b"moved"))
        pass_on(r, "gw-elsewhere", cmd, version=1)
        pass_on(r, "gw1", cmd, version=1)
        T.wait_until(lambda: held([api]) != [0]
                     or metric(api, "wsapi_cluster_undeliverable_total") != 0, 3,
                     what="the commands held or dropped")
        T.wait_until(lambda: held([api]) == [2], 2, what="both held while the registry is unread")
        t0 = time.monotonic()
        registry_readable(r, api)
        T.wait_until(lambda: held([api]) == [0], 2, what="the holds ended by the registry")
        T.check(time.monotonic() - t0 < 3, "well before --presence-ttl (6 s)")
        T.eq(metric(api, "wsapi_cluster_undeliverable_total"), 1, "undeliverable: gw-elsewhere")
        msg = T._resp_read(f)
        T.eq(msg[:2], [b"message", b"wsgw:{n:n1}"], "a message on node n1's channel")
        want = b"\x02" + struct.pack(">HH", 1, 3) + b"gw1" + cmd.SerializeToString()
        T.eq(msg[2], want, "the command for gw1, passed on once (version 2)")
    finally:
        sub.close()
        os.kill(gw.proc.pid, signal.SIGCONT)
    logs = open(api.proc.log_path, errors="replace").read()
    T.check("the registry does not name this node" in logs, "a log line says why")

    async def run():
        await c.ws.close()
    asyncio.get_event_loop().run_until_complete(run())


class CloseRefusingRelay:
    """A python3-grpcio Exchange server between the gateway and one ws-api: every stream is
    relayed both ways with its x- headers, over one HTTP/2 connection to ws-api per gateway
    connection (a new gateway session is a new ws-api session, as without the relay), except
    that a batch carrying the Close of a connection of a user named `stuck...` ends the stream with
    INVALID_ARGUMENT instead: an API node that refuses that Close every time. Records the
    x-wsgw-instance of every stream and the refusals. hold: a stream that presents another
    instance than the first waits that long before it relays its first batch (the resync)."""

    def __init__(self, target, stuck, hold=0):
        import grpc
        import threading
        self.grpc, self.target, self.stuck, self.hold = grpc, target, stuck, hold
        self.lock = threading.Lock()
        self.chans = {}
        self.instances, self.stuck_conns, self.refusals = [], set(), 0
        self.first_seen = {}  # instance -> time.monotonic() of its first stream
        pb2, pb2_grpc = T.proto()
        relay = self

        class Servicer(pb2_grpc.ExchangeServicer):
            def Stream(self, request_iterator, context):
                return relay.stream(request_iterator, context)
        self.server, self.port = T.grpc_exchange_server(Servicer(), workers=16)

    def channel(self, peer):
        with self.lock:
            ch = self.chans.get(peer)
            if ch is None:
                for old in self.chans.values():  # that gateway session is over
                    old.close()
                self.chans = {}
                ch = self.grpc.insecure_channel(
                    self.target, options=[("grpc.use_local_subchannel_pool", 1)])
                self.chans[peer] = ch
            return ch

    def stream(self, request_iterator, context):
        import threading
        md = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-")]
        with self.lock:
            self.instances.append(dict(md).get("x-wsgw-instance"))
            self.first_seen.setdefault(self.instances[-1], time.monotonic())
            renewed = self.instances[-1] != self.instances[0]
        refused = threading.Event()

        def ups():
            for up in request_iterator:
                if renewed and self.hold:
                    time.sleep(self.hold)
                    self.hold = 0
                for ev in up.events:
                    kind = ev.WhichOneof("kind")
                    if kind == "open" and ev.user_id.startswith(self.stuck):
                        self.stuck_conns.add(ev.conn_id)
                    elif kind == "close" and ev.conn_id in self.stuck_conns:
                        with self.lock:
                            self.refusals += 1
                        refused.set()
                        return  # the request ends here: ws-api never sees this batch
                yield up
        call = T.proto()[1].ExchangeStub(self.channel(context.peer())).Stream(ups(), metadata=md)
        try:
            context.send_initial_metadata(call.initial_metadata())
            for down in call:
                yield down
        except self.grpc.RpcError:
            pass
        if refused.is_set():
            context.abort(self.grpc.StatusCode.INVALID_ARGUMENT, "this Close is refused")

    def stop(self):
        self.server.stop(0)
        for ch in self.chans.values():
            ch.close()


def behind_relay(handler="echo", hold=0, api_extra=(), gw_extra=()):
    """Redis, one ws-api --redis, a CloseRefusingRelay (user "stuck") in front of it, and a
    gateway g1 through the relay (one stream, 2 attempts: a refused Close is lost in about a
    second). Returns (api, relay, gw); relay.stop() at the end."""
    r = T.Redis()
    api = T.Api(handler=handler, extra=["--redis", r.url, "--presence-grace", "500ms"]
                + list(api_extra))
    relay = CloseRefusingRelay(api.grpc_addr, "stuck", hold=hold)
    gw = T.Gateway(["127.0.0.1:%d" % relay.port], threads=1, streams=1,
                   extra=["--gateway-id", "g1", "--upstream-max-attempts", "2",
                          "--drain-timeout", "1s"] + list(gw_extra))
    return api, relay, gw


def test_a_close_the_api_refuses_every_time_leaves_no_ghost_in_shared_presence():
    """With --redis, a connection's Close goes to one node. When that node refuses it every
    time (here a relay in front of ws-api), the gateway sends it again (3 rounds) and then
    loses it: the closed connection stayed in shared presence for good, a ghost no resync
    removes. Now the gateway presents a renewed x-wsgw-instance on its next session, ws-api
    rebuilds its presence under a new token, and the ghost is gone: the user is offline, the
    other user is still online (re-sent by the resync), wsgw_presence_renewals_total is 1."""
    api, relay, gw = behind_relay(api_extra=["--presence-heartbeat", HB, "--presence-ttl", TTL])
    try:

        async def run():
            a = await connect(gw, "stuck")
            b = await connect(gw, "other")
            T.wait_until(lambda: len(users_conns(api, "stuck")[1]) == 1, 5, what="stuck online")
            T.wait_until(lambda: len(users_conns(api, "other")[1]) == 1, 5, what="other online")
            first = relay.instances[0]
            await a.ws.close()
            T.wait_until(lambda: relay.refusals >= 1, 5, what="the Close refused")
            t0 = time.monotonic()
            T.wait_until(lambda: users_conns(api, "stuck") == (200, []), 30,
                         what="the closed connection gone from shared presence")
            print("the refused Close's connection left presence after %.1fs; %d refusals"
                  % (time.monotonic() - t0, relay.refusals))
            T.wait_until(lambda: len(users_conns(api, "other")[1]) == 1, 5,
                         what="the live user online under the new token")
            T.eq(T.parse_metric(gw.get("/metrics")[1], "wsgw_presence_renewals_total"), 1)
            T.eq(relay.instances[-1], first + ".1", "the renewed instance")
            T.check(relay.refusals >= 4, "sent again before it was lost: %d" % relay.refusals)
            T.check(gw.proc_log_has("shared presence is rebuilt"), "a log line says so")
            await b.ws.send("still here")
            await async_wait(lambda: "still here" in b.got, 5, "echo after the rebuild")
            await b.ws.close()
        asyncio.get_event_loop().run_until_complete(run())
    finally:
        relay.stop()


def test_answers_while_a_gateways_presence_is_rebuilt_are_right_or_503():
    """A gateway's presence re-sent under a new token (here after the renewal above; the same
    for a gateway whose writes Redis missed): until the re-sent presence is whole, a node must
    answer 503 "presence resyncing" or the truth, never "offline" for a connection that is
    live. The relay holds the new session's resync 1.5 s; meanwhile the live user is asked for
    and pushed to by its connection id and its user id, over and over, at the default heartbeat
    (1 s): the node that made the new token knew of it at once, but its readiness followed its
    registry reads, so until the next one it answered [] and {"gateways":0}."""
    api, relay, gw = behind_relay(hold=1.5)
    try:

        async def run():
            a = await connect(gw, "stuck")
            b = await connect(gw, "other")
            T.wait_until(lambda: len(users_conns(api, "other")[1]) == 1, 5, what="other online")
            cid = api.conns_of("other")[0]
            await a.ws.close()
            T.wait_until(lambda: relay.refusals >= 1, 5, what="the Close refused")
            seen, wrong = {}, []
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                st, js = api.http("GET", "/v1/users/other")
                got = (st, len(js.get("connections", [])) if st == 200 else js.get("error"))
                seen[got] = seen.get(got, 0) + 1
                if got == (200, 0):
                    wrong.append("users")
                for kind, target in (("push", {"conn_ids": [str(cid)]}),
                                     ("push user", {"user_ids": ["other"]})):
                    st, js = api.push(data="p", **target)
                    got = (kind, st, js.get("gateways") if st == 200 else js.get("error"))
                    seen[got] = seen.get(got, 0) + 1
                    if got == (kind, 200, 0):
                        wrong.append(kind)
                if len(relay.instances) > 1 and relay.hold == 0 and \
                        users_conns(api, "stuck") == (200, []) and (200, 1) in seen and \
                        api.http("GET", "/v1/users/other")[0] == 200:
                    break
                await asyncio.sleep(0.02)
            print("answers while the presence was rebuilt:", seen)
            T.eq(wrong, [], "answers that called a live connection offline")
            T.check(any(k[0] == 503 or k[:2] == ("push", 503) for k in seen),
                    "the rebuild was seen (503 presence resyncing)")
            T.eq(users_conns(api, "stuck"), (200, []), "the ghost is gone")
            T.eq(len(users_conns(api, "other")[1]), 1, "the live user online")
            await b.ws.close()
        asyncio.get_event_loop().run_until_complete(run())
    finally:
        relay.stop()


def test_room_listings_survive_a_rebuild_of_a_gateways_presence():
    """Rooms live on the gateways, and Redis lists their members for GET /v1/rooms and
    RoomPresence under the gateway's token. A new token (the renewal above, or Redis that
    missed writes) dropped every listing of that gateway's members: they were still in their
    rooms, but listed nowhere until they joined again. Now a connection re-sent under the new
    token takes its rooms over from the token it replaced: after the rebuild the live member
    is listed in both its rooms, the closed one in none."""
    api, relay, gw = behind_relay("chat", api_extra=["--presence-heartbeat", HB,
                                                     "--presence-ttl", TTL])

    def listed(room):
        return room_users(api, room)
    try:

        async def run():
            a = await connect(gw, "stuck", room="r1")
            b = await connect(gw, "other", room="r1")
            await b.ws.send(json.dumps({"op": "join", "room": "r2"}))
            T.wait_until(lambda: listed("r1") == ["other", "stuck"] and listed("r2") == ["other"],
                         5, what="both listed")
            await a.ws.close()
            T.wait_until(lambda: users_conns(api, "stuck") == (200, []), 30,
                         what="the closed connection gone from shared presence")
            T.wait_until(lambda: len(users_conns(api, "other")[1]) == 1, 5,
                         what="the live user online under the new token")
            T.eq(T.parse_metric(gw.get("/metrics")[1], "wsgw_presence_renewals_total"), 1)
            T.wait_until(lambda: listed("r1") == ["other"] and listed("r2") == ["other"], 3,
                         what="the live member listed in its rooms under the new token")
            T.eq(metric(api, "wsapi_cluster_rooms_carried_total"), 2, "rooms carried over")
            await b.ws.close()
        asyncio.get_event_loop().run_until_complete(run())
    finally:
        relay.stop()


def test_room_changes_redis_refused_are_right_after_the_rebuild():
    """Redis refuses writes for a moment (maxmemory 1: OOM) while p leaves room "l" and joins
    room "j", and q leaves "m", its only room: the node's room writes fail, the gateway is
    rebuilt under a new token once Redis takes writes again, and each connection's re-sent
    Open carries its rooms as the gateway has them (Open.rooms; q's: "in no room"). The
    listings then follow the gateway, not the replaced token: p in "j" and "k", nobody in "l"
    and "m" (before: "l" and "m" listed p and q again from the replaced token's record, and
    "j" did not list p)."""
    r, apis, gws = cluster(napis=2, ngws=1, subset=2)

    async def run():
        p = await connect(gws[0], "p")
        q = await connect(gws[0], "q", room="m")
        for room in ("k", "l"):
            await p.ws.send(json.dumps({"op": "join", "room": room}))
        T.wait_until(lambda: room_users(apis[0], "k") == ["p"] and
                     room_users(apis[1], "l") == ["p"] and room_users(apis[0], "m") == ["q"],
                     5, what="p listed in k and l, q in m")
        rotated = sum(metric(a, "wsapi_cluster_token_events_total", {"event": "rotated"})
                      for a in apis)
        msgs = sum(metric(a, "wsapi_events_total", {"kind": "message"}) for a in apis)
        r.cmd("CONFIG", "SET", "maxmemory", "1")
        try:
            await p.ws.send(json.dumps({"op": "leave", "room": "l"}))
            await p.ws.send(json.dumps({"op": "join", "room": "j"}))
            await q.ws.send(json.dumps({"op": "leave", "room": "m"}))
            T.wait_until(lambda: sum(metric(a, "wsapi_events_total", {"kind": "message"})
                                     for a in apis) >= msgs + 3, 5,
                         what="the leave and the join read")
            await asyncio.sleep(0.3)  # (their writes refused)
        finally:
            r.cmd("CONFIG", "SET", "maxmemory", "0")
        T.wait_until(lambda: sum(metric(a, "wsapi_cluster_token_events_total",
                                        {"event": "rotated"}) for a in apis) > rotated, 5,
                     what="a new token for the gateway whose writes Redis refused")
        want = {"j": ["p"], "k": ["p"], "l": [], "m": []}

        def listings():
            return [{rm: room_users(a, rm) for rm in want} for a in apis]
        try:
            T.wait_until(lambda: listings() == [want, want], 5, what="the listings")
        except TimeoutError:
            T.eq(listings(), [want, want], "the listings of both nodes: as the gateway has them")
        await p.ws.close()
        await q.ws.close()
    asyncio.get_event_loop().run_until_complete(run())


def test_instance_renewals_are_at_most_one_per_interval():
    """Each renewal makes ws-api rebuild all of the gateway's presence, so an API that refuses
    every Close must not turn each closed connection into a rebuild: a node renews at most
    once per --presence-renew-interval (here 3 s), and a Close lost meanwhile waits for the
    next. stuck1 leaves; once its renewal came, stuck2 leaves: its Close is lost about a second
    later, and the second renewal comes only 3 s after the first (before: 1.5 s). Both ghosts
    go."""
    api, relay, gw = behind_relay(api_extra=["--presence-heartbeat", HB, "--presence-ttl", TTL],
                                  gw_extra=["--presence-renew-interval", "3s"])
    try:
        async def run():
            a = await connect(gw, "stuck1")
            b = await connect(gw, "stuck2")
            for u in ("stuck1", "stuck2"):
                T.wait_until(lambda: len(users_conns(api, u)[1]) == 1, 5, what=u + " online")
            first = relay.instances[0]
            await a.ws.close()
            T.wait_until(lambda: first + ".1" in relay.first_seen, 10, what="the first renewal")
            T.wait_until(lambda: users_conns(api, "stuck1") == (200, []), 5, what="stuck1 gone")
            await b.ws.close()
            T.wait_until(lambda: users_conns(api, "stuck2") == (200, []), 15, what="stuck2 gone")
            gap = relay.first_seen[first + ".2"] - relay.first_seen[first + ".1"]
            print("the second renewal came %.2fs after the first" % gap)
            T.check(gap >= 2.8, "at least the interval (3 s) apart: %.2fs" % gap)
            T.eq(T.parse_metric(gw.get("/metrics")[1], "wsgw_presence_renewals_total"), 2)
        asyncio.get_event_loop().run_until_complete(run())
    finally:
        relay.stop()



def test_pushes_to_a_user_right_after_a_rebuild_reach_it():
    """The other side of the rebuild: its resync done within milliseconds, the node's registry
    read still has the old token for up to a heartbeat (1 s), while the user's index entry is
    already under the new one. A push to the user must reach it (before, the entry was taken
    for a dead token's: {"gateways":0}). Only pushes here: a presence query would drop the
    entries it finds stale, which hides this."""
    api, relay, gw = behind_relay()
    try:
        async def run():
            a = await connect(gw, "stuck")
            b = await connect(gw, "other")
            T.wait_until(lambda: len(users_conns(api, "other")[1]) == 1, 5, what="other online")
            await a.ws.close()
            T.wait_until(lambda: relay.refusals >= 1, 5, what="the Close refused")
            seen, wrong = {}, 0
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                st, js = api.push(user_ids=["other"], data="p")
                got = (st, js.get("gateways") if st == 200 else js.get("error"))
                seen[got] = seen.get(got, 0) + 1
                wrong += got == (200, 0)
                await asyncio.sleep(0.01)
            print("pushes to the user around the rebuild:", seen)
            T.check(len(relay.instances) > 1 and relay.instances[-1].endswith(".1"),
                    "the presence was rebuilt meanwhile")
            T.eq(wrong, 0, "pushes that found a live user offline")
            await b.ws.close()
        asyncio.get_event_loop().run_until_complete(run())
    finally:
        relay.stop()

T.run(globals())
