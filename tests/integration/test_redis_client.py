"""test_redis_client: ws-api's Redis links (api/redis.c) against Debian's redis-server: up,
killed (down at once, ws-api stays up), restarted (back within the backoff), stopped with
SIGSTOP (down after --redis-timeout: our command deadline and the sub link's probe), AUTH with
a password from the environment (never logged), a wrong one (setup refusals), SELECT, and the
URL checks at start (rediss:// refused with a reason)."""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import wsgwtest as T  # noqa: E402


def metric(api, name, labels=None):
    st, body = api.http("GET", "/metrics")
    T.eq(st, 200)
    return T.parse_metric(body, name, labels)


def links_up(api):
    return (metric(api, "wsapi_redis_up", {"link": "cmd"}),
            metric(api, "wsapi_redis_up", {"link": "sub"}))


def wait_links(api, want, timeout=5):
    T.wait_until(lambda: links_up(api) == (want, want), timeout,
                 what="wsapi_redis_up == %s on both links (now %s)" % (want, links_up(api)))


def test_up_killed_restarted():
    r = T.Redis()
    api = T.Api(extra=["--redis", r.url, "--redis-timeout", "500ms"])
    wait_links(api, 1.0)
    r.kill()
    t0 = time.monotonic()
    wait_links(api, 0.0, timeout=3)
    down_s = time.monotonic() - t0
    st, _ = api.http("GET", "/healthz")
    T.eq(st, 200, "ws-api stays up without Redis")
    T.check(metric(api, "wsapi_redis_disconnects_total", {"link": "cmd", "reason": "error"}) >= 1)
    time.sleep(1.0)  # a few refused reconnects
    r.start()
    t0 = time.monotonic()
    wait_links(api, 1.0, timeout=5)
    print("down after kill: %.2fs, up after restart: %.2fs" % (down_s, time.monotonic() - t0))
    T.check(api.proc.poll() is None)


def test_unresponsive_redis():
    r = T.Redis()
    api = T.Api(extra=["--redis", r.url, "--redis-timeout", "300ms"])
    wait_links(api, 1.0)
    r.pause()
    try:
        t0 = time.monotonic()
        wait_links(api, 0.0, timeout=3)
        print("down %.2fs after SIGSTOP" % (time.monotonic() - t0))
        T.check(metric(api, "wsapi_redis_disconnects_total", {"link": "cmd", "reason": "timeout"})
                + metric(api, "wsapi_redis_disconnects_total",
                         {"link": "cmd", "reason": "connect_timeout"}) >= 1)
        T.check(metric(api, "wsapi_redis_disconnects_total", {"link": "sub", "reason": "probe"})
                + metric(api, "wsapi_redis_disconnects_total",
                         {"link": "sub", "reason": "connect_timeout"}) >= 1)
    finally:
        r.resume()
    wait_links(api, 1.0, timeout=5)


def test_auth_and_select():
    r = T.Redis(requirepass="s3cret-pw")
    bad = T.Api(extra=["--redis", r.url + "/2"], env={"WSAPI_REDIS_PASSWORD": "wrong-pw"})
    T.wait_until(lambda: metric(bad, "wsapi_redis_disconnects_total",
                                {"link": "cmd", "reason": "setup"}) >= 1, 5, what="AUTH refused")
    T.eq(links_up(bad), (0.0, 0.0))
    good = T.Api(extra=["--redis", r.url + "/2"], env={"WSAPI_REDIS_PASSWORD": "s3cret-pw"})
    wait_links(good, 1.0)
    clients = r.cmd("CLIENT", "LIST").decode()
    dbs = [f for line in clients.splitlines() for f in line.split() if f.startswith("db=")]
    T.check(dbs.count("db=2") >= 2, "both links SELECTed db 2: %s" % clients)
    T.stop(bad.proc)
    T.stop(good.proc)
    for p in (bad.proc, good.proc):
        with open(p.log_path, errors="replace") as f:
            log = f.read()
        T.check("s3cret-pw" not in log and "wrong-pw" not in log, "a password was logged")


def test_bad_urls_refused_at_start():
    for url, want in (("rediss://127.0.0.1:6380", "TLS"), ("redis://h:99999", "port"),
                      ("http://127.0.0.1", "redis://")):
        p = T.start(["ws-api", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                     "--redis", url])
        rc = p.wait(10)
        T.eq(rc, 2, url)
        with open(p.log_path, errors="replace") as f:
            T.check(want in f.read(), "%s: message names %s" % (url, want))


class SlowProxy:
    """A TCP proxy to Redis whose replies (Redis to ws-api), once slow is set, trickle through
    at `chunk` bytes per `every` seconds: a Redis that answers, but far behind."""

    def __init__(self, port, chunk=4, every=0.1):
        self.port, self.chunk, self.every, self.slow = port, chunk, every, False
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.url = "redis://127.0.0.1:%d" % self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pump, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, True), daemon=True).start()

    def _pump(self, src, dst, replies):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while data:
                    n = self.chunk if replies and self.slow else len(data)
                    dst.sendall(data[:n])
                    data = data[n:]
                    if replies and self.slow and data:
                        time.sleep(self.every)
        except OSError:
            pass
        for sk in (src, dst):
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_slow_but_answering_redis_keeps_its_link():
    """A backlog longer than --redis-timeout is not a dead Redis while replies keep coming:
    found in bench/redis_cluster.sh, where 100 000 Closes at once put 56 170 commands in
    flight, the oldest waited 2.1 s for its turn, the link was dropped and every gateway's
    presence rebuilt (twice or three times per run)."""
    r = T.Redis()
    px = SlowProxy(r.port)
    api = T.Api(extra=["--redis", px.url, "--redis-timeout", "300ms", "--presence-ttl", "10s"])
    wait_links(api, 1.0)
    T.wait_until(lambda: api.push(user_ids=["x"], data="d")[0] == 200, 5, what="pushes answered")
    px.slow = True  # ~40 bytes/s of replies: 20 pushes' lookups (4 bytes each) take ~2 s
    res = []

    def push(i):
        res.append(api.push(user_ids=["u%d" % i], data="d")[0])
    ts = [threading.Thread(target=push, args=(i,)) for i in range(20)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    took = time.monotonic() - t0
    px.slow = False
    print("20 pushes through a Redis answering 4 bytes per 100 ms: %.2fs, statuses %s"
          % (took, sorted(set(res))))
    T.eq(metric(api, "wsapi_redis_disconnects_total", {"link": "cmd", "reason": "timeout"}), 0.0,
         "no cmd link drop while replies come")
    T.eq(sorted(res), [200] * 20)
    T.check(took > 0.6, "the replies were slowed past --redis-timeout (%.2fs)" % took)


T.run(globals())
