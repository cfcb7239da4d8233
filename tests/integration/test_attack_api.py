"""Attacks on ws-api (issue 15), each measured from the side: a legitimate websocket client
keeps echoing through a real ws-gateway + ws-api while one attacking connection at a time works
on ws-api's gRPC (HTTP/2) or HTTP/1.1 port (tests/lib/attackkit.py). Every test checks that
the attack is refused the way it should be (status, close, metric, bounded log) AND that the
legit echo stays within p50 <= 5 ms / max <= 100 ms, ws-api within 25 % of a core and a few MB
of RSS (attackkit.GOALS, with its margin). The figures go to the test log, one line per attack
("attack=...").

HTTP/2 attacks are hand-built frames (H2: raw frames and HPACK literals/indexes, so the
attacker can send what a well-behaved client library never would, at the rate of raw bytes) or
python3-h2 (H2Flow: a flow-controlled peer, for attacks that stay within every window). The
HTTP/1.1 attacks are in test_attack_api_http.py, with the kit and helpers of this file."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import attackkit as ak  # noqa: E402
import wsgwtest as w  # noqa: E402

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
        self.settings = {}
        self.answered = 0
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
                try:
                    c = self.s.recv(1 << 16)
                except socket.timeout:  # the socket's timeout is for the attacker's writes
                    continue
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
                    if ft == SETTINGS and not fl & 1:
                        for i in range(0, len(payload) - 5, 6):
                            k, v = struct.unpack(">HI", payload[i:i + 6])
                            self.settings[k] = v
                        if self.ack_settings:
                            self.send(frame(SETTINGS, 1, 0))
                    elif ft == GOAWAY:
                        self.goaway.append(int.from_bytes(payload[4:8], "big"))
                    elif ft == HEADERS and fl & 1:
                        self.answered += 1  # a call ended (trailers-only or trailers)
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


def serial_connections(port, deadline, one, max_conns=None, **kw):
    """Runs one(conn, deadline) on one connection at a time until the deadline, opening the next
    when the server closed the previous one (at most max_conns). Returns the number of
    connections used; with max_conns=1 a negative count means the server did not end it."""
    n = 0
    while time.monotonic() < deadline and (max_conns is None or n < max_conns):
        try:
            c = H2(port, **kw)
        except OSError:
            time.sleep(0.01)
            continue
        n += 1
        try:
            one(c, deadline)
            c.closed.wait(max(0.0, deadline - time.monotonic()))
            if max_conns == 1 and not c.closed.is_set():
                try:  # a non-reading attacker learns of the close on its next write
                    c.s.sendall(frame(PING, 0, 0, b"12345678"))
                    time.sleep(0.05)
                    c.s.sendall(frame(PING, 0, 0, b"12345678"))
                except OSError:
                    c.closed.set()
            if max_conns == 1 and not c.closed.is_set():
                n = -n
        finally:
            c.close()
        if max_conns == 1:
            time.sleep(max(0.0, deadline - time.monotonic()))
    return n


CHURN_CPU = 60  # % of a core: a client reconnecting at full speed (see attack_both)


def attack_both(st, what, one, **kw):
    """One attack, measured twice. First one attacking connection for 1 s: ws-api must end it
    and stay within the goals (the issue 15 criterion). Then the same attacker reconnecting as
    fast as it can for 1.5 s: that is a connection-rate attack (each connection is ended as
    before; a single Python client opened 3 000-7 000 a second here, and accepting and closing
    TCP connections costs ws-api ~95 us of CPU each on this VM, mostly kernel): the legit echo
    must stay within the goals, ws-api's CPU is reported and held to CHURN_CPU."""
    res, n = st.measure(what + ", one connection", lambda d: serial_connections(
        st.api.grpc_port, d, one, max_conns=1, **kw), 1.0)
    w.check(n == 1, "ws-api did not end the attacking connection")
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]}, rss_kb={"ws-api": 4096})
    res, n = st.measure(what + ", reconnecting", lambda d: serial_connections(
        st.api.grpc_port, d, one, **kw), 1.5)
    print("  (%d connections in 1.5 s)" % n, flush=True)
    res.check(cpu={"ws-api": CHURN_CPU}, rss_kb={"ws-api": 4096})
    w.check(n > 1, "connections were ended by the server (%d used)" % n)


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

    attack_both(st, "h2 CONTINUATION flood", one)
    st.close()


# ---- attacks on the gRPC port -------------------------------------------------------------------

def rapid_reset(hdr, per_batch=100):
    """one(): HEADERS then RST_STREAM(CANCEL) on new streams until the server ends it."""
    def one(c, deadline):
        while time.monotonic() < deadline and not c.closed.is_set():
            batch = b""
            for _ in range(per_batch):
                sid = c.next_sid()
                batch += frame(HEADERS, 0x4, sid, hdr) + frame(RST, 0, sid, struct.pack(">I", 8))
            if not c.send(batch):
                return
    return one


def test_h2_rapid_reset_on_push():
    """HEADERS for Push then RST_STREAM(CANCEL), as fast as the socket takes it (CVE-2023-44487),
    reconnecting whenever ws-api ends the connection: --h2-reset-burst (100, then 33/s) ends
    each one with GOAWAY ENHANCE_YOUR_CALM (with nghttp2's default of 1 000 a Python attacker
    kept ws-api at 57-66 % CPU); the echo does not notice."""
    st = Stack()
    attack_both(st, "h2 rapid reset (Push)", rapid_reset(grpc_request(PUSH)))
    w.check(st.metric('wsapi_h2_limit_total{limit="resets"}') >= 1, "resets limit counted")
    st.close()


def flood(ftype, payload, count=500):
    """one(): a connection sending `count` frames per write until the server ends it."""
    batch = frame(ftype, 0, 0, payload) * count

    def one(c, deadline):
        while time.monotonic() < deadline and not c.closed.is_set():
            if not c.send(batch):
                return
    return one


def test_h2_settings_and_ping_floods():
    """SETTINGS and PING frames as fast as possible, reading the ACKs or never reading them
    (then they pile up in socket buffers long before nghttp2's 1 000-ACK limit: ws-api spent
    71 % CPU on one such connection): --h2-control-rate (100/s, bursts of 200) ends each
    connection with ENHANCE_YOUR_CALM; the echo does not notice."""
    st = Stack()
    for what, one, read in (
            ("h2 SETTINGS flood, not reading", flood(SETTINGS, struct.pack(">HI", 3, 100)), False),
            ("h2 PING flood, not reading", flood(PING, b"12345678"), False),
            ("h2 PING flood, reading the ACKs", flood(PING, b"12345678"), True)):
        attack_both(st, what, one, read=read)
    w.check(st.metric('wsapi_h2_limit_total{limit="control_frames"}') >= 6, "limit counted")
    st.close()


def test_h2_hpack_bomb():
    """Item 4: one HEADERS frame inserts a 4 000-byte header into the HPACK table, then every
    request refers to it with 1-byte indexes. With 1 000 references per request (4 MB of
    header list per frame) the advertised --h2-max-header-list (16 KiB) is now enforced: the
    connection ends at the fifth one. Staying under it (3 references per request) still made
    ws-api decode 12 KB per 80 bytes received: --h2-header-rate (4 MiB/s per connection) ends
    that. The old ws-api (64 KiB advertised, nothing enforced) ran at 75-80 % CPU and the legit
    echo went from 0.3 ms to 0.5-0.8 s."""
    st = Stack()
    insert = hp_lit("x-bomb", "a" * 4000, index=True)  # dynamic table index 62

    def bomb(refs, per_batch):
        block = grpc_request(PUSH) + b"\xbe" * refs  # 0x80 | 62: the 4 000-byte entry

        def one(c, deadline):
            c.send(frame(HEADERS, 0x5, c.next_sid(), grpc_request(PUSH) + insert))
            calls = 1
            while time.monotonic() < deadline and not c.closed.is_set():
                if calls - c.answered > 60:  # stay under the 100 concurrent streams
                    time.sleep(0.0005)
                    continue
                batch = b"".join(frame(HEADERS, 0x5, c.next_sid(), block)
                                 for _ in range(per_batch))
                calls += per_batch
                if not c.send(batch):
                    return
        return one
    for what, refs, per_batch, limit in (
            ("h2 HPACK bomb, 1000 refs per request", 1000, 4, "header_list"),
            ("h2 HPACK bomb, 3 refs per request", 3, 30, "header_rate")):
        attack_both(st, what, bomb(refs, per_batch))
        w.check(st.metric('wsapi_h2_limit_total{limit="%s"}' % limit) >= 1, limit + " counted")
    st.close()


class H2Flow:
    """A flow-controlled h2c client (python3-h2) that opens gRPC calls and sends what the
    server's windows allow: for attacks that must look like a well-behaved peer on the wire."""

    def __init__(self, port, window=None):
        import h2.config
        import h2.connection
        import h2.settings
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h.initiate_connection()
        if window is not None:
            self.h.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.ended = {}   # stream id -> "reset" | "trailers" | "ended"
        self.status = {}  # stream id -> grpc-status
        self.got = {}     # stream id -> DATA bytes received (acknowledged: windows reopen)
        self.closed = False
        self.flush()

    def flush(self):
        data = self.h.data_to_send()
        if data:
            try:
                self.s.sendall(data)
            except OSError:
                self.closed = True

    def call(self, path, gateway_id=None):
        sid = self.h.get_next_available_stream_id()
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
                ("content-type", "application/grpc"), ("te", "trailers")]
        if gateway_id:
            hdrs.append(("x-gateway-id", gateway_id))
        self.h.send_headers(sid, hdrs)
        self.flush()
        return sid

    def send_some(self, sid, data):
        """Sends as much of data as the windows allow now; returns the count."""
        n = min(len(data), self.h.local_flow_control_window(sid), self.h.max_outbound_frame_size)
        if n > 0:
            self.h.send_data(sid, data[:n])
            self.flush()
        return max(n, 0)

    def pump(self, timeout=0.01):
        import h2.events
        import h2.exceptions
        self.s.settimeout(timeout)
        try:
            data = self.s.recv(1 << 16)
        except socket.timeout:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        try:
            events = self.h.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        for e in events:
            if isinstance(e, h2.events.DataReceived):
                self.got[e.stream_id] = self.got.get(e.stream_id, 0) + len(e.data)
                self.h.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamReset):
                self.ended[e.stream_id] = "reset"
            elif isinstance(e, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
                for k, v in e.headers:
                    if k in (b"grpc-status", "grpc-status"):
                        self.status[e.stream_id] = int(v)
                        self.ended[e.stream_id] = "trailers"
            elif isinstance(e, h2.events.ConnectionTerminated):
                self.closed = True
        self.flush()

    def close(self):
        self.s.close()


def test_h2_unfinished_messages_memory():
    """Item 5: ten streams on one unauthenticated connection each announce a message of
    --max-message and send 1 MiB of it, within every window. ws-api buffers what arrives (not
    what a prefix announces), the connection's unfinished messages stop at --h2-conn-buffer
    (3 MiB: the stream that passes it fails with grpc-status 8), and what is left fails after
    --h2-message-timeout (grpc-status 4). The old ws-api took one such connection from 5 MB to
    159 MB (prefixes allocated at their declared length, windows returned at once)."""
    st = Stack("--h2-message-timeout", "1s")
    nstreams, each = 10, 1 << 20
    prefix = b"\x00" + struct.pack(">I", (2 << 20) - 1)  # --max-message
    body = os.urandom(16384)

    def attack(deadline):
        c = H2Flow(st.api.grpc_port)
        sids = [c.call(PUSH if i % 2 else EXCHANGE, "gw-mem") for i in range(nstreams)]
        sent = dict((sid, 0) for sid in sids)
        for sid in sids:
            c.h.send_data(sid, prefix)
        c.flush()
        while time.monotonic() < deadline and not c.closed:
            for sid in sids:
                if sid not in c.ended and sent[sid] < each:
                    sent[sid] += c.send_some(sid, body[:each - sent[sid]])
            c.pump()
        return c, sent
    res, (c, sent) = st.measure("h2 ten unfinished 2 MiB messages", attack, 2.5)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]}, rss_kb={"ws-api": 4096})
    failed = dict((sid, c.status.get(sid)) for sid in sent)
    w.check(sum(sent.values()) >= 3 << 20, "the peer could send past the budget: %r" % sent)
    w.check(set(failed.values()) <= {8, 4}, "streams failed 8 or 4: %r" % failed)
    w.check(8 in failed.values() and 4 in failed.values(), "both limits fired: %r" % failed)
    w.check(st.metric('wsapi_h2_limit_total{limit="conn_buffer"}') >= 1, "conn_buffer counted")
    w.check(st.metric('wsapi_h2_limit_total{limit="message_timeout"}') >= 1, "timeout counted")
    c.close()
    st.close()


def test_h2_kept_buffers_give_way_to_messages_in_progress():
    """ws-api keeps an Exchange stream's decoder buffer between messages (a gateway sends
    batches of up to 256 KiB all the time: each was mmap'd, grown and unmapped, ~64 page faults a
    batch). Kept buffers count in --h2-conn-buffer (3 MiB) like unfinished messages, and give way
    to them: after eight streams each sent a 300 KiB batch (2.5 MiB kept), a 2 MiB message on a
    ninth stream must not fail the budget. Every batch is acked; no stream fails; the budget
    never fires."""
    api = w.Api()
    c = H2Flow(api.grpc_port)

    def batch(seq, n):  # Upstream{seq} plus an unknown field of n bytes (skipped by ws-api)
        body = b"\x10" + varint(seq) + b"\x4a" + varint(n) + b"k" * n
        return b"\x00" + struct.pack(">I", len(body)) + body

    def send_all(sid, data, deadline):
        sent = 0
        while sent < len(data) and time.monotonic() < deadline and not c.closed:
            sent += c.send_some(sid, data[sent:])
            c.pump()
        return sent == len(data)

    def acked(sids, deadline):
        while time.monotonic() < deadline and not c.closed:
            if all(c.got.get(sid, 0) > 0 for sid in sids):
                return True
            c.pump()
        return False

    sids = [c.call(EXCHANGE, "gw-keep") for _ in range(9)]
    deadline = time.monotonic() + 20
    for sid in sids[:8]:
        w.check(send_all(sid, batch(1, 300 << 10), deadline), "300 KiB batch sent on %d" % sid)
    w.check(acked(sids[:8], deadline), "the eight batches acked: %r" % c.got)
    w.check(send_all(sids[8], batch(1, (2 << 20) - 64), deadline), "2 MiB message sent")
    w.check(acked(sids, deadline), "the 2 MiB message acked: %r" % c.got)
    w.eq(dict((sid, c.ended.get(sid)) for sid in sids if sid in c.ended), {}, "no stream ended")
    w.eq(w.parse_metric(api.http("GET", "/metrics")[1], 'wsapi_h2_limit_total{limit="conn_buffer"}')
         or 0, 0, "the budget did not fire")
    c.close()
    w.eq(w.stop(api.proc), 0, "ws-api exit code")


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7F | 0x80])
        v >>= 7
    return out + bytes([v])


def test_h2_fake_gateways_hold_bounded_broadcasts():
    """Item 5: fake gateways open an Exchange stream with a zero window and never read, while
    backends push 10 MiB to a room (rooms go to every gateway). ws-api holds at most
    --h2-conn-queue (3 MiB) per connection, then resets the stream (wsapi_h2_limit_total
    {limit="conn_queue"}); the real gateway keeps getting its pushes and echoes. The old ws-api
    held up to 64 MiB per stream (1.24 GB with 20 fake gateways)."""
    st = Stack()
    fakes = []
    for i in range(3):
        f = H2Flow(st.api.grpc_port, window=0)
        f.call(EXCHANGE, "fake-%d" % i)
        fakes.append(f)
    w.wait_until(lambda: st.metric("wsapi_gateways") == 4, what="fake gateways attached")
    blob = "x" * (16 << 10)

    def attack(deadline):
        pushed = 0
        c = http_sock(st.api.http_port)
        while pushed < 640:  # 10 MiB
            c.sendall(post("/v1/push", ('{"room":"r","data":"%s"}' % blob).encode()) * 32)
            pushed += 32
            got = read_responses(c, 32)[0]
            w.check(all(r[0] == 200 for r in got), "pushes accepted")
        c.close()
        time.sleep(max(0.0, deadline - time.monotonic()))
        return pushed
    res, pushed = st.measure("h2 3 fake gateways + 10 MiB of room pushes", attack, 2.0)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"] * 2}, rss_kb={"ws-api": 4096 * len(fakes)})
    w.check(st.metric('wsapi_h2_limit_total{limit="conn_queue"}') >= len(fakes), "resets")
    for f in fakes:
        f.close()
    st.close()


def test_h2_total_queue_across_connections():
    """--h2-total-queue bounds what all connections together may have queued: past it the
    largest queues are reset first (gateways that read have small ones)."""
    st = Stack("--h2-total-queue", "2m")
    fakes = []
    for i in range(4):
        f = H2Flow(st.api.grpc_port, window=0)
        f.call(EXCHANGE, "fake-%d" % i)
        fakes.append(f)
    w.wait_until(lambda: st.metric("wsapi_gateways") == 5, what="fake gateways attached")
    c = http_sock(st.api.http_port)
    blob = "x" * (16 << 10)
    for _ in range(8):
        c.sendall(post("/v1/push", ('{"room":"r","data":"%s"}' % blob).encode()) * 16)
        w.eq(len(read_responses(c, 16)[0]), 16)
    c.close()
    w.check(st.metric('wsapi_h2_limit_total{limit="total_queue"}') >= 2, "total queue evictions")
    w.eq(st.metric('wsapi_h2_limit_total{limit="conn_queue"}'), 0.0)
    # the real gateway still works
    w.eq(st.api.http("GET", "/healthz")[0], 200)
    for f in fakes:
        f.close()
    st.close()


def test_h2_idle_connections_and_stalled_calls():
    """Item 5: connections that never open a stream are closed after --h2-idle-timeout (GOAWAY);
    a call whose message (Exchange) or request (Push) never completes fails after
    --h2-message-timeout (grpc-status 4); SETTINGS advertise 100 concurrent streams (was 1 024)
    and the 16 KiB header list. The old ws-api held all of them forever."""
    st = Stack("--h2-idle-timeout", "1s", "--h2-message-timeout", "1s")
    idle = [H2(st.api.grpc_port) for _ in range(40)]
    w.wait_until(lambda: idle[0].settings, what="server SETTINGS")
    w.eq(idle[0].settings.get(3), 100, "SETTINGS_MAX_CONCURRENT_STREAMS")
    w.eq(idle[0].settings.get(6), 16384, "SETTINGS_MAX_HEADER_LIST_SIZE")
    stalled = []
    for i in range(10):
        f = H2Flow(st.api.grpc_port)
        ex = f.call(EXCHANGE, "gw-stall-%d" % i)
        f.h.send_data(ex, b"\x00\x00\x00\x10\x00" + b"abc")  # 3 of 4096 bytes
        push = f.call(PUSH)  # request headers, never the message
        f.flush()
        stalled.append((f, ex, push))

    def wait(deadline):
        while time.monotonic() < deadline:
            for f, _, _ in stalled:
                f.pump(0.005)
            if all(c.closed.is_set() for c in idle) and \
                    all(len(f.status) == 2 for f, _, _ in stalled):
                break
        return time.monotonic()
    t0 = time.monotonic()
    res, t1 = st.measure("40 idle h2 connections + 20 stalled calls", wait, 4.0)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]}, rss_kb={"ws-api": 4096})
    w.check(all(c.closed.is_set() for c in idle), "idle connections closed")
    w.check(all(0 in c.goaway for c in idle), "with GOAWAY NO_ERROR")
    for f, ex, push in stalled:
        w.eq((f.status.get(ex), f.status.get(push)), (4, 4), "stalled calls: DEADLINE_EXCEEDED")
    w.check(t1 - t0 < 3.0, "within the timeouts (%.1f s)" % (t1 - t0))
    w.eq(st.metric('wsapi_h2_limit_total{limit="idle_timeout"}'), 40.0)
    w.eq(st.metric('wsapi_h2_limit_total{limit="message_timeout"}'), 20.0)
    w.eq(st.metric('wsapi_grpc_push_requests_total{status="4"}'), 10.0)
    for f, _, _ in stalled:
        f.close()
    st.close()


def test_h2_rapid_reset_on_exchange_log_volume():
    """Item 6: rapid reset on the Exchange path without --gateway-token wrote three info lines
    per stream (stream open, reset, closed: 94 MB of log in 5 s). Repeated lines are now
    rate-limited (one a second per kind, with suppressed=N)."""
    st = Stack()
    one = rapid_reset(grpc_request(EXCHANGE, [("x-gateway-id", "gw-rr")]), 50)
    before = len(st.log().splitlines())
    res, conns = st.measure("h2 rapid reset (Exchange), reconnecting, log volume", lambda d:
                            serial_connections(st.api.grpc_port, d, one))
    res.check(cpu={"ws-api": CHURN_CPU})
    lines = st.log().splitlines()[before:]
    print("log lines during the attack: %d (%d connections)" % (len(lines), conns), flush=True)
    w.check(len(lines) <= 40, "%d log lines in 2 s" % len(lines))
    w.check(any("suppressed=" in l and not l.endswith("suppressed=0") for l in lines),
            "suppressed lines are counted")
    st.close()


def test_grpc_push_text_must_be_utf8():
    """Item 7: a gRPC Push of a text payload that is not UTF-8 went out as a text frame that
    every recipient must close on (1007); with all: true one push disconnected everyone. It is
    refused with INVALID_ARGUMENT now (as HTTP push refuses it), counted and logged; binary
    payloads may hold any bytes."""
    import grpc
    pb, pbg = w.proto()
    st = Stack()
    ch = grpc.insecure_channel("127.0.0.1:%d" % st.api.grpc_port)
    stub = pbg.PushStub(ch)

    def push(payload, binary=False):
        try:
            return stub.Push(pb.PushRequest(target=pb.Target(all=True), payload=payload,
                                            binary=binary), timeout=10).gateways
        except grpc.RpcError as e:
            return e.code()
    w.eq(push(b"\xff\xfe not utf-8"), grpc.StatusCode.INVALID_ARGUMENT)
    w.eq(push(b"\xed\xa0\x80"), grpc.StatusCode.INVALID_ARGUMENT)  # a surrogate
    w.eq(push(b"ok \xc3\xa9"), 1)
    w.eq(push(b"\xff\xfe", binary=True), 1)
    w.eq(st.metric("wsapi_grpc_push_invalid_utf8_total"), 2.0)
    w.eq(st.metric('wsapi_grpc_push_requests_total{status="3"}'), 2.0)
    r = st.probe.report()
    w.eq(r["errors"], 0, "the probe's connection was not closed: %r" % r)
    ch.close()
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


def post(path, body, extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
            % (path.encode(), len(body), extra)) + body


def get(path, extra=b""):
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra)


if __name__ == "__main__":
    w.run(globals())
