"""The browser demo (demo/index.html + app.js + style.css) in two headless Chromium pages,
chatting through a room via the real bin/ws-gateway and bin/ws-api --handler chat, with a
python3-websockets client in the same room checking what the pages sent, and a push from the
push API shown on both pages. Screenshots: $BUILD/test-logs/demo.png (alice), demo-bob.png.

The page is served by the gateway itself when `ws-gateway --help` lists --static-dir, else by
python's http.server with ?gw=ws://127.0.0.1:PORT/gateway/ws.

Tools, installed on demand and never into the repository:
- Debian's chromium (/usr/bin/chromium): when missing and we are root, `apt-get install chromium`
  runs here (it is ~300 MB, so `make deps` does not install it for everyone);
- playwright-core (pinned) from the npm registry into $BUILD/browser-node. Playwright's own
  browser download (`npx playwright install`) is never used: executablePath is /usr/bin/chromium.
Skipped with a message when chromium or npm cannot be had."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import (BIN, BUILD, ROOT, SLOW, Api, Gateway, check, eq, free_port, run,  # noqa: E402
                      start, wait_port)

CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT = "playwright-core@1.65.1"
NODE_DIR = os.path.join(BUILD, "browser-node")
DEMO = os.path.join(ROOT, "demo")
LOGDIR = os.path.join(BUILD, "test-logs")

DRIVER = r"""
// Drives two pages of the demo; prints progress lines and a final JSON line.
const { chromium } = require('playwright-core');
const [urlA, urlB, shotA, shotB, userDataDir] = process.argv.slice(2);
const T = 15000;
function say(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
async function waitLine(page, cls, text) {
  await page.locator('#log li.' + cls, { hasText: text }).first().waitFor({ timeout: T });
}
async function connect(page, url) {
  await page.goto(url);
  await page.click('#connect');
  await page.waitForSelector('#state[data-state="open"]', { timeout: T });
}
async function chat(page, text) {
  await page.fill('#text', text);
  await page.click('#say');
}
(async () => {
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 900, height: 640 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  try {
    const a = ctx.pages()[0] || await ctx.newPage();
    const b = await ctx.newPage();
    for (const p of [a, b]) {
      p.on('pageerror', (e) => errors.push(String(e)));
      p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    }
    await connect(a, urlA);
    await connect(b, urlB);
    const stateText = await a.textContent('#state');
    const gwUrl = await a.inputValue('#gw');
    say({ step: 'connected' });
    // alice joins and hears herself: her Join is in effect
    await a.click('#join');
    await chat(a, "hi, I'm alice");
    await waitLine(a, 'said', "hi, I'm alice");
    // bob joins and hears himself; alice hears him too
    await b.click('#join');
    await chat(b, 'hi alice, bob here <b>not bold</b>');
    await waitLine(b, 'said', 'hi alice, bob here');
    await waitLine(a, 'said', 'hi alice, bob here');
    await chat(a, 'hello bob');
    await waitLine(b, 'said', 'hello bob');
    await waitLine(a, 'said', 'hello bob');
    say({ step: 'chatted' });
    // the test pushes to the room through the push API now
    await waitLine(a, 'info', 'pushed to the room');
    await waitLine(b, 'info', 'pushed to the room');
    const linesA = await a.$$eval('#log li.said', (ls) => ls.map((l) => ({
      from: l.querySelector('.from').textContent, room: l.querySelector('.room').textContent,
      text: l.querySelector('.text').textContent, mine: l.classList.contains('mine') })));
    const boldTags = await a.$$eval('#log b', (x) => x.length);
    await a.screenshot({ path: shotA });
    await b.screenshot({ path: shotB });
    // bob disconnects by the button: his page says so
    await b.click('#disconnect');
    await b.waitForSelector('#state[data-state="closed"]', { timeout: T });
    const bobState = await b.textContent('#state');
    say({ step: 'done', stateText, gwUrl, linesA, boldTags, bobState, errors });
  } finally {
    await ctx.close();
  }
})().catch((e) => { say({ step: 'error', error: String(e && e.stack || e) }); process.exit(1); });
"""


DRIVER_AUTOJOIN = r"""
// Opens the demo with ?user=&room=&autoconnect=1 and waits for what the test says there.
const { chromium } = require('playwright-core');
const [url, userDataDir] = process.argv.slice(2);
const T = 15000;
function say(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
(async () => {
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  try {
    const p = ctx.pages()[0] || await ctx.newPage();
    p.on('pageerror', (e) => errors.push(String(e)));
    await p.goto(url);
    await p.waitForSelector('#state[data-state="open"]', { timeout: T });
    say({ step: 'open', rooms: await p.textContent('#rooms') });
    // the test says something in the room: it shows up without any click here
    await p.locator('#log li.said', { hasText: 'is anyone in autoroom' }).first()
      .waitFor({ timeout: T });
    say({ step: 'done', rooms: await p.textContent('#rooms'), errors });
  } finally {
    await ctx.close();
  }
})().catch((e) => { say({ step: 'error', error: String(e && e.stack || e) }); process.exit(1); });
"""


def ensure_chromium():
    if os.access(CHROMIUM, os.X_OK):
        return True
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or not apt:
        print("skip: %s missing and not root with apt-get to install Debian's chromium" % CHROMIUM,
              flush=True)
        return False
    print("installing Debian's chromium (browser test only)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = [apt, "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=500)
    if r.returncode != 0:  # stale package lists: update once, try again
        subprocess.run([apt, "update", "-qq"], capture_output=True, env=env, timeout=300)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=500)
    if r.returncode != 0 or not os.access(CHROMIUM, os.X_OK):
        print("skip: apt-get install chromium failed:\n%s" % (r.stdout + r.stderr)[-2000:], flush=True)
        return False
    return True


def ensure_playwright():
    """NODE_PATH for the driver, or None (with a printed reason)."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        print("skip: npm/node not found (playwright-core comes from the npm registry)", flush=True)
        return None
    mods = os.path.join(NODE_DIR, "node_modules")
    want = PLAYWRIGHT.rsplit("@", 1)[1]
    pj = os.path.join(mods, "playwright-core", "package.json")
    try:
        with open(pj) as f:
            if json.load(f).get("version") == want:
                return mods
    except (OSError, ValueError):
        pass
    os.makedirs(NODE_DIR, exist_ok=True)
    r = subprocess.run([npm, "install", "--prefer-offline", "--no-audit", "--no-fund", "--no-save",
                        "--prefix", NODE_DIR, PLAYWRIGHT], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1"))
    check(r.returncode == 0, "npm install %s failed:\n%s%s" % (PLAYWRIGHT, r.stdout, r.stderr))
    return mods


def gateway_has_static_dir():
    r = subprocess.run([os.path.join(BIN, "ws-gateway"), "--help"], capture_output=True, text=True,
                       timeout=10)
    return "--static-dir" in (r.stdout + r.stderr)


def http_get(port, path):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("content-type") or "", body


def check_gateway_serves_demo(port):
    """The demo's files come back byte for byte with usable content types (browsers refuse a
    stylesheet that is not text/css), and nothing outside the directory is served."""
    for path, name, ctype in (("/", "index.html", "text/html"),
                              ("/index.html", "index.html", "text/html"),
                              ("/app.js", "app.js", "javascript"),
                              ("/wsgw-client.js", "wsgw-client.js", "javascript"),
                              ("/style.css", "style.css", "text/css"),
                              ("/favicon.svg", "favicon.svg", "image/svg+xml")):
        st, ct, body = http_get(port, path)
        with open(os.path.join(DEMO, name), "rb") as f:
            want = f.read()
        check(st == 200 and body == want,
              "ws-gateway --static-dir %s: GET %s gave %d (%d bytes), not demo/%s"
              % (DEMO, path, st, len(body), name))
        check(ctype in ct, "GET %s: content-type %r, want %s" % (path, ct, ctype))
    for path in ("/../README.md", "/%2e%2e/README.md", "/..%2fREADME.md", "/nope.html"):
        st, _, body = http_get(port, path)
        check(st in (400, 403, 404), "GET %s: status %d" % (path, st))
        check(b"wsgw" not in body or st != 200, path)


def test_gateway_serves_the_demo():
    if not gateway_has_static_dir():
        print("skip: ws-gateway has no --static-dir yet", flush=True)
        return
    api = Api(handler="chat")
    gw = Gateway([api.grpc_addr], extra=["--static-dir", DEMO])
    check_gateway_serves_demo(gw.port)
    for path in ("/healthz", "/readyz", "/metrics"):
        eq(gw.get(path)[0], 200, path)


def test_two_chromium_pages_chat_through_the_gateway():
    if not ensure_chromium():
        return
    mods = ensure_playwright()
    if not mods:
        return
    api = Api(handler="chat")
    if gateway_has_static_dir():
        gw = Gateway([api.grpc_addr], extra=["--static-dir", DEMO])
        check_gateway_serves_demo(gw.port)
        base = "http://127.0.0.1:%d/?room=demo" % gw.port
        served_by = "gateway"
    else:
        gw = Gateway([api.grpc_addr])
        port = free_port()
        httpd = start(["/usr/bin/python3", "-m", "http.server", str(port), "--bind", "127.0.0.1",
                       "--directory", DEMO], name="demo-httpd")
        wait_port(port, proc=httpd)
        base = "http://127.0.0.1:%d/index.html?room=demo&gw=ws://127.0.0.1:%d/gateway/ws" % (port, gw.port)
        served_by = "http.server"
    print("demo served by %s: %s" % (served_by, base), flush=True)
    os.makedirs(LOGDIR, exist_ok=True)
    driver = os.path.join(NODE_DIR, "drive-demo.js")
    with open(driver, "w") as f:
        f.write(DRIVER)
    shot_a = os.path.join(LOGDIR, "demo.png")
    shot_b = os.path.join(LOGDIR, "demo-bob.png")
    for s in (shot_a, shot_b):
        if os.path.exists(s):
            os.unlink(s)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=NODE_DIR)

    async def main():
        carol = await websockets.connect(gw.url("carol"), ping_interval=None)
        await carol.send(json.dumps({"op": "join", "room": "demo"}))
        await carol.send(json.dumps({"op": "say", "room": "demo", "text": "carol is here"}))
        eq(json.loads(await asyncio.wait_for(carol.recv(), 10))["text"], "carol is here")
        proc = await asyncio.create_subprocess_exec(
            shutil.which("node"), driver, base + "&user=alice", base + "&user=bob", shot_a, shot_b,
            profile, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, NODE_PATH=mods))
        steps = []
        try:
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), 45 * SLOW)
                if not line:
                    break
                msg = json.loads(line)
                steps.append(msg)
                if msg["step"] == "chatted":
                    st, js = api.push(room="demo", data="pushed to the room")
                    eq(st, 200, js)
            await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        err = (await proc.stderr.read()).decode(errors="replace")
        heard = []
        try:
            while True:
                heard.append(await asyncio.wait_for(carol.recv(), 1))
        except asyncio.TimeoutError:
            pass
        await carol.close()
        return proc.returncode, steps, err, heard

    rc, steps, err, heard = asyncio.run(main())
    shutil.rmtree(profile, ignore_errors=True)
    eq(rc, 0, "driver failed: %s\n%s" % (steps[-1:] if steps else "", err[-3000:]))
    eq([s["step"] for s in steps], ["connected", "chatted", "done"])
    done = steps[-1]
    eq(done["errors"], [], "page errors")
    eq(done["stateText"], "connected as alice")
    if served_by == "gateway":
        eq(done["gwUrl"], "ws://127.0.0.1:%d/gateway/ws" % gw.port)  # the page's own default
    eq(done["linesA"], [
        {"from": "alice", "room": "demo", "text": "hi, I'm alice", "mine": True},
        {"from": "bob", "room": "demo", "text": "hi alice, bob here <b>not bold</b>", "mine": False},
        {"from": "alice", "room": "demo", "text": "hello bob", "mine": True}])
    eq(done["boldTags"], 0, "message text was interpreted as HTML")
    check(done["bobState"].startswith("disconnected"), done["bobState"])
    # the websockets client in the room heard the browsers through the gateway, and the push
    said = [json.loads(m) for m in heard if m.startswith("{")]
    eq(said, [{"op": "said", "room": "demo", "from": "alice", "text": "hi, I'm alice"},
              {"op": "said", "room": "demo", "from": "bob", "text": "hi alice, bob here <b>not bold</b>"},
              {"op": "said", "room": "demo", "from": "alice", "text": "hello bob"}])
    eq([m for m in heard if not m.startswith("{")], ["pushed to the room"])
    for s in (shot_a, shot_b):
        check(os.path.getsize(s) > 10000, "screenshot %s too small" % s)
    eq(gw.metric("wsgw_connections_accepted_total"), 3.0)
    print("screenshots: %s %s" % (shot_a, shot_b), flush=True)



def test_room_query_joins_with_autoconnect():
    """Issue 17 item 10: ?room=R&autoconnect=1 filled in the room but did not join it; now the
    page joins R when it connects: ws-api lists it in the room, and a message said there by
    another client shows on the page without a click."""
    if not gateway_has_static_dir() or not ensure_chromium():
        return
    mods = ensure_playwright()
    if not mods:
        return
    api = Api(handler="chat")
    gw = Gateway([api.grpc_addr], extra=["--static-dir", DEMO])
    url = "http://127.0.0.1:%d/?user=dave&room=autoroom&autoconnect=1" % gw.port
    os.makedirs(NODE_DIR, exist_ok=True)
    driver = os.path.join(NODE_DIR, "drive-autojoin.js")
    with open(driver, "w") as f:
        f.write(DRIVER_AUTOJOIN)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=NODE_DIR)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            shutil.which("node"), driver, url, profile, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(os.environ, NODE_PATH=mods))
        steps = []
        try:
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), 45 * SLOW)
                if not line:
                    break
                steps.append(json.loads(line))
                if steps[-1]["step"] != "open":
                    continue
                members = []
                for _ in range(100):
                    st, js = api.http("GET", "/v1/rooms/autoroom")
                    members = [m["user_id"] for m in js.get("members", [])] if st == 200 else []
                    if members:
                        break
                    await asyncio.sleep(0.05)
                steps[-1]["members"] = members
                erin = await websockets.connect(gw.url("erin"), ping_interval=None)
                await erin.send(json.dumps({"op": "say", "room": "autoroom",
                                            "text": "is anyone in autoroom?"}))
                await erin.close()
            await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return proc.returncode, steps, (await proc.stderr.read()).decode(errors="replace")

    rc, steps, err = asyncio.run(main())
    shutil.rmtree(profile, ignore_errors=True)
    eq(rc, 0, "driver failed: %s\n%s" % (steps[-1:] if steps else "", err[-3000:]))
    eq([s["step"] for s in steps], ["open", "done"])
    eq(steps[0]["members"], ["dave"], "ws-api's members of autoroom")
    eq(steps[1]["rooms"], "in: autoroom")
    eq(steps[1]["errors"], [])


if __name__ == "__main__":
    run(globals())
