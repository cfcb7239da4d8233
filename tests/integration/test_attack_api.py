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


if __name__ == "__main__":
    w.run(globals())
