"""ws-api security (issue 6, ws-api side) with real peers on loopback:

- --gateway-token: wsgw.v1.Exchange/Stream without / with a wrong bearer token gets grpc-status
  16 on that stream only; with it, echo works and x-wsgw-ack: 1 is sent;
- --push-token on gRPC Push (16 without / wrong) and on the HTTP push API (401), tokens not
  interchangeable, never logged; wsapi_auth_rejects_total{api,reason};
- --grpc-tls-cert/--grpc-tls-key: python3-grpcio over TLS (secure_channel trusting a self-signed
  certificate made here with the openssl command), large messages both ways, TLS 1.2 and 1.3,
  ALPN h2 required, garbage / plain h2c / HTTP/1.1 / silent peers on the TLS port fail alone
  (wsapi_tls_handshake_errors_total{reason}) and the next client is served;
- --http-tls-cert/--http-tls-key: HTTPS push API (http.client + ssl context trusting the cert);
- h2c stays the default; start-up errors for bad TLS flags.
Every test ends ws-api with SIGTERM and requires exit 0 without sanitizer reports (finish())."""
import atexit
import collections
import http.client
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_api_exchange import (CHANNEL_OPTS, Gateway, RawH2, ev_msg, ev_open, finish,  # noqa: E402
                               grpc_msg, pb, pbg, w)

import grpc  # noqa: E402

GW_TOKEN = "gw-Secret-7f3a9c"
PUSH_TOKEN = "push-Secret-51be02"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS_EMPTY = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

# ---- certificates made at test time --------------------------------------------------------

_tmp = tempfile.mkdtemp(prefix="wsgw-sec-")
atexit.register(shutil.rmtree, _tmp, True)


def make_cert(name):
    """A self-signed P-256 certificate for CN 127.0.0.1, SAN IP:127.0.0.1 + DNS:localhost;
    returns (cert_path, key_path, cert_pem_bytes)."""
    cert, key = os.path.join(_tmp, name + ".pem"), os.path.join(_tmp, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    with open(cert, "rb") as f:
        return cert, key, f.read()


CERT, KEY, CERT_PEM = make_cert("server")


def start_api(*extra, handler="echo", grpc_tls=False, http_tls=False):
    """bin/ws-api on free ports, optionally with TLS on either; returns (proc, grpc, http)."""
    gp, hp = w.free_port(), w.free_port()
    args = ["ws-api", "--grpc-listen", "127.0.0.1:%d" % gp, "--http-listen", "127.0.0.1:%d" % hp,
            "--handler", handler, "--shutdown-timeout", "1s"]
    if grpc_tls:
        args += ["--grpc-tls-cert", CERT, "--grpc-tls-key", KEY]
    if http_tls:
        args += ["--http-tls-cert", CERT, "--http-tls-key", KEY]
    p = w.start(args + list(extra))
    w.wait_port(gp, proc=p)  # a bare TCP connect: on a TLS port it counts as reason="eof"
    w.wait_port(hp, proc=p)
    return p, gp, hp


def client_ctx(alpn=("h2",), max_version=None):
    """An ssl context trusting only our certificate."""
    ctx = ssl.create_default_context(cadata=CERT_PEM.decode())
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def metrics_text(hp, tls=False):
    if tls:
        c = http.client.HTTPSConnection("127.0.0.1", hp, timeout=10, context=client_ctx(None))
    else:
        c = http.client.HTTPConnection("127.0.0.1", hp, timeout=10)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    w.eq(r.status, 200, "/metrics")
    return body


def metric(hp, series, tls=False):
    return w.parse_metric(metrics_text(hp, tls), series)


# ---- gRPC peers --------------------------------------------------------------------------

class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class AddMetadata(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds fixed metadata (the authorization header) to every call of a channel."""

    def __init__(self, md):
        self.md = list(md)

    def _d(self, d):
        return _Details(d.method, d.timeout, list(d.metadata or []) + self.md, d.credentials,
                        d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, cont, d, request):
        return cont(self._d(d), request)

    def intercept_stream_stream(self, cont, d, request_iterator):
        return cont(self._d(d), request_iterator)


def channel(port, tls, md=()):
    target = "127.0.0.1:%d" % port
    if tls:
        ch = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=CERT_PEM),
                                 options=CHANNEL_OPTS)
    else:
        ch = grpc.insecure_channel(target, options=CHANNEL_OPTS)
    return grpc.intercept_channel(ch, AddMetadata(md)) if md else ch, ch


class SecGateway(Gateway):
    """Gateway stand-in (test_api_exchange.Gateway) over TLS or h2c, sending `token` as
    authorization: Bearer on its Exchange streams (no header when None)."""

    def __init__(self, port, gw_id, tls=True, token=None, scheme="Bearer"):
        self.gw_id = gw_id
        md = [("authorization", "%s %s" % (scheme, token))] if token is not None else []
        self.channel, self.raw = channel(port, tls, md)
        self.stub = pbg.ExchangeStub(self.channel)
        self.streams = []

    def close(self):
        for s in self.streams:
            s.close()
        self.raw.close()


def push(port, tls, token=None, target=None, payload=b"p"):
    """A gRPC Push; returns (status code, gateways or None)."""
    ch, raw = channel(port, tls)
    md = [("authorization", "Bearer " + token)] if token is not None else []
    try:
        r = pbg.PushStub(ch).Push(pb.PushRequest(target=target or pb.Target(all=True),
                                                 payload=payload), metadata=md, timeout=10)
        return grpc.StatusCode.OK, r.gateways
    except grpc.RpcError as e:
        return e.code(), None
    finally:
        raw.close()


def check_exchange_refused(port, tls, token, scheme="Bearer"):
    gw = SecGateway(port, "gw-intruder", tls=tls, token=token, scheme=scheme)
    s = gw.stream()
    s.send([ev_open(66, "mallory", "gw-intruder")])
    w.eq(s.status(), grpc.StatusCode.UNAUTHENTICATED, "token %r" % token)
    w.check("gateway token" in (s.call.details() or ""), "details: %r" % s.call.details())
    w.eq(s.commands, [], "nothing sent back to a refused stream")
    gw.close()


def log_of(p):
    with open(p.log_path, errors="replace") as f:
        return f.read()


# ---- tests --------------------------------------------------------------------------------

def test_grpc_tls_gateway_and_push_tokens():
    p, gp, hp = start_api("--gateway-token", GW_TOKEN, "--push-token", PUSH_TOKEN, grpc_tls=True)
    # the authorised gateway over TLS: ack header, echo
    good = SecGateway(gp, "gw-good", token=GW_TOKEN)
    s = good.stream()
    w.eq(dict(s.call.initial_metadata()).get("x-wsgw-ack"), "1", "x-wsgw-ack response header")
    s.send([ev_open(1, "alice", "gw-good")])
    s.wait_ack(1)
    seq = s.send([ev_msg(1, "hello over tls", "alice", seq=1)])
    s.wait_ack(seq)
    w.eq([c.send.payload for c in s.wait_commands(1)], [b"hello over tls"])
    s.take()
    # refused Exchange streams: no token, wrong token, token of the other kind, empty bearer
    check_exchange_refused(gp, True, None)
    check_exchange_refused(gp, True, "gw-Secret-7f3a9")  # a prefix
    check_exchange_refused(gp, True, PUSH_TOKEN)
    check_exchange_refused(gp, True, GW_TOKEN, scheme="Basic")
    # a refused stream on the good gateway's own connection does not hurt the good stream
    bad_on_same_conn = good.channel.stream_stream(
        "/wsgw.v1.Exchange/Stream", request_serializer=lambda b: b,
        response_deserializer=pb.Downstream.FromString)
    try:
        list(bad_on_same_conn(iter([]), metadata=[("authorization", "Bearer nope")], timeout=10))
        raise AssertionError("second authorization header accepted")
    except grpc.RpcError as e:
        # the interceptor's right token comes second: the first authorization header counts
        w.eq(e.code(), grpc.StatusCode.UNAUTHENTICATED)
    w.eq(metric(hp, "wsapi_presence_connections"), 1.0, "refused streams never reached presence")
    # scheme is case-insensitive (RFC 9110 §11.1)
    low = SecGateway(gp, "gw-low", token=GW_TOKEN, scheme="bearer")
    ls = low.stream()
    ls.send([ev_msg(2, "lower-case scheme")])
    w.eq(ls.wait_commands(1)[0].send.payload, b"lower-case scheme")
    low.close()
    # gRPC Push over TLS: right token reaches the gateway; wrong, missing, gateway token: 16
    w.eq(push(gp, True, PUSH_TOKEN, pb.Target(conn_ids=[1]), b"pushed"), (grpc.StatusCode.OK, 1))
    w.eq(s.wait_commands(1)[0].send.payload, b"pushed")
    for tok in ("wrong", None, GW_TOKEN):
        w.eq(push(gp, True, tok)[0], grpc.StatusCode.UNAUTHENTICATED, "push token %r" % tok)
    # the good stream is still alive after all that
    seq = s.send([ev_msg(1, "still here", "alice", seq=2)])
    s.wait_ack(seq)
    w.eq(s.wait_commands(2)[-1].send.payload, b"still here")
    m = metrics_text(hp)
    for series, want in ((('wsapi_auth_rejects_total{api="exchange",reason="missing"}'), 2.0),
                         (('wsapi_auth_rejects_total{api="exchange",reason="wrong"}'), 3.0),
                         (('wsapi_auth_rejects_total{api="grpc_push",reason="missing"}'), 1.0),
                         (('wsapi_auth_rejects_total{api="grpc_push",reason="wrong"}'), 2.0),
                         (('wsapi_grpc_push_requests_total{status="16"}'), 3.0),
                         (('wsapi_grpc_push_requests_total{status="0"}'), 1.0)):
        w.eq(w.parse_metric(m, series), want, series)
    w.check(w.parse_metric(m, "wsapi_tls_handshakes_total") >= 7, "TLS handshakes counted")
    w.eq(w.parse_metric(m, 'wsapi_tls_handshake_errors_total{reason="protocol"}'), 0.0)
    # SIGTERM with a live TLS stream: GOAWAY + trailers over TLS, clean exit
    finish(p)
    w.check(s.status() in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE), "stream ended")
    good.close()
    log = log_of(p)
    w.check("exchange unauthenticated" in log, "refusals are logged")
    for secret in (GW_TOKEN, PUSH_TOKEN, "gw-Secret-7f3a9"):
        w.check(secret not in log, "a token appears in the log")
    w.check("transport=h2-tls" in log, "TLS transport logged at start")


def test_h2c_default_with_gateway_token():
    p, gp, hp = start_api("--gateway-token", GW_TOKEN)
    w.check("transport=h2c" in log_of(p), "h2c is the default")
    check_exchange_refused(gp, False, None)
    check_exchange_refused(gp, False, "nope")
    gw = SecGateway(gp, "gw-plain", tls=False, token=GW_TOKEN)
    s = gw.stream()
    w.eq(dict(s.call.initial_metadata()).get("x-wsgw-ack"), "1")
    s.send([ev_msg(3, "plain h2c")])
    w.eq(s.wait_commands(1)[0].send.payload, b"plain h2c")
    # no --push-token: Push needs nothing
    w.eq(push(gp, False, None, pb.Target(conn_ids=[3]))[0], grpc.StatusCode.OK)
    # a TLS client on the h2c port fails (the server sees a non-HTTP/2 preface)
    raw = socket.create_connection(("127.0.0.1", gp), timeout=5)
    try:
        client_ctx().wrap_socket(raw, server_hostname="localhost")
        raise AssertionError("TLS handshake succeeded on the h2c port")
    except (ssl.SSLError, OSError):
        pass
    finally:
        raw.close()
    w.eq(metric(hp, 'wsapi_auth_rejects_total{api="exchange",reason="missing"}'), 1.0)
    w.eq(metric(hp, 'wsapi_auth_rejects_total{api="exchange",reason="wrong"}'), 1.0)
    w.eq(metric(hp, "wsapi_tls_handshakes_total"), 0.0)
    gw.close()
    finish(p)


def test_grpc_tls_large_messages_both_ways():
    """Megabyte messages echoed on 4 concurrent TLS streams of one connection: socket buffers
    fill, so SSL_write returns partial counts and WANT_WRITE and is retried."""
    # 1 MiB messages on 4 streams may all be unfinished, and their echoes all wait, at once:
    # budgets to match
    p, gp, hp = start_api("--stream-queue", "64m", "--h2-conn-queue", "64m", "--h2-conn-buffer",
                          "16m", grpc_tls=True)
    gw = SecGateway(gp, "gw-big")
    streams = [gw.stream() for _ in range(4)]
    n, size = (4, 1 << 20) if not w.SANITIZE else (2, 1 << 20)
    for i, s in enumerate(streams):
        for k in range(n):
            s.send([ev_msg(100 + i, bytes([65 + k]) * size)])
    for i, s in enumerate(streams):
        cmds = s.wait_commands(n, timeout=30)
        w.eq([c.send.payload for c in cmds], [bytes([65 + k]) * size for k in range(n)],
             "stream %d echoed intact and in order" % i)
        s.close()
        w.eq(s.status(), grpc.StatusCode.OK)
    w.check(metric(hp, "wsapi_upstream_bytes_total") >= 4 * n * size, "bytes counted")
    gw.close()
    finish(p)


class TlsRawH2:
    """A hand-rolled HTTP/2 client over TLS (like test_api_exchange.RawH2, but with linear-time
    buffering) that advertises a 64 MiB receive window, so ws-api may send far more than the
    socket buffers hold while this client does not read."""

    def __init__(self, port, window=64 << 20):
        self.s = raw_tls(port, client_ctx())
        self.inbuf = bytearray()
        self.msgbuf = bytearray()  # DATA of stream 1
        self.downstreams = []      # complete Downstream messages of stream 1
        self.ended = False
        self.settings_seen = False
        self.s.sendall(PREFACE + self.frame(4, 0, 0, struct.pack(">HI", 4, window)) +
                       self.frame(8, 0, 0, struct.pack(">I", window - 65535)))
        # ws-api's windows apply once its SETTINGS are acknowledged (RFC 9113 §6.9.2): take
        # them (and ACK them) before sending DATA beyond the 64 KiB default.
        self.pump(lambda: self.settings_seen)

    @staticmethod
    def frame(ftype, flags, sid, payload):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
            struct.pack(">I", sid) + payload

    def open(self, token):
        block = b"".join(RawH2.lit(k, v) for k, v in (
            (":method", "POST"), (":scheme", "https"), (":path", "/wsgw.v1.Exchange/Stream"),
            (":authority", "localhost"), ("content-type", "application/grpc"),
            ("te", "trailers"), ("x-gateway-id", "gw-raw-tls"),
            ("authorization", "Bearer " + token)))
        self.s.sendall(self.frame(1, 0x4, 1, block))

    def send(self, data, chunk=16384):
        self.s.sendall(b"".join(self.frame(0, 0, 1, data[i:i + chunk])
                                for i in range(0, len(data), chunk)))

    def pump(self, until, timeout=30.0):
        deadline = time.monotonic() + timeout * w.SLOW
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError("raw h2 over TLS: condition not met")
            self.s.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise AssertionError("server closed the connection")
            self.inbuf += chunk
            off = 0
            while len(self.inbuf) - off >= 9:
                n = int.from_bytes(self.inbuf[off:off + 3], "big")
                if len(self.inbuf) - off < 9 + n:
                    break
                ftype, flags = self.inbuf[off + 3], self.inbuf[off + 4]
                sid = int.from_bytes(self.inbuf[off + 5:off + 9], "big") & 0x7FFFFFFF
                payload = self.inbuf[off + 9:off + 9 + n]
                off += 9 + n
                if ftype == 4 and not flags & 1:
                    self.s.sendall(self.frame(4, 1, 0, b""))  # SETTINGS ACK
                    self.settings_seen = True
                elif ftype == 0 and sid == 1:
                    self.msgbuf += payload
                    self._split()
                if sid == 1 and (ftype == 3 or (ftype in (0, 1) and flags & 1)):
                    self.ended = True
            del self.inbuf[:off]

    def _split(self):
        off = 0
        while len(self.msgbuf) - off >= 5:
            n = int.from_bytes(self.msgbuf[off + 1:off + 5], "big")
            if len(self.msgbuf) - off < 5 + n:
                break
            self.downstreams.append(pb.Downstream.FromString(bytes(self.msgbuf[off + 5:off + 5 + n])))
            off += 5 + n
        del self.msgbuf[:off]

    def commands(self):
        return [c for d in self.downstreams for c in d.commands]

    def close(self):
        self.s.close()


def raw_tls(port, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return ctx.wrap_socket(s, server_hostname="localhost")
    except Exception:
        s.close()
        raise


def read_frame_type(ss):
    """The type of the first HTTP/2 frame the server sends (its SETTINGS)."""
    hdr = b""
    while len(hdr) < 9:
        chunk = ss.recv(9 - len(hdr))
        if not chunk:
            raise AssertionError("connection closed before a frame")
        hdr += chunk
    return hdr[3]


def closed_by_server(sock, timeout=5.0):
    """True when the server closes sock (EOF or reset) within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True
    return False


def test_tls_peer_that_stops_reading():
    """A TLS gateway that lets 15 MiB of echoes pile up without reading: ws-api's SSL_write
    hits WANT_WRITE and waits for the socket (another connection is served meanwhile), then
    resumes with the same bytes once the peer reads: everything arrives intact, in order."""
    # this peer ignores flow control and lets 15 MiB pile up: windows and queues to match
    p, gp, hp = start_api("--gateway-token", GW_TOKEN, "--stream-window", "16m", "--conn-window",
                          "64m", "--stream-queue", "16m", "--h2-conn-queue", "64m", grpc_tls=True)
    h = TlsRawH2(gp)
    h.open(GW_TOKEN)
    n, size = 15, 1 << 20  # 15 MiB + framing: inside the 16 MiB stream window granted here
    for k in range(n):
        h.send(grpc_msg(pb.Upstream(seq=k + 1, events=[ev_msg(7, bytes([97 + k]) * size)])))
    # not reading: wait until ws-api has handled (acked) everything it was sent
    w.wait_until(lambda: metric(hp, "wsapi_commands_total") >= n, 20 * w.SLOW,
                 what="all batches handled while the peer does not read")
    time.sleep(0.3)
    # the loop is not stuck on the blocked connection
    gw = SecGateway(gp, "gw-other", token=GW_TOKEN)
    st = gw.stream()
    st.send([ev_msg(8, "meanwhile")])
    w.eq(st.wait_commands(1)[0].send.payload, b"meanwhile")
    gw.close()
    # now read it all
    h.pump(lambda: len(h.commands()) == n)
    for k, c in enumerate(h.commands()):
        w.check(c.send.payload == bytes([97 + k]) * size, "echo %d intact and in order" % k)
    w.eq(h.downstreams[-1].ack, n, "every batch acked")
    w.check(not h.ended, "stream still open")
    h.close()
    finish(p)


def test_garbage_and_bad_handshakes_on_tls_port():
    p, gp, hp = start_api("--tls-handshake-timeout", "1s", grpc_tls=True)
    # TLS 1.2 and 1.3 with ALPN h2: the server's SETTINGS frame comes back
    for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ss = raw_tls(gp, client_ctx(max_version=ver))
        w.eq(ss.version(), "TLSv1.2" if ver == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
        w.eq(ss.selected_alpn_protocol(), "h2")
        ss.sendall(PREFACE + SETTINGS_EMPTY)
        w.eq(read_frame_type(ss), 4, "SETTINGS over %s" % ss.version())
        ss.close()
    # not TLS at all: random bytes, the h2c preface, an HTTP/1.1 request
    for garbage in (b"\xff" * 16 + os.urandom(4096), PREFACE + SETTINGS_EMPTY,
                    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", gp), timeout=5)
        s.sendall(garbage)
        w.check(closed_by_server(s), "server closed the garbage connection")
        s.close()
    # TLS without h2: offering only http/1.1 is refused in the handshake (no_application_protocol)
    try:
        raw_tls(gp, client_ctx(alpn=("http/1.1",))).close()
        raise AssertionError("handshake without h2 succeeded")
    except ssl.SSLError as e:
        w.check("NO APPLICATION PROTOCOL" in str(e).upper().replace("_", " "), "alert: %s" % e)
    # offering no ALPN at all: the server drops the connection right after the handshake
    ss = raw_tls(gp, client_ctx(alpn=None))
    ss.sendall(PREFACE + SETTINGS_EMPTY)
    w.check(closed_by_server(ss), "no-ALPN connection closed")
    ss.close()
    # TLS 1.1 is refused
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1_1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        raw_tls(gp, old).close()
        raise AssertionError("TLS 1.1 accepted")
    except (ssl.SSLError, ValueError, OSError):
        pass
    # a silent peer is dropped after --tls-handshake-timeout, while another one in the middle
    # of a handshake is kept open until ws-api stops
    t0 = time.monotonic()
    silent = socket.create_connection(("127.0.0.1", gp), timeout=5)
    w.check(closed_by_server(silent, 5), "silent connection dropped")
    w.check(time.monotonic() - t0 >= 0.9, "not before the timeout")
    silent.close()
    # the next client is served
    gw = SecGateway(gp, "gw-after")
    st = gw.stream()
    st.send([ev_msg(5, "after garbage")])
    w.eq(st.wait_commands(1)[0].send.payload, b"after garbage")
    w.check(p.poll() is None, "ws-api survived")
    m = metrics_text(hp)
    # random bytes, h2c preface, HTTP/1.1, TLS 1.1
    w.eq(w.parse_metric(m, 'wsapi_tls_handshake_errors_total{reason="protocol"}'), 4.0)
    w.eq(w.parse_metric(m, 'wsapi_tls_handshake_errors_total{reason="alpn"}'), 2.0)
    w.eq(w.parse_metric(m, 'wsapi_tls_handshake_errors_total{reason="timeout"}'), 1.0)
    w.check(w.parse_metric(m, 'wsapi_tls_handshake_errors_total{reason="eof"}') >= 1,
            "port probe counted as eof")
    w.check(w.parse_metric(m, "wsapi_tls_handshakes_total") >= 3, "handshakes counted")
    log = log_of(p)
    w.check('msg="tls handshake failed"' in log and "reason=protocol" in log, "failures logged")
    # a connection stuck in its handshake does not hold up shutdown
    stuck = socket.create_connection(("127.0.0.1", gp), timeout=5)
    stuck.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
    time.sleep(0.1)
    t0 = time.monotonic()
    finish(p)
    w.check(time.monotonic() - t0 < 3, "shutdown not held by a half-done handshake")
    stuck.close()
    gw.close()


def https(port, method, path, body=None, token=None, ctx=None):
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx or client_ctx(None))
    h = {"Content-Type": "application/json"}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    data = r.read()
    alpn = c.sock.selected_alpn_protocol()
    c.close()
    return r.status, data, alpn


def test_https_push_api():
    # both ports on TLS in one process (one OpenSSL set-up, two contexts)
    p, gp, hp = start_api("--push-token", PUSH_TOKEN, "--tls-handshake-timeout", "1s",
                          http_tls=True, grpc_tls=True)
    gw = SecGateway(gp, "gw-h")
    s = gw.stream()
    s.send([ev_open(9, "bob", "gw-h")])
    s.wait_ack(1)
    st, data, alpn = https(hp, "POST", "/v1/push", {"user_ids": ["bob"], "data": "via https"},
                           token=PUSH_TOKEN, ctx=client_ctx(("h2", "http/1.1")))
    w.eq((st, json.loads(data)), (200, {"gateways": 1}))
    w.eq(alpn, "http/1.1", "the push API speaks HTTP/1.1 even when h2 is offered")
    w.eq(s.wait_commands(1)[0].send.payload, b"via https")
    st, data, _ = https(hp, "POST", "/v1/push", {"all": True, "data": "x"})
    w.eq(st, 401)
    w.check("token" in json.loads(data)["error"], data)
    st, _, _ = https(hp, "POST", "/v1/kick", {"all": True}, token="wrong")
    w.eq(st, 401)
    st, _, _ = https(hp, "GET", "/v1/users/bob", token=GW_TOKEN)
    w.eq(st, 401, "another token does not open the push API")
    w.eq(https(hp, "GET", "/v1/users/bob", token=PUSH_TOKEN)[0], 200)
    w.eq(https(hp, "GET", "/healthz")[0], 200, "healthz needs no token")
    # plain HTTP to the HTTPS port gets no answer
    try:
        c = http.client.HTTPConnection("127.0.0.1", hp, timeout=5)
        c.request("GET", "/healthz")
        status = c.getresponse().status
        c.close()
    except (http.client.HTTPException, OSError):
        status = None
    w.check(status is None, "plain HTTP answered %s on the HTTPS port" % status)
    # TLS 1.2 works too
    st, _, _ = https(hp, "GET", "/healthz", ctx=client_ctx(None, ssl.TLSVersion.TLSv1_2))
    w.eq(st, 200)
    # a silent peer on the HTTPS port is dropped after --tls-handshake-timeout (1 s here)
    t0 = time.monotonic()
    silent = socket.create_connection(("127.0.0.1", hp), timeout=5)
    w.check(closed_by_server(silent, 5), "silent HTTPS connection dropped")
    w.check(0.9 <= time.monotonic() - t0 < 3, "after the timeout: %.1f s" % (time.monotonic() - t0))
    silent.close()
    m = metrics_text(hp, tls=True)
    w.eq(w.parse_metric(m, 'wsapi_push_requests_total{code="401"}'), 3.0)
    w.eq(w.parse_metric(m, 'wsapi_auth_rejects_total{api="http_push",reason="missing"}'), 1.0)
    w.eq(w.parse_metric(m, 'wsapi_auth_rejects_total{api="http_push",reason="wrong"}'), 2.0)
    w.eq(w.parse_metric(m, 'wsapi_http_limit_total{limit="handshake_timeout"}'), 1.0)
    gw.close()
    finish(p)
    log = log_of(p)
    w.check("transport=https" in log, "HTTPS logged at start")
    w.check(PUSH_TOKEN not in log and GW_TOKEN not in log, "a token appears in the log")
    w.check("push unauthenticated" in log, "refusals are logged")


def test_tls_startup_errors():
    exe = os.path.join(w.BIN, "ws-api")
    other_cert, other_key, _ = make_cert("other")
    missing = os.path.join(_tmp, "missing.pem")
    base = ["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]
    for args, rc, text in (
            (["--grpc-tls-cert", CERT], 2, "--grpc-tls-cert and --grpc-tls-key go together"),
            (["--http-tls-key", KEY], 2, "--http-tls-cert and --http-tls-key go together"),
            (["--grpc-tls-cert", missing, "--grpc-tls-key", KEY], 1, "missing.pem"),
            (["--grpc-tls-cert", CERT, "--grpc-tls-key", other_key], 1, "mismatch"),
            (["--http-tls-cert", other_cert, "--http-tls-key", KEY], 1, "mismatch"),
            (["--http-tls-cert", CERT, "--http-tls-key", missing], 1, "missing.pem")):
        r = subprocess.run([exe] + base + args, capture_output=True, text=True, timeout=20)
        w.eq(r.returncode, rc, "exit code for %s: %s" % (args, r.stderr[-500:]))
        w.check(text in r.stderr, "%r not in stderr: %s" % (text, r.stderr[-500:]))
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
            w.check(bad not in r.stderr, "sanitizer report:\n" + r.stderr[-2000:])
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=20)
    for flag in ("--gateway-token", "--grpc-tls-cert", "--grpc-tls-key", "--http-tls-cert",
                 "--http-tls-key", "--tls-handshake-timeout", "WSAPI_GATEWAY_TOKEN"):
        w.check(flag in r.stdout, "--help lacks %s" % flag)
    # tokens from the environment (WSAPI_GATEWAY_TOKEN) work like the flag
    gp, hp = w.free_port(), w.free_port()
    p = w.start(["ws-api", "--grpc-listen", "127.0.0.1:%d" % gp, "--http-listen",
                 "127.0.0.1:%d" % hp], env={"WSAPI_GATEWAY_TOKEN": GW_TOKEN})
    w.wait_port(gp, proc=p)
    check_exchange_refused(gp, False, None)
    gw = SecGateway(gp, "gw-env", tls=False, token=GW_TOKEN)
    s = gw.stream()
    s.send([ev_msg(4, "env token")])
    w.eq(s.wait_commands(1)[0].send.payload, b"env token")
    gw.close()
    finish(p)


if __name__ == "__main__":
    w.run(globals())
