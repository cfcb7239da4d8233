"""ws-gateway security at the edges, with real peers: JWT at the handshake (header and query;
valid, wrong signature, expired, not yet valid, alg none, HS512), Origin allowlist, per-address
limit, wss with a self-signed certificate, and gateway -> ws-api over TLS with a gateway token."""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import Api, Gateway, check, eq, raw_http, run, wait_until  # noqa: E402

SECRET = "test-secret-of-reasonable-length"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims, secret=SECRET, alg="HS256"):
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signing = ("%s.%s" % (header, payload)).encode()
    if alg == "none":
        sig = ""
    else:
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
        sig = b64(hmac.new(secret.encode(), signing, digest).digest())
    return "%s.%s.%s" % (header, payload, sig)


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def status_of(url, headers=None, **kw):
    """101 (then echo check) or the refusal status."""
    try:
        ws = await websockets.connect(url, extra_headers=headers or {}, ping_interval=None, **kw)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    await ws.send("hi")
    eq(await asyncio.wait_for(ws.recv(), 5), "hi")
    await ws.close()
    return 101


def test_jwt_at_the_handshake():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--auth-secret", SECRET])
    now = int(time.time())
    base = "ws://127.0.0.1:%d/gateway/ws" % gw.port
    good = jwt({"sub": "alice", "exp": now + 60})
    cases = [
        ("valid, header", base, {"Authorization": "Bearer " + good}, 101),
        ("valid, query", base + "?token=" + good, None, 101),
        ("no token", base, None, 401),
        ("wrong signature", base, {"Authorization": "Bearer " + jwt({"sub": "a", "exp": now + 60},
                                                                      secret="other")}, 401),
        # (past the default 30 s --jwt-leeway either way)
        ("expired", base + "?token=" + jwt({"sub": "a", "exp": now - 60}), None, 401),
        ("not yet valid", base + "?token=" + jwt({"sub": "a", "exp": now + 120, "nbf": now + 90}),
         None, 401),
        ("alg none", base, {"Authorization": "Bearer " + jwt({"sub": "a", "exp": now + 60},
                                                               alg="none")}, 401),
        ("alg HS512", base + "?token=" + jwt({"sub": "a", "exp": now + 60}, alg="HS512"), None, 401),
        ("no sub", base + "?token=" + jwt({"exp": now + 60}), None, 401),
        ("garbage", base + "?token=not.a.jwt", None, 401),
        ("user= is ignored when auth is on", base + "?user=mallory", None, 401),
    ]

    async def main():
        return [(what, await status_of(url, hdrs)) for what, url, hdrs, _ in cases]
    got = arun(main())
    eq(got, [(what, want) for what, _, _, want in cases])

    async def who():
        ws = await websockets.connect(base, extra_headers={"Authorization": "Bearer " + good},
                                      ping_interval=None)
        ids = wait_until(lambda: api.conns_of("alice"), 5, what="alice in presence")
        await ws.close()
        return ids
    check(len(arun(who())) == 1)
    check(gw.metric("wsgw_auth_rejects_total", {"reason": "expired"}) == 1)
    check(gw.metric("wsgw_auth_rejects_total", {"reason": "algorithm"}) >= 2)
    check(gw.metric("wsgw_handshake_rejects_total", {"status": "401"}) == 9)


def test_refusal_leaks_no_detail():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--auth-secret", SECRET])
    resp = raw_http(gw.port, b"GET /gateway/ws?token=" + jwt({"sub": "a", "exp": 1}).encode() +
                    b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n")
    check(resp.startswith(b"HTTP/1.1 401 "), resp)
    check(b"expired" not in resp.lower(), resp)
    with open(gw.proc.log_path) as f:
        check("status=401 reason=expired" in f.read(), "the log names the reason")


def test_origin_allowlist():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--allowed-origins", "https://good.example,http://localhost:3000"])
    url = gw.url("o")

    async def main():
        return [await status_of(url, origin="https://good.example"),
                await status_of(url, origin="http://LOCALHOST:3000"),
                await status_of(url, origin="https://evil.example"),
                await status_of(url)]
    eq(arun(main()), [101, 101, 403, 101])
    gw2 = Gateway([api.grpc_addr], extra=["--allowed-origins", "https://good.example",
                                          "--require-origin"])

    async def main2():
        return [await status_of(gw2.url("o")),
                await status_of(gw2.url("o"), origin="https://good.example")]
    eq(arun(main2()), [403, 101])
    check(gw.metric("wsgw_handshake_rejects_total", {"status": "403"}) == 1)


def test_max_connections_per_address():
    api = Api()
    gw = Gateway([api.grpc_addr], extra=["--max-conns-per-ip", "3"])

    async def main():
        socks = [await websockets.connect(gw.url("p%d" % i), ping_interval=None) for i in range(3)]
        fourth = await status_of(gw.url("p4"))
        await socks[0].close()
        await asyncio.sleep(0.3)  # the close reaches the gateway
        again = await status_of(gw.url("p5"))
        for s in socks[1:]:
            await s.close()
        return fourth, again
    eq(arun(main()), (429, 101))
    eq(gw.metric("wsgw_handshake_rejects_total", {"status": "429"}), 1)


def test_stalled_handshakes_are_bounded():
    """Clients that send most of an 8 KB request head and stall hold gateway memory only up to
    a per-thread budget (4 MB): past it they get 503; the memory comes back when they go."""
    import socket
    api = Api()
    gw = Gateway([api.grpc_addr], threads=1)
    stalled, refused = [], 0
    head = b"GET /gateway/ws HTTP/1.1\r\nX-Pad: " + b"a" * 8000  # no end of head
    for i in range(560):  # 560 x 8 KB > 4 MB
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(head)
        stalled.append(s)
    # every one is either still waiting or was answered 503 (well within the 10 s the gateway
    # gives a request head)
    import select
    time.sleep(0.5)
    readable, _, _ = select.select(stalled, [], [], 1)
    for s in readable:
        data = s.recv(4096)
        check(data.startswith(b"HTTP/1.1 503 "), data[:80])
        refused += 1
    check(20 <= refused <= 80, "%d of 560 stalled heads refused" % refused)
    eq(gw.metric("wsgw_handshake_rejects_total", {"status": "503"}), refused)
    for s in stalled:
        s.close()
    time.sleep(0.3)  # the closes reach the gateway: the budget is free again
    stalled = []
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(head)
        stalled.append(s)

    async def main():
        ws = await websockets.connect(gw.url("after"), ping_interval=None)
        await ws.send("ok?")
        r = await asyncio.wait_for(ws.recv(), 5)
        await ws.close()
        return r
    eq(arun(main()), "ok?")
    for s in stalled:
        s.close()
    eq(gw.metric("wsgw_handshake_rejects_total", {"status": "503"}), refused)


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_wss_and_tls_to_api_with_gateway_token():
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d)
        api = Api(extra=["--grpc-tls-cert", cert, "--grpc-tls-key", key,
                         "--gateway-token", "gw-token-1"])
        gw = Gateway(["localhost:%d" % api.grpc_port],
                     extra=["--tls-cert", cert, "--tls-key", key, "--upstream-tls",
                            "--upstream-ca", cert, "--gateway-token", "gw-token-1"],
                     wait_ready=False)
        ctx = ssl.create_default_context(cafile=cert)

        def https_get(path):
            import http.client
            c = http.client.HTTPSConnection("127.0.0.1", gw.port, context=ctx, timeout=5)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            return r.status
        wait_until(lambda: https_get("/readyz") == 200, 10, what="ready over TLS")

        async def main():
            ws = await websockets.connect("wss://127.0.0.1:%d/gateway/ws?user=sec" % gw.port,
                                          ssl=ctx, ping_interval=None)
            await ws.send("over tls both ways")
            r = await asyncio.wait_for(ws.recv(), 5)
            await ws.close()
            plain = None
            try:  # plain ws on the TLS port is refused
                await websockets.connect("ws://127.0.0.1:%d/gateway/ws" % gw.port,
                                         open_timeout=3, ping_interval=None)
            except Exception as e:  # noqa: BLE001
                plain = type(e).__name__
            return r, plain
        r, plain = arun(main())
        eq(r, "over tls both ways")
        check(plain is not None, "plain ws accepted on a TLS port")

        # a gateway with the wrong token, or that does not trust the certificate, never
        # becomes ready
        bad_token = Gateway(["localhost:%d" % api.grpc_port],
                            extra=["--upstream-tls", "--upstream-ca", cert, "--gateway-token", "x"],
                            wait_ready=False)
        untrusted = Gateway(["localhost:%d" % api.grpc_port],
                            extra=["--upstream-tls", "--gateway-token", "gw-token-1"],
                            wait_ready=False)
        time.sleep(1.5)
        check(not bad_token.ready(), "ready although ws-api refuses its token")
        check(not untrusted.ready(), "ready although the certificate is not trusted")
        with open(untrusted.proc.log_path) as f:
            check("certificate" in f.read())


if __name__ == "__main__":
    run(globals())
