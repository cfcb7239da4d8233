"""wsgwtest: helpers for wsgw integration tests (run with Debian's /usr/bin/python3).

- free loopback ports, processes started in their own process group and always killed,
- bounded waits (no unbounded loops),
- gRPC stubs generated from proto/wsgw.proto at test time (grpc_tools.protoc) into $BUILD/py,
- a tiny runner: run(globals()) calls every test_* function, prints "ok NAME" / "FAIL NAME"
  (tests/run.sh counts those lines) and exits 1 on any failure.
"""
import atexit
import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.environ.get("WSGW_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("BIN") or os.path.join(ROOT, "bin")
BUILD = os.environ.get("BUILD") or os.path.join(ROOT, "build")
SANITIZE = os.environ.get("SANITIZE", "")
# Sanitizer builds are several times slower: tests may scale their loads by this.
SLOW = 4 if SANITIZE else 1

_procs = []


_given_ports = set()


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (bind to 0, read it back, close), and not one this
    process was given before: two calls in a row could get the same port, since nothing holds
    the first until its server binds it (CI, 2026-12-07: ws-api got one port for gRPC and
    HTTP and exited)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((host, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _given_ports:
            break
    _given_ports.add(port)
    return port


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    """Waits until something accepts on host:port; raises on timeout or if proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d:\n%s"
                               % (proc.returncode, port, proc_log(proc)))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listening on %s:%d after %.1fs" % (host, port, timeout))


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until true; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))


class Proc(subprocess.Popen):
    """A started binary; stderr goes to a log file readable with proc_log()."""
    log_path = None


def start(args, env=None, name=None):
    """Starts args (args[0] relative to BIN unless absolute) in its own process group."""
    exe = args[0] if os.path.isabs(args[0]) else os.path.join(BIN, args[0])
    name = name or os.path.basename(exe)
    logdir = os.path.join(BUILD, "test-logs", "procs")
    os.makedirs(logdir, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=name + "-", suffix=".log", dir=logdir)
    full_env = dict(os.environ)
    # ws-api refuses pushes (503) for --presence-grace (3 s) after it starts, until gateways
    # have re-sent presence; tests start it before any gateway, so they run without the grace
    # unless they set the flag or this variable themselves (test_presence_sync does).
    full_env.setdefault("WSAPI_PRESENCE_GRACE", "0")
    full_env.update(env or {})
    p = Proc([exe] + list(args[1:]), stdout=fd, stderr=fd, env=full_env, start_new_session=True)
    os.close(fd)
    p.log_path = path
    _procs.append(p)
    return p


def proc_log(p, tail=40):
    try:
        with open(p.log_path, errors="replace") as f:
            lines = f.readlines()
        return "".join(lines[-tail:])
    except Exception:
        return "(no log)"


def stop(p, sig=signal.SIGTERM, timeout=10.0):
    """Signals the process group and waits; SIGKILL after timeout. Returns the exit code."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
    return p.returncode


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                   "runtime error:")


def sanitizer_reports(p):
    """Lines of a process log that show a sanitizer finding."""
    try:
        with open(p.log_path, errors="replace") as f:
            return [l.rstrip() for l in f if any(m in l for m in SANITIZER_MARKS)]
    except OSError:
        return []


@atexit.register
def _cleanup(graceful=False):
    """Stops every started process: SIGTERM first when graceful (so sanitizers can report at
    exit), SIGKILL for what is left."""
    if graceful:
        for p in _procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for p in _procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for p in _procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except Exception:
                pass


def _on_signal(signum, frame):
    _cleanup()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


_pb = None


def proto():
    """(wsgw_pb2, wsgw_pb2_grpc) generated from proto/wsgw.proto with stock protoc."""
    global _pb
    if _pb:
        return _pb
    out = os.path.join(BUILD, "py")
    os.makedirs(out, exist_ok=True)
    src = os.path.join(ROOT, "proto", "wsgw.proto")
    stamp = os.path.join(out, "wsgw_pb2.py")
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < os.path.getmtime(src):
        from grpc_tools import protoc
        rc = protoc.main(["protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + out,
                          "--grpc_python_out=" + out, src])
        if rc != 0:
            raise RuntimeError("protoc failed on %s" % src)
    if out not in sys.path:
        sys.path.insert(0, out)
    pb2 = importlib.import_module("wsgw_pb2")
    pb2_grpc = importlib.import_module("wsgw_pb2_grpc")
    _pb = (pb2, pb2_grpc)
    return _pb


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def eq(a, b, msg=""):
    if a != b:
        raise AssertionError("%r != %r %s" % (a, b, msg))


def run(namespace, only=None):
    """Runs every test_* function of namespace in definition order; prints ok/FAIL lines and
    '<n> passed, <n> failed'; exits non-zero on failure. argv[1] (or `only`) filters by name."""
    flt = only or (sys.argv[1] if len(sys.argv) > 1 else None)
    tests = [(k, v) for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    passed = failed = 0
    for name, fn in tests:
        if flt and flt not in name:
            continue
        t0 = time.monotonic()
        ok = True
        try:
            fn()
        except Exception:
            ok = False
            traceback.print_exc()
            for p in _procs:
                print("--- log of %s (pid %d, rc %s):\n%s" % (p.args[0], p.pid, p.poll(), proc_log(p)),
                      file=sys.stderr)
        finally:
            _cleanup(graceful=True)
            for p in _procs:
                rep = sanitizer_reports(p)
                if rep:
                    ok = False
                    print("--- sanitizer report in %s (%s):\n%s" % (p.args[0], p.log_path,
                                                                   "\n".join(rep[:20])),
                          file=sys.stderr)
            _procs.clear()
        if ok:
            passed += 1
            print("ok %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
        else:
            failed += 1
            print("FAIL %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


# ---- wsgw processes ---------------------------------------------------------------------

def grpc_exchange_server(servicer=None, handler=None, workers=8):
    """A python3-grpcio server on a free loopback port serving wsgw.v1.Exchange, with an
    ExchangeServicer or a generic RPC handler. Returns (server, port); server.stop(0) ends it."""
    import grpc
    from concurrent import futures
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    if servicer is not None:
        proto()[1].add_ExchangeServicer_to_server(servicer, server)
    if handler is not None:
        server.add_generic_rpc_handlers((handler,))
    port = free_port()
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    return server, port


def raw_http(port, request, timeout=5):
    """Sends raw request bytes to 127.0.0.1:port; returns everything read until the server
    closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(request)
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    return data


class Api:
    """A running bin/ws-api: grpc_port, http_port, proc."""

    def __init__(self, handler="echo", extra=(), env=None, ports=None):
        self.grpc_port, self.http_port = ports or (free_port(), free_port())
        self.proc = start(["ws-api", "--grpc-listen", "127.0.0.1:%d" % self.grpc_port,
                           "--http-listen", "127.0.0.1:%d" % self.http_port,
                           "--handler", handler] + list(extra), env=env)
        wait_port(self.grpc_port, proc=self.proc)
        wait_port(self.http_port, proc=self.proc)

    @property
    def grpc_addr(self):
        return "127.0.0.1:%d" % self.grpc_port

    def http(self, method, path, body=None, headers=None, timeout=10):
        """(status, parsed JSON or text) of an HTTP request to the push API."""
        import http.client
        import json
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        h = {"content-type": "application/json"}
        h.update(headers or {})
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw.decode("utf-8", "replace")

    def push(self, **body):
        return self.http("POST", "/v1/push", body)

    def metric(self, name, labels=None):
        """Value of one series from /metrics (0 if absent)."""
        return parse_metric(self.http("GET", "/metrics")[1], name, labels)

    def conns_of(self, user, retry_for=5.0):
        """conn ids (ints) of a user from GET /v1/users/{user}. A 503 (presence resyncing:
        ws-api does not know yet who is online) is retried for up to retry_for seconds, as
        its Retry-After asks, so that it is never taken for "offline"."""
        deadline = time.monotonic() + retry_for
        st, js = self.http("GET", "/v1/users/" + user)
        while st == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            st, js = self.http("GET", "/v1/users/" + user)
        if st != 200:
            return []
        return [int(c["conn_id"]) for c in js.get("connections", [])]


class Gateway:
    """A running bin/ws-gateway on a free port, pointed at `upstreams` (list of host:port)."""

    def __init__(self, upstreams, threads=2, streams=4, extra=(), env=None, wait_ready=True,
                 name="ws-gateway"):
        self.port = free_port()
        self.args = ["ws-gateway", "--listen", "127.0.0.1:%d" % self.port,
                     "--upstream", ",".join(upstreams), "--threads", str(threads),
                     "--streams", str(streams)] + list(extra)
        self.proc = start(self.args, env=env, name=name)
        wait_port(self.port, proc=self.proc)
        if wait_ready:
            self.wait_ready()

    def url(self, user=None, path="/gateway/ws", query=None):
        q = []
        if user is not None:
            q.append("user=" + user)
        if query:
            q.append(query)
        return "ws://127.0.0.1:%d%s%s" % (self.port, path, ("?" + "&".join(q)) if q else "")

    def get(self, path, timeout=5):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        c.close()
        return r.status, body

    def ready(self):
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout=10):
        wait_until(self.ready, timeout, what="gateway /readyz")

    def proc_log_has(self, text):
        with open(self.proc.log_path, errors="replace") as f:
            return text in f.read()

    def metric(self, name, labels=None):
        """Value of one series from /metrics (0 if absent)."""
        _, body = self.get("/metrics")
        return parse_metric(body, name, labels)


class Redis:
    """A redis-server (Debian's) on a free loopback port, no persistence, its files in a temp
    dir. kill()/start() keep the port (a restart); cmd() speaks RESP over a plain socket."""

    def __init__(self, extra=(), requirepass=None):
        self.port = free_port()
        self.extra = list(extra)
        self.requirepass = requirepass
        base = os.path.join(BUILD, "test-logs", "procs")
        os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="redis-data-", dir=base)
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        args = ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning",
                "--protected-mode", "no"] + self.extra
        if self.requirepass:
            args += ["--requirepass", self.requirepass]
        self.proc = start(args, name="redis-server")
        wait_port(self.port, proc=self.proc)

    def kill(self, sig=signal.SIGKILL):
        stop(self.proc, sig, timeout=5)

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def cmd(self, *args, timeout=5):
        """One command; returns the decoded reply (bytes, int, list, None) or raises on -ERR."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        f = s.makefile("rb")
        try:
            out = b""
            if self.requirepass:
                out += _resp(["AUTH", self.requirepass])
            out += _resp(args)
            s.sendall(out)
            if self.requirepass:
                _resp_read(f)
            return _resp_read(f)
        finally:
            f.close()
            s.close()


def _resp(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest
    if t == b"-":
        raise RuntimeError("redis error: " + rest.decode(errors="replace"))
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError("bad RESP line %r" % line)


def parse_metric(body, name, labels=None):
    want = name if not labels else "%s{%s}" % (name, ",".join('%s="%s"' % kv for kv in labels.items()))
    for line in body.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def thread_of(conn_id):
    """The gateway service thread of a conn_id (bits 42..47, see gateway/conn_id.h)."""
    return (conn_id >> 42) & 63
