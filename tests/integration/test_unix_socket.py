"""API nodes behind Unix domain sockets: ws-api --grpc-listen unix:PATH (and --http-listen),
ws-gateway --upstream unix:PATH. Real peers: python3-websockets clients, python3-grpcio over
"unix:" (gRPC's own name for such targets), http.client over the socket."""
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_faults import arun, big_echoes_through_a_frozen_api, connect  # noqa: E402
from wsgwtest import (BIN, Gateway, check, eq, free_port, proto, run, start, stop,  # noqa: E402
                      wait_until)


def sock_ready(path):
    """True once something accepts connections at path."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Dir:
    """A private directory for the sockets (short: sun_path holds 107 bytes)."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="wsgw-ux-", dir="/tmp")
        self.grpc = os.path.join(self.path, "grpc.sock")
        self.http = os.path.join(self.path, "http.sock")

    def close(self):
        shutil.rmtree(self.path, ignore_errors=True)


def api_on(d, extra=()):
    p = start(["ws-api", "--grpc-listen", "unix:" + d.grpc, "--http-listen", "unix:" + d.http,
               "--handler", "echo"] + list(extra))
    wait_until(lambda: p.poll() is not None or (sock_ready(d.grpc) and sock_ready(d.http)), 10,
               what="ws-api on its sockets")
    check(p.poll() is None, "ws-api exited")
    return p


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def http_unix(path, method, url, body=None):
    c = UnixHTTP(path)
    c.request(method, url, body=json.dumps(body) if body is not None else None,
              headers={"content-type": "application/json"})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    return r.status, data


async def echo_round(gw, nclients, nmsg, tag):
    """nclients send nmsg messages each; returns what each got back, in order."""
    async def client(i):
        ws = await connect(gw.url("%s%d" % (tag, i)))
        got = []

        async def reader():
            while len(got) < nmsg:
                got.append(await asyncio.wait_for(ws.recv(), 30))
        rt = asyncio.create_task(reader())
        for k in range(nmsg):
            await ws.send("%s%d-%d" % (tag, i, k))
        await asyncio.wait_for(rt, 60)
        await ws.close()
        return got
    return await asyncio.gather(*[client(i) for i in range(nclients)])


def want(nclients, nmsg, tag):
    return [["%s%d-%d" % (tag, i, k) for k in range(nmsg)] for i in range(nclients)]


def test_gateway_to_api_over_a_unix_socket_survives_a_kill_and_a_restart():
    """Echo in order through unix:PATH; ws-api killed with SIGKILL (its socket file stays
    behind, stale); a new ws-api on the same path replaces the stale file, the gateway
    reconnects and nothing is lost."""
    d = Dir()
    try:
        api = api_on(d)
        gw = Gateway(["unix:" + d.grpc], threads=2, streams=4)
        node = {"node": "unix:" + d.grpc}
        eq(gw.metric("wsgw_upstream_connected", node), 1)
        eq(arun(echo_round(gw, 10, 50, "a")), want(10, 50, "a"))
        api.send_signal(signal.SIGKILL)
        api.wait()
        check(os.path.exists(d.grpc), "a killed ws-api leaves its socket file")
        wait_until(lambda: not gw.ready(), 10, what="gateway not ready without its node")
        api = api_on(d)
        gw.wait_ready()
        eq(arun(echo_round(gw, 10, 50, "b")), want(10, 50, "b"))
        check(gw.metric("wsgw_upstream_reconnects_total", node) >= 1)
        eq(gw.metric("wsgw_upstream_lost_messages_total"), 0)
    finally:
        d.close()


def test_gathered_writes_left_behind_on_a_unix_socket_corrupt_nothing():
    """A Unix domain socket takes partial writes differently from TCP (its send buffer bounds
    the queued skbs): with --upstream-sndbuf 4096, test_faults' 1-9 KB echoes through a frozen
    ws-api (10 clients x 100) come back byte for byte and in order."""
    d = Dir()
    try:
        api = api_on(d)
        gw = Gateway(["unix:" + d.grpc], threads=2, streams=4,
                     extra=["--upstream-sndbuf", "4096"])
        big_echoes_through_a_frozen_api(gw, api, 10, 100)
        check(gw.metric("wsgw_upstream_send_blocked_total") > 0,
              "the socket took everything: nothing was left behind to test")
    finally:
        d.close()


def test_grpc_and_http_push_over_unix_sockets():
    """A backend pushes through ws-api's gRPC socket (grpcio, target "unix:PATH") and its HTTP
    socket; the client behind the gateway (itself on the gRPC socket) gets both."""
    import grpc
    pb, pbg = proto()
    d = Dir()
    try:
        api_on(d)
        gw = Gateway(["unix:" + d.grpc], threads=1, streams=2)

        async def main():
            ws = await connect(gw.url("carol"))
            wait_until(lambda: "carol" in http_unix(d.http, "GET", "/v1/users/carol")[1], 10,
                       what="carol online")
            ch = grpc.insecure_channel("unix:" + d.grpc)
            r = pbg.PushStub(ch).Push(pb.PushRequest(target=pb.Target(user_ids=["carol"]),
                                                     payload=b"over grpc"), timeout=10)
            ch.close()
            eq(r.gateways, 1)
            eq(await asyncio.wait_for(ws.recv(), 10), "over grpc")
            st, body = http_unix(d.http, "POST", "/v1/push",
                                 {"user_ids": ["carol"], "data": "over http"})
            eq(st, 200, body)
            eq(await asyncio.wait_for(ws.recv(), 10), "over http")
            await ws.close()
        arun(main())
    finally:
        d.close()


def test_tls_over_a_unix_socket_verifies_localhost():
    """h2 over TLS on a Unix socket: the gateway verifies the name its :authority gives such a
    target, localhost. Trusted, the echo goes through; without --upstream-ca it never gets
    ready and says why."""
    from test_security import make_cert
    d = Dir()
    try:
        cert, key = make_cert(d.path)
        api_on(d, ["--grpc-tls-cert", cert, "--grpc-tls-key", key])
        gw = Gateway(["unix:" + d.grpc], threads=1, streams=2,
                     extra=["--upstream-tls", "--upstream-ca", cert])
        eq(arun(echo_round(gw, 3, 20, "t")), want(3, 20, "t"))
        untrusted = Gateway(["unix:" + d.grpc], threads=1, streams=2, extra=["--upstream-tls"],
                            wait_ready=False)
        wait_until(lambda: untrusted.proc_log_has("certificate"), 10,
                   what="the untrusted gateway's certificate error")
        check(not untrusted.ready(), "ready although the certificate is not trusted")
    finally:
        d.close()


def test_grpc_unix_sndbuf_sizes_what_ws_api_sends_toward_a_gateway():
    """A Unix domain socket does not grow its send buffer as TCP does: ws-api sets SO_SNDBUF
    (--grpc-unix-sndbuf) on each gRPC connection it accepts on unix:PATH. ss -xm shows the
    kernel's figure: twice the value, capped at net.core.wmem_max."""
    with open("/proc/sys/net/core/wmem_max") as f:
        wmem_max = int(f.read())
    for flag, val in (("1m", 1 << 20), ("64k", 64 << 10)):
        d = Dir()
        try:
            api = api_on(d, ["--grpc-unix-sndbuf", flag])
            gw = Gateway(["unix:" + d.grpc], threads=1, streams=2)
            eq(arun(echo_round(gw, 1, 5, "s")), want(1, 5, "s"))
            out = subprocess.run(["ss", "-xmpn"], capture_output=True, text=True,
                                 timeout=10).stdout
            tbs = [int(line.split(",tb")[1].split(",")[0]) for line in out.splitlines()
                   if "pid=%d," % api.pid in line and d.grpc in line and "ESTAB" in line
                   and ",tb" in line]
            check(tbs, "no connection of ws-api on %s in ss -xmpn:\n%s" % (d.grpc, out[-2000:]))
            eq(set(tbs), {2 * min(val, wmem_max)}, "--grpc-unix-sndbuf %s" % flag)
            stop(gw.proc)
            stop(api)
        finally:
            d.close()


def test_a_live_socket_is_not_taken_over_and_its_file_goes_on_exit():
    """A second ws-api on a path a live one listens on exits with a clear error, and the first
    keeps serving; on SIGTERM the first removes its socket files."""
    d = Dir()
    try:
        api = api_on(d)
        hp = free_port()
        r = subprocess.run([os.path.join(BIN, "ws-api"), "--grpc-listen", "unix:" + d.grpc,
                            "--http-listen", "127.0.0.1:%d" % hp], capture_output=True,
                           text=True, timeout=20)
        check(r.returncode != 0, "a second ws-api started on a live socket")
        check("a running process listens there" in r.stderr, r.stderr[-500:])
        gw = Gateway(["unix:" + d.grpc], threads=1, streams=2)
        eq(arun(echo_round(gw, 2, 10, "c")), want(2, 10, "c"))
        stop(api)
        check(not os.path.exists(d.grpc) and not os.path.exists(d.http),
              "socket files left after a clean exit: %s" % os.listdir(d.path))
    finally:
        d.close()


def test_a_socket_file_someone_else_put_there_is_not_removed_on_exit():
    """Someone removes ws-api's socket file by hand and binds a new socket at the path (a new
    server, say): on SIGTERM ws-api removes its HTTP socket file, which is still its own, and
    leaves the other one, which is not."""
    d = Dir()
    other = socket.socket(socket.AF_UNIX)
    try:
        api = api_on(d)
        os.unlink(d.grpc)
        other.bind(d.grpc)
        other.listen(4)
        stop(api)
        check(os.path.exists(d.grpc), "ws-api removed a socket file it did not create")
        check(sock_ready(d.grpc), "the other socket no longer answers at its path")
        check(not os.path.exists(d.http), "ws-api left its own HTTP socket file")
    finally:
        other.close()
        d.close()


def test_a_stopped_ws_api_with_a_full_backlog_is_not_taken_over_either():
    """A live ws-api that does not accept (SIGSTOP) and whose listen backlog is full: the new
    one's probe of the path must not wait for it (a blocking connect there waits forever); it
    exits at once with the same error."""
    d = Dir()
    held = []
    try:
        api = api_on(d)
        api.send_signal(signal.SIGSTOP)
        try:
            for _ in range(5000):
                s = socket.socket(socket.AF_UNIX)
                s.setblocking(False)
                try:
                    s.connect(d.grpc)
                except BlockingIOError:
                    s.close()
                    break
                held.append(s)
            else:
                raise AssertionError("the backlog never filled")
            r = subprocess.run([os.path.join(BIN, "ws-api"), "--grpc-listen", "unix:" + d.grpc,
                                "--http-listen", "127.0.0.1:%d" % free_port()],
                               capture_output=True, text=True, timeout=20)
            check(r.returncode != 0, "a second ws-api started on a live socket")
            check("a running process listens there" in r.stderr, r.stderr[-500:])
        finally:
            api.send_signal(signal.SIGCONT)
    finally:
        for s in held:
            s.close()
        d.close()


def test_unix_paths_that_do_not_fit_are_refused_at_start():
    long = "/tmp/" + "x" * 120
    for args, what in (
            (["ws-api", "--grpc-listen", "unix:" + long, "--http-listen", "127.0.0.1:0"],
             "unix:PATH"),
            (["ws-api", "--grpc-listen", "unix:", "--http-listen", "127.0.0.1:0"], "unix:PATH"),
            (["ws-gateway", "--listen", "127.0.0.1:0", "--upstream", "unix:" + long],
             "a unix: path takes"),
            (["ws-gateway", "--listen", "127.0.0.1:0", "--upstream", "unix:"],
             "a unix: path takes")):
        r = subprocess.run([os.path.join(BIN, args[0])] + args[1:], capture_output=True,
                           text=True, timeout=20)
        check(r.returncode != 0, "%s started with %s" % (args[0], args[1:]))
        check(what in r.stderr, "%s: %s" % (args[0], r.stderr[-400:]))


if __name__ == "__main__":
    run(globals())
