"""deploy/: the files are checked with the tools that read them, as far as this machine allows
(there is no Docker engine and no Kubernetes cluster here: images are not built, pods not run).

- docker-compose.yml: `docker-compose config` (plain, and with the bench and monitoring
  profiles) succeeds; limits, ulimits, ports, health checks and grace periods fit the services.
- Dockerfile: stages, non-root user, HEALTHCHECK, EXPOSE, COPY sources; its build packages
  cover the Makefile's pkg-config modules, its runtime packages every shared library the built
  binaries link; `make -n` knows its targets. The health probe script runs against a real gateway.
- k8s/: every document loads (python3-yaml); kinds, selectors, named ports, probes, security
  contexts, limits, the gateway's dns:/// upstream naming the headless Service, grace periods
  longer than the drain / shutdown timeouts (flag > env > --config file, as the binaries read
  them); the ConfigMap's config files start the real binaries.
- systemd/: `systemd-analyze verify` and `systemd-analyze security --offline` (exposure <= 2.0);
  required hardening keys; the env files start the real binaries.
- prometheus.yml: `promtool check config`. Grafana dashboard: the JSON loads, every PromQL
  expression parses (`promtool check rules`), and every metric and label it uses exists in a
  real /metrics scrape of ws-gateway + ws-api after traffic (test_metrics_promtool.py's)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yaml  # noqa: E402
from wsgwtest import (BIN, BUILD, ROOT, Api, Gateway, check, eq, free_port, run,  # noqa: E402
                      start, wait_port, wait_until)

DEPLOY = os.path.join(ROOT, "deploy")


def secs(text):
    """Seconds of a duration as the binaries, compose and systemd write them: 10, "10s",
    "1m30s", "250ms", 1.5."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if re.fullmatch(r"[0-9.]+", s):
        return float(s)
    total, pos = 0.0, 0
    for m in re.finditer(r"([0-9.]+)\s*(ms|us|ns|h|min|m|s)", s):
        check(m.start() == pos, "bad duration %r" % text)
        total += float(m.group(1)) * {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 1e-3,
                                      "us": 1e-6, "ns": 1e-9}[m.group(2)]
        pos = m.end()
    check(pos == len(s) and pos > 0, "bad duration %r" % text)
    return total


def have_tool(cmd, package):
    """True when cmd is on PATH; installs the Debian package when missing and we are root
    (`make deps` normally did); else prints a skip line and returns False."""
    if shutil.which(cmd):
        return True
    apt = shutil.which("apt-get")
    if os.geteuid() == 0 and apt:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        c = [apt, "install", "-y", "-qq", "--no-install-recommends", package]
        r = subprocess.run(c, capture_output=True, env=env, timeout=300)
        if r.returncode != 0:
            subprocess.run([apt, "update", "-qq"], capture_output=True, env=env, timeout=300)
            subprocess.run(c, capture_output=True, env=env, timeout=300)
        if shutil.which(cmd):
            return True
    print("skip: %s not found and Debian package %s could not be installed" % (cmd, package),
          flush=True)
    return False


def read_env_file(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v
    return env


# ---- docker-compose --------------------------------------------------------------------------

def compose_config(*profiles, env=None):
    args = ["docker-compose", "-f", os.path.join(DEPLOY, "docker-compose.yml")]
    for p in profiles:
        args += ["--profile", p]
    e = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
    e.update(env or {})
    r = subprocess.run(args + ["config"], capture_output=True, text=True, timeout=60, env=e)
    eq(r.returncode, 0, "docker-compose %s config:\n%s" % (" ".join(profiles), r.stderr))
    return yaml.safe_load(r.stdout)


def test_compose_config_validates():
    if not have_tool("docker-compose", "docker-compose"):
        return
    cfg = compose_config()
    svcs = cfg["services"]
    check({"ws-api", "ws-gateway", "bench"} <= set(svcs), sorted(svcs))
    for name in ("ws-api", "ws-gateway", "bench"):
        s = svcs[name]
        eq(s["image"], "wsgw:latest", name)
        eq(s["build"]["dockerfile"], "deploy/Dockerfile", name)
        eq(os.path.realpath(s["build"]["context"]), os.path.realpath(ROOT), name)
        lim = s["deploy"]["resources"]["limits"]
        eq(float(lim["cpus"]), 1.0, name)
        eq(lim["memory"], "2G", name)
        eq(s["ulimits"]["nofile"], {"soft": 1048576, "hard": 1048576}, name)
    api, gw, bench = svcs["ws-api"], svcs["ws-gateway"], svcs["bench"]
    eq(api["command"], ["ws-api"])
    eq(gw["command"], ["ws-gateway"])
    # the gateway's upstream is ws-api's gRPC port; health checks probe the ports listened on
    api_grpc = api["environment"]["WSAPI_GRPC_LISTEN"].rsplit(":", 1)[1]
    api_http = api["environment"]["WSAPI_HTTP_LISTEN"].rsplit(":", 1)[1]
    eq(gw["environment"]["WSGW_UPSTREAM"], "ws-api:%s" % api_grpc)
    eq(api["healthcheck"]["test"], ["CMD", "wsgw-healthcheck", api_http, "/healthz"])
    gw_port = gw["environment"]["WSGW_LISTEN"].rsplit(":", 1)[1]
    eq(gw["healthcheck"]["test"], ["CMD", "wsgw-healthcheck", gw_port, "/readyz"])
    check(any(int(p["target"]) == int(gw_port) for p in gw["ports"]), gw["ports"])
    eq(gw["depends_on"]["ws-api"]["condition"], "service_healthy")
    # compose kills after stop_grace_period: it must outlast the gateway's drain
    check(secs(gw["stop_grace_period"]) > secs(gw["environment"]["WSGW_DRAIN_TIMEOUT"]),
          "stop_grace_period %s <= drain timeout" % gw["stop_grace_period"])
    check(secs(api["stop_grace_period"]) > secs(api["environment"]["WSAPI_SHUTDOWN_TIMEOUT"]))
    # the bench runs ws-bench against the gateway with a payload file the image has
    cmd = bench["command"]
    eq(cmd[:2], ["ws-bench", "message"])
    eq(cmd[cmd.index("--host") + 1], "ws-gateway:%s" % gw_port)
    payload = cmd[cmd.index("--file") + 1]
    eq(os.path.dirname(payload), "/usr/share/wsgw/testdata")
    check(os.path.exists(os.path.join(ROOT, "testdata", os.path.basename(payload))), payload)
    eq(bench["profiles"], ["bench"])

    mon = compose_config("monitoring")["services"]
    check({"prometheus", "grafana"} <= set(mon), sorted(mon))
    for name in ("prometheus", "grafana"):
        eq(mon[name]["profiles"], ["monitoring"], name)
        for v in mon[name].get("volumes", []):
            src = v["source"] if isinstance(v, dict) else v.split(":")[0]
            check(os.path.isabs(src) and os.path.exists(src), "%s mounts missing %s" % (name, src))
    compose_config("bench", "monitoring")


def test_compose_ports_scale_and_override():
    """Issue 17 items 2 and 4: ws-api's replicas get no fixed host port (a fixed 8082 made
    replicas 2 and 3 of `--scale ws-api=3` fail to bind), its gRPC port is published too, every
    host port can be changed (WSGW_PORT, WSAPI_HTTP_PORT, WSAPI_GRPC_PORT, PROMETHEUS_PORT,
    GRAFANA_PORT), and the gateway's upstream is the plain service name, which the gateway
    takes as every address of the name, re-resolved (all replicas)."""
    if not have_tool("docker-compose", "docker-compose"):
        return

    def ports(svc):
        return {int(p["target"]): int(p.get("published") or 0) for p in svc.get("ports", [])}
    svcs = compose_config("monitoring")["services"]
    api, gw = svcs["ws-api"], svcs["ws-gateway"]
    eq(ports(api), {8081: 0, 8082: 0}, "ws-api: no fixed host port, gRPC published")
    eq(ports(gw), {8080: 8080})
    eq(ports(svcs["prometheus"]), {9090: 9090})
    eq(ports(svcs["grafana"]), {3000: 3000})
    env = {"WSGW_PORT": "18080", "WSAPI_HTTP_PORT": "18082", "WSAPI_GRPC_PORT": "18081",
           "PROMETHEUS_PORT": "19090", "GRAFANA_PORT": "13000"}
    svcs = compose_config("monitoring", env=env)["services"]
    eq(ports(svcs["ws-api"]), {8081: 18081, 8082: 18082})
    eq(ports(svcs["ws-gateway"]), {8080: 18080})
    eq(ports(svcs["prometheus"]), {9090: 19090})
    eq(ports(svcs["grafana"]), {3000: 13000})
    # the variables are compose's: none is a flag of the program in that container
    for name, prefix in (("ws-api", "WSAPI_"), ("ws-gateway", "WSGW_")):
        r = subprocess.run([os.path.join(BIN, name), "--help"], capture_output=True, text=True,
                           timeout=10)
        for v in env:
            check(not v.startswith(prefix) or "env %s)" % v not in r.stdout,
                  "%s is also a flag of %s" % (v, name))
    up = gw["environment"]["WSGW_UPSTREAM"]
    check(re.fullmatch(r"ws-api:\d+", up), "upstream %r: the service name (every replica)" % up)
    check("ws-api" not in gw.get("links", []), gw)


def test_compose_bench_profile_against_real_binaries():
    """Issue 17 item 1: the bench profile's ws-bench command, as the compose file has it
    (scaled down: 20 users x 3 messages), against ws-api with the compose file's handler and a
    gateway. It sent testdata/50b.txt, a chat "say" to a room the bench users never joined:
    received 0 of 60 000."""
    if not have_tool("docker-compose", "docker-compose"):
        return
    svcs = compose_config("bench")["services"]
    cmd = list(svcs["bench"]["command"])
    handler = svcs["ws-api"]["environment"]["WSAPI_HANDLER"]
    api = Api(handler=handler)
    gw = Gateway([api.grpc_addr])
    cmd[cmd.index("--host") + 1] = "127.0.0.1:%d" % gw.port
    cmd[cmd.index("--user") + 1] = "20"
    cmd[cmd.index("--times") + 1] = "3"
    cmd[cmd.index("--interval") + 1] = "200ms"
    f = cmd.index("--file") + 1
    cmd[f] = os.path.join(ROOT, "testdata", os.path.basename(cmd[f]))
    r = subprocess.run([os.path.join(BIN, cmd[0])] + cmd[1:] + ["--drain", "3s"],
                       capture_output=True, text=True, timeout=60)
    last = r.stdout.strip().splitlines()[-1]
    check(r.returncode == 0 and "sent=60 received=60 errors=0" in last,
          "ws-bench (%s): %s\n%s" % (handler, last, r.stderr[-1000:]))


# ---- Dockerfile ------------------------------------------------------------------------------

def dockerfile():
    """[(instruction, args)] with continuation lines joined and comments dropped."""
    out, cur = [], ""
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        for line in f:
            s = line.rstrip("\n")
            if s.lstrip().startswith("#") and not cur:
                continue
            if s.endswith("\\"):
                cur += s[:-1] + " "
                continue
            cur += s
            if cur.strip():
                ins, _, rest = cur.strip().partition(" ")
                out.append((ins.upper(), rest.strip()))
            cur = ""
    return out


def apt_packages(run_args):
    """Packages named by `apt-get install` in a RUN line."""
    m = re.search(r"apt-get install ([^&]*)", run_args)
    return {w for w in m.group(1).split() if not w.startswith("-")} if m else set()


def dpkg_owner(path):
    r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if r.returncode != 0:
        r = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
    check(r.returncode == 0, "no Debian package owns %s" % path)
    return r.stdout.split(":", 1)[0]


def test_dockerfile():
    ins = dockerfile()
    froms = [a for i, a in ins if i == "FROM"]
    eq(len(froms), 2, froms)
    check(re.fullmatch(r"debian:\$\{DEBIAN\} AS build", froms[0]), froms[0])
    eq(froms[1], "debian:${DEBIAN}-slim")
    check(("ARG", "DEBIAN=bookworm") in ins)
    build = ins[:[k for k, (i, _) in enumerate(ins) if i == "FROM"][1]]
    runtime = ins[len(build):]
    build_pkgs = set().union(*[apt_packages(a) for i, a in build if i == "RUN"])
    run_pkgs = set().union(*[apt_packages(a) for i, a in runtime if i == "RUN"])
    # build stage: a -dev package for every pkg-config module of the Makefile, and the tools
    with open(os.path.join(ROOT, "Makefile")) as f:
        mods = re.search(r"^PKGS\s*:=\s*(.*)$", f.read(), re.M).group(1).split()
    for mod in mods:
        r = subprocess.run(["pkg-config", "--variable=pcfiledir", mod], capture_output=True,
                           text=True)
        eq(r.returncode, 0, "pkg-config %s" % mod)
        pkg = dpkg_owner(os.path.join(r.stdout.strip(), mod + ".pc"))
        check(pkg in build_pkgs, "build stage lacks %s (pkg-config %s)" % (pkg, mod))
    for p in ("make", "gcc", "pkg-config", "protobuf-c-compiler", "uthash-dev", "libev-dev"):
        check(p in build_pkgs, "build stage lacks " + p)
    # the make line builds the three programs, and the Makefile knows those targets
    mk = [a for i, a in build if i == "RUN" and re.match(r"make\s+-j", a)][0]
    targets = re.findall(r"/out/(ws-[a-z]+)", mk.split("&&")[0])
    eq(sorted(targets), ["ws-api", "ws-bench", "ws-gateway"])
    with tempfile.TemporaryDirectory() as td:
        r = subprocess.run(["make", "-n", "BUILD=%s/b" % td, "BIN=%s/o" % td] +
                           ["%s/o/%s" % (td, t) for t in targets], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        eq(r.returncode, 0, "make -n: " + r.stderr)
    # runtime stage: every shared library the binaries link comes from a listed package
    for b in ("ws-gateway", "ws-api", "ws-bench"):
        exe = os.path.join(BIN, b)
        check(os.access(exe, os.X_OK), "%s not built" % exe)
        # the libraries it names (DT_NEEDED); apt brings their own dependencies along
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                            subprocess.run(["readelf", "-d", exe], capture_output=True,
                                           text=True).stdout)
        check(needed, "readelf -d %s found no NEEDED entries" % exe)
        where = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
            ["ldd", exe], capture_output=True, text=True).stdout, re.M))
        for soname in needed:
            if re.match(r"lib(a|ub|t|l)san\.so", soname):
                continue  # a SANITIZE= build of the tests; the image is built without
            check(soname in where, "ldd cannot find %s of %s" % (soname, exe))
            lib = where[soname]
            pkg = dpkg_owner(lib)
            check(pkg in ("libc6", "libgcc-s1") or pkg in run_pkgs,  # those two: in every Debian image
                  "runtime stage lacks %s (%s needs %s)" % (pkg, b, lib))
    check("libwebsockets-evlib-uv" in run_pkgs, "lws' libuv plugin (dlopened) not installed")
    check(not {"gcc", "make", "curl"} & run_pkgs, run_pkgs)
    # a non-root user, numeric (runAsNonRoot can check it), health check, ports, demo
    users = [a for i, a in runtime if i == "USER"]
    eq(users, ["10001:10001"])
    hc = [a for i, a in runtime if i == "HEALTHCHECK"]
    eq(len(hc), 1)
    check(hc[0].split("CMD", 1)[1].strip() == '["wsgw-healthcheck"]', hc[0])
    eq(sorted(" ".join(a for i, a in runtime if i == "EXPOSE").split()), ["8080", "8081", "8082"])
    copies = [a for i, a in runtime if i == "COPY"]
    check(any(c.startswith("demo/ /usr/share/wsgw/demo") for c in copies), copies)
    check(any("deploy/docker/healthcheck.sh /usr/local/bin/wsgw-healthcheck" in c for c in copies))
    for i, a in ins:
        if i == "COPY" and not a.startswith("--from"):
            for src in a.split()[:-1]:
                check(os.path.exists(os.path.join(ROOT, src)), "COPY source missing: " + src)
    # the build context ignore file lets every COPY source through (checked by its patterns)
    with open(os.path.join(DEPLOY, "Dockerfile.dockerignore")) as f:
        allowed = [l.strip()[1:].rstrip("/") for l in f if l.strip().startswith("!")]
    for i, a in ins:
        if i == "COPY" and not a.startswith("--from"):
            for src in a.split()[:-1]:
                src = src.rstrip("/")
                check(any(src == p or src.startswith(p + "/") for p in allowed),
                      "Dockerfile.dockerignore excludes " + src)


def test_healthcheck_script_against_real_gateway():
    probe = ["bash", os.path.join(DEPLOY, "docker", "healthcheck.sh")]
    api = Api()
    gw = Gateway([api.grpc_addr])
    eq(subprocess.run(probe + [str(gw.port), "/healthz"], timeout=10).returncode, 0)
    eq(subprocess.run(probe + [str(gw.port), "/readyz"], timeout=10).returncode, 0)
    eq(subprocess.run(probe + [str(api.http_port), "/healthz"], timeout=10).returncode, 0)
    r = subprocess.run(probe + [str(gw.port), "/nope"], capture_output=True, text=True, timeout=10)
    eq(r.returncode, 1)
    check("404" in r.stderr, r.stderr)
    # a gateway without a reachable API node is alive but not ready
    lonely = Gateway(["127.0.0.1:%d" % free_port()], wait_ready=False)
    eq(subprocess.run(probe + [str(lonely.port), "/healthz"], timeout=10).returncode, 0)
    eq(subprocess.run(probe + [str(lonely.port), "/readyz"], capture_output=True,
                      timeout=10).returncode, 1)
    eq(subprocess.run(probe + [str(free_port()), "/healthz"], capture_output=True,
                      timeout=10).returncode, 1)


def test_image_healthcheck_probes_the_program_it_runs():
    """The image's HEALTHCHECK command, run as the engine runs it (exec form, no arguments),
    against ws-api and ws-gateway as the container's main process (HEALTHCHECK_PID stands for
    PID 1). Issue 17 item 3: it probed 8080 whatever ran, so `docker run wsgw ws-api` was
    never healthy."""
    hc = [a for i, a in dockerfile() if i == "HEALTHCHECK"]
    eq(len(hc), 1)
    cmd = json.loads(hc[0].split("CMD", 1)[1])
    eq(cmd[0], "wsgw-healthcheck")
    probe = ["bash", os.path.join(DEPLOY, "docker", "healthcheck.sh")] + cmd[1:]

    def run_probe(pid):
        env = dict(os.environ, HEALTHCHECK_PID=str(pid))
        return subprocess.run(probe, capture_output=True, text=True, env=env, timeout=10)
    api = Api(handler="chat")  # --http-listen on the command line
    r = run_probe(api.proc.pid)
    eq(r.returncode, 0, "ws-api --http-listen 127.0.0.1:%d: %s" % (api.http_port, r.stderr))
    gp, hp = free_port(), free_port()
    api2 = start(["ws-api"], env={"WSAPI_GRPC_LISTEN": "127.0.0.1:%d" % gp,
                                  "WSAPI_HTTP_LISTEN": "127.0.0.1:%d" % hp})
    wait_port(hp, proc=api2)
    eq(run_probe(api2.pid).returncode, 0, "ws-api with WSAPI_HTTP_LISTEN")
    gw = Gateway([api.grpc_addr])
    eq(run_probe(gw.proc.pid).returncode, 0, "ws-gateway --listen")
    port = free_port()
    gw2 = start(["ws-gateway", "--upstream", api.grpc_addr],
                env={"WSGW_LISTEN": "127.0.0.1:%d" % port})
    wait_port(port, proc=gw2)
    eq(run_probe(gw2.pid).returncode, 0, "ws-gateway with WSGW_LISTEN")
    # a hung ws-api (SIGSTOP: the kernel still accepts, nothing answers) is unhealthy
    os.kill(api2.pid, signal.SIGSTOP)
    try:
        r = run_probe(api2.pid)
        eq(r.returncode, 1, r.stderr)
    finally:
        os.kill(api2.pid, signal.SIGCONT)
    eq(run_probe(api2.pid).returncode, 0)


# ---- Kubernetes ------------------------------------------------------------------------------

def k8s_docs():
    d = os.path.join(DEPLOY, "k8s")
    docs = []
    for name in sorted(os.listdir(d)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(d, name)) as f:
                for doc in yaml.safe_load_all(f):
                    check(isinstance(doc, dict) and doc.get("kind"), "%s: a document without kind" % name)
                    doc["_file"] = name
                    docs.append(doc)
    return docs


def flag_value(container, config_files, flag):
    """The value a binary would use for --flag: args > env (WSGW_... for ws-gateway, WSAPI_...
    for ws-api) > --config file."""
    args = container.get("args", []) + container.get("command", [])
    for i, a in enumerate(args):
        if a == "--" + flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--%s=" % flag):
            return a.split("=", 1)[1]
    prog = (container.get("args") or container.get("command") or ["ws-gateway"])[0]
    prefix = "WSAPI_" if prog == "ws-api" else "WSGW_"
    envname = prefix + flag.upper().replace("-", "_")
    for e in container.get("env", []):
        if e["name"] == envname and "value" in e:
            return e["value"]
    if "--config" in args:
        path = args[args.index("--config") + 1]
        check(path in config_files, "--config %s is not a mounted ConfigMap key" % path)
        conf = json.loads(config_files[path])
        for k in (flag, flag.replace("-", "_")):
            if k in conf:
                return conf[k]
    return None


def test_k8s_manifests():
    docs = k8s_docs()
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        check(d.get("apiVersion"), "%s %s: no apiVersion" % (d["_file"], d["kind"]))
    with open(os.path.join(DEPLOY, "k8s", "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    files = {d["_file"] for d in docs if d["kind"] != "Kustomization"}
    eq(sorted(kust["resources"]), sorted(files), "kustomization resources")
    ns = by_kind["Namespace"][0]["metadata"]["name"]
    for d in docs:
        if d["kind"] not in ("Namespace", "Kustomization"):
            eq(d["metadata"].get("namespace"), ns, "%s %s namespace" % (d["kind"], d["metadata"]["name"]))
    cms = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    deps = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    eq(sorted(deps), ["ws-api", "ws-gateway"])
    svcs = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    configs = {}
    for name, dep in deps.items():
        spec = dep["spec"]
        pod = spec["template"]
        labels = pod["metadata"]["labels"]
        for k, v in spec["selector"]["matchLabels"].items():
            eq(labels.get(k), v, "%s selector" % name)
        ps = pod["spec"]
        psc = ps["securityContext"]
        check(psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, "%s pod runs as root" % name)
        eq(psc["runAsUser"], 10001, "%s runAsUser = the image's user" % name)
        eq(len(ps["containers"]), 1)
        c = ps["containers"][0]
        check(c["image"].startswith("wsgw:"), c["image"])
        eq(c["args"][0], name, "%s runs its own binary" % name)
        sc = c["securityContext"]
        check(sc["allowPrivilegeEscalation"] is False, name)
        check(sc["readOnlyRootFilesystem"] is True, name)
        eq(sc["capabilities"]["drop"], ["ALL"], name)
        lim = c["resources"]["limits"]
        check("cpu" in lim and "memory" in lim, "%s limits %s" % (name, lim))
        check("cpu" in c["resources"]["requests"], name)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            hg = c[probe]["httpGet"]
            port = hg["port"]
            check(port in ports or port in ports.values(),
                  "%s %s port %s is not a container port %s" % (name, probe, port, ports))
        # mounted config files: mountPath/key -> content
        vols = {v["name"]: v for v in ps.get("volumes", [])}
        files_ = {}
        for m in c.get("volumeMounts", []):
            check(m["name"] in vols, "%s mounts unknown volume %s" % (name, m["name"]))
            cmref = vols[m["name"]].get("configMap")
            if cmref:
                check(cmref["name"] in cms, "%s: ConfigMap %s missing" % (name, cmref["name"]))
                for key, text in cms[cmref["name"]]["data"].items():
                    files_[m["mountPath"].rstrip("/") + "/" + key] = text
        configs[name] = (c, files_, ports, ps)

    # gateway: /readyz for readiness, /healthz for liveness; grace > preStop + drain
    c, files_, ports, ps = configs["ws-gateway"]
    eq(c["readinessProbe"]["httpGet"]["path"], "/readyz")
    eq(c["livenessProbe"]["httpGet"]["path"], "/healthz")
    listen = flag_value(c, files_, "listen")
    eq(int(listen.rsplit(":", 1)[1]), ports["ws"], "gateway listens on its ws port")
    drain = secs(flag_value(c, files_, "drain-timeout") or 10)
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_s = secs(pre[1]) if pre[:1] == ["sleep"] else 0
    grace = ps["terminationGracePeriodSeconds"]
    check(grace > drain + pre_s, "gateway grace %ss <= preStop %ss + drain %ss" % (grace, pre_s, drain))
    # its upstream: dns:///<headless service>.<ns>.svc.cluster.local:<grpc port of ws-api>
    up = flag_value(c, files_, "upstream")
    m = re.fullmatch(r"dns:///([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", up or "")
    check(m, "gateway upstream %r is not dns:///SVC.NS.svc.cluster.local:PORT" % up)
    hsvc = svcs.get(m.group(1))
    check(hsvc, "upstream names Service %s, which does not exist" % m.group(1))
    eq(hsvc["metadata"]["namespace"], m.group(2))
    eq(hsvc["spec"]["clusterIP"], "None", "the upstream Service must be headless")
    eq(hsvc["spec"]["selector"], {"app.kubernetes.io/name": "ws-api"})
    api_c, api_files, api_ports, api_ps = configs["ws-api"]
    # ws-api: /readyz (presence whole) for the push Service; the gateways' headless Service
    # publishes pods that are not ready, or a pod would wait for gateways that cannot see it
    eq(api_c["readinessProbe"]["httpGet"]["path"], "/readyz")
    eq(api_c["livenessProbe"]["httpGet"]["path"], "/healthz")
    eq(hsvc["spec"].get("publishNotReadyAddresses"), True,
       "the gateways' headless Service must publish ws-api pods that are not ready")
    check(int(m.group(3)) in [p["port"] for p in hsvc["spec"]["ports"]], "upstream port")
    eq(int(m.group(3)), api_ports["grpc"])
    eq(int(flag_value(api_c, api_files, "grpc-listen").rsplit(":", 1)[1]), api_ports["grpc"])
    eq(int(flag_value(api_c, api_files, "http-listen").rsplit(":", 1)[1]), api_ports["http"])
    check(api_ps["terminationGracePeriodSeconds"] >
          secs(flag_value(api_c, api_files, "shutdown-timeout") or 3), "ws-api grace period")
    # gateway id unique per pod
    env = {e["name"]: e for e in c["env"]}
    eq(env["WSGW_GATEWAY_ID"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
    # Services select a Deployment's (or StatefulSet's: Redis) pods and point at named
    # container ports
    pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deps.items()}
    named_ports = {n: configs[n][2] for n in deps}
    for sts in by_kind.get("StatefulSet", []):
        n = sts["metadata"]["name"]
        pods[n] = sts["spec"]["template"]["metadata"]["labels"]
        sps = sts["spec"]["template"]["spec"]
        check(sps["securityContext"]["runAsNonRoot"] is True, "%s runs as root" % n)
        for c2 in sps["containers"]:
            sc2 = c2["securityContext"]
            check(sc2["allowPrivilegeEscalation"] is False and sc2["readOnlyRootFilesystem"] is True
                  and sc2["capabilities"]["drop"] == ["ALL"], n)
            check("cpu" in c2["resources"]["limits"] and "memory" in c2["resources"]["limits"], n)
        named_ports[n] = {p["name"]: p["containerPort"] for c2 in sps["containers"]
                          for p in c2.get("ports", [])}
    for sname, s in svcs.items():
        sel = s["spec"]["selector"]
        owners = [n for n, l in pods.items() if all(l.get(k) == v for k, v in sel.items())]
        eq(len(owners), 1, "Service %s selects %s" % (sname, owners))
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in named_ports[owners[0]], "Service %s targetPort %s" % (sname, p["targetPort"]))
    check(any(s["spec"].get("type") == "LoadBalancer" and
              s["spec"]["selector"] == {"app.kubernetes.io/name": "ws-gateway"} for s in svcs.values()))
    # PodDisruptionBudgets: one per Deployment, never blocking every eviction
    pdbs = by_kind["PodDisruptionBudget"]
    eq(len(pdbs), 2)
    for p in pdbs:
        sel = p["spec"]["selector"]["matchLabels"]
        owners = [n for n, l in pods.items() if all(l.get(k) == v for k, v in sel.items())]
        eq(len(owners), 1, p["metadata"]["name"])
        reps = deps[owners[0]]["spec"]["replicas"]
        if "minAvailable" in p["spec"]:
            check(p["spec"]["minAvailable"] < reps, "PDB %s blocks all evictions" % owners[0])
        else:
            check(p["spec"]["maxUnavailable"] >= 1)


def test_k8s_config_files_start_the_real_binaries():
    """The ConfigMap's gateway.json / api.json, given to the real binaries with --config (only
    the listen addresses and the upstream overridden by flags, which win over the file)."""
    cm = [d for d in k8s_docs() if d["kind"] == "ConfigMap"][0]["data"]
    td = tempfile.mkdtemp(prefix="k8s-config-", dir=BUILD)
    for k, v in cm.items():
        with open(os.path.join(td, k), "w") as f:
            f.write(v)
    api = Api(extra=["--config", os.path.join(td, "api.json")])
    st, _ = api.http("GET", "/healthz")
    eq(st, 200)
    gw = Gateway([api.grpc_addr], extra=["--config", os.path.join(td, "gateway.json")])
    eq(gw.get("/readyz")[0], 200)
    eq(gw.metric("wsgw_upstream_connected", {"node": api.grpc_addr}), 1.0)
    # the file's upstream form, dns:///NAME:PORT, with a name that resolves here
    dns = Gateway(["dns:///localhost:%d" % api.grpc_port],
                  extra=["--config", os.path.join(td, "gateway.json"), "--dns-interval", "1"])
    eq(dns.get("/readyz")[0], 200)
    st, body = dns.get("/metrics")
    check(re.search(r'wsgw_upstream_connected\{node="[^"]*127\.0\.0\.1:%d"\} 1' % api.grpc_port,
                    body), "no connected 127.0.0.1 node via dns:///localhost:\n" +
          "\n".join(l for l in body.splitlines() if "upstream_connected" in l))
    shutil.rmtree(td, ignore_errors=True)


# ---- systemd ---------------------------------------------------------------------------------

def unit(path):
    """{section: [(key, value)]} of a systemd unit file."""
    out, sec = {}, None
    with open(path) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith(("#", ";")):
                continue
            if s.startswith("["):
                sec = s.strip("[]")
                out.setdefault(sec, [])
                continue
            k, _, v = s.partition("=")
            out[sec].append((k.strip(), v.strip()))
    return out


def test_systemd_units():
    d = os.path.join(DEPLOY, "systemd")
    names = ("ws-api", "ws-gateway")
    for n in names:
        u = unit(os.path.join(d, n + ".service"))
        check({"Unit", "Service", "Install"} <= set(u), "%s sections %s" % (n, list(u)))
        kv = {}
        for k, v in u["Service"]:
            kv.setdefault(k, []).append(v)
        one = {k: v[-1] for k, v in kv.items()}
        eq(one["ExecStart"].split()[0], "/usr/local/bin/" + n)
        for k, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                        ("PrivateTmp", "yes"), ("CapabilityBoundingSet", ""),
                        ("LimitNOFILE", "1048576"), ("KillSignal", "SIGTERM"),
                        ("DynamicUser", "yes")):
            eq(one.get(k), want, "%s %s" % (n, k))
        fams = one["RestrictAddressFamilies"].split()
        check({"AF_INET", "AF_INET6"} <= set(fams) and "AF_PACKET" not in fams, fams)
        # the drain / shutdown timeout of the env file, against TimeoutStopSec
        envfile = one["EnvironmentFile"].lstrip("-")
        eq(os.path.dirname(envfile), "/etc/wsgw")
        env = read_env_file(os.path.join(d, os.path.basename(envfile)))
        t = env.get("WSGW_DRAIN_TIMEOUT" if n == "ws-gateway" else "WSAPI_SHUTDOWN_TIMEOUT")
        check(t, "%s env file sets no stop timeout" % n)
        check(secs(one["TimeoutStopSec"]) > secs(t),
              "%s TimeoutStopSec %s <= %s" % (n, one["TimeoutStopSec"], t))
    sa = shutil.which("systemd-analyze")
    if not sa:
        print("note: systemd-analyze not found: units checked by the parser above only", flush=True)
        return
    with tempfile.TemporaryDirectory() as td:
        for n in names:
            with open(os.path.join(d, n + ".service")) as f:
                text = f.read().replace("/usr/local/bin/", BIN.rstrip("/") + "/")
            with open(os.path.join(td, n + ".service"), "w") as f:
                f.write(text)
        paths = [os.path.join(td, n + ".service") for n in names]
        r = subprocess.run([sa, "verify"] + paths, capture_output=True, text=True, timeout=60)
        out = (r.stdout + r.stderr).strip()
        eq(r.returncode, 0, "systemd-analyze verify:\n" + out)
        eq(out, "", "systemd-analyze verify printed warnings")
        for p in paths:
            r = subprocess.run([sa, "security", "--offline=true", "--threshold=20", p],
                               capture_output=True, text=True, timeout=60)
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
            check(m, r.stdout[-500:] + r.stderr)
            print("%s: exposure %s" % (os.path.basename(p), m.group(1)), flush=True)
            eq(r.returncode, 0, "exposure %s over 2.0" % m.group(1))


def test_systemd_env_files_start_the_real_binaries():
    d = os.path.join(DEPLOY, "systemd")
    api_env = read_env_file(os.path.join(d, "ws-api.env"))
    gw_env = read_env_file(os.path.join(d, "ws-gateway.env"))
    api = Api(env=api_env)  # Api's flags override the env's listen addresses
    gw = Gateway([api.grpc_addr], env=gw_env)
    eq(gw.get("/readyz")[0], 200)
    eq(gw.metric("wsgw_upstream_connected", {"node": api.grpc_addr}), 1.0)


# ---- Prometheus and Grafana ------------------------------------------------------------------

PROMQL_WORDS = {"sum", "rate", "irate", "increase", "histogram_quantile", "max", "min", "avg",
                "count", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "and", "or", "unless", "topk", "bottomk", "clamp_min", "clamp_max", "abs",
                "delta", "deriv", "label_values", "offset", "inf", "nan", "time", "vector",
                "scalar", "sort", "sort_desc", "absent"}


def promql_parts(expr):
    """(metric names, label names) used by a PromQL expression."""
    labels = set()
    for m in re.finditer(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(1)))
    for m in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    names = {t for t in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)
             if t not in PROMQL_WORDS and not re.fullmatch(r"[0-9.e]+", t)}
    return names, labels


def dashboard_exprs():
    with open(os.path.join(DEPLOY, "grafana", "wsgw-dashboard.json")) as f:
        dash = json.load(f)
    exprs = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                exprs.append((p["title"], t["expr"]))
            walk(p.get("panels", []))
    walk(dash["panels"])
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            mm = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q)
            check(mm, q)
            exprs.append(("variable " + v["name"], "%s{%s!=\"\"}" % (mm.group(1), mm.group(2))))
    return dash, exprs


def test_prometheus_config():
    if not shutil.which("promtool"):
        print("skip: promtool not found (Debian package prometheus; `make deps`)", flush=True)
        return
    path = os.path.join(DEPLOY, "prometheus", "prometheus.yml")
    r = subprocess.run(["promtool", "check", "config", path], capture_output=True, text=True,
                       timeout=30)
    eq(r.returncode, 0, r.stdout + r.stderr)
    with open(path) as f:
        prom = yaml.safe_load(f)
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    eq(jobs["ws-gateway"]["dns_sd_configs"][0]["names"], ["ws-gateway"])
    eq(jobs["ws-gateway"]["dns_sd_configs"][0]["port"], 8080)
    eq(jobs["ws-api"]["dns_sd_configs"][0]["names"], ["ws-api"])
    eq(jobs["ws-api"]["dns_sd_configs"][0]["port"], 8082)
    with open(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "wsgw.yml")) as f:
        prov = yaml.safe_load(f)
    with open(os.path.join(DEPLOY, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    mounts = [v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]]
    dash_dir = prov["providers"][0]["options"]["path"]
    check(any(os.path.dirname(m) == dash_dir for m in mounts), "dashboard not mounted in %s" % dash_dir)


def test_dashboard_metrics_exist_in_real_scrapes():
    from test_metrics_promtool import parse, traffic_and_scrape
    dash, exprs = dashboard_exprs()
    eq(dash["uid"], "wsgw-overview")
    check(len(exprs) >= 20, "only %d expressions" % len(exprs))
    # PromQL syntax: every expression as a recording rule through promtool
    if shutil.which("promtool"):
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": "dashboard:expr_%d" % i,
             "expr": e.replace("$__rate_interval", "1m").replace("$__range", "1h")}
            for i, (_, e) in enumerate(exprs)]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=BUILD, delete=False) as f:
            yaml.safe_dump(rules, f)
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True,
                           timeout=30)
        os.unlink(f.name)
        eq(r.returncode, 0, "promtool check rules on the dashboard's queries:\n" + r.stdout + r.stderr)
    else:
        print("note: promtool missing: PromQL syntax not checked", flush=True)
    # every metric and label used exists in real scrapes after traffic
    _, _, gw_text, api_text = traffic_and_scrape()
    samples = parse(gw_text)[1] + parse(api_text)[1]
    labels_of = {}
    for n, ls, _ in samples:
        labels_of.setdefault(n, set()).update(ls)
    used = set()
    for title, e in exprs:
        names, labels = promql_parts(e)
        check(names, "%s: no metric in %r" % (title, e))
        for n in names:
            check(n in labels_of, "%s: metric %s is not in the /metrics of ws-gateway or ws-api"
                  % (title, n))
        have = set().union(*[labels_of[n] for n in names]) | {"instance", "job"}
        check(labels <= have, "%s: labels %s not on %s" % (title, sorted(labels - have), sorted(names)))
        used |= names
    # what the issue asks the dashboard to show
    for n in ("wsgw_connections", "wsgw_messages_total", "wsgw_stage_seconds_bucket",
              "wsgw_backpressure_pauses_total", "wsgw_upstream_connected",
              "wsgw_upstream_reconnects_total", "wsgw_slow_consumer_closes_total",
              "wsgw_closes_total", "wsapi_events_total", "wsapi_push_requests_total"):
        check(n in used, "the dashboard does not show " + n)
    stage = [e for _, e in exprs if "histogram_quantile" in e and "stage" in e]
    check(any("by (le, stage)" in e for e in stage), "no per-stage quantile panel")


if __name__ == "__main__":
    run(globals())
