"""Attacks on ws-api (issue 15), each measured from the side: a legitimate websocket client
keeps echoing through a real ws-gateway + ws-api while one attacking connection at a time works
on ws-api's gRPC (HTTP/2) or HTTP/1.1 port (tests/lib/attackkit.py). Every test checks that
the attack is refused the way it should be (status, close, metric, bounded log) AND that the
legit echo stays within p50 <= 5 ms / max <= 100 ms, ws-api within 25 % of a core and a few MB
of RSS (attackkit.GOALS, with its margin). The figures go to the test log, one line per attack
("attack=...").

HTTP/2 attacks are hand-built frames (hpack from python3-h2's dependencies encodes header
blocks), so the attacker can send what a well-behaved client library never would, at the rate
of raw bytes."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import attackkit as ak  # noqa: E402
import wsgwtest as w  # noqa: E402

import hpack  # noqa: E402  (python3-hpack, installed with python3-h2)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ATTACK_S = 2.0  # seconds each attack runs while measured


# ---- the stack under attack --------------------------------------------------------------------

class Stack:
    """ws-api (extra flags) + ws-gateway + an echo probe through both."""

    def __init__(self, *api_extra):
        self.api = w.Api(extra=list(api_extra))
        self.gw = w.Gateway([self.api.grpc_addr], threads=1, streams=2)
        self.probe = ak.EchoProbe(self.gw.port).start()
        self.procs = {"ws-api": self.api.proc.pid, "ws-gateway": self.gw.proc.pid}

    def measure(self, what, attack, seconds=ATTACK_S):
        """Runs attack(deadline) while measuring; returns (Result, attack's return value)."""
        watch = ak.Watch(self.probe, self.procs).begin()
        out = attack(time.monotonic() + seconds)
        res = watch.end()
        print(res.line(what), flush=True)
        return res, out

    def metric(self, series):
        return w.parse_metric(self.api.http("GET", "/metrics")[1], series)

    def log(self):
        with open(self.api.proc.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        self.probe.stop()
        w.eq(w.stop(self.api.proc), 0, "ws-api exit code after the attack")


# ---- HTTP/2 by hand -----------------------------------------------------------------------------

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) \
        + payload


DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINUP, CONT = 0, 1, 3, 4, 6, 7, 8, 9


def hp_int(v, bits, first=0):
    """HPACK integer (RFC 7541 §5.1) with an N-bit prefix and the first byte's high bits."""
    lim = (1 << bits) - 1
    if v < lim:
        return bytes([first | v])
    out, v = [first | lim], v - lim
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    return bytes(out + [v])


def hp_lit(name, value, index=False):
    """A literal header field with a new name, indexed (added to the dynamic table) or not."""
    n = name.encode() if isinstance(name, str) else name
    v = value.encode() if isinstance(value, str) else value
    return (b"\x40" if index else b"\x00") + hp_int(len(n), 7) + n + hp_int(len(v), 7) + v


def grpc_request(path, extra=()):
    """A header block for a gRPC call, literals only (never touches the dynamic table)."""
    return b"".join(hp_lit(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
        ("content-type", "application/grpc"), ("te", "trailers")] + list(extra))


PUSH = "/wsgw.v1.Push/Push"
EXCHANGE = "/wsgw.v1.Exchange/Stream"


class H2:
    """One raw h2c connection: sends whatever it is told; a reader thread drains and parses
    what the server sends (SETTINGS are acknowledged only with ack_settings), recording
    GOAWAY codes, RST_STREAMs, HEADERS/DATA per stream and when the server closed."""

    def __init__(self, port, ack_settings=True, window=None, read=True):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=1)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ack_settings = ack_settings
        self.goaway = []
        self.rst = {}
        self.frames = 0
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.sid = 1
        out = PREFACE + frame(SETTINGS, 0, 0)
        if window:
            out += frame(WINUP, 0, 0, struct.pack(">I", window))
        self.s.sendall(out)
        if read:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        try:
            while True:
                c = self.s.recv(1 << 16)
                if not c:
                    break
                buf += c
                while len(buf) >= 9:
                    n = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + n:
                        break
                    ft, fl = buf[3], buf[4]
                    sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    payload, buf = buf[9:9 + n], buf[9 + n:]
                    self.frames += 1
                    if ft == SETTINGS and not fl & 1 and self.ack_settings:
                        self.send(frame(SETTINGS, 1, 0))
                    elif ft == GOAWAY:
                        self.goaway.append(int.from_bytes(payload[4:8], "big"))
                    elif ft == RST:
                        self.rst[sid] = int.from_bytes(payload[:4], "big")
        except OSError:
            pass
        self.closed.set()

    def send(self, data):
        """False once the server closed (or reset) the connection."""
        try:
            with self.lock:
                self.s.sendall(data)
            return True
        except OSError:
            self.closed.set()
            return False

    def next_sid(self):
        sid, self.sid = self.sid, self.sid + 2
        return sid

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def serial_connections(port, deadline, one, **kw):
    """Runs one(conn, deadline) on one connection at a time until the deadline, opening the next
    when the server closed the previous one. Returns the number of connections used."""
    n = 0
    while time.monotonic() < deadline:
        try:
            c = H2(port, **kw)
        except OSError:
            time.sleep(0.01)
            continue
        n += 1
        try:
            one(c, deadline)
            c.closed.wait(max(0.0, deadline - time.monotonic()))
        finally:
            c.close()
    return n


# ---- attacks that ws-api already withstood (issue 15: they must stay that way) --------------------

def test_h2_continuation_flood():
    """HEADERS without END_HEADERS, then CONTINUATION frames forever (CVE-2024-27316 class):
    nghttp2 allows 8 and ends the connection; the echo does not notice."""
    st = Stack()
    cont = frame(CONT, 0, 1, hp_lit("x-pad", "a" * 100)) * 64

    def one(c, deadline):
        c.send(frame(HEADERS, 0, 1, grpc_request(PUSH)))
        while time.monotonic() < deadline and not c.closed.is_set():
            if not c.send(cont):
                return

    res, conns = st.measure("h2 CONTINUATION flood", lambda d: serial_connections(
        st.api.grpc_port, d, one))
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]})
    w.check(conns > 1, "connections were ended by the server (%d used)" % conns)
    st.close()


# ---- HTTP/1.1 by hand ---------------------------------------------------------------------------

def http_sock(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_responses(s, want=None, timeout=5.0):
    """Reads HTTP/1.1 responses (Content-Length framed) until `want` of them came, or the server
    closed, or timeout. Returns ([(status, headers, body)], closed)."""
    buf, out, closed = b"", [], False
    deadline = time.monotonic() + timeout * w.SLOW
    while want is None or len(out) < want:
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            hdrs = dict((k.strip().lower().decode(), v.strip().decode()) for k, v in
                        (l.split(b":", 1) for l in lines[1:]))
            n = int(hdrs.get("content-length", "0")) if status >= 200 else 0
            if len(rest) < n:
                break
            if status >= 200:
                out.append((status, hdrs, rest[:n]))
            buf = rest[n:]
            if want is not None and len(out) >= want:
                return out, closed
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            c = s.recv(1 << 16)
        except socket.timeout:
            break
        except OSError:
            c = b""
        if not c:
            closed = True
            break
        buf += c
    return out, closed


def closed_soon(s, timeout=3.0):
    """Whether the server closes s within timeout (reading and dropping what it sends)."""
    return read_responses(s, None, timeout)[1]


def post(path, body, extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
            % (path.encode(), len(body), extra)) + body


def get(path, extra=b""):
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra)


def test_http_pipelined_push_pair_and_burst():
    """Item 1: two pipelined POST /v1/push (Content-Length 2, "{}") in one write hung ws-api's
    old HTTP server (lws) at 100 % CPU. Both get their 400, the connection goes on, the loop
    stays idle afterwards; 300 pipelined requests in one write are answered once each, in
    order; a client that pipelines without ever reading holds a bounded amount of memory."""
    st = Stack()
    s = http_sock(st.api.http_port)
    s.sendall(post("/v1/push", b"{}") * 2)
    got, closed = read_responses(s, 2)
    w.eq([r[0] for r in got], [400, 400], "both pipelined pushes answered")
    w.check(all(b"empty target" in r[2] for r in got), got)
    w.check(not closed, "keep-alive after the pair")

    def idle(deadline):  # the pair again, then nothing: the server must go quiet
        s.sendall(post("/v1/push", b"{}") * 2)
        n = len(read_responses(s, 2)[0])
        time.sleep(max(0.0, deadline - time.monotonic()))
        return n
    res, n = st.measure("http pipelined push pair, then idle", idle, 1.5)
    w.eq(n, 2)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]})
    s.sendall(get("/healthz"))
    w.eq(read_responses(s, 1)[0][0][:1], (200,), "same connection still serves")
    # 300 pipelined requests of three kinds in one write: each answered once, in order
    burst = b"".join(get("/v1/users/u%d" % i) if i % 3 == 0 else
                     post("/v1/push", b'{"user_ids":["u%d"],"data":"x"}' % i) if i % 3 == 1 else
                     get("/healthz") for i in range(300))
    s.sendall(burst)
    got, closed = read_responses(s, 300, 10)
    w.eq(len(got), 300, "every pipelined request answered")
    for i, (status, _, body) in enumerate(got):
        if i % 3 == 0:
            w.check(status == 200 and b'"u%d"' % i in body, "answer %d out of order: %r" % (i, body))
        elif i % 3 == 1:
            w.eq((status, body), (200, b'{"gateways":0}\n'), "answer %d" % i)
        else:
            w.eq((status, body), (200, b"ok\n"), "answer %d" % i)
    s.close()

    # pipelining without reading: ws-api stops reading once its answers pile up
    many = get("/metrics") * 2000

    def no_read(deadline):
        c = http_sock(st.api.http_port, timeout=0.5)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sent = 0
        try:
            while time.monotonic() < deadline:
                c.sendall(many)
                sent += len(many)
        except OSError:
            pass
        time.sleep(max(0.0, deadline - time.monotonic()))
        c.close()
        return sent
    res, sent = st.measure("http pipelining without reading", no_read, 2.0)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]}, rss_kb={"ws-api": 4096})
    w.check(sent < 64 << 20, "ws-api stopped reading (%d bytes taken)" % sent)
    st.close()


def test_http_request_smuggling_shapes():
    """Item 2: Content-Length with Transfer-Encoding, two differing Content-Lengths and other
    framing in doubt: 400 (411 for chunked alone) and the connection ends; the bytes behind
    are never read as a second request."""
    st = Stack()
    smuggled = get("/healthz")
    shapes = [
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", 400),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n", 400),
        (b"Content-Length: 2\r\nContent-Length: 40\r\n", b"{}", 400),
        (b"Content-Length: 2, 40\r\n", b"{}", 400),
        (b"Content-Length: +2\r\n", b"{}", 400),
        (b"Content-Length: 0x2\r\n", b"{}", 400),
        (b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n", 400),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", 400),
        (b"Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n", 411),
        (b"Content-Length: 2\r\nHost: y\r\n", b"{}", 400),  # two Host fields
    ]

    def attack(deadline):  # paced: a connection per shape is churn, measured elsewhere
        rounds = 0
        while not rounds or time.monotonic() < deadline:
            rounds += 1
            time.sleep(0.02)
            for hdrs, body, want in shapes:
                s = http_sock(st.api.http_port)
                s.sendall(b"POST /v1/push HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n" + body +
                          smuggled)
                got, closed = read_responses(s, None, 3)
                s.close()
                w.eq([r[0] for r in got], [want], "one answer only for %r" % hdrs)
                w.check(closed, "connection closed after %r" % hdrs)
        return rounds
    res, rounds = st.measure("http smuggling shapes, one connection at a time", attack, 1.0)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]})
    # the same values when they agree are fine (RFC 9112 §6.3)
    s = http_sock(st.api.http_port)
    s.sendall(post("/v1/push", b"{}", b"Content-Length: 2\r\n") + smuggled)
    w.eq([r[0] for r in read_responses(s, 2)[0]], [400, 200], "equal Content-Lengths accepted")
    s.close()
    w.eq(st.metric('wsapi_http_limit_total{limit="framing"}'), 8.0 * rounds)
    w.eq(st.metric('wsapi_http_limit_total{limit="chunked"}'), 1.0 * rounds)
    w.eq(st.metric('wsapi_http_limit_total{limit="bad_request"}'), 1.0 * rounds)
    st.close()


def test_http_body_and_head_slowloris():
    """Item 3: connections that send a head and then a body byte now and then (or a head byte
    now and then) are answered 408 and closed when --http-body-timeout / --http-head-timeout
    run out, however steadily they drip; the echo does not notice."""
    st = Stack("--http-body-timeout", "1s", "--http-head-timeout", "1s")
    n = 60
    socks = []
    for i in range(n):
        s = http_sock(st.api.http_port)
        if i % 2:
            s.sendall(b"POST /v1/push HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        else:
            s.sendall(b"POST /v1/push HTTP/1.1\r\nHo")
        socks.append(s)

    def drip(deadline):
        alive = list(socks)
        closed_at = {}
        t0 = time.monotonic()
        while alive and time.monotonic() < deadline:
            for s in list(alive):
                try:
                    s.sendall(b"a")
                    s.setblocking(False)
                    try:
                        c = s.recv(4096)
                        if c == b"":
                            raise OSError("closed")
                        if b"408" in c:
                            closed_at.setdefault(s, time.monotonic() - t0)
                    except BlockingIOError:
                        pass
                    finally:
                        s.setblocking(True)
                except OSError:
                    closed_at.setdefault(s, time.monotonic() - t0)
                    alive.remove(s)
            time.sleep(0.2)
        return len(alive), max(closed_at.values()) if closed_at else None
    res, (left, last) = st.measure("http body/head slowloris x%d" % n, drip, 4.0)
    w.eq(left, 0, "every dripping connection was closed")
    w.check(last < 3.0, "closed by the timeouts (last after %.1f s)" % last)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]}, rss_kb={"ws-api": 4096})
    w.eq(st.metric('wsapi_http_limit_total{limit="body_timeout"}'), n / 2)
    w.eq(st.metric('wsapi_http_limit_total{limit="head_timeout"}'), n / 2)
    w.eq(st.metric('wsapi_push_requests_total{code="408"}'), n / 2, "body timeouts on /v1/push")
    for s in socks:
        s.close()
    st.close()


def test_http_descriptor_exhaustion():
    """At the descriptor limit ws-api's old HTTP server spun on accept (67 % CPU, 23 MB/s of
    identical log lines). Now accepting backs off (10 ms doubling to 1 s), one log line a
    second, wsapi_accept_errors_total counts, and once descriptors are free the waiting
    connections are served."""
    gp, hp = w.free_port(), w.free_port()
    api = w.start(["/usr/bin/prlimit", "--nofile=48:48", os.path.join(w.BIN, "ws-api"),
                   "--grpc-listen", "127.0.0.1:%d" % gp, "--http-listen", "127.0.0.1:%d" % hp],
                  name="ws-api")
    w.wait_port(gp, proc=api)
    w.wait_port(hp, proc=api)
    gw = w.Gateway(["127.0.0.1:%d" % gp], threads=1, streams=2)
    probe = ak.EchoProbe(gw.port).start()
    hold = []

    def exhaust(deadline):
        for _ in range(80):
            hold.append(http_sock(hp))
        time.sleep(max(0.0, deadline - time.monotonic()))
    watch = ak.Watch(probe, {"ws-api": api.pid, "ws-gateway": gw.proc.pid}).begin()
    exhaust(time.monotonic() + 2.0)
    res = watch.end()
    print(res.line("descriptor exhaustion on the HTTP port (x80)"), flush=True)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]})
    with open(api.log_path, errors="replace") as f:
        lines = [l for l in f if "accept failed" in l]
    w.check(1 <= len(lines) <= 5, "%d 'accept failed' lines in 2 s" % len(lines))
    for s in hold:
        s.close()
    w.wait_until(lambda: w.parse_metric(http_get(hp, "/metrics"),
                                        'wsapi_accept_errors_total{listener="http"}') >= 1,
                 what="accept errors counted")
    w.eq(http_get(hp, "/healthz"), "ok\n")
    probe.stop()
    w.eq(w.stop(api), 0)


def http_get(port, path):
    s = http_sock(port)
    s.sendall(get(path))
    got = read_responses(s, 1)[0]
    s.close()
    return got[0][2].decode()


if __name__ == "__main__":
    w.run(globals())
