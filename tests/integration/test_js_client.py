"""clients/js (the JavaScript client) under Node's test runner, against the real ws-gateway
(one plain, one with --auth-secret) and ws-api --handler chat: `node --test clients/js/test/`
with WSGW_URL / WSGW_API / WSGW_AUTH_URL / WSGW_SECRET set (clients/js/test/live.test.js; the
scripted-socket cases in backoff.test.js need no server). Node's TAP output goes to the log.
Skipped when node is missing (the client itself needs no package: no npm here)."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wsgwtest import ROOT, SLOW, Api, Gateway, check, run  # noqa: E402

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


if __name__ == "__main__":
    run(globals())
