"""ws-refecho (the reference lws echo server of the benchmarks) driven by ws-bench and by a
stock python3-websockets client: echoes in order, fragments reassembled (messages larger than
rx_buffer_size 512), binary kept binary, several threads sharing the port, clean SIGTERM."""
import asyncio
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wsgwtest import BIN, BUILD, ROOT, SLOW, check, eq, free_port, proc_log, run, start, stop, wait_port  # noqa: E402

import websockets  # noqa: E402


def refecho(threads=1, extra=()):
    port = free_port()
    p = start(["ws-refecho", "--listen", "127.0.0.1:%d" % port, "--threads", str(threads),
               "--log-level", "info"] + list(extra))
    wait_port(port, proc=p)
    return p, port


def bench(*args):
    fd, jpath = tempfile.mkstemp(prefix="bench-", suffix=".json", dir=os.path.join(BUILD, "test-logs"))
    os.close(fd)
    r = subprocess.run([os.path.join(BIN, "ws-bench")] + list(args) + ["--json", jpath],
                       capture_output=True, text=True, timeout=60 * SLOW)
    last = r.stdout.strip().splitlines()[-1]
    kv = {k: int(v) for k, v in (x.split("=", 1) for x in last.split())}
    with open(jpath) as f:
        doc = json.load(f)
    os.unlink(jpath)
    return r.returncode, kv, doc, r.stdout + r.stderr


def test_python_client_echo_in_order_with_fragments_and_binary():
    p, port = refecho()

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/any/path" % port, compression=None,
                                      max_size=None) as ws:
            sent = []
            for i in range(50):
                m = ("msg-%d-" % i) + "x" * (i * 97)  # up to ~4.8 KB: many 512-byte pieces
                sent.append(m)
                await ws.send(m)
            await ws.send([b"\x00\x01", b"\x02" * 3000, b"\x03"])  # fragmented binary
            got = [await ws.recv() for _ in range(50)]
            eq(got, sent)
            b = await ws.recv()
            check(isinstance(b, bytes), "binary frames must stay binary")
            eq(b, b"\x00\x01" + b"\x02" * 3000 + b"\x03")
    asyncio.run(asyncio.wait_for(go(), 20))
    eq(stop(p), 0)
    check("messages=51" in proc_log(p), proc_log(p))


def test_raw_mode_echo_ping_close_and_bench():
    """--raw (lws raw sockets, upgrade and framing by ws-refecho): a stock client gets its
    messages back in order, text and binary, fragmented and 70 000 bytes large, its ping
    answered and its close echoed; ws-bench sees every echo with no error."""
    p, port = refecho(threads=2, extra=["--raw"])

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/x" % port, compression=None,
                                      max_size=None) as ws:
            sent = ["t%d-" % i + "é" * (i * 53) for i in range(30)] + [b"", "", b"\x00" * 70000]
            for m in sent:
                await ws.send(m)
            await ws.send([b"\x01", b"\x02" * 3000, b"\x03"])  # fragmented binary
            got = [await ws.recv() for _ in range(len(sent) + 1)]
            eq(got[:-1], sent)
            eq(got[-1], b"\x01" + b"\x02" * 3000 + b"\x03")
            pong = await ws.ping(b"abc")
            await asyncio.wait_for(pong, 5)
            await ws.close(1000, "done")
            eq(ws.close_code, 1000)
    asyncio.run(asyncio.wait_for(go(), 20))
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port, "--path", "/x",
                             "--user", "50", "--interval", "0", "--inflight", "4",
                             "--file", os.path.join(ROOT, "testdata", "1k.txt"), "--times", "20")
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"]), (1000, 1000, 0))
    eq(stop(p), 0)


def test_bench_closed_loop_two_threads():
    p, port = refecho(threads=2)
    f = os.path.join(ROOT, "testdata", "1k.txt")
    rc, kv, doc, out = bench("message", "--host", "127.0.0.1:%d" % port, "--user", "50",
                             "--interval", "0", "--inflight", "16", "--times", "100",
                             "--file", f)
    eq(rc, 0, out)
    eq((kv["sent"], kv["received"], kv["errors"], kv["conns"]), (5000, 5000, 0, 50), out)
    eq(doc["messages"]["bytes_received"], 5000 * 1411)
    eq(doc["close_codes"], {"1000": 50})
    eq(stop(p), 0)
    log = proc_log(p)
    check("messages=5000" in log, log)  # accepted: 50 + the wait_port probe


def test_sigterm_with_open_connections():
    p, port = refecho(threads=2)
    b = subprocess.Popen([os.path.join(BIN, "ws-bench"), "conn", "--host", "127.0.0.1:%d" % port,
                          "--user", "200", "--sleep", "60s"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        import time
        time.sleep(1.5 * SLOW)  # connected by then; the bench ends early once all are gone
        eq(stop(p), 0)  # the server goes away under 200 open connections, cleanly
        out, err = b.communicate(timeout=40 * SLOW)
    finally:
        if b.poll() is None:
            b.kill()
    last = out.strip().splitlines()[-1]
    kv = {k: int(v) for k, v in (x.split("=", 1) for x in last.split())}
    # the bench saw every connection end early: closed by the server, counted as errors
    eq(kv["errors"], 200, out + err)
    eq(b.returncode, 1)


run(globals())
