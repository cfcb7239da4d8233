"""attackkit: measure what an attack costs the people who are not attacking.

While an attack runs, a legitimate client keeps echoing through a real ws-gateway (and the API
node behind it) and the attacked processes are sampled:

    probe = EchoProbe(gw.port)                 # a websocket client echoing every 10 ms,
    probe.start()                              #   in its own process (no GIL sharing)
    watch = Watch(probe, {"ws-api": api.proc.pid, "ws-gateway": gw.proc.pid})
    watch.begin()
    ... the attack ...
    res = watch.end()                          # echo p50/max/errors, CPU % and RSS per process
    print(res.line("hpack bomb"))              # one line with the real figures
    res.check(cpu={"ws-api": 25}, rss_kb={"ws-api": 4096})
    probe.stop()

- EchoProbe: one RFC 6455 client (raw socket, masked frames, pong to pings, reconnects after an
  error) in a child process running this file, so the test process's attacker threads cannot
  delay it through the GIL; its round trips are reported per window (reset / report).
- CpuMeter: CPU % of a process over a window, from utime + stime in /proc/PID/stat.
- rss_kb: VmRSS of a process from /proc/PID/status; Watch also samples it every 20 ms for the
  peak during the window.
- GOALS: the issue 15 goals (legit echo p50 <= 5 ms and max <= 100 ms during an attack, no
  process over 25 % of a core from one attacking connection); Result.check applies them with
  MARGIN (env ATTACK_MARGIN, default 1.5) for CPU, MAX_MARGIN (ATTACK_MAX_MARGIN, 2) for the
  largest round trip, p50 as is, and scales latencies by wsgwtest.SLOW under sanitizers (CPU
  limits double there; RSS is not checked under AddressSanitizer). Reports always carry the
  real figures.

Only the Python standard library (and wsgwtest for SLOW) is used; run with /usr/bin/python3.
"""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsgwtest as w  # noqa: E402

GOALS = {"p50_ms": 5.0, "max_ms": 100.0, "cpu_pct": 25.0}
MARGIN = float(os.environ.get("ATTACK_MARGIN", "1.5"))
# The largest round trip is the figure a busy 2-core box disturbs most (a 153 ms outlier was
# seen with ws-api at 0.8 % CPU): it gets a margin of its own.
MAX_MARGIN = float(os.environ.get("ATTACK_MAX_MARGIN", "2"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- process figures from /proc -------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of stat(5)


def rss_kb(pid):
    """VmRSS of a process in KiB (0 when it has none)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class CpuMeter:
    """CPU % (of one core) a process used since the last reset()."""

    def __init__(self, pid):
        self.pid = pid
        self.reset()

    def reset(self):
        self.t0, self.c0 = time.monotonic(), cpu_seconds(self.pid)

    def percent(self):
        dt = time.monotonic() - self.t0
        return 100.0 * (cpu_seconds(self.pid) - self.c0) / dt if dt > 0 else 0.0


# ---- the legitimate client ------------------------------------------------------------------

class EchoProbe:
    """A websocket client echoing one small text message every `interval` seconds through
    ws://host:port/path?query, in a child process. start() returns once the first echo came
    back; reset() starts a new window; report() returns the window's figures:
    {"n", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors", "last_error"}; errors counts
    failed connects, lost connections and echoes not back within `timeout`."""

    def __init__(self, port, host="127.0.0.1", path="/gateway/ws", query="user=probe",
                 interval=0.01, timeout=2.0, size=32):
        self.args = [host, str(port), path + ("?" + query if query else ""), str(interval),
                     str(timeout), str(size)]
        self.p = None

    def start(self, timeout=10.0):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "probe"] + self.args,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
        deadline = time.monotonic() + timeout * w.SLOW
        while time.monotonic() < deadline:
            r = self.report()
            if r["n"] > 0:
                self.reset()
                return self
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError("echo probe got no echo through port %s: %s" % (self.args[1], r))

    def _ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError("echo probe exited (rc %s)" % self.p.poll())
        return json.loads(line)

    def reset(self):
        self._ask("reset")

    def report(self):
        return self._ask("report")

    def stop(self):
        if self.p and self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
                self.p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait(5)
        self.p = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _ws_connect(host, port, target, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (target, host, port, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(4096)
        if not c:
            raise OSError("closed during the handshake")
        head += c
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError("handshake refused: %r" % head.split(b"\r\n")[0])
    return s, head[head.index(b"\r\n\r\n") + 4:]


def _ws_frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x80 | opcode])
    if n < 126:
        hdr += bytes([0x80 | n])
    elif n < 65536:
        hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return hdr + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def _ws_read_frame(s, buf):
    """(opcode, payload, rest of buf) of the next unmasked server frame."""
    while True:
        if len(buf) >= 2:
            n, off = buf[1] & 0x7F, {126: 4, 127: 10}.get(buf[1] & 0x7F, 2)
            if len(buf) >= off:
                if off == 4:
                    n = struct.unpack(">H", buf[2:4])[0]
                elif off == 10:
                    n = struct.unpack(">Q", buf[2:10])[0]
                if len(buf) >= off + n:
                    return buf[0] & 0x0F, buf[off:off + n], buf[off + n:]
        c = s.recv(65536)
        if not c:
            raise OSError("connection closed")
        buf += c


def _probe_main(host, port, target, interval, timeout, size):
    """Child process: echo loop in the main thread, commands on stdin in another."""
    port, interval, timeout, size = int(port), float(interval), float(timeout), int(size)
    lock = threading.Lock()
    st = {"rtts": [], "errors": 0, "last_error": ""}
    stop = threading.Event()

    def commands():
        for line in sys.stdin:
            cmd = line.strip()
            with lock:
                if cmd == "reset":
                    st["rtts"], st["errors"], st["last_error"] = [], 0, ""
                    out = {"ok": True}
                elif cmd == "report":
                    r = sorted(st["rtts"])
                    pick = (lambda q: round(r[min(len(r) - 1, int(q * len(r)))] * 1e3, 3)) \
                        if r else (lambda q: None)
                    out = {"n": len(r), "p50_ms": pick(0.5), "p90_ms": pick(0.9),
                           "p99_ms": pick(0.99), "max_ms": round(r[-1] * 1e3, 3) if r else None,
                           "errors": st["errors"], "last_error": st["last_error"]}
                else:
                    break
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
        stop.set()

    threading.Thread(target=commands, daemon=True).start()
    s, buf, seq = None, b"", 0
    pad = "x" * max(0, size - 12)
    while not stop.is_set():
        t_next = time.monotonic() + interval
        try:
            if s is None:
                s, buf = _ws_connect(host, port, target, timeout)
            seq += 1
            msg = ("%010d" % seq + pad).encode()
            s.settimeout(timeout)
            t0 = time.monotonic()
            s.sendall(_ws_frame(1, msg))
            while True:
                op, payload, buf = _ws_read_frame(s, buf)
                if op == 9:
                    s.sendall(_ws_frame(10, payload))
                elif op == 8:
                    raise OSError("closed by the server: %r" % payload[:40])
                elif op == 1 and payload == msg:
                    break
            rtt = time.monotonic() - t0
            with lock:
                st["rtts"].append(rtt)
        except (OSError, ValueError) as e:
            with lock:
                st["errors"] += 1
                st["last_error"] = "%s: %s" % (type(e).__name__, e)
            if s is not None:
                s.close()
            s, buf = None, b""
            stop.wait(0.05)
            continue
        left = t_next - time.monotonic()
        if left > 0:
            stop.wait(left)
    if s is not None:
        s.close()


# ---- one attack window -----------------------------------------------------------------------

class Result:
    """Figures of one window: echo (EchoProbe.report()), cpu {name: %}, rss_kb {name: (before,
    peak, after)}, seconds."""

    def __init__(self, echo, cpu, rss, seconds):
        self.echo, self.cpu, self.rss, self.seconds = echo, cpu, rss, seconds

    def rss_growth_kb(self, name):
        before, peak, _ = self.rss[name]
        return peak - before

    def line(self, what):
        e = self.echo
        procs = " ".join("%s_cpu=%.1f%% %s_rss_kb=%d->%d(peak)" % (
            n, self.cpu[n], n, self.rss[n][0], self.rss[n][1]) for n in sorted(self.cpu))
        return ("attack=%r seconds=%.1f echo_n=%s echo_p50_ms=%s echo_p99_ms=%s echo_max_ms=%s "
                "echo_errors=%s %s" % (what, self.seconds, e["n"], e["p50_ms"], e["p99_ms"],
                                        e["max_ms"], e["errors"], procs))

    def check(self, cpu=None, rss_kb=None, p50_ms=None, max_ms=None, min_echoes=10):
        """Raises AssertionError unless the echo kept working within the goals and each named
        process stayed under its CPU % (cpu={name: pct}) and RSS growth (rss_kb={name: KiB},
        peak minus start; not checked under AddressSanitizer, whose quarantine keeps freed
        memory resident). CPU limits get MARGIN, the max latency MAX_MARGIN; latencies also
        wsgwtest.SLOW."""
        e = self.echo
        p50 = (p50_ms or GOALS["p50_ms"]) * w.SLOW
        mx = (max_ms or GOALS["max_ms"]) * MAX_MARGIN * w.SLOW
        bad = []
        if e["errors"]:
            bad.append("echo errors %d (%s)" % (e["errors"], e["last_error"]))
        if e["n"] < min_echoes:
            bad.append("only %d echoes" % e["n"])
        elif e["p50_ms"] > p50 or e["max_ms"] > mx:
            bad.append("echo p50 %.2f ms (limit %.1f), max %.2f ms (limit %.1f)"
                       % (e["p50_ms"], p50, e["max_ms"], mx))
        for name, pct in (cpu or {}).items():
            lim = pct * MARGIN * (2 if w.SLOW > 1 else 1)
            if self.cpu[name] > lim:
                bad.append("%s CPU %.1f%% (limit %.1f%%)" % (name, self.cpu[name], lim))
        for name, kb in (rss_kb or {}).items():
            if "address" in w.SANITIZE:
                break  # ASan's quarantine keeps freed memory resident: not a leak, not a figure
            g = self.rss_growth_kb(name)
            if g > kb:
                bad.append("%s RSS grew %d KiB (limit %d)" % (name, g, kb))
        if bad:
            raise AssertionError("; ".join(bad))
        return self


class Watch:
    """Measures one window: begin() resets the probe and the CPU meters and records RSS; end()
    returns a Result. procs: {name: pid}. The probe may be None (CPU and memory only)."""

    def __init__(self, probe, procs):
        self.probe, self.procs = probe, dict(procs)
        self._stop = threading.Event()
        self._t = None

    def _sample(self):
        while not self._stop.wait(0.02):
            for n, pid in self.procs.items():
                try:
                    self.peak[n] = max(self.peak[n], rss_kb(pid))
                except OSError:
                    pass

    def begin(self):
        if self.probe:
            self.probe.reset()
        self.meters = {n: CpuMeter(pid) for n, pid in self.procs.items()}
        self.before = {n: rss_kb(pid) for n, pid in self.procs.items()}
        self.peak = dict(self.before)
        self.t0 = time.monotonic()
        self._stop.clear()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def end(self):
        cpu = {n: m.percent() for n, m in self.meters.items()}
        self._stop.set()
        self._t.join()
        rss = {}
        for n, pid in self.procs.items():
            after = rss_kb(pid)
            rss[n] = (self.before[n], max(self.peak[n], after), after)
        echo = self.probe.report() if self.probe else {"n": 0, "p50_ms": None, "p99_ms": None,
                                                       "max_ms": None, "errors": 0,
                                                       "last_error": ""}
        return Result(echo, cpu, rss, time.monotonic() - self.t0)


def run_for(seconds, step, *args):
    """Calls step(*args) until `seconds` passed (at least once); returns the call count. For
    attacks that are a loop of small actions."""
    n, deadline = 0, time.monotonic() + seconds
    while True:
        step(*args)
        n += 1
        if time.monotonic() >= deadline:
            return n


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "probe":
        _probe_main(*sys.argv[2:])
    else:
        sys.exit("usage: attackkit.py probe HOST PORT TARGET INTERVAL TIMEOUT SIZE")
