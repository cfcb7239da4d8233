#!/usr/bin/env python3
"""A wsgw API service in Python (grpcio, asyncio): implements wsgw.v1.Exchange with the same
echo and chat handlers as ws-api, so ws-gateway can use it in place of ws-api:

    /usr/bin/python3 examples/python/api_server.py --listen 127.0.0.1:8081 --handler chat
    bin/ws-gateway --upstream 127.0.0.1:8081

What it shows (examples/README.md explains each point):
- one Stream call per (gateway, stream slot); the gateway names itself in `x-gateway-id`;
- the `x-wsgw-ack: 1` response header, and `Downstream.ack` = the Upstream.seq fully handled,
  sent after the commands that batch produced (at-least-once delivery with replay);
- duplicates after a replay dropped by (conn_id, Message.seq);
- presence from Open/Close (replicated to every API node), kept per gateway session (its HTTP/2
  connection) and dropped when that session is gone: grpcio does not show the connection, so
  the session is the call's peer address:port, and it is gone once it had no live call for
  SESSION_LINGER seconds; Open/Close from an older session than an entry's are ignored;
- presence sync: the session is whole once every stream it announced (x-wsgw-streams) sent a
  batch with presence_complete;
- rooms live on the gateways: Join/Leave commands, and a room Send goes to every gateway,
  on the sender's own stream for its own gateway (so it follows the sender's earlier Join);
- backpressure: bounded per-stream queues; a full queue stops reading that stream, and HTTP/2
  flow control then slows the gateway down.

Needs Debian's python3-grpcio and python3-grpc-tools (stubs are generated from
proto/wsgw.proto at start-up into a temporary directory: no generated code in git).
"""
import argparse
import asyncio
import importlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.join(HERE, "..", "..", "proto", "wsgw.proto")
QUEUE_MAX = 1024  # Downstream messages queued per stream before its reader stops
# A session without a live call for this long is over (its presence goes). Longer than the
# gateway's stream reopen backoff (at most 2 s): a stream that fails, or all of them at once,
# is reopened on the same connection and replays its batches without re-sending presence.
SESSION_LINGER = 5.0


def log(event, **kv):
    """One logfmt line on stderr, like the C binaries."""
    parts = ["ts=%.3f" % time.time(), "msg=%s" % json.dumps(event)]
    parts += ["%s=%s" % (k, json.dumps(v) if isinstance(v, str) else v) for k, v in kv.items()]
    print(" ".join(parts), file=sys.stderr, flush=True)


def load_stubs(proto_path):
    """(wsgw_pb2, wsgw_pb2_grpc) generated from proto_path with grpc_tools.protoc into a
    temporary directory that is removed at exit."""
    from grpc_tools import protoc
    out = tempfile.mkdtemp(prefix="wsgw-py-")
    import atexit
    atexit.register(shutil.rmtree, out, True)
    proto_dir = os.path.dirname(os.path.abspath(proto_path))
    rc = protoc.main(["protoc", "-I" + proto_dir, "--python_out=" + out, "--grpc_python_out=" + out,
                      os.path.abspath(proto_path)])
    if rc != 0:
        raise SystemExit("protoc failed on %s" % proto_path)
    sys.path.insert(0, out)
    return importlib.import_module("wsgw_pb2"), importlib.import_module("wsgw_pb2_grpc")


def chat_parse(payload, binary):
    """(op, room, text) for a chat command, or None for anything else (which is echoed).
    Same rules as ws-api: JSON object, "op" join|leave|say, non-empty "room", say needs "text"."""
    if binary or not payload.startswith(b"{"):
        return None
    try:
        o = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(o, dict):
        return None
    op, room, text = o.get("op"), o.get("room"), o.get("text")
    if not isinstance(op, str) or not isinstance(room, str) or not room:
        return None
    if op in ("join", "leave"):
        return op, room, None
    if op == "say" and isinstance(text, str):
        return op, room, text
    return None


class Session:
    """One gateway session: the HTTP/2 connection its calls share (key: the calls' peer
    address:port). Serials grow with each new session: newer sessions win."""

    def __init__(self, serial, key, gateway_id, expect):
        self.serial = serial
        self.key = key
        self.gateway_id = gateway_id
        self.calls = 0
        self.conns = set()       # conn ids whose latest Open came on this session
        self.expect = expect     # x-wsgw-streams: streams that will say presence_complete
        self.complete = set()    # streams that did
        self.linger = None       # asyncio TimerHandle while the session has no call


class Stream:
    """One Exchange/Stream call: its session, the gateway it belongs to and its outbound
    queue."""

    def __init__(self, session):
        self.session = session
        self.gateway_id = session.gateway_id
        self.out = asyncio.Queue(QUEUE_MAX)


class Exchange:
    """wsgw.v1.Exchange with an echo or chat handler. Runs on one asyncio loop: no locks."""

    def __init__(self, pb2, handler):
        self.pb2 = pb2
        self.handler = handler
        self.streams = {}   # gateway id -> [Stream, ...] (live calls)
        self.sessions = {}  # peer address:port -> Session
        self.presence = {}  # conn_id -> (user_id, Session)
        self.last_seq = {}  # conn_id -> highest Message.seq handled (duplicate filter)
        self.serials = 0

    # ---- the gRPC method ----------------------------------------------------------------
    async def Stream(self, request_iterator, context):
        md = dict(context.invocation_metadata())
        peer = context.peer()
        gid = md.get("x-gateway-id") or peer
        # The promise: this server sends Downstream.ack, so the gateway keeps every batch until
        # acked and replays the rest after a reconnect (at-least-once).
        await context.send_initial_metadata((("x-wsgw-ack", "1"),))
        st = Stream(self._session(peer, gid, md.get("x-wsgw-streams", "")))
        self.streams.setdefault(gid, []).append(st)
        log("gateway stream opened", gateway=gid, streams=len(self.streams[gid]),
            session=st.session.serial)
        reader = asyncio.create_task(self._read(request_iterator, st))
        try:
            while True:
                ds = await st.out.get()
                if ds is None:  # the gateway half-closed: end with status OK
                    break
                yield ds
        finally:
            reader.cancel()
            self._stream_gone(st)

    # ---- presence per session --------------------------------------------------------------
    def _session(self, peer, gid, announced):
        """The session of a new call (a new one for a new connection); it lives on."""
        s = self.sessions.get(peer)
        if s is None:
            self.serials += 1
            expect = int(announced) if announced.isdigit() else 0
            s = self.sessions[peer] = Session(self.serials, peer, gid, expect)
        if s.linger:
            s.linger.cancel()
            s.linger = None
        s.calls += 1
        return s

    def _session_end(self, s):
        """No call for SESSION_LINGER: the connection is gone, and with it its presence (the
        gateway re-sends Open for its live connections on its next session)."""
        if self.sessions.get(s.key) is s:
            del self.sessions[s.key]
        for conn_id in s.conns:
            self.presence.pop(conn_id, None)
            self.last_seq.pop(conn_id, None)
        log("gateway session ended", gateway=s.gateway_id, session=s.serial,
            connections_dropped=len(s.conns))
        s.conns = set()

    def _open(self, st, conn_id, user_id):
        had = self.presence.get(conn_id)
        if had and had[1].serial > st.session.serial:
            return  # stale: buffered on an older session, the entry came again on a newer one
        if had:
            had[1].conns.discard(conn_id)
        self.presence[conn_id] = (user_id, st.session)
        st.session.conns.add(conn_id)

    def _close(self, st, conn_id):
        had = self.presence.get(conn_id)
        if had and had[1].serial > st.session.serial:
            return  # stale, as above
        if had:
            had[1].conns.discard(conn_id)
            del self.presence[conn_id]
        self.last_seq.pop(conn_id, None)

    def _complete(self, st):
        """A batch said presence_complete: once every announced stream did, this node knows all
        of the gateway's connections (until then "not in presence" may mean "not re-sent yet")."""
        s = st.session
        if st in s.complete:
            return
        s.complete.add(st)
        if len(s.complete) == s.expect:
            log("gateway presence synced", gateway=s.gateway_id, session=s.serial,
                connections=len(s.conns))

    # ---- inbound ---------------------------------------------------------------------------
    async def _read(self, request_iterator, st):
        try:
            async for up in request_iterator:
                cmds = []
                for ev in up.events:
                    kind = ev.WhichOneof("kind")
                    if kind == "open":
                        self._open(st, ev.conn_id, ev.user_id)
                    elif kind == "close":
                        self._close(st, ev.conn_id)
                    elif kind == "message":
                        m = ev.message
                        if m.seq and m.seq <= self.last_seq.get(ev.conn_id, 0):
                            continue  # a replayed duplicate: handled before
                        self.last_seq[ev.conn_id] = m.seq
                        await self._message(st, ev, cmds)
                if up.presence_complete:
                    self._complete(st)
                # Commands first, then the ack, in one Downstream: the batch is fully handled.
                await st.out.put(self.pb2.Downstream(commands=cmds, ack=up.seq))
        except asyncio.CancelledError:
            raise
        except grpc.RpcError as e:  # the call broke (gateway gone)
            log("gateway stream broken", gateway=st.gateway_id, error=str(e.code()))
        except Exception as e:  # a bug here: end this stream (the gateway reconnects), say why
            log("stream handler failed", gateway=st.gateway_id, error=repr(e))
        finally:
            try:
                st.out.put_nowait(None)
            except asyncio.QueueFull:
                pass  # the writer ends with the call anyway

    async def _message(self, st, ev, cmds):
        pb2 = self.pb2
        m = ev.message
        c = chat_parse(m.payload, m.binary) if self.handler == "chat" else None
        if self.handler == "none":
            return
        if c is None:  # echo to the connection, on the stream the message came up on
            cmds.append(pb2.Command(send=pb2.Send(
                target=pb2.Target(conn_ids=[ev.conn_id]), payload=m.payload, binary=m.binary,
                api_ns=time.time_ns())))
            return
        op, room, text = c
        if op == "join":
            cmds.append(pb2.Command(join=pb2.Join(conn_id=ev.conn_id, room=room)))
        elif op == "leave":
            cmds.append(pb2.Command(leave=pb2.Leave(conn_id=ev.conn_id, room=room)))
        else:
            body = json.dumps({"op": "said", "room": room, "from": ev.user_id, "text": text},
                              separators=(",", ":"), ensure_ascii=False).encode()
            send = pb2.Command(send=pb2.Send(target=pb2.Target(room=room), payload=body,
                                             api_ns=time.time_ns()))
            # Rooms live on the gateways: every gateway gets the Send once. Our own gateway on
            # this stream (after the Join it carried), the others on their first live stream.
            cmds.append(send)
            for gid, streams in self.streams.items():
                if gid != st.gateway_id and streams:
                    await streams[0].out.put(pb2.Downstream(commands=[send]))

    def _stream_gone(self, st):
        streams = self.streams.get(st.gateway_id, [])
        if st in streams:
            streams.remove(st)
        if not streams:
            self.streams.pop(st.gateway_id, None)
        log("gateway stream closed", gateway=st.gateway_id, streams=len(streams))
        # Presence stays with the session: the gateway reopens failed streams on the same
        # connection and replays their batches without re-sending presence.
        s = st.session
        s.calls -= 1
        if s.calls == 0:
            s.linger = asyncio.get_running_loop().call_later(SESSION_LINGER, self._session_end, s)


async def serve(args):
    pb2, pb2_grpc = load_stubs(args.proto)
    ex = Exchange(pb2, args.handler)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 16 << 20),
                                      ("grpc.max_send_message_length", 16 << 20)])
    handler = grpc.method_handlers_generic_handler("wsgw.v1.Exchange", {
        "Stream": grpc.stream_stream_rpc_method_handler(
            ex.Stream, request_deserializer=pb2.Upstream.FromString,
            response_serializer=pb2.Downstream.SerializeToString)})
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(args.listen) == 0:
        raise SystemExit("cannot listen on %s" % args.listen)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    log("listening", addr=args.listen, handler=args.handler)  # SIGTERM is handled from here on
    await stop.wait()
    log("stopping", grace_s=args.grace)
    await server.stop(args.grace)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default=os.environ.get("WSAPI_GRPC_LISTEN", "0.0.0.0:8081"),
                    help="gRPC (h2c) address (env WSAPI_GRPC_LISTEN; default %(default)s)")
    ap.add_argument("--handler", choices=("echo", "chat", "none"),
                    default=os.environ.get("WSAPI_HANDLER", "chat"),
                    help="echo, chat or none (env WSAPI_HANDLER; default %(default)s)")
    ap.add_argument("--proto", default=DEFAULT_PROTO, help="path of wsgw.proto")
    ap.add_argument("--grace", type=float, default=3.0, help="seconds streams may finish on SIGTERM")
    asyncio.run(serve(ap.parse_args()))


if __name__ == "__main__":
    main()
