"""gRPC wsgw.v1.Admin on ws-api (Kick, UserPresence, RoomPresence) and HTTP GET /v1/rooms/{room},
with grpcio as the admin client, the real gateway and python3-websockets users (issue 17
item 8: Kick and presence existed only over HTTP, rooms had no presence query)."""
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import grpc  # noqa: E402
import websockets  # noqa: E402
from wsgwtest import Api, Gateway, check, eq, parse_metric, proto, run  # noqa: E402

pb, pbg = proto()


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(gw, user):
    return await websockets.connect(gw.url(user), ping_interval=None)


async def settle(api, pred, what, timeout=10):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        check(asyncio.get_running_loop().time() < deadline, "timed out: " + what)
        await asyncio.sleep(0.05)


def admin(api, token=None):
    ch = grpc.insecure_channel(api.grpc_addr)
    md = (("authorization", "Bearer " + token),) if token else None
    return ch, pbg.AdminStub(ch), md


def room_presence(stub, room, md=None):
    return stub.RoomPresence(pb.RoomPresenceRequest(room=room), timeout=10, metadata=md)


def test_user_and_room_presence_grpc_and_http():
    api = Api(handler="chat")
    gw = Gateway([api.grpc_addr])
    ch, stub, _ = admin(api)

    async def go():
        a1, a2, b = await connect(gw, "alice"), await connect(gw, "alice"), await connect(gw, "bob")
        await settle(api, lambda: len(api.conns_of("alice")) == 2 and api.conns_of("bob"), "opens")
        up = stub.UserPresence(pb.UserPresenceRequest(user_id="alice"), timeout=10)
        eq(up.user_id, "alice")
        eq(sorted(c.conn_id for c in up.connections), sorted(api.conns_of("alice")))
        check(all(c.user_id == "alice" and c.gateway_id for c in up.connections), up)
        eq(len(stub.UserPresence(pb.UserPresenceRequest(user_id="nobody"), timeout=10)
               .connections), 0)
        for w in (a1, b):
            await w.send(json.dumps({"op": "join", "room": "lobby"}))
        await w.send(json.dumps({"op": "say", "room": "lobby", "text": "x"}))
        await asyncio.wait_for(b.recv(), 10)  # the joins are done when the said came back
        rp = room_presence(stub, "lobby")
        eq((rp.room, rp.count), ("lobby", 2))
        eq(sorted(m.user_id for m in rp.members), ["alice", "bob"])
        check(all(m.conn_id and m.gateway_id for m in rp.members), rp)
        st, js = api.http("GET", "/v1/rooms/lobby")
        eq(st, 200, js)
        eq((js["room"], js["count"]), ("lobby", 2))
        eq(sorted(m["user_id"] for m in js["members"]), ["alice", "bob"])
        eq({m["conn_id"] for m in js["members"]}, {str(m.conn_id) for m in rp.members})
        # leave, close: the room follows; an empty room is an answer, not an error
        await b.send(json.dumps({"op": "leave", "room": "lobby"}))
        await b.send("sync")
        eq(await asyncio.wait_for(b.recv(), 10), "sync")
        eq(room_presence(stub, "lobby").count, 1)
        await a1.close()
        await settle(api, lambda: len(api.conns_of("alice")) == 1, "alice's close")
        eq(room_presence(stub, "lobby").count, 0)
        eq(api.http("GET", "/v1/rooms/lobby"), (200, {"room": "lobby", "count": 0,
                                                      "members": []}))
        eq(api.http("GET", "/v1/rooms/")[0], 404)
        await a2.close()
        await b.close()
    try:
        arun(go())
    finally:
        ch.close()


def test_kick_and_errors():
    token = "admin-secret"
    api = Api(handler="echo", extra=["--push-token", token])
    gw = Gateway([api.grpc_addr])
    ch, stub, md = admin(api, token)

    async def go():
        ws = await connect(gw, "carol")
        await settle(api, lambda: stub.UserPresence(pb.UserPresenceRequest(user_id="carol"),
                                                    timeout=10, metadata=md).connections,
                     "carol open")
        # wrong or missing token: UNAUTHENTICATED, like Push
        for bad in (None, (("authorization", "Bearer nope"),)):
            try:
                stub.UserPresence(pb.UserPresenceRequest(user_id="carol"), timeout=10,
                                  metadata=bad)
                check(False, "no token accepted")
            except grpc.RpcError as e:
                eq(e.code(), grpc.StatusCode.UNAUTHENTICATED)
        # invalid requests: INVALID_ARGUMENT, nothing kicked
        for req in (pb.KickRequest(), pb.KickRequest(target=pb.Target(user_ids=["carol"]),
                                                     code=1006),
                    pb.KickRequest(target=pb.Target(user_ids=["carol"]), reason="x" * 124)):
            try:
                stub.Kick(req, timeout=10, metadata=md)
                check(False, "accepted %r" % req)
            except grpc.RpcError as e:
                eq(e.code(), grpc.StatusCode.INVALID_ARGUMENT, str(req))
        for call, req in ((stub.UserPresence, pb.UserPresenceRequest()),
                          (stub.RoomPresence, pb.RoomPresenceRequest())):
            try:
                call(req, timeout=10, metadata=md)
                check(False, "accepted an empty name")
            except grpc.RpcError as e:
                eq(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
        rep = stub.Kick(pb.KickRequest(target=pb.Target(user_ids=["carol"]), code=4010,
                                       reason="admin says bye"), timeout=10, metadata=md)
        eq(rep.gateways, 1)
        try:
            await asyncio.wait_for(ws.recv(), 10)
            check(False, "not kicked")
        except websockets.ConnectionClosed as e:
            eq((e.code, e.reason), (4010, "admin says bye"))
    try:
        arun(go())
    finally:
        ch.close()
    _, body = api.http("GET", "/metrics", headers={"authorization": "Bearer " + token})
    eq(parse_metric(body, "wsapi_grpc_admin_requests_total", {"method": "Kick", "status": "0"}),
       1.0)
    eq(parse_metric(body, "wsapi_grpc_admin_requests_total", {"method": "Kick", "status": "3"}),
       3.0)


def test_resyncing_presence_is_not_answered():
    """While presence is not whole (--presence-grace after start) Admin answers UNAVAILABLE and
    GET /v1/rooms 503, as Push does: an online user must not look offline."""
    api = Api(handler="chat", env={"WSAPI_PRESENCE_GRACE": "30s"})
    ch, stub, _ = admin(api)
    try:
        for call, req in ((stub.RoomPresence, pb.RoomPresenceRequest(room="r")),
                          (stub.UserPresence, pb.UserPresenceRequest(user_id="u")),
                          (stub.Kick, pb.KickRequest(target=pb.Target(all=True)))):
            try:
                call(req, timeout=10)
                check(False, "answered while resyncing")
            except grpc.RpcError as e:
                eq((e.code(), e.details()), (grpc.StatusCode.UNAVAILABLE, "presence resyncing"))
    finally:
        ch.close()
    st, js = api.http("GET", "/v1/rooms/r")
    eq((st, js), (503, {"error": "presence resyncing"}))


def room_members(api, room):
    """(status, sorted user ids) of GET /v1/rooms/{room}."""
    st, js = api.http("GET", "/v1/rooms/" + room)
    return st, sorted(m["user_id"] for m in js["members"]) if st == 200 else js


async def joined(ws, *rooms):
    """ws joins rooms; done when a later echo comes back (its Joins went out before it)."""
    for r in rooms:
        await ws.send(json.dumps({"op": "join", "room": r}))
    await ws.send("sync")
    eq(await asyncio.wait_for(ws.recv(), 10), "sync")


def test_room_memberships_come_back_after_an_api_restart():
    """ws-api (chat handler, no Redis) killed and started again: the gateway's presence resync
    carries each connection's rooms (Open.rooms), so GET /v1/rooms and RoomPresence list the
    members again (before: nobody until they joined again, though the rooms kept delivering).
    What came back behaves like a join (leave, close); started again with a lower
    --max-rooms-per-conn, the memberships over it are refused and counted."""
    api = Api(handler="chat")
    gw = Gateway([api.grpc_addr])
    ports = (api.grpc_port, api.http_port)

    def restart(old, extra=()):
        old.proc.kill()
        old.proc.wait()
        return Api(handler="chat", extra=list(extra), ports=ports)

    async def settle_rooms(a, want):
        await settle(a, lambda: all(room_members(a, r) == (200, m) for r, m in want.items()),
                     "room listings %r" % want)

    async def go():
        a, b = await connect(gw, "alice"), await connect(gw, "bob")
        await joined(a, "lobby", "r2")
        await joined(b, "lobby")
        want = {"lobby": ["alice", "bob"], "r2": ["alice"]}
        eq({r: room_members(api, r) for r in want}, {r: (200, m) for r, m in want.items()})
        api2 = restart(api)
        await settle_rooms(api2, want)
        eq(api2.metric("wsapi_rooms_restored_total", {"result": "recorded"}), 3.0)
        eq(api2.metric("wsapi_rooms_restored_total", {"result": "refused"}), 0.0)
        ch, stub, _ = admin(api2)
        try:
            rp = room_presence(stub, "lobby")
            eq(sorted(m.user_id for m in rp.members), ["alice", "bob"])
        finally:
            ch.close()
        # the rooms delivered all along; a restored membership leaves like a joined one
        await b.send(json.dumps({"op": "say", "room": "lobby", "text": "hi"}))
        for w in (a, b):
            got = json.loads(await asyncio.wait_for(w.recv(), 10))
            eq((got["op"], got["from"], got["text"]), ("said", "bob", "hi"))
        await b.send(json.dumps({"op": "leave", "room": "lobby"}))
        await joined(b)
        eq(room_members(api2, "lobby"), (200, ["alice"]))
        # over the node's limit: alice is in 2 rooms, the node takes 1 per connection
        api3 = restart(api2, ["--max-rooms-per-conn", "1"])
        await settle(api3, lambda: api3.metric("wsapi_rooms_restored_total",
                                               {"result": "refused"}) == 1.0, "a refusal")
        eq(api3.metric("wsapi_rooms_restored_total", {"result": "recorded"}), 1.0)
        eq(sum(len(room_members(api3, r)[1]) for r in ("lobby", "r2")), 1)
        await a.close()
        await settle(api3, lambda: all(room_members(api3, r) == (200, []) for r in want),
                     "alice's close empties her room")
        await b.close()
    arun(go())


def test_restored_memberships_are_listed_by_one_node_each():
    """Two ws-api nodes (chat, no Redis), six users in one room: each member is listed by
    exactly one node (the one its joins went to; README "Rooms and presence"). Both nodes are
    killed and started again: the gateway sends each connection's rooms to the one node its
    messages go to, so the two listings add up to the six members again, none twice (rooms
    sent to every node would list each member twice)."""
    apis = [Api(handler="chat"), Api(handler="chat")]
    gw = Gateway([a.grpc_addr for a in apis])
    users = ["u%d" % i for i in range(6)]

    def listed(nodes):
        out = []
        for a in nodes:
            st, js = a.http("GET", "/v1/rooms/lobby")
            if st != 200:
                return None
            out += [(m["user_id"], m["conn_id"]) for m in js["members"]]
        return sorted(out)

    async def go():
        wss = [await connect(gw, u) for u in users]
        for w in wss:
            await joined(w, "lobby")
        before = listed(apis)
        eq([u for u, _ in before], users)
        per_node = [len(listed([a])) for a in apis]
        check(all(per_node), "both nodes have members: %r" % per_node)
        again = []
        for a in apis:
            a.proc.kill()
            a.proc.wait()
        for a in apis:
            again.append(Api(handler="chat", ports=(a.grpc_port, a.http_port)))
        await settle(again[0], lambda: listed(again) == before,
                     "the six listed once each again (%r)" % (listed(again),))
        eq(sum(n.metric("wsapi_rooms_restored_total", {"result": "recorded"}) for n in again),
           6.0)
        for w in wss:
            await w.close()
    arun(go())


if __name__ == "__main__":
    run(globals())
