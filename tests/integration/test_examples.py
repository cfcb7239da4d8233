"""The example API services (examples/python/api_server.py with grpcio, examples/node/api_server.js
with @grpc/grpc-js, examples/go/api_server.go with grpc-go) behind the real bin/ws-gateway, driven by python3-websockets clients:
echo in order (text and binary), a chat room round trip with leave, a room spanning two
gateways, and the delivery contract checked from a grpcio stand-in gateway (the x-wsgw-ack
header, Downstream.ack = Upstream.seq, a replayed Message dropped as a duplicate).

The Node example's packages are installed with `npm ci --prefer-offline` from
examples/node/package-lock.json into $BUILD/node-example (never into the repository); its tests
are skipped, with a message, only where npm is missing. The Go example is built by
examples/go/build.sh into $BUILD/go-example from Debian's packages (GOPATH mode, offline); they
are installed here when missing and we are root, and its tests are skipped, with a message,
only where they cannot be had."""
import asyncio
import filecmp
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import (BUILD, ROOT, SLOW, Gateway, check, eq, free_port, proc_log, proto,  # noqa: E402
                      run, start, wait_port, wait_until)

PY = "/usr/bin/python3"
NODE_DIR = os.path.join(BUILD, "node-example")
GO_DIR = os.path.join(BUILD, "go-example")
GO_PACKAGES = ["golang-go", "protobuf-compiler", "protoc-gen-go", "protoc-gen-go-grpc",
               "golang-google-grpc-dev", "golang-github-golang-protobuf-1-5-dev"]
_go_bin = []


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout * SLOW))


async def connect(url):
    return await websockets.connect(url, max_size=None, ping_interval=None)


async def recv(ws, timeout=10):
    return await asyncio.wait_for(ws.recv(), timeout)


async def silent(ws, t=0.4):
    """True when nothing arrives on ws within t seconds."""
    try:
        await asyncio.wait_for(ws.recv(), t)
        return False
    except asyncio.TimeoutError:
        return True


# ---- starting the examples ----------------------------------------------------------------

def node_modules():
    """$BUILD/node-example/node_modules installed from the committed lock file (npm ci), or None
    (with a printed reason) when npm is missing. Re-installs only when the lock file changed."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        print("skip: npm/node not found: the Node example needs Node.js and npm "
              "(Debian packages nodejs and npm)", flush=True)
        return None
    src = os.path.join(ROOT, "examples", "node")
    lock = os.path.join(NODE_DIR, "package-lock.json")
    mods = os.path.join(NODE_DIR, "node_modules")
    if (os.path.isdir(os.path.join(mods, "@grpc", "grpc-js")) and os.path.exists(lock)
            and filecmp.cmp(lock, os.path.join(src, "package-lock.json"), shallow=False)):
        return mods
    os.makedirs(NODE_DIR, exist_ok=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(src, f), os.path.join(NODE_DIR, f))
    r = subprocess.run([npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, "npm ci in %s failed:\n%s%s" % (NODE_DIR, r.stdout, r.stderr))
    return mods


def go_binary():
    """$BUILD/go-example/bin/api_server built by examples/go/build.sh (once per run), or None
    (with a printed reason) when Debian's Go packages are missing and cannot be installed."""
    if _go_bin:
        return _go_bin[0]
    script = os.path.join(ROOT, "examples", "go", "build.sh")
    r = subprocess.run(["bash", script, GO_DIR], capture_output=True, text=True, timeout=300)
    if r.returncode == 3 and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] +
                       GO_PACKAGES, capture_output=True, env=env, timeout=600)
        r = subprocess.run(["bash", script, GO_DIR], capture_output=True, text=True,
                           timeout=300)
    if r.returncode == 3:
        print("skip: the Go example needs Debian packages %s: %s"
              % (" ".join(GO_PACKAGES), r.stderr.strip()), flush=True)
        return None
    check(r.returncode == 0, "examples/go/build.sh failed:\n%s%s" % (r.stdout, r.stderr))
    _go_bin.append(r.stdout.strip().splitlines()[-1])
    return _go_bin[0]


def start_example(lang, handler="chat"):
    """Starts an example API server on a free port; returns its address, or None when skipped."""
    port = free_port()
    addr = "127.0.0.1:%d" % port
    if lang == "python":
        p = start([PY, os.path.join(ROOT, "examples", "python", "api_server.py"),
                   "--listen", addr, "--handler", handler], name="example-python")
    elif lang == "go":
        exe = go_binary()
        if exe is None:
            return None
        p = start([exe, "--listen", addr, "--handler", handler], name="example-go")
    else:
        mods = node_modules()
        if mods is None:
            return None
        p = start([shutil.which("node"), os.path.join(ROOT, "examples", "node", "api_server.js"),
                   "--listen", addr, "--handler", handler], env={"NODE_PATH": mods},
                  name="example-node")
    wait_port(port, proc=p, timeout=20)
    return addr


# ---- the tests, once per language ---------------------------------------------------------

def echo_and_chat(lang):
    addr = start_example(lang)
    if not addr:
        return
    gw = Gateway([addr], threads=2)

    async def main():
        # echo: 3 clients x 50 messages, text and binary, in order
        async def echo_client(i):
            ws = await connect(gw.url("echo%d" % i))
            sent = [("m%d-%d é" % (i, k)) if k % 2 else bytes([i, k, 0, 255]) for k in range(50)]
            for m in sent:
                await ws.send(m)
            got = [await recv(ws) for _ in sent]
            await ws.close()
            return got == sent
        eq(await asyncio.gather(*[echo_client(i) for i in range(3)]), [True] * 3)
        # "op":"say" without text and non-JSON text are echoed like ws-api's chat handler does
        a = await connect(gw.url("alice"))
        b = await connect(gw.url("bob"))
        c = await connect(gw.url("carol"))
        await a.send('{"op":"say","room":"r"}')
        eq(await recv(a), '{"op":"say","room":"r"}')
        # chat: alice and bob join r1, carol does not
        await a.send(json.dumps({"op": "join", "room": "r1"}))
        await b.send(json.dumps({"op": "join", "room": "r1"}))
        await asyncio.sleep(0.3)
        await a.send(json.dumps({"op": "say", "room": "r1", "text": "hello ünïcode"}))
        want = {"op": "said", "room": "r1", "from": "alice", "text": "hello ünïcode"}
        eq(json.loads(await recv(a)), want)
        eq(json.loads(await recv(b)), want)
        check(await silent(c), "carol is not in r1 but got a message")
        # bob leaves: only alice hears the next one
        await b.send(json.dumps({"op": "leave", "room": "r1"}))
        await asyncio.sleep(0.3)
        await c.send(json.dumps({"op": "say", "room": "r1", "text": "from outside"}))
        eq(json.loads(await recv(a)), {"op": "said", "room": "r1", "from": "carol",
                                       "text": "from outside"})
        check(await silent(b), "bob left r1 but still got a message")
        check(await silent(c), "carol is not a member but got her own message")
        for w in (a, b, c):
            await w.close()
    arun(main())
    eq(gw.metric("wsgw_upstream_lost_messages_total"), 0.0)
    eq(gw.metric("wsgw_upstream_connected", {"node": addr}), 1.0)


def room_across_two_gateways(lang):
    addr = start_example(lang)
    if not addr:
        return
    g1 = Gateway([addr], threads=1, extra=["--gateway-id", "gw-one"])
    g2 = Gateway([addr], threads=1, extra=["--gateway-id", "gw-two"])

    async def main():
        a = await connect(g1.url("ann"))
        b = await connect(g2.url("ben"))
        for w in (a, b):
            await w.send(json.dumps({"op": "join", "room": "lobby"}))
        await asyncio.sleep(0.3)
        await b.send(json.dumps({"op": "say", "room": "lobby", "text": "across"}))
        want = {"op": "said", "room": "lobby", "from": "ben", "text": "across"}
        eq(json.loads(await recv(b)), want)
        eq(json.loads(await recv(a)), want)
        check(await silent(a) and await silent(b), "a room message arrived twice")
        await a.close()
        await b.close()
    arun(main())


def ack_contract(lang):
    """A grpcio stand-in gateway on one Stream: the header, acks, duplicate filtering."""
    import grpc
    addr = start_example(lang, handler="echo")
    if not addr:
        return
    pb2, pb2_grpc = proto()
    conn = (0xBEEF << 48) | 12345  # above 2^53: ids must survive as uint64
    opened = pb2.Event(conn_id=conn, user_id="u1", open=pb2.Open(gateway_id="stand-in"))

    def msg(seq, text):
        return pb2.Event(conn_id=conn, user_id="u1",
                         message=pb2.Message(payload=text.encode(), seq=seq))
    batches = [pb2.Upstream(seq=1, events=[opened, msg(1, "one")]),
               pb2.Upstream(seq=2, events=[msg(1, "one"), msg(2, "two")]),  # msg 1 replayed
               pb2.Upstream(seq=3, events=[pb2.Event(conn_id=conn, close=pb2.Close(code=1000))])]
    with grpc.insecure_channel(addr) as ch:
        call = pb2_grpc.ExchangeStub(ch).Stream(iter(batches), metadata=[("x-gateway-id", "stand-in")],
                                                timeout=15)
        replies = list(call)
        eq(dict(call.initial_metadata()).get("x-wsgw-ack"), "1", "x-wsgw-ack header")
        eq(call.code(), grpc.StatusCode.OK)
    eq([d.ack for d in replies], [1, 2, 3])
    sends = [[(list(c.send.target.conn_ids), c.send.payload) for c in d.commands] for d in replies]
    eq(sends, [[([conn], b"one")], [([conn], b"two")], []])
    check(all(c.send.api_ns > 0 for d in replies for c in d.commands), "api_ns not set")


def presence_per_session(lang):
    """Presence lives per session (the HTTP/2 connection), not per stream, and events from an
    older session than an entry's are ignored. Observable through the duplicate filter, which
    is kept with presence: after the session's only stream ended and a new stream of the same
    connection replays Message 1, it is dropped as a duplicate (before: presence and the filter
    went with the gateway's last stream and the replay was echoed again); a Close buffered on
    an older session after the gateway re-sent Open on a newer one does not forget it either."""
    from test_api_exchange import Gateway as StandIn, ev_close, ev_msg, ev_open
    addr = start_example(lang, handler="echo")
    if not addr:
        return
    port = int(addr.rsplit(":", 1)[1])
    conn = (0xBEEF << 48) | 777

    def echoes(st, n):
        return [c.send.payload for c in st.wait_commands(n)]

    one = StandIn(port, "gw-x", metadata=[("x-wsgw-streams", "1")])
    a = one.stream()
    a.wait_ack(a.send([ev_open(conn, "u"), ev_msg(conn, "one", "u", seq=1)],
                      presence_complete=True))
    eq(echoes(a, 1), [b"one"])
    a.close()
    eq(a.status().name, "OK")
    b = one.stream()  # every stream of the session ended; it goes on with a new one
    b.wait_ack(b.send([ev_msg(conn, "one", "u", seq=1), ev_msg(conn, "two", "u", seq=2)]))
    eq(echoes(b, 1), [b"two"], "a replayed Message after the session's streams ended")

    two = StandIn(port, "gw-x", metadata=[("x-wsgw-streams", "1")])  # a newer session
    c = two.stream()
    c.wait_ack(c.send([ev_open(conn, "u")], presence_complete=True))
    b.wait_ack(b.send([ev_close(conn)]))  # stale: buffered on the older session
    c.wait_ack(c.send([ev_msg(conn, "two", "u", seq=2), ev_msg(conn, "three", "u", seq=3)]))
    eq(echoes(c, 1), [b"three"], "a stale Close made the filter forget the connection")
    one.close()
    two.close()


def test_python_presence_per_session():
    presence_per_session("python")


def test_node_presence_per_session():
    presence_per_session("node")


def test_go_presence_per_session():
    presence_per_session("go")


def test_python_echo_and_chat():
    echo_and_chat("python")


def test_python_room_across_two_gateways():
    room_across_two_gateways("python")


def test_python_ack_contract():
    ack_contract("python")


def test_node_echo_and_chat():
    echo_and_chat("node")


def test_node_room_across_two_gateways():
    room_across_two_gateways("node")


def test_node_ack_contract():
    ack_contract("node")


def test_go_echo_and_chat():
    echo_and_chat("go")


def test_go_room_across_two_gateways():
    room_across_two_gateways("go")


def test_go_ack_contract():
    ack_contract("go")


def test_example_logs_no_errors():
    """Every example starts, logs `listening`, and exits 0 on SIGTERM."""
    from wsgwtest import stop
    for lang in ("python", "node", "go"):
        port = free_port()
        addr = "127.0.0.1:%d" % port
        if lang == "python":
            p = start([PY, os.path.join(ROOT, "examples", "python", "api_server.py"),
                       "--listen", addr], name="example-python")
        elif lang == "go":
            if go_binary() is None:
                continue
            p = start([go_binary(), "--listen", addr], name="example-go")
        else:
            mods = node_modules()
            if mods is None:
                continue
            p = start([shutil.which("node"), os.path.join(ROOT, "examples", "node", "api_server.js"),
                       "--listen", addr], env={"NODE_PATH": mods}, name="example-node")
        wait_port(port, proc=p, timeout=20)
        # SIGTERM only once it said `listening` (its signal handlers are set by then: the
        # Python one listens first, so a signal right after the port opened killed it, -15)
        wait_until(lambda: 'msg="listening"' in proc_log(p), 10, what="%s listening" % lang)
        eq(stop(p), 0, "%s example exit code\n%s" % (lang, proc_log(p)))
        check('msg="listening"' in proc_log(p), proc_log(p))


if __name__ == "__main__":
    run(globals())
