#!/usr/bin/env node
// A wsgw API service in Node.js (@grpc/grpc-js + @grpc/proto-loader): implements
// wsgw.v1.Exchange with the same echo and chat handlers as ws-api, so ws-gateway can use it in
// place of ws-api:
//
//   cd examples/node && npm ci && node api_server.js --listen 127.0.0.1:8081 --handler chat
//   bin/ws-gateway --upstream 127.0.0.1:8081
//
// What it shows (examples/README.md explains each point):
// - one Stream call per (gateway, stream slot); the gateway names itself in `x-gateway-id`;
// - the `x-wsgw-ack: 1` response header, and Downstream.ack = the Upstream.seq fully handled,
//   sent with the commands that batch produced (at-least-once delivery with replay);
// - duplicates after a replay dropped by (conn_id, Message.seq);
// - presence from Open/Close (replicated to every API node), kept per gateway session (its HTTP/2
//   connection) and dropped when that session is gone: grpc-js does not show the connection, so
//   the session is the call's peer address:port, and it is gone once it had no live call for
//   SESSION_LINGER_MS; Open/Close from an older session than an entry's are ignored;
// - presence sync: the session is whole once every stream it announced (x-wsgw-streams) sent a
//   batch with presence_complete;
// - rooms live on the gateways: Join/Leave commands, and a room Send goes to every gateway, on the
//   sender's own stream for its own gateway (so it follows the sender's earlier Join);
// - backpressure: when call.write() says the buffer is full, stop reading that stream until
//   'drain'; HTTP/2 flow control then slows the gateway down.
//
// uint64 ids (conn_id, seq, ack) are kept as decimal strings: they exceed 2^53.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// A session without a live call for this long is over (its presence goes). Longer than the
// gateway's stream reopen backoff (at most 2 s): a stream that fails, or all of them at once,
// is reopened on the same connection and replays its batches without re-sending presence.
const SESSION_LINGER_MS = 5000;

function parseArgs(argv) {
  const o = {
    listen: process.env.WSAPI_GRPC_LISTEN || '0.0.0.0:8081',
    handler: process.env.WSAPI_HANDLER || 'chat',
    proto: path.join(__dirname, '..', '..', 'proto', 'wsgw.proto'),
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--listen') { o.listen = v; i++; }
    else if (a === '--handler') { o.handler = v; i++; }
    else if (a === '--proto') { o.proto = v; i++; }
    else if (a === '--help' || a === '-h') {
      console.log('usage: node api_server.js [--listen HOST:PORT] [--handler echo|chat|none] [--proto FILE]\n' +
                  'env: WSAPI_GRPC_LISTEN, WSAPI_HANDLER');
      process.exit(0);
    } else {
      console.error('unknown argument: ' + a);
      process.exit(2);
    }
  }
  if (!['echo', 'chat', 'none'].includes(o.handler)) {
    console.error('--handler must be echo, chat or none');
    process.exit(2);
  }
  return o;
}

// One logfmt line on stderr, like the C binaries.
function log(msg, kv = {}) {
  const parts = ['ts=' + new Date().toISOString(), 'msg=' + JSON.stringify(msg)];
  for (const [k, v] of Object.entries(kv)) parts.push(k + '=' + (typeof v === 'string' ? JSON.stringify(v) : v));
  process.stderr.write(parts.join(' ') + '\n');
}

// Wall-clock nanoseconds as a decimal string (Send.api_ns: the gateway's api stage metric).
function nowNs() {
  return (BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n).toString();
}

// {op, room, text} for a chat command, or null for anything else (which is echoed).
// Same rules as ws-api: JSON object, op join|leave|say, non-empty room, say needs a string text.
function chatParse(payload, binary) {
  if (binary || payload.length === 0 || payload[0] !== 0x7b /* { */) return null;
  let o;
  try { o = JSON.parse(payload.toString('utf8')); } catch (e) { return null; }
  if (!o || typeof o !== 'object' || Array.isArray(o)) return null;
  if (typeof o.op !== 'string' || typeof o.room !== 'string' || o.room === '') return null;
  if (o.op === 'join' || o.op === 'leave') return { op: o.op, room: o.room };
  if (o.op === 'say' && typeof o.text === 'string') return { op: 'say', room: o.room, text: o.text };
  return null;
}

class Exchange {
  constructor(handler) {
    this.handler = handler;
    this.streams = new Map();   // gateway id -> Set of calls
    this.sessions = new Map();  // peer address:port -> session
    this.presence = new Map();  // conn_id -> {user, session}
    this.lastSeq = new Map();   // conn_id -> highest Message.seq handled (BigInt)
    this.serials = 0;
  }

  // ---- presence per session: one per HTTP/2 connection (key: the calls' peer address:port);
  // serials grow with each new session, and newer sessions win.
  session(peer, gid, announced) {
    let s = this.sessions.get(peer);
    if (!s) {
      s = { serial: ++this.serials, key: peer, gatewayId: gid, calls: 0, conns: new Set(),
            expect: /^[0-9]+$/.test(announced) ? Number(announced) : 0, complete: new Set(),
            linger: null };
      this.sessions.set(peer, s);
    }
    if (s.linger) { clearTimeout(s.linger); s.linger = null; }
    s.calls++;
    return s;
  }

  // No call for SESSION_LINGER_MS: the connection is gone, and with it its presence (the gateway
  // re-sends Open for its live connections on its next session).
  sessionEnd(s) {
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
    for (const id of s.conns) { this.presence.delete(id); this.lastSeq.delete(id); }
    log('gateway session ended', { gateway: s.gatewayId, session: s.serial, connections_dropped: s.conns.size });
    s.conns = new Set();
  }

  open(s, connId, user) {
    const had = this.presence.get(connId);
    if (had && had.session.serial > s.serial) return; // stale: an older session's buffered Open
    if (had) had.session.conns.delete(connId);
    this.presence.set(connId, { user, session: s });
    s.conns.add(connId);
  }

  close(s, connId) {
    const had = this.presence.get(connId);
    if (had && had.session.serial > s.serial) return; // stale, as above
    if (had) { had.session.conns.delete(connId); this.presence.delete(connId); }
    this.lastSeq.delete(connId);
  }

  // A batch said presence_complete: once every announced stream did, this node knows all of the
  // gateway's connections (until then "not in presence" may mean "not re-sent yet").
  complete(s, call) {
    if (s.complete.has(call)) return;
    s.complete.add(call);
    if (s.complete.size === s.expect) {
      log('gateway presence synced', { gateway: s.gatewayId, session: s.serial, connections: s.conns.size });
    }
  }

  // The bidi call handler (grpc-js: one call object, 'data' events in, write() out).
  stream(call) {
    const peer = call.getPeer();
    const gid = call.metadata.get('x-gateway-id')[0] || peer;
    const sess = this.session(peer, gid, String(call.metadata.get('x-wsgw-streams')[0] || ''));
    call.session = sess;
    // The promise: this server sends Downstream.ack, so the gateway keeps every batch until
    // acked and replays the rest after a reconnect (at-least-once). Before the first write.
    const md = new grpc.Metadata();
    md.set('x-wsgw-ack', '1');
    call.sendMetadata(md);
    call.gatewayId = gid;
    if (!this.streams.has(gid)) this.streams.set(gid, new Set());
    this.streams.get(gid).add(call);
    log('gateway stream opened', { gateway: gid, streams: this.streams.get(gid).size, session: sess.serial });

    call.on('data', (up) => {
      const commands = [];
      for (const ev of up.events) {
        if (ev.kind === 'open') {
          this.open(sess, ev.conn_id, ev.user_id);
        } else if (ev.kind === 'close') {
          this.close(sess, ev.conn_id);
        } else if (ev.kind === 'message') {
          const seq = BigInt(ev.message.seq || '0');
          if (seq !== 0n && seq <= (this.lastSeq.get(ev.conn_id) || 0n)) continue; // replayed duplicate
          this.lastSeq.set(ev.conn_id, seq);
          this.message(call, ev, commands);
        }
      }
      if (up.presence_complete) this.complete(sess, call);
      // Commands first, then the ack, in one Downstream: the batch is fully handled.
      this.write(call, { commands, ack: up.seq });
    });
    call.on('end', () => { this.gone(call); call.end(); });   // the gateway half-closed: status OK
    call.on('error', (e) => { log('gateway stream broken', { gateway: gid, error: String(e.code) }); this.gone(call); });
    call.on('cancelled', () => this.gone(call));
  }

  // Writes a Downstream; a full buffer pauses reading this call until it drained.
  write(call, ds) {
    if (call.gone) return;
    if (!call.write(ds) && !call.isPaused()) {
      call.pause();
      call.once('drain', () => call.resume());
    }
  }

  message(call, ev, commands) {
    const m = ev.message;
    if (this.handler === 'none') return;
    const c = this.handler === 'chat' ? chatParse(m.payload, m.binary) : null;
    if (!c) { // echo to the connection, on the stream the message came up on
      commands.push({ send: { target: { conn_ids: [ev.conn_id] }, payload: m.payload, binary: m.binary, api_ns: nowNs() } });
      return;
    }
    if (c.op === 'join') commands.push({ join: { conn_id: ev.conn_id, room: c.room } });
    else if (c.op === 'leave') commands.push({ leave: { conn_id: ev.conn_id, room: c.room } });
    else {
      const body = Buffer.from(JSON.stringify({ op: 'said', room: c.room, from: ev.user_id, text: c.text }));
      const send = { send: { target: { room: c.room }, payload: body, binary: false, api_ns: nowNs() } };
      // Rooms live on the gateways: every gateway gets the Send once. Our own gateway on this
      // stream (after the Join it carried), the others on their first live stream.
      commands.push(send);
      for (const [gid, calls] of this.streams) {
        if (gid === call.gatewayId || calls.size === 0) continue;
        this.write(calls.values().next().value, { commands: [send] });
      }
    }
  }

  gone(call) {
    if (call.gone) return;
    call.gone = true;
    const gid = call.gatewayId;
    const calls = this.streams.get(gid);
    if (calls) calls.delete(call);
    if (calls && calls.size === 0) this.streams.delete(gid);
    log('gateway stream closed', { gateway: gid, streams: calls ? calls.size : 0 });
    // Presence stays with the session: the gateway reopens failed streams on the same
    // connection and replays their batches without re-sending presence.
    const s = call.session;
    if (--s.calls === 0) s.linger = setTimeout(() => this.sessionEnd(s), SESSION_LINGER_MS);
  }
}

function main() {
  const args = parseArgs(process.argv);
  const def = protoLoader.loadSync(args.proto, {
    keepCase: true,   // field names as in wsgw.proto (conn_id, user_id)
    longs: String,    // uint64/int64 as decimal strings
    enums: String,
    defaults: true,
    oneofs: true,     // ev.kind = 'open' | 'message' | 'close'
  });
  const wsgw = grpc.loadPackageDefinition(def).wsgw.v1;
  const ex = new Exchange(args.handler);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 << 20,
    'grpc.max_send_message_length': 16 << 20,
  });
  server.addService(wsgw.Exchange.service, { Stream: (call) => ex.stream(call) });
  server.bindAsync(args.listen, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) {
      log('cannot listen', { addr: args.listen, error: err.message });
      process.exit(1);
    }
    log('listening', { addr: args.listen, handler: args.handler });
  });
  const stop = (sig) => {
    log('stopping', { signal: sig });
    // Let open streams end by themselves for up to 3 s, then force.
    const t = setTimeout(() => server.forceShutdown(), 3000);
    server.tryShutdown(() => { clearTimeout(t); process.exit(0); });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main();
