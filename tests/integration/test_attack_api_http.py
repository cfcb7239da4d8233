"""Attacks on ws-api's HTTP/1.1 push port (issue 15; split from test_attack_api.py, whose
Stack and measuring it uses): pipelined requests, request smuggling shapes, body and head
slowloris, descriptor exhaustion. Each is refused the way it should be AND the legit echo
through ws-gateway + ws-api stays within attackkit.GOALS; one "attack=..." line per attack in
the test log."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attackkit as ak  # noqa: E402
import wsgwtest as w  # noqa: E402
from test_attack_api import Stack, get, http_sock, post, read_responses  # noqa: E402

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
    connections are served; the gRPC port too."""
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
    # the same on the gRPC port (one acceptor for both)
    hold = []
    watch.begin()
    for _ in range(80):
        hold.append(socket.create_connection(("127.0.0.1", gp), timeout=5))
    time.sleep(2.0)
    res = watch.end()
    print(res.line("descriptor exhaustion on the gRPC port (x80)"), flush=True)
    res.check(cpu={"ws-api": ak.GOALS["cpu_pct"]})
    for s in hold:
        s.close()
    w.wait_until(lambda: w.parse_metric(http_get(hp, "/metrics"),
                                        'wsapi_accept_errors_total{listener="grpc"}') >= 1,
                 what="accept errors counted (grpc)")
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
