"""ws-api's HTTP/1.1 push API against grpcio gateway stand-ins: push text/binary to conn, user,
room, all (which gateway and which stream receives what), kick, presence via GET /v1/users,
a gateway leaving, request errors (400/404/405/413), the push token (401 / grpc 16),
/healthz and /metrics."""
import base64
import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_api_exchange import (Gateway, ev_close, ev_open, finish, metric, pb,  # noqa: E402
                               pbg, start_api, w)

import grpc  # noqa: E402


def req(port, method, path, body=None, headers=None):
    """One HTTP request; returns (status, parsed JSON or text, response headers)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    ctype = r.getheader("Content-Type", "")
    if ctype.startswith("application/json"):
        return r.status, json.loads(data), r
    return r.status, data.decode(errors="replace"), r


def settle(streams, quiet=0.3):
    """Collects what arrives until nothing came for `quiet` seconds."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        before = sum(len(s.commands) for s in streams)
        for s in streams:
            s.pump(quiet / len(streams))
        if sum(len(s.commands) for s in streams) == before:
            return


class World:
    """Gateway A with streams a1, a2; gateway B with stream b1.
    conn 1 alice via a1, conn 2 bob via a2, conn 3 alice via b1."""

    def __init__(self, *extra):
        self.p, self.gp, self.hp = start_api(*extra)
        self.A, self.B = Gateway(self.gp, "gw-A"), Gateway(self.gp, "gw-B")
        self.a1, self.a2, self.b1 = self.A.stream(), self.A.stream(), self.B.stream()
        self.a1.send([ev_open(1, "alice", "gw-A")])
        self.a2.send([ev_open(2, "bob", "gw-A")])
        self.b1.send([ev_open(3, "alice", "gw-B")])
        for s in (self.a1, self.a2, self.b1):
            s.wait_ack(1)
        self.all = [self.a1, self.a2, self.b1]

    def push(self, body, **kw):
        return req(self.hp, "POST", "/v1/push", body, **kw)

    def received(self):
        """{stream name: [commands]} of everything that arrived since the last call."""
        settle(self.all)
        return {n: s.take() for n, s in zip(("a1", "a2", "b1"), self.all)}

    def close(self):
        self.A.close()
        self.B.close()
        finish(self.p)


def only(got, name):
    """The commands of stream `name`, checking that the others received nothing."""
    for n, cmds in got.items():
        if n != name:
            w.eq(cmds, [], "stream %s must receive nothing" % n)
    return got[name]


def test_push_to_conn_user_room_all():
    wd = World()
    # conn: only the stream bob's Open came on
    st, body, _ = wd.push({"conn_ids": [2], "data": "to bob"})
    w.eq((st, body), (200, {"gateways": 1}))
    cmds = only(wd.received(), "a2")
    w.eq(len(cmds), 1)
    s = cmds[0].send
    w.eq((list(s.target.conn_ids), s.payload, s.binary), ([2], b"to bob", False))
    w.check(s.api_ns > 0, "api_ns set")
    # conn id as a decimal string (uint64 beyond JS safe integers), binary payload
    st, body, _ = wd.push({"conn_ids": ["3", "18446744073709551615"],
                           "data_base64": base64.b64encode(b"\x00\x01bin").decode()})
    w.eq((st, body), (200, {"gateways": 1}))
    s = only(wd.received(), "b1")[0].send
    w.eq((list(s.target.conn_ids), s.payload, s.binary), ([3], b"\x00\x01bin", True))
    # user: both gateways holding alice, user_ids kept as the target
    st, body, _ = wd.push({"user_ids": ["alice"], "data": "hi alice"})
    w.eq((st, body), (200, {"gateways": 2}))
    got = wd.received()
    w.eq(got["a2"], [])
    w.eq([list(c.send.target.user_ids) for c in got["a1"]], [["alice"]])
    w.eq([list(c.send.target.user_ids) for c in got["b1"]], [["alice"]])
    # user held by gateway A only
    st, body, _ = wd.push({"user_ids": ["bob", "nobody"], "data": "x"})
    w.eq((st, body), (200, {"gateways": 1}))
    w.eq([list(c.send.target.user_ids) for c in only(wd.received(), "a2")], [["bob"]])
    # unknown targets only: 0 gateways
    st, body, _ = wd.push({"conn_ids": [99], "user_ids": ["nobody"], "data": "x"})
    w.eq((st, body), (200, {"gateways": 0}))
    w.eq(sum(len(c) for c in wd.received().values()), 0)
    # room and all: every gateway, exactly one command each
    for target, check in (({"room": "lobby"}, lambda t: t.room == "lobby" and not t.all),
                          ({"all": True}, lambda t: t.all and t.room == "")):
        st, body, _ = wd.push(dict(target, data_base64=base64.b64encode(b"\xff").decode()))
        w.eq((st, body), (200, {"gateways": 2}))
        got = wd.received()
        w.eq(len(got["a1"]) + len(got["a2"]), 1, "gateway A gets it once")
        w.eq(len(got["b1"]), 1, "gateway B gets it once")
        for c in got["a1"] + got["a2"] + got["b1"]:
            w.check(check(c.send.target), "target %s" % c.send.target)
            w.eq((c.send.payload, c.send.binary), (b"\xff", True))
    w.eq(metric(wd.hp, 'wsapi_push_requests_total{code="200"}'), 7.0)
    wd.close()


def test_kick():
    wd = World()
    st, body, _ = wd.push({"conn_ids": [1], "data": "x"})  # warm-up
    wd.received()
    st, body, _ = req(wd.hp, "POST", "/v1/kick", {"user_ids": ["bob"], "code": 4001,
                                                  "reason": "go away"})
    w.eq((st, body), (200, {"gateways": 1}))
    k = only(wd.received(), "a2")[0]
    w.eq(k.WhichOneof("kind"), "kick")
    w.eq((list(k.kick.target.user_ids), k.kick.code, k.kick.reason), (["bob"], 4001, "go away"))
    st, body, _ = req(wd.hp, "POST", "/v1/kick", {"conn_ids": ["3"]})
    w.eq((st, body), (200, {"gateways": 1}))
    k = only(wd.received(), "b1")[0]
    w.eq((list(k.kick.target.conn_ids), k.kick.code), ([3], 4000))
    st, body, _ = req(wd.hp, "POST", "/v1/kick", {"conn_ids": [1], "code": 1006})
    w.eq(st, 400)
    w.check("code" in body["error"], body)
    wd.close()


def test_presence_users_and_gateway_leaving():
    wd = World()
    st, body, _ = req(wd.hp, "GET", "/v1/users/alice")
    w.eq(st, 200)
    w.eq(body["user_id"], "alice")
    w.eq(sorted((c["conn_id"], c["gateway_id"]) for c in body["connections"]),
         [("1", "gw-A"), ("3", "gw-B")])
    st, body, _ = req(wd.hp, "GET", "/v1/users/nobody")
    w.eq((st, body), (200, {"user_id": "nobody", "connections": []}))
    w.eq(metric(wd.hp, "wsapi_presence_connections"), 3.0)
    w.eq(metric(wd.hp, "wsapi_gateway_streams"), 3.0)
    w.eq(metric(wd.hp, "wsapi_gateways"), 2.0)
    # a Close event removes one connection
    seq = wd.a2.send([ev_close(2)])
    wd.a2.wait_ack(seq)
    w.eq(req(wd.hp, "GET", "/v1/users/bob")[1]["connections"], [])
    # one of A's two streams goes: A stays (alice's conn 1 falls back to a2)
    wd.a1.close()
    w.wait_until(lambda: metric(wd.hp, "wsapi_gateway_streams") == 2.0, what="a1 gone")
    st, body, _ = wd.push({"conn_ids": [1], "data": "via a2"})
    w.eq(body, {"gateways": 1})
    w.eq(wd.a2.wait_commands(1)[0].send.payload, b"via a2")
    wd.a2.take()
    # gateway B leaves entirely: its connections leave presence
    wd.B.close()
    w.wait_until(lambda: len(req(wd.hp, "GET", "/v1/users/alice")[1]["connections"]) == 1,
                 what="gateway B's connections gone")
    w.eq(req(wd.hp, "GET", "/v1/users/alice")[1]["connections"],
         [{"conn_id": "1", "gateway_id": "gw-A"}])
    w.eq(metric(wd.hp, "wsapi_presence_connections"), 1.0)
    w.eq(metric(wd.hp, "wsapi_gateways"), 1.0)
    st, body, _ = wd.push({"all": True, "data": "x"})
    w.eq(body, {"gateways": 1})
    # B reconnects and re-sends Open
    B2 = Gateway(wd.gp, "gw-B")
    b = B2.stream()
    b.send([ev_open(3, "alice", "gw-B")])
    b.wait_ack(1)
    w.eq(len(req(wd.hp, "GET", "/v1/users/alice")[1]["connections"]), 2)
    B2.close()
    wd.close()


def test_request_errors():
    p, gp, hp = start_api("--max-body", "4096")

    def bad(body, status, fragment, path="/v1/push", method="POST"):
        st, b, r = req(hp, method, path, body)
        w.eq(st, status, "for %r" % (body,))
        w.check(r.getheader("Content-Type", "").startswith("application/json"), "JSON error")
        w.check(fragment in b.get("error", ""), "error %r lacks %r" % (b, fragment))

    bad(b"{not json", 400, "bad JSON")
    bad(b"", 400, "bad JSON")
    bad({"data": "x"}, 400, "empty target")
    bad({"conn_ids": [], "data": "x"}, 400, "empty target")
    bad({"all": True, "data": "x", "data_base64": "eA=="}, 400, "not both")
    bad({"all": True}, 400, "data or data_base64")
    bad({"all": True, "data_base64": "%%%"}, 400, "base64")
    bad({"conn_ids": [-5], "data": "x"}, 400, "conn_ids[0]")
    bad({"all": True, "data": "x" * 5000}, 413, "larger than 4096")
    bad(None, 404, "not found", path="/v1/nothing", method="GET")
    bad({"all": True, "data": "x"}, 404, "not found", path="/v2/push")
    bad(None, 405, "use POST", path="/v1/push", method="GET")
    bad({"x": 1}, 405, "use GET", path="/v1/users/u")
    # keep-alive: several requests on one connection
    c = http.client.HTTPConnection("127.0.0.1", hp, timeout=10)
    for i in range(3):
        c.request("POST", "/v1/push", body=json.dumps({"all": True, "data": str(i)}))
        r = c.getresponse()
        w.eq((r.status, json.loads(r.read())), (200, {"gateways": 0}))
    c.close()
    st, text, _ = req(hp, "GET", "/healthz")
    w.eq((st, text), (200, "ok\n"))
    st, text, r = req(hp, "GET", "/metrics")
    w.eq(st, 200)
    w.check(r.getheader("Content-Type").startswith("text/plain"), "metrics content type")
    for name in ("wsapi_gateway_streams", 'wsapi_events_total{kind="open"}',
                 'wsapi_push_requests_total{code="400"}', "wsapi_presence_connections"):
        w.check(name in text, "metrics lack %s" % name)
    w.eq(metric(hp, 'wsapi_push_requests_total{code="400"}'), 8.0)
    w.eq(metric(hp, 'wsapi_push_requests_total{code="413"}'), 1.0)
    finish(p)


def test_push_token():
    wd = World("--push-token", "s3cret")
    st, body, _ = wd.push({"all": True, "data": "x"})
    w.eq(st, 401)
    w.check("token" in body["error"], body)
    st, body, _ = wd.push({"all": True, "data": "x"}, headers={"Authorization": "Bearer nope"})
    w.eq(st, 401)
    st, body, _ = req(wd.hp, "GET", "/v1/users/alice")
    w.eq(st, 401)
    st, body, _ = wd.push({"all": True, "data": "x"}, headers={"Authorization": "Bearer s3cret"})
    w.eq((st, body), (200, {"gateways": 2}))
    w.eq(req(wd.hp, "GET", "/healthz")[0], 200, "healthz needs no token")
    ch = grpc.insecure_channel("127.0.0.1:%d" % wd.gp)
    push = pbg.PushStub(ch)
    try:
        push.Push(pb.PushRequest(target=pb.Target(all=True), payload=b"x"), timeout=10)
        raise AssertionError("push without token accepted")
    except grpc.RpcError as e:
        w.eq(e.code(), grpc.StatusCode.UNAUTHENTICATED)
    r = push.Push(pb.PushRequest(target=pb.Target(all=True), payload=b"x"), timeout=10,
                  metadata=[("authorization", "Bearer s3cret")])
    w.eq(r.gateways, 2)
    ch.close()
    wd.close()


if __name__ == "__main__":
    w.run(globals())
