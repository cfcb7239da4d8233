"""make test-deploy: the image built with podman from deploy/Dockerfile and the compose stack
run with docker-compose against podman's API socket, checked as a user would.

Set-up (FIELD-NOTES "Running the compose stack for real"): missing Debian packages are
installed (root only); podman runs with runc and this machine's ulimits through a
containers.conf of our own (CONTAINERS_CONF, /etc is not touched); where the Debian base
images cannot be pulled, an equivalent one is made with debootstrap from the apt mirror and
imported; there is no systemd to run health checks, so a thread runs
`podman healthcheck run` for every container of the project every 2 s; where the hard
open-files limit is below what the compose file asks for, tests/deploy/machine.yml lowers it
(this machine only). Everything lives under $BUILD/deploy; a project of our own
(wsgwlive-PID: two runs on one machine do not meet) is brought down at the end whatever
happened, and the containers of earlier runs that died on the way are removed at the start.

Checks, each printed as "ok NAME" / "FAIL NAME", the last line "N passed, N failed":
image, stack up and healthy, /healthz /readyz /metrics, echo, chat between two users, the
README's curl push, a gRPC push and the Admin service on the published gRPC port, the bench
profile with 0 errors, --scale ws-api=3 with a push through every replica reaching its user,
a restart of ws-api under load with no message lost, docker-compose down (clients get 1001).
Skips (exit 0, saying why) only where podman cannot run at all."""
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD") or os.path.join(ROOT, "build")
WORK = os.path.join(BUILD, "deploy")
COMPOSE_FILE = os.path.join(ROOT, "deploy", "docker-compose.yml")
MACHINE_FILE = os.path.join(ROOT, "tests", "deploy", "machine.yml")
PROJECT_PREFIX = "wsgwlive-"
PROJECT = PROJECT_PREFIX + str(os.getpid())
IMAGE = "wsgw:latest"
PACKAGES = {"podman": "podman", "docker-compose": "docker-compose", "runc": "runc",
            "debootstrap": "debootstrap", "slirp4netns": "slirp4netns", "newuidmap": "uidmap",
            "iptables": "iptables", "/usr/lib/podman/netavark": "netavark",
            "/usr/lib/podman/aardvark-dns": "aardvark-dns"}
T0 = time.monotonic()

sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))


def log(msg):
    print("[%5.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def sh(args, check=True, timeout=300, env=None, quiet=False):
    """Runs a command, returns CompletedProcess (text). Raises with its output on failure."""
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                       env=env or ENV)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s%s" % (" ".join(args), r.returncode,
                                                   r.stdout[-2000:], r.stderr[-3000:]))
    if not quiet and r.returncode == 0 and os.environ.get("V") == "1":
        log("$ %s\n%s" % (" ".join(args), r.stdout[-500:]))
    return r


def skip(why):
    print("skip: test-deploy: %s" % why, flush=True)
    print("0 passed, 0 failed, 1 skipped", flush=True)
    sys.exit(0)


# ---- set-up ----------------------------------------------------------------------------------

ENV = dict(os.environ)
for k in list(ENV):
    if k.startswith(("WSGW_", "WSAPI_", "WSBENCH_")) or k in ("PROMETHEUS_PORT", "GRAFANA_PORT"):
        del ENV[k]


def have(cmd):
    return os.path.exists(cmd) if cmd.startswith("/") else shutil.which(cmd) is not None


def install_packages():
    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if not have(cmd)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        if not have("podman") or not have("docker-compose"):
            skip("podman/docker-compose missing and not root: install %s" % " ".join(missing))
        return
    log("installing %s" % " ".join(missing))
    env = dict(ENV, DEBIAN_FRONTEND="noninteractive")
    c = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing
    if sh(c, check=False, timeout=600, env=env).returncode != 0:
        sh(["apt-get", "update", "-qq"], check=False, timeout=600, env=env)
        sh(c, check=False, timeout=600, env=env)
    if not have("podman") or not have("docker-compose"):
        skip("podman or docker-compose could not be installed (%s)" % " ".join(missing))


def podman_conf():
    """containers.conf of our own: runc (crun 1.8 refuses this VM's hybrid cgroups) and
    ulimits within this machine's hard limits."""
    os.makedirs(WORK, exist_ok=True)
    nofile = min(int(subprocess.run(["bash", "-c", "ulimit -Hn"], capture_output=True,
                                    text=True).stdout.strip() or 1048576), 1048576)
    path = os.path.join(WORK, "containers.conf")
    runtime = "runc" if have("runc") else "crun"
    with open(path, "w") as f:
        f.write('[containers]\ndefault_ulimits = ["nofile=%d:%d", "nproc=32768:32768"]\n'
                '[engine]\nruntime = "%s"\n' % (nofile, nofile, runtime))
    ENV["CONTAINERS_CONF"] = path
    return nofile


def apt_mirror():
    """The Debian mirror apt uses here (deb822 or one-line sources)."""
    for d in ("/etc/apt/sources.list.d", "/etc/apt"):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if not os.path.isfile(p) or not name.endswith((".sources", ".list")):
                continue
            text = open(p).read()
            for m in re.finditer(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
                uri = m.group(1) or m.group(2)
                if "security" not in uri:
                    return uri
    return "http://deb.debian.org/debian"


def remove_tree(path):
    """rm -r path, after unmounting what a failed debootstrap may have left mounted in it
    (/proc, /sys): never delete through a mount."""
    if not os.path.exists(path):
        return
    real = os.path.realpath(path)
    with open("/proc/mounts") as f:
        mounts = [l.split()[1] for l in f]
    for m in sorted((m for m in mounts if m == real or m.startswith(real + "/")),
                    key=len, reverse=True):
        sh(["umount", "-l", m], check=False)
    with open("/proc/mounts") as f:
        check(not any(l.split()[1].startswith(real + "/") for l in f), "mounts left in " + real)
    shutil.rmtree(path)


def base_images():
    """debian:bookworm and debian:bookworm-slim: pulled where a registry answers, else made
    with debootstrap (minbase) from the apt mirror and imported under both names."""
    want = ["docker.io/library/debian:bookworm", "docker.io/library/debian:bookworm-slim"]
    if all(sh(["podman", "image", "exists", w], check=False).returncode == 0 for w in want):
        log("base images present")
        return "present"
    pulled = all(sh(["podman", "pull", "-q", w], check=False, timeout=60).returncode == 0
                 for w in want)
    if pulled:
        return "pulled"
    log("registry unreachable: debootstrap bookworm from %s" % apt_mirror())
    rootfs = os.path.join(WORK, "rootfs")
    remove_tree(rootfs)
    sh(["debootstrap", "--variant=minbase", "bookworm", rootfs, apt_mirror()], timeout=900)
    with open(os.path.join(rootfs, "etc", "apt", "sources.list"), "w") as f:
        f.write("deb %s bookworm main\n" % apt_mirror())
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = os.path.join(rootfs, sub)
        for n in os.listdir(d):
            p = os.path.join(d, n)
            if os.path.isfile(p):
                os.unlink(p)
    # slim as Debian's -slim images are: no documentation, manuals or translations, now and
    # in what apt installs later (dpkg path-exclude, the images' own /etc/dpkg/dpkg.cfg.d/docker)
    with open(os.path.join(rootfs, "etc", "dpkg", "dpkg.cfg.d", "slim"), "w") as f:
        f.write("path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
                "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
                "path-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n")
    sh(["find", os.path.join(rootfs, "usr/share/doc"), "-type", "f", "!", "-name", "copyright",
        "-delete"])
    for sub in ("usr/share/man", "usr/share/info", "usr/share/locale"):
        d = os.path.join(rootfs, sub)
        for n in os.listdir(d):
            if n != "locale.alias":
                p = os.path.join(d, n)
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
    imp = subprocess.run(["podman", "import", "--change", 'CMD ["bash"]', "-", want[1]],
                         stdin=tar.stdout, capture_output=True, text=True, env=ENV, timeout=300)
    tar.wait()
    if imp.returncode != 0:
        raise RuntimeError("podman import: %s" % imp.stderr)
    sh(["podman", "tag", want[1], want[0]])
    remove_tree(rootfs)
    return "debootstrap"


class Service:
    """podman system service on a socket of our own; DOCKER_HOST for docker-compose."""

    def __init__(self):
        self.sock = os.path.join(WORK, "podman.sock")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.log = open(os.path.join(WORK, "podman-service.log"), "w")
        self.proc = subprocess.Popen(["podman", "system", "service", "--time=0",
                                      "unix://" + self.sock], stdout=self.log,
                                     stderr=self.log, env=ENV, start_new_session=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("podman system service did not start (see %s)" %
                                   self.log.name)
            time.sleep(0.1)
        ENV["DOCKER_HOST"] = "unix://" + self.sock

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class HealthRunner(threading.Thread):
    """Runs `podman healthcheck run` for every container of the project every 2 s (podman
    schedules health checks with systemd timers; there is no systemd here)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(2):
            r = subprocess.run(["podman", "ps", "--filter",
                                "label=com.docker.compose.project=" + PROJECT, "--format",
                                "{{.Names}}"], capture_output=True, text=True, env=ENV)
            for name in r.stdout.split():
                subprocess.run(["podman", "healthcheck", "run", name], capture_output=True,
                               env=ENV, timeout=30)


def compose(*args, env=None, timeout=300, check=True, files=None):
    e = dict(ENV)
    e.update(env or {})
    fs = []
    for f in files or COMPOSE_FILES:
        fs += ["-f", f]
    return sh(["docker-compose", "-p", PROJECT] + fs + list(args), env=e, timeout=timeout,
              check=check)


COMPOSE_FILES = [COMPOSE_FILE]


# ---- checks ----------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_get(port, path, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.status, r.read().decode()


def http_status(port, path):
    try:
        return http_get(port, path)[0]
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_for(pred, timeout, what, interval=0.5):
    from wsgwtest import wait_until
    return wait_until(pred, timeout, interval, what)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def published(service, port, index=1):
    out = compose("port", "--index=%d" % index, service, str(port), env=PORT_ENV).stdout.strip()
    check(out, "%s:%d index %d is not published" % (service, port, index))
    return int(out.rsplit(":", 1)[1])


def metric_lines(text, name):
    return [l for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " ")]


async def ws_connect(user):
    import websockets
    return await websockets.connect("ws://127.0.0.1:%d/gateway/ws?user=%s" % (GW_PORT, user),
                                    ping_interval=None, max_size=None, open_timeout=10)


async def recv_until(ws, pred, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        m = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
        if pred(m):
            return m


def arun(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


PORT_ENV = {}
GW_PORT = API_HTTP = API_GRPC = 0


def check_image():
    st = sh(["podman", "image", "inspect", IMAGE, "--format",
             "{{.Size}} {{json .Config.Healthcheck}}"]).stdout.strip()
    size, hc = st.split(" ", 1)
    log("image %s: %.1f MB, healthcheck %s" % (IMAGE, int(size) / 1e6, hc))
    check("wsgw-healthcheck" in hc, "HEALTHCHECK kept (--format docker): %s" % hc)
    for prog in ("ws-gateway", "ws-api", "ws-bench"):
        out = sh(["podman", "run", "--rm", IMAGE, prog, "--version"]).stdout.strip()
        check(re.fullmatch(r"%s \d+\.\d+\.\d+" % prog, out), out)
        log(out)


def check_up():
    global GW_PORT, API_HTTP, API_GRPC
    GW_PORT, API_HTTP, API_GRPC = free_port(), free_port(), free_port()
    PORT_ENV.update(WSGW_PORT=str(GW_PORT), WSAPI_HTTP_PORT=str(API_HTTP),
                    WSAPI_GRPC_PORT=str(API_GRPC))
    t = time.monotonic()
    compose("up", "-d", env=PORT_ENV, timeout=240)
    log("up -d: %.1fs (ws-gateway :%d, ws-api HTTP :%d gRPC :%d)" %
        (time.monotonic() - t, GW_PORT, API_HTTP, API_GRPC))

    def healthy():
        r = sh(["podman", "ps", "--filter", "label=com.docker.compose.project=" + PROJECT,
                "--format", '{{index .Labels "com.docker.compose.service"}} {{.Status}}'],
               quiet=True)
        lines = r.stdout.strip().splitlines()
        services = sorted(l.split()[0] for l in lines)
        return (services == ["redis", "ws-api", "ws-gateway"]
                and all("(healthy)" in l for l in lines) and lines)
    log("containers: %s" % wait_for(healthy, 60, "ws-api, ws-gateway and redis healthy"))


def check_endpoints():
    check(http_get(GW_PORT, "/healthz")[0] == 200, "gateway /healthz")
    wait_for(lambda: http_status(GW_PORT, "/readyz") == 200, 30, "gateway /readyz")
    _, m = http_get(GW_PORT, "/metrics")
    for name in ("wsgw_connections", "wsgw_upstream_connected", "wsgw_build_info",
                 "process_resident_memory_bytes"):
        check(metric_lines(m, name), "gateway /metrics lacks %s" % name)
    check(http_get(API_HTTP, "/healthz")[0] == 200, "ws-api /healthz")
    _, m = http_get(API_HTTP, "/metrics")
    for name in ("wsapi_gateway_streams", "wsapi_build_info", "process_open_fds"):
        check(metric_lines(m, name), "ws-api /metrics lacks %s" % name)
    # the compose file runs ws-api with WSAPI_REDIS: both of its Redis links are up
    redis_up = wait_for(lambda: [l for l in metric_lines(http_get(API_HTTP, "/metrics")[1],
                                                          "wsapi_redis_up")
                                 if l.endswith(" 1")] or None, 30, "ws-api's Redis links up")
    check(len(redis_up) == 2, "ws-api Redis links: %s" % redis_up)
    log("ws-api: %s" % redis_up)
    up = [l for l in metric_lines(http_get(GW_PORT, "/metrics")[1], "wsgw_upstream_connected")
          if l.endswith(" 1")]
    log("gateway: %s" % up)
    status, body = http_get(GW_PORT, "/")
    check(status == 200 and "<html" in body.lower(), "demo page at /")


def check_echo():
    async def go():
        ws = await ws_connect("alice")
        for i in range(20):
            await ws.send("echo %d" % i)
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(20)]
        await ws.close()
        check(got == ["echo %d" % i for i in range(20)], got)
    arun(go())


def check_chat():
    async def go():
        a, b = await ws_connect("alice"), await ws_connect("bob")
        for w in (a, b):
            await w.send(json.dumps({"op": "join", "room": "lobby"}))
        await asyncio.sleep(0.5)
        await a.send(json.dumps({"op": "say", "room": "lobby", "text": "hi bob"}))
        m = json.loads(await recv_until(b, lambda m: "said" in m))
        check(m == {"op": "said", "room": "lobby", "from": "alice", "text": "hi bob"}, m)
        # the room's presence through ws-api (GET /v1/rooms/{room})
        wait_for(lambda: http_status(API_HTTP, "/v1/rooms/lobby") == 200, 20,
                 "ws-api's presence whole (no 503)")
        st, body = http_get(API_HTTP, "/v1/rooms/lobby")
        check(st == 200 and json.loads(body).get("count") == 2, body)
        await a.close()
        await b.close()
    arun(go())


def check_readme_curl_push():
    readme = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"^curl (.*localhost:8082/v1/push.*)$", readme, re.M)
    check(m, "README has no curl push line")
    line = m.group(0).replace("localhost:8082", "localhost:%d" % API_HTTP)

    async def go():
        ws = await ws_connect("alice")
        await asyncio.sleep(0.3)
        def curl():
            # 503 "presence resyncing" for --presence-grace after ws-api started: the README
            # says to retry after a second
            for _ in range(20):
                r = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                                   timeout=10)
                if "presence resyncing" not in r.stdout:
                    return r
                time.sleep(1)
            return r
        r = await asyncio.get_running_loop().run_in_executor(None, curl)
        check(r.returncode == 0 and '"gateways":1' in r.stdout.replace(" ", ""), r.stdout)
        got = await asyncio.wait_for(ws.recv(), 10)
        check(got == "hello from curl", got)
        await ws.close()
    arun(go())
    log("%s -> alice got it" % line)


def grpc_stubs():
    from wsgwtest import proto
    return proto()


def check_grpc_port():
    import grpc
    pb, pbg = grpc_stubs()

    async def go():
        ws = await ws_connect("carol")
        await ws.send(json.dumps({"op": "join", "room": "grpc-room"}))
        await asyncio.sleep(0.5)
        ch = grpc.insecure_channel("127.0.0.1:%d" % API_GRPC)
        try:
            wait_for(lambda: http_status(API_HTTP, "/v1/users/carol") == 200, 20,
                     "ws-api's presence whole (no 503)")
            rep = pbg.PushStub(ch).Push(pb.PushRequest(target=pb.Target(user_ids=["carol"]),
                                                       payload=b"over grpc"), timeout=10)
            check(rep.gateways == 1, rep)
            check(await asyncio.wait_for(ws.recv(), 10) == "over grpc", "gRPC push")
            admin = pbg.AdminStub(ch)
            rp = admin.RoomPresence(pb.RoomPresenceRequest(room="grpc-room"), timeout=10)
            check(rp.count == 1 and rp.members[0].user_id == "carol", rp)
            up = admin.UserPresence(pb.UserPresenceRequest(user_id="carol"), timeout=10)
            check(len(up.connections) == 1, up)
            kr = admin.Kick(pb.KickRequest(target=pb.Target(user_ids=["carol"]),
                                           code=4001, reason="admin"), timeout=10)
            check(kr.gateways == 1, kr)
            code = None
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except Exception as e:  # websockets.ConnectionClosed
                code = getattr(e, "code", None)
            check(code == 4001, "Admin/Kick: close code %s" % code)
        finally:
            ch.close()
            await ws.close()
    arun(go())


def check_bench_profile():
    t = time.monotonic()
    r = compose("--profile", "bench", "run", "--rm", "bench", env=PORT_ENV, timeout=300,
                check=False)
    out = (r.stdout + r.stderr).strip().splitlines()
    last = [l for l in out if l.startswith("sent=")]
    log("bench profile (%.0fs): %s" % (time.monotonic() - t, last[-1] if last else out[-5:]))
    check(r.returncode == 0 and last, "bench exit %d: %s" % (r.returncode, "\n".join(out[-10:])))
    m = dict(kv.split("=") for kv in last[-1].split())
    check(m["errors"] == "0" and m["sent"] == m["received"] and int(m["sent"]) > 0, last[-1])


def check_scale():
    # ws-api's host ports unset: each replica gets its own
    env = dict(PORT_ENV)
    del env["WSAPI_HTTP_PORT"], env["WSAPI_GRPC_PORT"]
    PORT_ENV.clear()
    PORT_ENV.update(env)
    t = time.monotonic()
    compose("up", "-d", "--scale", "ws-api=3", env=PORT_ENV, timeout=240)

    def three():
        _, m = http_get(GW_PORT, "/metrics")
        up = [l for l in metric_lines(m, "wsgw_upstream_connected") if l.endswith(" 1")]
        return len(up) == 3 and up
    log("--scale ws-api=3: %s (%.1fs)" % (wait_for(three, 60, "3 API nodes connected"),
                                          time.monotonic() - t))
    ports = [published("ws-api", 8082, i) for i in (1, 2, 3)]
    log("ws-api replicas' HTTP ports: %s" % ports)

    async def go():
        users = ["scale%d" % i for i in range(3)]
        socks = [await ws_connect(u) for u in users]
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        for port, user, ws in zip(ports, users, socks):
            body = json.dumps({"user_ids": [user], "data": "via %d" % port}).encode()
            req = urllib.request.Request("http://127.0.0.1:%d/v1/push" % port, data=body,
                                         method="POST")

            def post():
                for _ in range(20):  # a new replica answers 503 for its --presence-grace
                    try:
                        with urllib.request.urlopen(req, timeout=10) as r:
                            return r.status, json.loads(r.read())
                    except urllib.error.HTTPError as e:
                        if e.code != 503:
                            raise
                        time.sleep(1)
                return 503, {}
            st, js = await loop.run_in_executor(None, post)
            check(st == 200 and js.get("gateways") == 1, (port, st, js))
            got = await asyncio.wait_for(ws.recv(), 10)
            check(got == "via %d" % port, got)
        for ws in socks:
            await ws.close()
    arun(go())


def check_restart_under_load():
    """Clients send numbered messages through the gateway while every ws-api replica is
    restarted; every message comes back (at least once: duplicates are allowed, a gap is a
    lost message)."""
    nclients, period = 20, 0.02

    async def client(i, stopping, counts):
        ws = await ws_connect("load%d" % i)
        sent, seen = 0, set()

        async def reader():
            async for m in ws:
                seen.add(int(m.split()[1]))
        rt = asyncio.ensure_future(reader())
        while not stopping.is_set():
            await ws.send("n %d" % sent)
            sent += 1
            await asyncio.sleep(period)
        deadline = time.monotonic() + 30
        while len(seen) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        counts[i] = (sent, len(seen))
        rt.cancel()
        await ws.close()

    async def go():
        stopping = asyncio.Event()
        counts = {}
        tasks = [asyncio.ensure_future(client(i, stopping, counts)) for i in range(nclients)]
        await asyncio.sleep(2)
        loop = asyncio.get_running_loop()
        t = time.monotonic()
        await loop.run_in_executor(None, lambda: compose("restart", "ws-api", env=PORT_ENV,
                                                         timeout=120))
        log("docker-compose restart ws-api: %.1fs" % (time.monotonic() - t))
        await asyncio.sleep(3)
        stopping.set()
        await asyncio.gather(*tasks)
        sent = sum(s for s, _ in counts.values())
        got = sum(g for _, g in counts.values())
        log("restart under load: %d clients sent %d, %d came back" % (nclients, sent, got))
        check(sent > 1000 and got == sent, "lost %d of %d" % (sent - got, sent))
    arun(go(), timeout=180)
    wait_for(lambda: http_status(GW_PORT, "/readyz") == 200, 30, "gateway ready again")


def check_down():
    async def go():
        ws = await ws_connect("leaver")
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, lambda: compose("down", env=PORT_ENV, timeout=120))
        code = None
        try:
            await asyncio.wait_for(ws.recv(), 60)
        except Exception as e:
            code = getattr(e, "code", None)
        await fut
        check(code == 1001, "a client at docker-compose down got close code %s" % code)
    arun(go())
    left = sh(["podman", "ps", "-a", "--filter", "label=com.docker.compose.project=" + PROJECT,
               "--format", "{{.Names}}"]).stdout.split()
    check(not left, "containers left: %s" % left)


def remove_dead_runs():
    """Removes the containers and networks of earlier runs (wsgwlive-PID projects) whose
    process is gone: a run killed on the way cannot bring its project down."""
    r = sh(["podman", "ps", "-a", "--format",
            "{{.ID}} {{index .Labels \"com.docker.compose.project\"}}"], check=False)
    dead = {}
    for line in r.stdout.splitlines():
        cid, _, proj = line.partition(" ")
        pid = proj[len(PROJECT_PREFIX):]
        if proj.startswith(PROJECT_PREFIX) and pid.isdigit() and \
                not os.path.exists("/proc/" + pid):
            dead.setdefault(proj, []).append(cid)
    for proj, ids in dead.items():
        log("removing %d containers of %s (its run is gone)" % (len(ids), proj))
        sh(["podman", "rm", "-f"] + ids, check=False, timeout=120)
        sh(["podman", "network", "rm", "-f", proj + "_default"], check=False, timeout=60)


def main():
    install_packages()
    nofile = podman_conf()
    r = sh(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], check=False)
    if r.returncode != 0:
        skip("podman cannot run here: %s" % r.stderr.strip()[-300:])
    passed, failed = 0, 0
    results = []

    def step(name, fn, fatal=False):
        nonlocal passed, failed
        t = time.monotonic()
        try:
            fn()
            passed += 1
            print("ok %s (%.1fs)" % (name, time.monotonic() - t), flush=True)
            return True
        except Exception:
            failed += 1
            traceback.print_exc()
            print("FAIL %s (%.1fs)" % (name, time.monotonic() - t), flush=True)
            results.append(name)
            return False

    def base():
        how = base_images()
        log("base images: %s" % how)

    def build():
        t = time.monotonic()
        sh(["podman", "build", "--pull=never", "--format", "docker", "-f",
            os.path.join(ROOT, "deploy", "Dockerfile"), "-t", IMAGE, ROOT], timeout=900)
        log("podman build: %.0fs" % (time.monotonic() - t))

    probe = sh(["podman", "run", "--rm", "--pull=never", "docker.io/library/debian:bookworm-slim",
                "true"], check=False, timeout=120) if step("base_images", base) else None
    if probe is not None and probe.returncode != 0:
        skip("podman cannot run a container here: %s" % probe.stderr.strip()[-300:])
    if not (probe is not None and step("image_build", build) and step("image", check_image)):
        print("%d passed, %d failed" % (passed, failed + 1), flush=True)
        return 1
    if nofile < 1048576:
        COMPOSE_FILES.append(MACHINE_FILE)
        log("hard open-files limit %d: %s lowers the compose ulimits" % (nofile, MACHINE_FILE))
    svc = Service()
    hr = HealthRunner()
    hr.start()
    try:
        remove_dead_runs()
        if step("compose_up_healthy", check_up):
            for name, fn in (("endpoints", check_endpoints), ("echo", check_echo),
                             ("chat_two_users", check_chat),
                             ("readme_curl_push", check_readme_curl_push),
                             ("grpc_port_push_admin", check_grpc_port),
                             ("bench_profile", check_bench_profile),
                             ("scale_ws_api_3", check_scale),
                             ("restart_ws_api_under_load", check_restart_under_load),
                             ("compose_down", check_down)):
                step(name, fn)
    finally:
        hr.stopping.set()
        compose("--profile", "bench", "down", "--remove-orphans", check=False, timeout=120)
        svc.stop()
        # the build stage's images (~500 MB each build) are not kept; the base images and
        # wsgw:latest are
        sh(["podman", "image", "prune", "-f"], check=False, timeout=120)
    log("total %.0fs" % (time.monotonic() - T0))
    if results:
        print("failed: %s" % " ".join(results), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
