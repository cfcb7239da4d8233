"""Presence per gateway session and presence sync on ws-api (issue 14, case 8 and the ws-api side
of case 2), with real processes: bin/ws-gateway, bin/ws-api, python3-websockets clients and
python3-grpcio stand-in gateways.

  - right after a ws-api restart, a push to an online user is delivered or refused 503 (with
    Retry-After), never answered 200 {"gateways":0};
  - every stream of a live gateway session fails at once (each message over ws-api's
    --max-message): the session's presence stays (GET /v1/users, pushes reach the user);
  - during --presence-grace every push/presence endpoint refuses (HTTP 503, gRPC 14), counted,
    with wsapi_presence_ready 0, then 1;
  - a session that announced x-wsgw-streams: N is synced once N streams said
    presence_complete; without the header at once; past --presence-sync-timeout anyway.

Issue 14 case 2 (no ghost presence after a client left while its node was down) is
test_delivery_faults.py's test_case2.

The grace and the sync timeout are set through WSAPI_PRESENCE_GRACE and
WSAPI_PRESENCE_SYNC_TIMEOUT (not the flags) so that the same tests run against a ws-api that does
not know them: there they fail for what they check, not for an unknown flag."""
import asyncio
import http.client
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import (SLOW, Gateway, check, eq, free_port, parse_metric, run, start,  # noqa: E402
                      wait_port, wait_until)
from test_api_exchange import Gateway as StandIn, ev_open, pb, pbg  # noqa: E402
import grpc  # noqa: E402

QUICK_EXIT = ["--drain-timeout", "2"]


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout * SLOW))


async def connect(url):
    return await websockets.connect(url, max_size=None, ping_interval=None)


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def start_api(gport=None, hport=None, grace="0", extra=(), env=None):
    """bin/ws-api on (gport, hport) (free ports when None), grace through the environment."""
    gport = gport or free_port()
    hport = hport or free_port()
    e = {"WSAPI_PRESENCE_GRACE": grace}
    e.update(env or {})
    p = start(["ws-api", "--grpc-listen", "127.0.0.1:%d" % gport, "--http-listen",
               "127.0.0.1:%d" % hport, "--handler", "echo"] + list(extra), env=e)
    wait_port(gport, proc=p)
    wait_port(hport, proc=p)
    return p, gport, hport


def req(hport, method, path, body=None, timeout=5):
    """(status, parsed JSON or text, Retry-After) of one request; (None, None, None) when the
    port does not answer."""
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=timeout)
    try:
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        raw = r.read().decode("utf-8", "replace")
    except OSError:
        return None, None, None
    finally:
        c.close()
    try:
        js = json.loads(raw)
    except ValueError:
        js = raw
    return r.status, js, r.getheader("Retry-After")


def api_metric(hport, name, labels=None):
    st, body, _ = req(hport, "GET", "/metrics")
    return parse_metric(body if isinstance(body, str) else "", name, labels)


def users(hport, user):
    """conn ids (ints) of user from GET /v1/users/{user}: None unless the answer is 200."""
    st, js, _ = req(hport, "GET", "/v1/users/" + user)
    if st != 200:
        return None
    return [int(c["conn_id"]) for c in js["connections"]]


def gw_route_stream(conn_id, nstreams):
    """gateway/route.h: the stream of a node that carries a connection."""
    h = (conn_id * 0x9e3779b97f4a7c15) & (2**64 - 1)
    return (h >> 32) % nstreams


def is_resyncing(st, js, retry):
    return st == 503 and js == {"error": "presence resyncing"} and retry == "1"


# ---- issue 14 case 8 ----------------------------------------------------------------------

def test_push_right_after_api_restart_is_delivered_or_refused():
    """A user is online; ws-api is killed (-9) and restarted on the same ports with the default
    grace (3 s); pushes to the user start as soon as its HTTP port answers, every 20 ms, until 1
    s after the first one accepted. Each answer is 200 with gateways >= 1 (and that push reaches
    the user) or 503 {"error":"presence resyncing"} with Retry-After: 1; never
    200 {"gateways":0} (before: 0.2-0.4 s of those, until the gateway had resent presence)."""
    api, gport, hport = start_api()
    gw = Gateway(["127.0.0.1:%d" % gport], extra=QUICK_EXIT)

    async def main():
        ws = await connect(gw.url("online"))
        await ws.send("hi")
        eq(await asyncio.wait_for(ws.recv(), 5), "hi")
        got = []

        async def reader():
            while True:
                try:
                    got.append(await ws.recv())
                except websockets.ConnectionClosed:
                    return
        rt = asyncio.create_task(reader())
        api.send_signal(signal.SIGKILL)
        api.wait()
        start_api(gport, hport, grace="3s")
        t_restart = time.monotonic()
        answers, t_first_ok, i = [], None, 0
        deadline = time.monotonic() + 12 * SLOW
        while time.monotonic() < deadline and (t_first_ok is None
                                               or time.monotonic() < t_first_ok + 1.0):
            st, js, retry = await in_thread(req, hport, "POST", "/v1/push",
                                            {"user_ids": ["online"], "data": "push%d" % i})
            if st is not None:
                answers.append((i, st, js, retry, time.monotonic() - t_restart))
                if st == 200 and t_first_ok is None:
                    t_first_ok = time.monotonic()
            i += 1
            await asyncio.sleep(0.02)
        accepted = ["push%d" % i for i, st, js, _, _ in answers
                    if st == 200 and isinstance(js, dict) and js.get("gateways", 0) >= 1]
        deadline = time.monotonic() + 5
        while not set(accepted) <= set(got) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await ws.close()
        await rt
        return answers, accepted, got
    answers, accepted, got = arun(main())
    zero = [(i, st, js) for i, st, js, _, _ in answers if st == 200 and js == {"gateways": 0}]
    other = [(i, st, js, r) for i, st, js, r, _ in answers
             if not (st == 200 and isinstance(js, dict)) and not is_resyncing(st, js, r)]
    refused = [a for a in answers if a[1] == 503]
    print("restart: %d answers, %d refused 503 (last at %.2f s after the restart), %d accepted "
          "(first at %.2f s)" % (len(answers), len(refused), refused[-1][4] if refused else 0,
                                 len(accepted),
                                 next((a[4] for a in answers if a[1] == 200), -1)), flush=True)
    eq(zero[:5], [], "%d of %d pushes to an online user answered 200 {\"gateways\":0}"
       % (len(zero), len(answers)))
    eq(other[:5], [], "answers other than 200 or 503 presence resyncing + Retry-After: 1")
    missing = [m for m in accepted if m not in got]
    eq(missing[:5], [], "%d accepted pushes never reached the user" % len(missing))
    check(accepted, "no push was accepted")
    eq(api_metric(hport, "wsapi_push_requests_total", {"code": "503"}), float(len(refused)))


# ---- every stream of a live session fails at once ---------------------------------------------

def test_all_streams_of_a_live_session_fail_presence_stays():
    """ws-api --max-message 1024; a gateway with 2 streams; two clients on different streams
    each send a 2000-byte message at once: ws-api fails both streams (grpc-status 8), so for a
    while the gateway's session has no stream. The gateway reopens them in the same session and
    does not resync (delivery.h I2), so ws-api must have kept the session's presence: the
    watcher, which did nothing, is still listed and reached by a push (before: dropped with
    the gateway's last stream, listed nowhere, pushes answered {"gateways":0})."""
    api, gport, hport = start_api(extra=["--max-message", "1024"])
    gw = Gateway(["127.0.0.1:%d" % gport], threads=1, streams=2, extra=QUICK_EXIT)

    async def main():
        watcher = await connect(gw.url("watcher"))
        await watcher.send("w")
        eq(await asyncio.wait_for(watcher.recv(), 5), "w")
        bombers, on = [], {}
        for k in range(40):  # one client per stream (gateway/route.h), by its conn id
            b = await connect(gw.url("bomber%d" % k))
            await b.send("b")
            eq(await asyncio.wait_for(b.recv(), 5), "b")
            ids = await in_thread(users, hport, "bomber%d" % k)
            st = gw_route_stream(ids[0], 2)
            if st in on:
                await b.close()
                continue
            on[st] = b
            bombers.append(b)
            if len(on) == 2:
                break
        eq(sorted(on), [0, 1], "a client on each stream")
        errs0 = api_metric(hport, "wsapi_decode_errors_total", {"reason": "oversize"})
        await asyncio.gather(*[b.send("x" * 2000) for b in bombers])
        await in_thread(lambda: wait_until(
            lambda: api_metric(hport, "wsapi_decode_errors_total", {"reason": "oversize"})
            >= errs0 + 2, 5, what="both streams failed"))
        # the bombers are told (1009 once their message is refused alone) ...
        for b in bombers:
            try:
                while True:
                    await asyncio.wait_for(b.recv(), 10)
            except websockets.ConnectionClosed as e:
                eq(e.rcvd.code if e.rcvd else None, 1009, "bomber close code")
        await in_thread(lambda: wait_until(
            lambda: api_metric(hport, "wsapi_gateway_streams") == 2, 5,
            what="both streams reopened"))
        # ... and the watcher is still there, without any resync
        ids = await in_thread(users, hport, "watcher")
        check(ids, "the watcher's presence was lost with its streams: %s" % ids)
        st, js, _ = await in_thread(req, hport, "POST", "/v1/push",
                                    {"user_ids": ["watcher"], "data": "still here"})
        eq((st, js), (200, {"gateways": 1}))
        eq(await asyncio.wait_for(watcher.recv(), 5), "still here")
        for k in range(2):
            eq(await in_thread(users, hport, "bomber%d" % k) or [], [], "bomber presence")
        await watcher.close()
    arun(main())
    eq(gw.metric("wsgw_upstream_lost_messages_total"), 2.0)


# ---- startup grace, ready gauge, sync ----------------------------------------------------------

def grpc_push(gport, user):
    with grpc.insecure_channel("127.0.0.1:%d" % gport) as ch:
        try:
            r = pbg.PushStub(ch).Push(pb.PushRequest(target=pb.Target(user_ids=[user]),
                                                     payload=b"x"), timeout=5)
            return grpc.StatusCode.OK, r.gateways
        except grpc.RpcError as e:
            return e.code(), e.details()


def test_grace_refuses_push_and_presence_then_ready():
    """--presence-grace 1s: until it is over, POST /v1/push and /v1/kick, GET /v1/users/{id}
    answer 503 {"error":"presence resyncing"} + Retry-After: 1 and gRPC Push UNAVAILABLE
    "presence resyncing", counted by code; a bad body is still 400; wsapi_presence_ready is 0,
    then 1 and pushes are answered."""
    api, gport, hport = start_api(grace="1s")
    t0 = time.monotonic()
    eq(api_metric(hport, "wsapi_presence_ready"), 0.0)
    for method, path, body in (("POST", "/v1/push", {"user_ids": ["u"], "data": "x"}),
                               ("POST", "/v1/kick", {"user_ids": ["u"]}),
                               ("GET", "/v1/users/u", None)):
        st, js, retry = req(hport, method, path, body)
        check(is_resyncing(st, js, retry), "%s %s during the grace: %s %s Retry-After %s"
              % (method, path, st, js, retry))
    eq(req(hport, "POST", "/v1/push", {"data": "no target"})[0], 400)
    eq(grpc_push(gport, "u"), (grpc.StatusCode.UNAVAILABLE, "presence resyncing"))
    st, js, retry = req(hport, "GET", "/readyz")
    eq((st, js, retry), (503, {"error": "presence resyncing"}, "1"))
    eq(req(hport, "GET", "/healthz")[0], 200)
    check(time.monotonic() - t0 < 0.9, "the checks above took too long to be inside the grace")
    eq(api_metric(hport, "wsapi_push_requests_total", {"code": "503"}), 3.0)
    eq(api_metric(hport, "wsapi_grpc_push_requests_total", {"status": "14"}), 1.0)
    wait_until(lambda: api_metric(hport, "wsapi_presence_ready") == 1.0, 3 * SLOW,
               what="wsapi_presence_ready 1 after the grace")
    check(time.monotonic() - t0 >= 0.9, "ready before the grace was over")
    eq(req(hport, "POST", "/v1/push", {"user_ids": ["u"], "data": "x"})[:2],
       (200, {"gateways": 0}))
    eq(req(hport, "GET", "/v1/users/u")[:2], (200, {"user_id": "u", "connections": []}))
    eq(grpc_push(gport, "u"), (grpc.StatusCode.OK, 0))
    eq(req(hport, "GET", "/readyz")[0], 200)


def test_session_sync_by_announced_streams():
    """A stand-in gateway announces x-wsgw-streams: 2: pushes are refused until both of its
    streams said presence_complete, then its user is reached; a stand-in without the header
    is synced at once; one that announces 3 streams and opens 1 holds pushes back only for
    --presence-sync-timeout (counted)."""
    api, gport, hport = start_api(env={"WSAPI_PRESENCE_SYNC_TIMEOUT": "1s"})
    third = StandIn(gport, "third-party")  # no header: synced at once
    t = third.stream()
    t.wait_ack(t.send([ev_open(1, "tp", "third-party")]))
    eq(req(hport, "POST", "/v1/push", {"user_ids": ["tp"], "data": "x"})[:2],
       (200, {"gateways": 1}))
    bad = StandIn(gport, "bad-header", metadata=[("x-wsgw-streams", "+2")])  # as without it
    b = bad.stream()
    b.wait_ack(b.send([ev_open(2, "bh", "bad-header")]))
    eq(req(hport, "POST", "/v1/push", {"user_ids": ["bh"], "data": "x"})[:2],
       (200, {"gateways": 1}))
    eq(api_metric(hport, "wsapi_presence_bad_streams_header_total"), 1.0)

    gw = StandIn(gport, "gw-two", metadata=[("x-wsgw-streams", "2")])
    s1, s2 = gw.stream(), gw.stream()
    s1.wait_ack(s1.send([ev_open(10, "alice", "gw-two")], presence_complete=True))
    check(is_resyncing(*req(hport, "POST", "/v1/push", {"user_ids": ["alice"], "data": "x"})),
          "push answered while one of two streams had not said presence_complete")
    eq((api_metric(hport, "wsapi_presence_ready"),
        api_metric(hport, "wsapi_presence_unsynced_sessions")), (0.0, 1.0))
    s1.wait_ack(s1.send([], presence_complete=True))  # the same stream again: still 1 of 2
    eq(req(hport, "POST", "/v1/push", {"user_ids": ["alice"], "data": "x"})[0], 503)
    s2.wait_ack(s2.send([ev_open(11, "bob", "gw-two")], presence_complete=True))
    eq(req(hport, "POST", "/v1/push", {"user_ids": ["alice", "bob"], "data": "x"})[:2],
       (200, {"gateways": 1}))
    eq(api_metric(hport, "wsapi_presence_ready"), 1.0)

    stuck = StandIn(gport, "gw-stuck", metadata=[("x-wsgw-streams", "3")])
    u = stuck.stream()
    u.wait_ack(u.send([ev_open(20, "carol", "gw-stuck")], presence_complete=True))
    t0 = time.monotonic()
    eq(req(hport, "POST", "/v1/push", {"user_ids": ["carol"], "data": "x"})[0], 503)
    wait_until(lambda: req(hport, "POST", "/v1/push",
                            {"user_ids": ["carol"], "data": "x"})[0] == 200, 5 * SLOW,
               what="the sync timeout")
    check(time.monotonic() - t0 > 0.5, "the stuck session did not hold pushes back")
    eq(api_metric(hport, "wsapi_presence_sync_timeouts_total"), 1.0)
    for g in (third, bad, gw, stuck):
        g.close()


if __name__ == "__main__":
    run(globals())
