"""ws-api over gRPC with python3-grpcio as the gateway stand-in: echo and acks, the x-wsgw-ack
response header, chat rooms across two gateways, unary Push, unknown method (12), undecodable
and oversize messages (13 / 8 on that stream only), garbage bytes on the gRPC port, SIGTERM.

The Gateway/Stream helpers here are imported by the other test_api_*.py files."""
import http.client
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import wsgwtest as w  # noqa: E402

import grpc  # noqa: E402

pb, pbg = w.proto()

CHANNEL_OPTS = [
    ("grpc.use_local_subchannel_pool", 1),  # one HTTP/2 connection per Gateway object
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def start_api(*extra, handler="echo"):
    """Starts bin/ws-api on free loopback ports; returns (proc, grpc_port, http_port)."""
    gp, hp = w.free_port(), w.free_port()
    p = w.start(["ws-api", "--grpc-listen", "127.0.0.1:%d" % gp, "--http-listen",
                 "127.0.0.1:%d" % hp, "--handler", handler] + list(extra))
    w.wait_port(gp, proc=p)
    w.wait_port(hp, proc=p)
    return p, gp, hp


class Stream:
    """One /wsgw.v1.Exchange/Stream call: send() queues an Upstream batch, a reader thread
    collects every Downstream."""

    def __init__(self, gw, raw=False):
        self.q = queue.Queue()
        self.got = queue.Queue()
        self.seq = 0
        self.ack = 0
        self.commands = []
        self.ended = False
        self.error = None

        def gen():
            while True:
                item = self.q.get()
                if item is None:
                    return
                yield item

        if raw:
            method = gw.channel.stream_stream("/wsgw.v1.Exchange/Stream",
                                              request_serializer=lambda b: b,
                                              response_deserializer=pb.Downstream.FromString)
        else:
            method = gw.stub.Stream
        self.call = method(gen(), metadata=[("x-gateway-id", gw.gw_id)] +
                           list(getattr(gw, "metadata", ())))
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        try:
            for d in self.call:
                self.got.put(d)
        except grpc.RpcError as e:
            self.error = e
        self.got.put(None)

    def send(self, events, presence_complete=False):
        self.seq += 1
        self.q.put(pb.Upstream(seq=self.seq, events=events, presence_complete=presence_complete))
        return self.seq

    def send_raw(self, data):
        self.q.put(data)

    def close(self):
        self.q.put(None)

    def pump(self, timeout=0.0):
        """Moves received Downstreams into self.commands/self.ack; False once the call ended."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                d = self.got.get(timeout=max(left, 0)) if left > 0 else self.got.get_nowait()
            except queue.Empty:
                return not self.ended
            if d is None:
                self.ended = True
                return False
            w.check(d.ack >= self.ack, "ack went backwards: %d after %d" % (d.ack, self.ack))
            self.ack = d.ack
            self.commands.extend(d.commands)

    def wait_ack(self, seq, timeout=10.0):
        deadline = time.monotonic() + timeout * w.SLOW
        while self.ack < seq:
            if time.monotonic() > deadline:
                raise TimeoutError("ack %d < %d" % (self.ack, seq))
            if not self.pump(0.05) and self.ack < seq:
                raise AssertionError("stream ended before ack %d (ack %d): %s"
                                     % (seq, self.ack, self.error))

    def wait_commands(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout * w.SLOW
        while len(self.commands) < n:
            if time.monotonic() > deadline:
                raise TimeoutError("%d commands < %d" % (len(self.commands), n))
            if not self.pump(0.05) and len(self.commands) < n:
                raise AssertionError("stream ended with %d commands < %d" % (len(self.commands), n))
        return self.commands

    def take(self):
        c, self.commands = self.commands, []
        return c

    def status(self, timeout=10.0):
        deadline = time.monotonic() + timeout * w.SLOW
        while not self.ended and time.monotonic() < deadline:
            self.pump(0.05)
        return self.call.code()


class Gateway:
    """A gateway stand-in: its own HTTP/2 connection and x-gateway-id (plus `metadata` on every
    stream, e.g. x-wsgw-streams)."""

    def __init__(self, port, gw_id, metadata=()):
        self.gw_id = gw_id
        self.metadata = metadata
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port, options=CHANNEL_OPTS)
        self.stub = pbg.ExchangeStub(self.channel)
        self.streams = []

    def stream(self, raw=False):
        s = Stream(self, raw)
        self.streams.append(s)
        return s

    def close(self):
        for s in self.streams:
            s.close()
        self.channel.close()


def ev_open(conn, user="", gw=""):
    return pb.Event(conn_id=conn, user_id=user, gateway_ns=time.time_ns(),
                    open=pb.Open(remote_addr="127.0.0.1:1", path="/gateway/ws", gateway_id=gw))


def ev_msg(conn, payload, user="", binary=False, seq=0):
    if isinstance(payload, str):
        payload = payload.encode()
    return pb.Event(conn_id=conn, user_id=user, gateway_ns=time.time_ns(),
                    message=pb.Message(payload=payload, binary=binary, seq=seq))


def ev_close(conn, code=1000):
    return pb.Event(conn_id=conn, close=pb.Close(code=code, reason="bye"))


def finish(p):
    """Stops ws-api with SIGTERM: it must exit 0 with no sanitizer report in its log (so every
    test also checks clean shutdown and, under ASan, leaks)."""
    rc = w.stop(p)
    log = open(p.log_path, errors="replace").read()
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error", "ThreadSanitizer"):
        w.check(bad not in log, "sanitizer report in ws-api log:\n" + w.proc_log(p, 60))
    w.eq(rc, 0, "ws-api exit code")


def metric(http_port, name):
    """Value of one series from /metrics (0 when absent)."""
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=5).read()
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


# ---- tests ------------------------------------------------------------------------------------

def test_echo_acks_and_ack_header():
    p, gp, hp = start_api()
    gw = Gateway(gp, "gw-echo")
    s = gw.stream()
    w.eq(dict(s.call.initial_metadata()).get("x-wsgw-ack"), "1", "response header")
    s.send([ev_open(7, "alice", "gw-echo")])
    s.wait_ack(1)
    w.eq(s.take(), [], "Open produces no command")
    t0 = time.time_ns()
    seq = s.send([ev_msg(7, "hello", "alice", seq=1), ev_msg(7, b"\x00\xff", "alice", True, 2),
                  ev_msg(7, "", "alice", seq=3)])
    s.wait_ack(seq)
    s.wait_commands(3)
    cmds = s.take()
    w.eq(len(cmds), 3)
    for c, (payload, binary) in zip(cmds, [(b"hello", False), (b"\x00\xff", True), (b"", False)]):
        w.eq(c.WhichOneof("kind"), "send")
        w.eq(list(c.send.target.conn_ids), [7])
        w.eq(c.send.payload, payload)
        w.eq(c.send.binary, binary)
        w.check(abs(c.send.api_ns - t0) < 60e9, "api_ns is wall-clock ns: %d" % c.send.api_ns)
    # events of another conn, batch after batch: acks follow every seq
    for i in range(20):
        s.send([ev_msg(8, "m%d" % i)])
    s.wait_ack(s.seq)
    got = [c.send.payload for c in s.wait_commands(20)]
    w.eq(got, [b"m%d" % i for i in range(20)], "per-connection order")
    s.close()
    w.eq(s.status(), grpc.StatusCode.OK)
    w.check(metric(hp, 'wsapi_events_total{kind="message"}') >= 23, "events counted")
    gw.close()
    finish(p)


def test_chat_rooms_across_gateways():
    p, gp, hp = start_api(handler="chat")
    g1, g2 = Gateway(gp, "gw-1"), Gateway(gp, "gw-2")
    a, b = g1.stream(), g2.stream()
    a.send([ev_open(1, "alice", "gw-1"), ev_open(2, "bob", "gw-1")])
    b.send([ev_open(3, "carol", "gw-2")])
    a.wait_ack(1)
    b.wait_ack(1)
    a.send([ev_msg(1, json.dumps({"op": "join", "room": "r"}), "alice")])
    b.send([ev_msg(3, json.dumps({"op": "join", "room": "r"}), "carol")])
    ja, jb = a.wait_commands(1)[0], b.wait_commands(1)[0]
    w.eq((ja.WhichOneof("kind"), ja.join.conn_id, ja.join.room), ("join", 1, "r"))
    w.eq((jb.WhichOneof("kind"), jb.join.conn_id, jb.join.room), ("join", 3, "r"))
    a.take(), b.take()
    a.send([ev_msg(2, json.dumps({"op": "say", "room": "r", "text": "hi all"}), "bob")])
    sa, sb = a.wait_commands(1)[0], b.wait_commands(1)[0]
    for c in (sa, sb):
        w.eq(c.WhichOneof("kind"), "send")
        w.eq(c.send.target.room, "r")
        w.eq(list(c.send.target.conn_ids), [])
        w.eq(json.loads(c.send.payload), {"op": "said", "room": "r", "from": "bob", "text": "hi all"})
        w.eq(c.send.binary, False)
    a.take(), b.take()
    b.send([ev_msg(3, json.dumps({"op": "leave", "room": "r"}), "carol"),
            ev_msg(3, "not json", "carol"), ev_msg(3, json.dumps({"op": "nope"}), "carol")])
    cmds = b.wait_commands(3)
    w.eq((cmds[0].WhichOneof("kind"), cmds[0].leave.conn_id, cmds[0].leave.room), ("leave", 3, "r"))
    w.eq([c.send.payload for c in cmds[1:]], [b"not json", b'{"op": "nope"}'], "echoed")
    time.sleep(0.2)
    a.pump()
    w.eq(a.take(), [], "nothing else reached gateway 1")
    g1.close()
    g2.close()
    finish(p)


def test_rooms_a_gateway_re_sends_are_held_to_the_limits():
    """A resync's Open carries the connection's rooms (Open.rooms); ws-api (chat, no Redis)
    records them like joins, within --max-room-name and --max-rooms-per-conn: past them they
    are refused, counted and logged, and past the cap the rest are not even read (a hostile
    gateway's 100 000 names cost no lookup each). Empty names are none."""
    p, gp, hp = start_api("--max-rooms-per-conn", "3", "--max-room-name", "8", handler="chat")
    g = Gateway(gp, "gw-1")
    a = g.stream()
    names = ["far-too-long", "r0", "", "r1", "r2"] + ["x%d" % i for i in range(100000)]
    ev = ev_open(1, "alice", "gw-1")
    ev.open.rooms.extend(names)
    a.send([ev], presence_complete=True)
    a.wait_ack(1)
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % hp, timeout=5).read().decode()
    w.eq(w.parse_metric(text, "wsapi_rooms_restored_total", {"result": "recorded"}), 3.0)
    w.eq(w.parse_metric(text, "wsapi_rooms_restored_total", {"result": "refused"}), 100001.0)
    for room, members in (("r0", ["alice"]), ("r2", ["alice"]), ("x0", []),
                          ("far-too-long", [])):
        body = urllib.request.urlopen("http://127.0.0.1:%d/v1/rooms/%s" % (hp, room),
                                      timeout=5).read()
        w.eq([m["user_id"] for m in json.loads(body)["members"]], members, room)
    w.check("re-sent room memberships not recorded" in open(p.log_path).read(), "a log line")
    g.close()
    finish(p)


def test_grpc_push_unary():
    p, gp, hp = start_api()
    g1, g2 = Gateway(gp, "gw-a"), Gateway(gp, "gw-b")
    a, b = g1.stream(), g2.stream()
    a.send([ev_open(10, "u1", "gw-a")])
    b.send([ev_open(20, "u2", "gw-b")])
    a.wait_ack(1)
    b.wait_ack(1)
    ch = grpc.insecure_channel("127.0.0.1:%d" % gp)
    push = pbg.PushStub(ch)
    r = push.Push(pb.PushRequest(target=pb.Target(conn_ids=[20]), payload=b"\x01\x02", binary=True),
                  timeout=10)
    w.eq(r.gateways, 1)
    c = b.wait_commands(1)[0]
    w.eq((list(c.send.target.conn_ids), c.send.payload, c.send.binary), ([20], b"\x01\x02", True))
    r = push.Push(pb.PushRequest(target=pb.Target(all=True), payload=b"all"), timeout=10)
    w.eq(r.gateways, 2)
    w.eq(a.wait_commands(1)[0].send.target.all, True)
    try:
        push.Push(pb.PushRequest(target=pb.Target(), payload=b"x"), timeout=10)
        raise AssertionError("empty target accepted")
    except grpc.RpcError as e:
        w.eq(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
    w.eq(metric(hp, 'wsapi_grpc_push_requests_total{status="0"}'), 2.0)
    w.eq(metric(hp, 'wsapi_grpc_push_requests_total{status="3"}'), 1.0)
    ch.close()
    g1.close()
    g2.close()
    finish(p)


def test_unknown_method_is_unimplemented():
    p, gp, hp = start_api()
    ch = grpc.insecure_channel("127.0.0.1:%d" % gp)
    m = ch.unary_unary("/wsgw.v1.Nope/Nothing", request_serializer=lambda b: b,
                       response_deserializer=lambda b: b)
    try:
        m(b"", timeout=10)
        raise AssertionError("unknown method answered")
    except grpc.RpcError as e:
        w.eq(e.code(), grpc.StatusCode.UNIMPLEMENTED)
        w.check("Nope" in (e.details() or ""), "details name the method: %r" % e.details())
    # and a streaming call to an unknown method
    m2 = ch.stream_stream("/wsgw.v1.Exchange/Other", request_serializer=lambda b: b,
                          response_deserializer=lambda b: b)
    try:
        list(m2(iter([b"abc"]), timeout=10))
        raise AssertionError("unknown method answered")
    except grpc.RpcError as e:
        w.eq(e.code(), grpc.StatusCode.UNIMPLEMENTED)
    w.eq(metric(hp, "wsapi_unknown_method_total"), 2.0)
    ch.close()
    finish(p)


def test_undecodable_message_fails_only_its_stream():
    p, gp, hp = start_api("--max-message", "4096")
    gw = Gateway(gp, "gw-bad")
    good, bad, big = gw.stream(), gw.stream(raw=True), gw.stream()
    good.send([ev_open(1, "u", "gw-bad")])
    good.wait_ack(1)
    bad.send_raw(b"\xff\xff\xff\xff")  # not a valid protobuf
    w.eq(bad.status(), grpc.StatusCode.INTERNAL)
    w.check("Upstream" in (bad.call.details() or ""), "details: %r" % bad.call.details())
    big.send([ev_msg(1, b"x" * 5000)])  # over --max-message
    w.eq(big.status(), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # the good stream on the same connection goes on
    seq = good.send([ev_msg(1, "still here")])
    good.wait_ack(seq)
    w.eq(good.wait_commands(1)[0].send.payload, b"still here")
    w.eq(metric(hp, 'wsapi_decode_errors_total{reason="protobuf"}'), 1.0)
    w.eq(metric(hp, 'wsapi_decode_errors_total{reason="oversize"}'), 1.0)
    # presence survived the failed streams: the gateway still has a stream
    w.eq(metric(hp, "wsapi_presence_connections"), 1.0)
    w.eq(metric(hp, "wsapi_gateway_streams"), 1.0)
    good.close()
    w.eq(good.status(), grpc.StatusCode.OK)
    gw.close()
    finish(p)


def test_garbage_bytes_on_grpc_port():
    p, gp, hp = start_api()
    for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(4096)):
        s = socket.create_connection(("127.0.0.1", gp), timeout=5)
        s.sendall(garbage)
        deadline = time.monotonic() + 5
        closed = False
        while time.monotonic() < deadline:
            try:
                if s.recv(65536) == b"":
                    closed = True
                    break
            except ConnectionResetError:
                closed = True
                break
        s.close()
        w.check(closed, "server closed the garbage connection")
    w.check(p.poll() is None, "ws-api survived")
    w.eq(metric(hp, "wsapi_grpc_connection_errors_total"), 2.0)
    gw = Gateway(gp, "gw-after")
    st = gw.stream()
    st.send([ev_msg(5, "after garbage")])
    w.eq(st.wait_commands(1)[0].send.payload, b"after garbage")
    gw.close()
    finish(p)


class RawH2:
    """A hand-rolled h2c client (no HPACK decoder: it reads DATA, RST_STREAM and END_STREAM
    only) for what grpcio cannot send: gRPC framing split into 1-byte DATA frames, compressed
    flags, truncated or oversize length prefixes."""

    def __init__(self, port):
        import struct
        self.struct = struct
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.data = {}     # stream id -> DATA bytes
        self.ended = {}    # stream id -> "end_stream" | "rst"
        self.s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + self.frame(4, 0, 0, b""))

    def frame(self, ftype, flags, sid, payload):
        return self.struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
            self.struct.pack(">I", sid) + payload

    @staticmethod
    def lit(name, value):
        n, v = name.encode(), value.encode()
        assert len(n) < 127 and len(v) < 127
        return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v  # literal, no indexing

    def open(self, sid, path="/wsgw.v1.Exchange/Stream", gw="gw-raw"):
        block = b"".join(self.lit(k, v) for k, v in (
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", "application/grpc"), ("te", "trailers"), ("x-gateway-id", gw)))
        self.s.sendall(self.frame(1, 0x4, sid, block))

    def send(self, sid, data, end=False, chunk=None):
        chunk = chunk or max(len(data), 1)
        out = b""
        for i in range(0, max(len(data), 1), chunk):
            part = data[i:i + chunk]
            last = i + chunk >= len(data)
            out += self.frame(0, 0x1 if (end and last) else 0, sid, part)
        self.s.sendall(out)

    def pump(self, until, timeout=10.0):
        deadline = time.monotonic() + timeout * w.SLOW
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError("raw h2: condition not met")
            self.s.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.s.recv(65536)
            if not chunk:
                raise AssertionError("server closed the connection")
            self.buf += chunk
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
                if ftype == 4 and not flags & 1:
                    self.s.sendall(self.frame(4, 1, 0, b""))  # SETTINGS ACK
                elif ftype == 0:
                    self.data[sid] = self.data.get(sid, b"") + payload
                    if n:  # give the window back
                        inc = self.struct.pack(">I", n)
                        self.s.sendall(self.frame(8, 0, 0, inc) + self.frame(8, 0, sid, inc))
                elif ftype == 3:
                    self.ended[sid] = "rst"
                if ftype in (0, 1) and flags & 1:
                    self.ended.setdefault(sid, "end_stream")

    def downstreams(self, sid):
        out, b = [], self.data.get(sid, b"")
        while len(b) >= 5:
            n = int.from_bytes(b[1:5], "big")
            out.append(pb.Downstream.FromString(b[5:5 + n]))
            b = b[5 + n:]
        return out

    def close(self):
        self.s.close()


def grpc_msg(m):
    body = m.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


def test_framing_split_merged_and_broken():
    p, gp, hp = start_api("--max-message", "65536")
    h = RawH2(gp)
    # stream 1: three batches, every byte in its own DATA frame, then two merged in one frame
    h.open(1)
    msgs = [grpc_msg(pb.Upstream(seq=i + 1, events=[ev_msg(9, "b%d" % i)])) for i in range(5)]
    h.send(1, b"".join(msgs[:3]), chunk=1)
    h.send(1, msgs[3] + msgs[4])
    h.pump(lambda: sum(len(d.commands) for d in h.downstreams(1)) == 5 and
           h.downstreams(1)[-1].ack == 5)
    got = [c.send.payload for d in h.downstreams(1) for c in d.commands]
    w.eq(got, [b"b%d" % i for i in range(5)], "echoed in order")
    # stream 3: compressed flag (never negotiated) -> framing error on that stream only
    h.open(3)
    h.send(3, b"\x01\x00\x00\x00\x01x")
    # stream 5: a message cut short by END_STREAM -> truncated
    h.open(5)
    h.send(5, b"\x00\x00\x00\x00\x10abc", end=True)
    # stream 7: a prefix announcing more than --max-message -> oversize, without the body
    h.open(7)
    h.send(7, b"\x00\x00\x10\x00\x01")
    h.pump(lambda: all(sid in h.ended for sid in (3, 5, 7)))
    w.eq(metric(hp, 'wsapi_decode_errors_total{reason="framing"}'), 1.0)
    w.eq(metric(hp, 'wsapi_decode_errors_total{reason="truncated"}'), 1.0)
    w.eq(metric(hp, 'wsapi_decode_errors_total{reason="oversize"}'), 1.0)
    # stream 1 is still fine
    h.send(1, grpc_msg(pb.Upstream(seq=6, events=[ev_msg(9, "after")])))
    h.pump(lambda: h.downstreams(1)[-1].ack == 6)
    w.eq(h.downstreams(1)[-1].commands[-1].send.payload, b"after")
    w.check(1 not in h.ended, "stream 1 not ended")
    h.close()
    finish(p)


def test_startup_errors():
    import subprocess
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    exe = os.path.join(w.BIN, "ws-api")
    for args, rc, text in (
            (["--http-listen", "127.0.0.1:%d" % port, "--grpc-listen", "127.0.0.1:0"], 1,
             "cannot start HTTP server"),
            (["--grpc-listen", "127.0.0.1:%d" % port, "--http-listen", "127.0.0.1:0"], 1,
             "Address already in use"),
            (["--grpc-listen", "nowhere"], 1, "want host:port"),
            (["--handler", "shout"], 2, "unknown --handler"),
            (["--max-message", "12"], 2, "out of range")):
        r = subprocess.run([exe] + args, capture_output=True, text=True, timeout=20)
        w.eq(r.returncode, rc, "exit code for %s: %s" % (args, r.stderr[-500:]))
        w.check(text in r.stderr, "%r not in stderr: %s" % (text, r.stderr[-500:]))
    busy.close()
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=20)
    w.eq(r.returncode, 0)
    for flag in ("--grpc-listen", "--http-listen", "--handler", "--push-token", "--max-message",
                 "WSAPI_PUSH_TOKEN"):
        w.check(flag in r.stdout, "--help lacks %s" % flag)


def http_get(port, path):
    """(status, body text) of GET path on the HTTP port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def test_sigterm_exits_zero():
    p, gp, hp = start_api("--shutdown-timeout", "1s")
    gw = Gateway(gp, "gw-term")
    s = gw.stream()
    s.send([ev_msg(1, "before")])
    s.wait_ack(1)
    w.eq(http_get(hp, "/readyz"), (200, "ready\n"))
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    # the open stream still works during the grace period
    seq = s.send([ev_msg(1, "during")])
    s.wait_ack(seq)
    # not ready for a load balancer from the signal on; alive
    w.eq(http_get(hp, "/readyz"), (503, '{"error":"shutting down"}\n'))
    w.eq(http_get(hp, "/healthz")[0], 200)
    code = s.status(timeout=10)
    w.check(code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK), "stream ended: %s" % code)
    rc = p.wait(10)
    w.eq(rc, 0, "exit code")
    w.check(time.monotonic() - t0 < 6, "exited within the grace period plus the drain bound")
    gw.close()
    # idle: exits at once
    p2, _, _ = start_api()
    t0 = time.monotonic()
    finish(p2)
    w.check(time.monotonic() - t0 < 2, "idle shutdown is quick")


if __name__ == "__main__":
    w.run(globals())
