"""The operator's surface of the three programs (issue 17): --version, each program's own
environment prefix (WSGW_ ws-gateway, WSAPI_ ws-api, WSBENCH_ ws-bench: no variable read by
two programs), one rule for every duration flag (a bare number is seconds), and an error that
points at --help once."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wsgwtest import (BIN, ROOT, Api, check, eq, free_port, proto, run, start,  # noqa: E402
                      wait_until)

PROGS = ("ws-gateway", "ws-api", "ws-bench")


def sh(args, env=None, timeout=10):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("WSGW_", "WSAPI_", "WSBENCH_"))}
    e.update(env or {})
    return subprocess.run([os.path.join(BIN, args[0])] + list(args[1:]), capture_output=True,
                          text=True, timeout=timeout, env=e)


def test_version_on_all_three():
    with open(os.path.join(ROOT, "VERSION")) as f:
        want = f.read().strip()
    check(re.fullmatch(r"\d+\.\d+\.\d+", want), "VERSION: %r" % want)
    for p in PROGS:
        r = sh([p, "--version"])
        eq(r.returncode, 0, "%s --version: %s" % (p, r.stderr))
        eq(r.stdout, "%s %s\n" % (p, want))
        r = sh([p, "--help"])
        check("--version" in r.stdout, "%s --help does not list --version" % p)


def test_env_prefix_per_program():
    # ws-api reads WSAPI_*, not WSGW_*: a gateway's WSGW_HANDLER is not ws-api's --handler
    gp, hp = free_port(), free_port()
    base = ["ws-api", "--grpc-listen", "127.0.0.1:%d" % gp, "--http-listen", "127.0.0.1:%d" % hp]
    r = sh(base, env={"WSAPI_HANDLER": "bogus"})
    eq(r.returncode, 2, r.stderr)
    check("unknown --handler 'bogus'" in r.stderr, r.stderr)
    # ws-bench reads WSBENCH_*: the variable it names is its own
    r = sh(["ws-bench", "message"], env={"WSBENCH_TIMES": "lots"})
    eq(r.returncode, 2, r.stderr)
    check("WSBENCH_TIMES" in r.stderr, r.stderr)
    r = sh(["ws-bench", "nomode"], env={"WSGW_TIMES": "lots", "WSAPI_TIMES": "lots"})
    eq(r.returncode, 2, r.stderr)
    check("TIMES" not in r.stderr and "mode" in r.stderr, r.stderr)
    # ws-gateway reads WSGW_* only
    r = sh(["ws-gateway", "--listen", "127.0.0.1:%d" % free_port()],
           env={"WSGW_COALESCE": "lots"})
    eq(r.returncode, 2, r.stderr)
    check("WSGW_COALESCE" in r.stderr, r.stderr)
    for p in PROGS:
        r = sh([p, "--help"])
        prefix = {"ws-gateway": "WSGW_", "ws-api": "WSAPI_", "ws-bench": "WSBENCH_"}[p]
        names = set(re.findall(r"env (WS[A-Z]*_)[A-Z_]+\)", r.stdout))
        eq(names, {prefix}, "%s --help env prefixes" % p)
    # The case: WSGW_MAX_MESSAGE=65536 set for the gateway lowered ws-api's gRPC limit
    # to 64 KB, under the gateway's batch size: a 100 KB gRPC Push then failed (grpc-status 8).
    import grpc
    pb, pbg = proto()
    api = Api(handler="echo", env={"WSGW_MAX_MESSAGE": "65536", "WSGW_HANDLER": "bogus"})
    ch = grpc.insecure_channel(api.grpc_addr)
    try:
        rep = pbg.PushStub(ch).Push(pb.PushRequest(target=pb.Target(all=True),
                                                   payload=b"x" * 100000), timeout=10)
        eq(rep.gateways, 0)
    finally:
        ch.close()


def test_bare_number_is_seconds_for_every_duration_flag():
    # --coalesce 5 was 5 microseconds while --ping-interval 5 was 5 seconds: now both are
    # seconds, and 5 s is past --coalesce's 100 ms bound
    for flag in ("--coalesce", "--svc-coalesce"):
        r = sh(["ws-gateway", "--listen", "127.0.0.1:%d" % free_port(), flag, "5"])
        eq(r.returncode, 2, "%s 5: %s" % (flag, r.stderr))
        check("out of range" in r.stderr, r.stderr)
    # a bare fraction of a second is accepted
    api = Api()
    port = free_port()
    p = start(["ws-gateway", "--listen", "127.0.0.1:%d" % port, "--upstream", api.grpc_addr,
               "--coalesce", "0.0002", "--svc-coalesce", "0.0005", "--ping-interval", "5"])
    import http.client

    def ready():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            return c.getresponse().status == 200
        except OSError:
            return False
    wait_until(lambda: ready() or p.poll() is not None, 10, what="gateway ready")
    eq(p.poll(), None)
    for prog in PROGS:
        r = sh([prog, "--help"])
        check("a bare number means\nseconds, for every duration flag" in r.stdout,
              "%s --help does not state the duration rule" % prog)


def test_errors_point_at_help_once():
    for p in PROGS:
        r = sh([p, "--no-such-flag"])
        eq(r.returncode, 2, p)
        eq(r.stderr.count("(see --help)"), 1, "%s: %s" % (p, r.stderr))


if __name__ == "__main__":
    run(globals())
