"""Messages a client sent before it saw our close frame still reach the API (issue 14, case 7):
after a 1001 (SIGTERM drain) and after a Kick, the gateway reads on until the client's close
frame and forwards what came before it; the drain waits until the API acknowledged them. The
API here is a python3-grpcio Exchange server that acks every batch and records every message."""
import asyncio
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from wsgwtest import Gateway, check, eq, grpc_exchange_server, proto, run, wait_until  # noqa: E402
from test_faults import FrameReader, masked, ws_handshake  # noqa: E402


def arun(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Recorder(proto()[1].ExchangeServicer):
    """Acks every batch (x-wsgw-ack: 1) after recording its messages; kicks the users in
    `kick` (code 4001) when their message "kick-me" arrives."""

    def __init__(self):
        self.lock = threading.Lock()
        self.msgs = set()
        self.closes = {}

    def Stream(self, request_iterator, context):
        pb2 = proto()[0]
        context.send_initial_metadata((("x-wsgw-ack", "1"),))
        for up in request_iterator:
            cmds = []
            with self.lock:
                for ev in up.events:
                    kind = ev.WhichOneof("kind")
                    if kind == "message":
                        p = ev.message.payload.decode()
                        self.msgs.add(p)
                        if p.endswith(":kick-me"):
                            cmds.append(pb2.Command(kick=pb2.Kick(
                                target=pb2.Target(conn_ids=[ev.conn_id]), code=4001,
                                reason="kicked")))
                    elif kind == "close":
                        self.closes[ev.conn_id] = ev.close.code
            yield pb2.Downstream(commands=cmds, ack=up.seq)

    def got(self):
        with self.lock:
            return set(self.msgs)


async def sender(url, tag, period, kick_after=None):
    """Sends "tag:k" every period until the connection closes; returns (sent, close code).
    With kick_after, message number kick_after is "tag:kick-me", and the two after it follow
    it at once: they are on the wire before the kick can come back (through the gateway and
    the API), so every client has messages in flight after its kick-me whatever the timing
    of the rest (with the period alone, a busy box once saw none at all)."""
    ws = await websockets.connect(url, ping_interval=None)
    sent = []
    k = 0
    try:
        while True:
            m = "%s:%s" % (tag, "kick-me" if k == kick_after else k)
            await ws.send(m)
            sent.append(m)  # send() returned: on the wire before the client's close frame
            k += 1
            quick = kick_after is not None and kick_after < k <= kick_after + 2
            await asyncio.sleep(0 if quick else period)
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    return sent, ws.close_code


def test_sigterm_drain_delivers_what_clients_sent_before_the_close_frame():
    """200 clients send every 50 ms; SIGTERM after 1 s: each gets 1001, and every message it
    sent before that reaches the API, which acked it before the gateway exited."""
    rec = Recorder()
    server, port = grpc_exchange_server(rec, workers=16)
    try:
        gw = Gateway(["127.0.0.1:%d" % port], threads=2, streams=4,
                     extra=["--drain-timeout", "8"])
        n = 200

        async def main():
            tasks = [asyncio.create_task(sender(gw.url("d%d" % i), "d%d" % i, 0.05))
                     for i in range(n)]
            await asyncio.sleep(1.0)
            t0 = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            res = await asyncio.gather(*tasks)
            rc = await asyncio.get_running_loop().run_in_executor(None, gw.proc.wait, 15)
            return res, rc, time.monotonic() - t0
        res, rc, took = arun(main())
        eq(rc, 0)
        check(took < 8, "drain took %.1fs" % took)
        eq(sorted(set(code for _, code in res)), [1001])
        got = rec.got()
        sent = [m for s, _ in res for m in s]
        lost = [m for m in sent if m not in got]
        check(len(sent) > n * 10, "only %d messages sent" % len(sent))
        eq(lost[:10], [], "%d of %d messages sent before the 1001 never reached the API" %
           (len(lost), len(sent)))
        eq(len(rec.closes), n, "Close events at the API")
    finally:
        server.stop(0)


def test_kicked_clients_messages_sent_before_the_close_reach_the_api():
    """The API kicks each of 20 fast senders (4001) on its 20th message: everything a client
    sent before it saw the close frame, the messages in flight after "kick-me" included, reaches
    the API."""
    rec = Recorder()
    server, port = grpc_exchange_server(rec)
    try:
        gw = Gateway(["127.0.0.1:%d" % port], threads=2, streams=2)
        n = 20

        async def main():
            return await asyncio.gather(*[sender(gw.url("k%d" % i), "k%d" % i, 0.001, 20)
                                          for i in range(n)])
        res = arun(main())
        eq(sorted(set(code for _, code in res)), [4001])
        wait_until(lambda: len(rec.closes) == n, 5, what="Close events of the kicked clients")
        got = rec.got()
        sent = [m for s, _ in res for m in s]
        lost = [m for m in sent if m not in got]
        after = sum(len(s) - 21 for s, _ in res)
        check(after > 0, "no client sent anything after its kick-me: the test shows nothing")
        eq(lost[:10], [], "%d of %d messages (%d after kick-me) never reached the API" %
           (len(lost), len(sent), after))
        eq(sorted(set(rec.closes.values())), [4001])
    finally:
        server.stop(0)


def test_bad_message_after_a_kick_drops_the_rest_without_a_second_close_frame():
    """A client kicked (4001) sends, as if it had not seen the close yet, a good message, one
    over --max-message, and another good one, then its close frame: the first goes upstream;
    from the oversized one on everything is dropped; no second close frame is sent; the close
    counts as 1009."""
    rec = Recorder()
    server, port = grpc_exchange_server(rec)
    try:
        gw = Gateway(["127.0.0.1:%d" % port], extra=["--max-message", "1000"])
        s = ws_handshake(gw.port, "/gateway/ws?user=bad")
        s.sendall(masked(0x1, b"r:kick-me"))
        fr = FrameReader(s)
        eq(fr.next(), (0x8, b"\x0f\xa1kicked"))
        s.sendall(masked(0x1, b"r:before-bad") + masked(0x2, b"x" * 1001) +
                  masked(0x1, b"r:after-bad") + masked(0x8, b"\x03\xe8"))
        eq(fr.next(), None, "a second frame after our close")
        s.close()
        wait_until(lambda: len(rec.closes) == 1, 5, what="the Close event")
        eq(sorted(rec.got()), ["r:before-bad", "r:kick-me"])
        eq(list(rec.closes.values()), [1009])
        eq(gw.metric("wsgw_closes_total", {"code": "1009"}), 1)
    finally:
        server.stop(0)


if __name__ == "__main__":
    run(globals())
