"""--upstream NAME:PORT with a name that resolves to several addresses (issue 14, case 9): every
address is an API node, re-resolved every --dns-interval, as dns:/// does; IP literals stay
static nodes. The name resolves (TestName: nss_wrapper, or /etc/hosts in sanitizer builds) to
127.0.0.2, .3 and .4, where three ws-api listen on one port."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import (BUILD, SANITIZE, Gateway, check, eq, free_port, parse_metric, run,  # noqa: E402
                      start, wait_port, wait_until)

NAME = "wsgw-multi-%d.test" % os.getpid()
ADDRS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def port_free_on_all(addrs):
    """A port free on every address (bind each, retry on a clash)."""
    for _ in range(50):
        port = free_port(addrs[0])
        try:
            for a in addrs[1:]:
                s = socket.socket()
                try:
                    s.bind((a, port))
                finally:
                    s.close()
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on all of %s" % addrs)


class ApiAt:
    """A bin/ws-api with its gRPC port on addr:port (HTTP on 127.0.0.1, a free port)."""

    def __init__(self, addr, port, extra=()):
        self.addr, self.port = addr, port
        self.http_port = free_port()
        self.proc = start(["ws-api", "--grpc-listen", "%s:%d" % (addr, port), "--http-listen",
                           "127.0.0.1:%d" % self.http_port, "--handler", "echo"] + list(extra))
        wait_port(port, host=addr, proc=self.proc)
        wait_port(self.http_port, proc=self.proc)

    def request(self, method, path, body=None):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        data = r.read().decode()
        c.close()
        return r.status, data

    def metric(self, name):
        return parse_metric(self.request("GET", "/metrics")[1], name)


class TestName:
    """NAME resolving to addrs for the gateway: through nss_wrapper (LD_PRELOAD and a hosts file
    of our own: no root, nothing shared touched), or, in sanitizer builds (whose runtimes do not
    bear nss_wrapper: ASan refuses its dlopen flags, TSan reports its locking), through lines
    added to /etc/hosts and removed again (needs root). env: for the gateway's process."""

    MARK = "# wsgw-test %d" % os.getpid()

    def __init__(self, addrs, names=(NAME,)):
        self.names = names
        self.etc = bool(SANITIZE)
        if self.etc:
            check(os.access("/etc/hosts", os.W_OK),
                  "sanitizer runs of this test need a writable /etc/hosts (root)")
            self.path, self.env = "/etc/hosts", {}
        else:
            fd, self.path = tempfile.mkstemp(prefix="hosts-", dir=BUILD)
            os.close(fd)
            self.env = {"LD_PRELOAD": "libnss_wrapper.so", "NSS_WRAPPER_HOSTS": self.path}
        self.set(addrs)

    def set(self, addrs):
        ours = "".join("%s %s %s\n" % (a, " ".join(self.names), self.MARK) for a in addrs)
        if not self.etc:
            with open(self.path + ".new", "w") as f:
                f.write(ours)
            os.replace(self.path + ".new", self.path)
            return
        with open(self.path) as f:
            rest = [l for l in f if self.MARK not in l]
        with open(self.path, "w") as f:  # in place: /etc/hosts may be a mount point
            f.write("".join(rest) + ours)

    def close(self):
        if self.etc:
            self.set([])
        else:
            os.unlink(self.path)


def test_host_name_with_several_addresses_is_several_nodes():
    """Three ws-api behind one name: each gets the gateway's streams, and a push through each
    reaches a user on the gateway. When the name loses an address, that node is let go."""
    port = port_free_on_all(ADDRS)
    apis = [ApiAt(a, port) for a in ADDRS]
    name = TestName(ADDRS)
    try:
        gw = Gateway(["%s:%d" % (NAME, port)], streams=2, env=name.env,
                     extra=["--dns-interval", "200ms", "--max-upstreams", "4"])
        for api in apis:
            wait_until(lambda: api.metric("wsapi_gateway_streams") == 2, 5,
                       what="two gateway streams at ws-api %s" % api.addr)
        for a in ADDRS:
            eq(gw.metric("wsgw_upstream_connected", {"node": "%s:%d" % (a, port)}), 1, a)

        async def main():
            ws = await websockets.connect(gw.url("multi"), ping_interval=None)
            await ws.send("hello")
            eq(await asyncio.wait_for(ws.recv(), 5), "hello")
            loop = asyncio.get_running_loop()
            for api in apis:
                await loop.run_in_executor(None, lambda: wait_until(
                    lambda: "multi" in api.request("GET", "/v1/users/multi")[1], 5,
                    what="presence of the user at %s" % api.addr))
            got = []
            for api in apis:
                st, body = await loop.run_in_executor(None, lambda: api.request(
                    "POST", "/v1/push", {"user_ids": ["multi"], "data": "via " + api.addr}))
                eq((st, json.loads(body)), (200, {"gateways": 1}), api.addr)
                got.append(await asyncio.wait_for(ws.recv(), 5))
            await ws.close()
            return got
        eq(asyncio.run(asyncio.wait_for(main(), 30)), ["via " + a for a in ADDRS])
        # re-resolved: 127.0.0.4 leaves the name, its node is let go
        name.set(ADDRS[:2])
        wait_until(lambda: apis[2].metric("wsapi_gateway_streams") == 0, 5,
                   what="the gateway to leave the node that left the name")
        check(gw.ready())
        eq(apis[0].metric("wsapi_gateway_streams"), 2)
    finally:
        name.close()


def test_tls_host_name_with_several_addresses_is_several_nodes_verified_by_name():
    """--upstream-tls with a plain name: every address is a node too (it stayed one node), and
    each must present a certificate for the name (SNI and the host check use the name): the
    certificate names NAME only, no IP. A second name for the same addresses, which the
    certificate does not carry, connects to none of them."""
    other = "wsgw-other-%d.test" % os.getpid()
    port = port_free_on_all(ADDRS)
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "1", "-subj", "/CN=" + NAME, "-addext",
                        "subjectAltName=DNS:" + NAME], check=True, capture_output=True)
        apis = [ApiAt(a, port, ["--grpc-tls-cert", cert, "--grpc-tls-key", key]) for a in ADDRS]
        name = TestName(ADDRS, names=(NAME, other))
        try:
            tls = ["--upstream-tls", "--upstream-ca", cert, "--dns-interval", "200ms",
                   "--max-upstreams", "4"]
            gw = Gateway(["%s:%d" % (NAME, port)], streams=2, env=name.env, extra=tls)
            for api in apis:
                wait_until(lambda: api.metric("wsapi_gateway_streams") == 2, 5,
                           what="two gateway streams at ws-api %s" % api.addr)
            for a in ADDRS:
                eq(gw.metric("wsgw_upstream_connected", {"node": "%s:%d" % (a, port)}), 1, a)

            async def echo():
                ws = await websockets.connect(gw.url("tls"), ping_interval=None)
                await ws.send("over tls")
                got = await asyncio.wait_for(ws.recv(), 5)
                await ws.close()
                return got
            eq(asyncio.run(echo()), "over tls")
            wrong = Gateway(["%s:%d" % (other, port)], env=name.env, extra=tls, wait_ready=False)
            wait_until(lambda: wrong.proc_log_has("certificate: hostname mismatch"), 10,
                       what="the gateway to refuse certificates that do not name its upstream")
            time.sleep(0.5)  # a few --dns-interval turns: every address was tried
            for a in ADDRS:
                eq(wrong.metric("wsgw_upstream_connected", {"node": "%s:%d" % (a, port)}), 0, a)
            check(not wrong.ready(), "ready although no certificate names its upstream")
        finally:
            name.close()


def test_ip_literal_stays_one_static_node():
    """An IP address is one node, named by itself (no resolver slot)."""
    port = port_free_on_all(ADDRS[:1])
    ApiAt(ADDRS[0], port)
    gw = Gateway(["%s:%d" % (ADDRS[0], port)])
    eq(gw.metric("wsgw_upstream_connected", {"node": "%s:%d" % (ADDRS[0], port)}), 1)
    _, body = gw.get("/metrics")
    eq(len([l for l in body.splitlines() if l.startswith("wsgw_upstream_connected{")]), 1)


if __name__ == "__main__":
    run(globals())
