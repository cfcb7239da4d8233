"""clients/js (the JavaScript client) under Node's test runner, against the real ws-gateway
(one plain, one with --auth-secret) and ws-api --handler chat: `node --test clients/js/test/`
with WSGW_URL / WSGW_API / WSGW_AUTH_URL / WSGW_SECRET set (clients/js/test/live.test.js; the
scripted-socket cases in backoff.test.js need no server). Node's TAP output goes to the log.
Skipped when node is missing (the client itself needs no package: no npm here).

And in headless Chromium (Debian's, driven by playwright-core as test_browser_demo.py does):
the demo page, which runs on the client, disconnects, misses pushes to its user and chat in its
room, connects again and shows what it missed (marked recovered, in order) before live
messages; the "drop" button (a network failure) reconnects by itself."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import ROOT, SLOW, Api, Gateway, check, eq, run  # noqa: E402
from test_browser_demo import DEMO, LOGDIR, NODE_DIR, ensure_chromium, ensure_playwright  # noqa: E402

JS = os.path.join(ROOT, "clients", "js")


def test_node_test_runner_against_the_gateway():
    node = shutil.which("node")
    if not node:
        print("skip: node not found", flush=True)
        return
    api = Api(handler="chat", extra=["--history-size", "30", "--history-all"])
    gw = Gateway([api.grpc_addr])
    secret = "js-test-secret"
    gwa = Gateway([api.grpc_addr], extra=["--auth-secret", secret])
    env = dict(os.environ, WSGW_URL="ws://127.0.0.1:%d/gateway/ws" % gw.port,
               WSGW_API="http://127.0.0.1:%d" % api.http_port,
               WSGW_AUTH_URL="ws://127.0.0.1:%d/gateway/ws" % gwa.port, WSGW_SECRET=secret)
    env.pop("NODE_OPTIONS", None)
    r = subprocess.run([node, "--test", "--test-reporter=tap", "test/"], cwd=JS, env=env,
                       capture_output=True, text=True, timeout=120 * SLOW)
    # indented: tests/run.sh counts lines that start with "ok " or "FAIL "
    print("\n".join("  node| " + l for l in r.stdout[-6000:].splitlines()))
    print(r.stderr[-3000:], file=sys.stderr)
    check(r.returncode == 0, "node --test failed (exit %d)" % r.returncode)
    check("# fail 0" in r.stdout and "# skipped 0" in r.stdout, "some node tests failed or skipped")


DRIVER = r"""
// The demo page in Chromium: connect, disconnect, connect again (recovery), drop (reconnect).
const { chromium } = require('playwright-core');
const readline = require('node:readline');
const [url, shot, userDataDir] = process.argv.slice(2);
const T = 15000;
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const lines = readline.createInterface({ input: process.stdin });
const waitGo = () => new Promise((r) => lines.once('line', r));
(async () => {
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 900, height: 700 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  try {
    const p = ctx.pages()[0] || await ctx.newPage();
    p.on('pageerror', (e) => errors.push(String(e)));
    p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    const open = () => p.waitForSelector('#state[data-state="open"]', { timeout: T });
    const line = (cls, text) => p.locator('#log li.' + cls, { hasText: text }).first().waitFor({ timeout: T });
    await p.goto(url);
    await open();
    await p.fill('#text', 'hi');
    await p.click('#say');
    await line('said', 'hi');                  // the ?room= Join is in effect
    say({ step: 'joined' });
    await waitGo();                            // the test pushed p0 and said s0
    await line('info', 'p0');
    await line('said', 's0');
    await p.click('#disconnect');
    await p.waitForSelector('#state[data-state="closed"]', { timeout: T });
    say({ step: 'away' });
    await waitGo();                            // pushes and chat while away
    await p.click('#connect');
    await open();
    await line('recovery', 'caught up on your messages');
    await line('recovery', 'caught up on room lobby');
    say({ step: 'back' });
    await waitGo();                            // a live push
    await line('info', 'live');
    await p.click('#drop');                    // a network failure: back by itself
    await p.waitForSelector('#state[data-state="reconnecting"]', { timeout: T });
    await open();
    const log = await p.$$eval('#log li', (ls) => ls.map((l) => ({
      cls: l.className, text: (l.querySelector('.text') || {}).textContent })));
    const state = await p.textContent('#state');
    await p.screenshot({ path: shot });
    say({ step: 'done', log, state, errors });
  } finally {
    lines.close(); // (stdin would keep node running)
    await ctx.close();
  }
})().catch((e) => { say({ step: 'error', error: String(e && e.stack || e) }); process.exit(1); });
"""


def test_demo_in_chromium_recovers_after_reconnecting():
    if not ensure_chromium():
        return
    mods = ensure_playwright()
    if not mods:
        return
    api = Api(handler="chat", extra=["--history-all"])
    gw = Gateway([api.grpc_addr], extra=["--static-dir", DEMO])
    url = "http://127.0.0.1:%d/?user=alice&room=lobby&autoconnect=1" % gw.port
    os.makedirs(LOGDIR, exist_ok=True)
    driver = os.path.join(NODE_DIR, "drive-recovery.js")
    with open(driver, "w") as f:
        f.write(DRIVER)
    shot = os.path.join(LOGDIR, "demo-recovery.png")
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=NODE_DIR)

    async def main():
        bob = await websockets.connect(gw.url("bob"), ping_interval=None)
        await bob.send(json.dumps({"op": "join", "room": "lobby"}))

        async def bob_says(text):
            await bob.send(json.dumps({"op": "say", "room": "lobby", "text": text}))
            while json.loads(await asyncio.wait_for(bob.recv(), 10))["text"] != text:
                pass

        proc = await asyncio.create_subprocess_exec(
            shutil.which("node"), driver, url, shot, profile, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, NODE_PATH=mods))
        steps = []

        def go():
            proc.stdin.write(b"go\n")

        try:
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), 60 * SLOW)
                if not line:
                    break
                msg = json.loads(line)
                steps.append(msg)
                print("driver:", msg["step"], flush=True)
                if msg["step"] == "joined":
                    eq(api.push(user_ids=["alice"], data="p0")[0], 200)
                    await bob_says("s0")
                    go()
                elif msg["step"] == "away":
                    for i in range(1, 6):
                        eq(api.push(user_ids=["alice"], data="p%d" % i, history=True)[0], 200)
                    for i in range(1, 4):
                        await bob_says("s%d" % i)
                    go()
                elif msg["step"] == "back":
                    eq(api.push(user_ids=["alice"], data="live")[0], 200)
                    go()
            await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await bob.close()
        return proc.returncode, steps, (await proc.stderr.read()).decode(errors="replace")

    rc, steps, err = asyncio.run(main())
    shutil.rmtree(profile, ignore_errors=True)
    eq(rc, 0, "driver failed: %s\n%s" % (steps[-1:] if steps else "", err[-3000:]))
    done = steps[-1]
    eq(done["step"], "done")
    eq(done["errors"], [], "page errors")
    eq(done["state"], "connected as alice")
    log = done["log"]
    recovered = [l["text"] for l in log if "recovered" in l["cls"].split()]
    # what alice missed, in order, each once: her pushes and the room's chat (its own channel)
    eq([t for t in recovered if t.startswith("p")], ["p1", "p2", "p3", "p4", "p5"])
    eq([t for t in recovered if t.startswith("s")], ["s1", "s2", "s3"])
    texts = [l["text"] for l in log]
    for t in ("p1", "s1", "live"):
        eq(texts.count(t), 1, t)
    check(texts.index("p5") < texts.index("live"), "recovered before live")
    live = [l for l in log if l["text"] == "live"][0]
    check("recovered" not in live["cls"], live)
    print("screenshot: %s" % shot, flush=True)


if __name__ == "__main__":
    run(globals())
