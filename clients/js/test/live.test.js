// The client against the real ws-gateway and ws-api (started by tests/integration/
// test_js_client.py, which sets WSGW_URL, WSGW_API, WSGW_AUTH_URL and WSGW_SECRET): connect
// with a token, recovery after a drop while pushes went on, rooms, a trimmed history, the
// Node WebSocket of node-websocket.js. Skipped when WSGW_URL is not set.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const http = require('node:http');
const WsgwClient = require('../wsgw-client.js');

const GW = process.env.WSGW_URL;
const API = process.env.WSGW_API;
const skip = !GW && 'WSGW_URL not set (run by tests/integration/test_js_client.py)';

function push(body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(API + '/v1/push', { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let s = '';
      res.on('data', (c) => { s += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(s)) : reject(new Error(res.statusCode + ' ' + s))));
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function online(user) {
  for (let i = 0; i < 200; i++) {
    const r = await new Promise((resolve) => http.get(API + '/v1/users/' + encodeURIComponent(user), (res) => {
      let s = '';
      res.on('data', (c) => { s += c; });
      res.on('end', () => resolve(res.statusCode === 200 ? JSON.parse(s) : { connections: [] }));
    }));
    if (r.connections.length) return;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(user + ' not online');
}

// The next n events of the kinds listed, in order, within ms.
function collect(c, kinds, n, ms = 10000) {
  return new Promise((resolve, reject) => {
    const got = [];
    const offs = kinds.map((k) => c.on(k, (e) => {
      got.push(k === 'message' ? { kind: k, data: e.data, offset: e.offset, channel: e.channel, recovered: e.recovered }
                               : { kind: k, ...e });
      if (got.length === n) { done(); resolve(got); }
    }));
    const timer = setTimeout(() => { done(); reject(new Error('got ' + JSON.stringify(got))); }, ms);
    function done() { clearTimeout(timer); offs.forEach((f) => f()); }
  });
}

function jwt(secret, sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 });
  return head + '.' + crypto.createHmac('sha256', secret).update(head).digest('base64url');
}

test('Node without a global WebSocket uses node-websocket.js', { skip }, () => {
  assert.strictEqual(typeof globalThis.WebSocket === 'function' ? 'global' : 'node-websocket', 'node-websocket');
});

// every client a test makes is closed when it ends, passed or not (a client that wants to
// reconnect keeps Node running)
function client(t, url, opts) {
  const c = new WsgwClient(url, opts);
  t.after(() => c.close());
  return c;
}

test('offline while pushes go on: missed ones first, in order, then live', { skip }, async (t) => {
  const c = client(t, GW, { user: 'js-alice', minDelay: 100, maxDelay: 200 });
  c.connect();
  await c.ready();
  assert.strictEqual(c.protocol, 'wsgw.v1.json');
  await online('js-alice');
  const first = collect(c, ['message'], 1);
  await push({ user_ids: ['js-alice'], data: 'hello', history: true });
  const [m] = await first;
  assert.strictEqual(m.channel, 'user:js-alice');
  assert.ok(m.offset > 0);
  // away: the client drops the connection; pushes while it waits to reconnect
  c.opts.minDelay = c.opts.maxDelay = 1500;
  c.opts.jitter = 0;
  const back = collect(c, ['message', 'recovery'], 22, 15000);
  c.disconnect();
  for (let i = 0; i < 20; i++) await push({ user_ids: ['js-alice'], data: 'missed ' + i, history: true });
  await c.ready();
  await push({ user_ids: ['js-alice'], data: 'live', history: true });
  const got = await back;
  assert.deepStrictEqual(got.slice(0, 20).map((g) => [g.data, g.offset, g.recovered]),
                         Array.from({ length: 20 }, (_, i) => ['missed ' + i, m.offset + 1 + i, true]));
  // 'live' is pushed once the socket is open; ws-api may take that push before the
  // connection's Recover (a slow box, sanitizers): then the history read has it and it comes
  // back as the last recovered message, before the recovery frame. Either way: every offset
  // once, in order, the recovery frame after the missed ones, nothing live before it.
  const epoch = c.positions()['user:js-alice'].epoch;
  if (got[20].kind === 'recovery') {
    assert.deepStrictEqual(got[20], { kind: 'recovery', channel: 'user:js-alice', recovered: true, offset: m.offset + 20, epoch });
    assert.deepStrictEqual([got[21].data, got[21].offset, got[21].recovered], ['live', m.offset + 21, false]);
  } else {
    assert.deepStrictEqual([got[20].data, got[20].offset, got[20].recovered], ['live', m.offset + 21, true]);
    assert.deepStrictEqual(got[21], { kind: 'recovery', channel: 'user:js-alice', recovered: true, offset: m.offset + 21, epoch });
  }
  c.close();
});

test('a trimmed history: told recovered=false', { skip }, async (t) => {
  const c = client(t, GW, { user: 'js-bob', minDelay: 1500, jitter: 0 });
  c.connect();
  await c.ready();
  await online('js-bob');
  const first = collect(c, ['message'], 1);
  await push({ user_ids: ['js-bob'], data: 'one', history: true });
  await first;
  const rec = collect(c, ['recovery'], 1, 15000);
  c.disconnect();
  for (let i = 0; i < 40; i++) await push({ user_ids: ['js-bob'], data: 'x' + i, history: true }); // size 30
  const [r] = await rec;
  assert.strictEqual(r.recovered, false);
  c.close();
});

test('rooms: joined again after a reconnect, recovered at the Join', { skip }, async (t) => {
  const a = client(t, GW, { user: 'js-a', minDelay: 1500, jitter: 0 });
  const b = client(t, GW, { user: 'js-b' });
  a.connect(); b.connect();
  await Promise.all([a.ready(), b.ready()]);
  let aSeesB = null;
  for (const c of [a, b]) {
    const self = collect(c, ['message'], 1);
    if (c === b) aSeesB = collect(a, ['message'], 1);
    c.join('js-room');
    c.say('js-room', 'hi');
    await self; // its own hi: the Join is in effect
  }
  await aSeesB;
  const seen = collect(a, ['message'], 1);
  b.say('js-room', 'one');
  await seen;
  const back = collect(a, ['message', 'recovery'], 3, 15000);
  a.disconnect();
  const bs = collect(b, ['message'], 2);
  b.say('js-room', 'two');
  b.say('js-room', 'three');
  await bs;
  const got = await back;
  assert.deepStrictEqual(got.slice(0, 2).map((g) => JSON.parse(g.data).text), ['two', 'three']);
  assert.strictEqual(got[2].kind, 'recovery');
  assert.strictEqual(got[2].channel, 'room:js-room');
  assert.strictEqual(got[2].recovered, true);
  assert.deepStrictEqual(a.rooms(), ['js-room']);
  a.close(); b.close();
});

test('a token (function) with --auth-secret; a bad one is refused', { skip: skip || !process.env.WSGW_AUTH_URL }, async (t) => {
  const secret = process.env.WSGW_SECRET;
  const c = client(t, process.env.WSGW_AUTH_URL, { token: () => jwt(secret, 'js-carol') });
  c.connect();
  await c.ready();
  await online('js-carol');
  const got = collect(c, ['message'], 1);
  await push({ user_ids: ['js-carol'], data: 'authed' });
  assert.strictEqual((await got)[0].channel, 'user:js-carol');
  c.close();
  const bad = client(t, process.env.WSGW_AUTH_URL, { token: 'nope', reconnect: false });
  const closed = new Promise((resolve) => bad.on('close', resolve));
  bad.on('error', () => {});
  bad.connect();
  const e = await closed;
  assert.strictEqual(e.code, 1006);
  assert.strictEqual(e.reconnect, -1);
});
