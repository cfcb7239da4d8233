"""test_redis_client: ws-api's Redis links (api/redis.c) against Debian's redis-server: up,
killed (down at once, ws-api stays up), restarted (back within the backoff), stopped with
SIGSTOP (down after --redis-timeout: our command deadline and the sub link's probe), AUTH with
a password from the environment (never logged), a wrong one (setup refusals), SELECT, and the
URL checks at start (rediss:// refused with a reason)."""
import os
import sys
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


T.run(globals())
