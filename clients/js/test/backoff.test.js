// The client's reconnect schedule and event plumbing against a scripted WebSocket (no server):
// jittered exponential backoff, capped; kicks stay closed; the positions it resumes from.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const WsgwClient = require('../wsgw-client.js');

// A WebSocket stand-in the test drives: every instance is recorded.
function fakeSockets() {
  const made = [];
  class Fake {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.protocol = '';
      this.sent = [];
      made.push(this);
    }
    send(d) { this.sent.push(d); }
    close(code, reason) { this.readyState = 3; setImmediate(() => this.onclose({ code, reason })); }
    // test side
    open(protocol) { this.readyState = 1; this.protocol = protocol || ''; this.onopen({}); }
    drop(code) { this.readyState = 3; this.onclose({ code: code || 1006, reason: '' }); }
    recv(obj) { this.onmessage({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) }); }
  }
  return { Fake, made };
}

const tick = () => new Promise((r) => setImmediate(r));

test('reconnect delays grow, are jittered and capped', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { Fake, made } = fakeSockets();
  const rnd = [0, 1, 0.5, 0, 0, 0, 0, 0];
  const c = new WsgwClient('ws://gw/gateway/ws', { WebSocket: Fake, minDelay: 100, maxDelay: 1000,
                                                  factor: 2, jitter: 0.5, random: () => rnd.shift() });
  const delays = [];
  c.on('close', (e) => delays.push(e.reconnect));
  c.connect();
  await tick();
  for (let i = 0; i < 6; i++) {
    made[made.length - 1].drop();
    t.mock.timers.tick(delays[delays.length - 1]);
    await tick();
  }
  // 100 (r=0), 200*0.5 (r=1), 400*0.75, 800, 1000 (cap), 1000
  assert.deepStrictEqual(delays, [100, 100, 300, 800, 1000, 1000]);
  assert.strictEqual(made.length, 7);
  made[6].open('wsgw.v1.json');
  made[6].drop();
  assert.strictEqual(delays[6], 100, 'an open resets the backoff');
  c.close();
});

test('a kick (4000-4999) is not retried; close() stops retrying', async () => {
  const { Fake, made } = fakeSockets();
  const c = new WsgwClient('ws://gw/gateway/ws', { WebSocket: Fake });
  const states = [];
  c.on('state', (s) => states.push(s));
  c.connect();
  await tick();
  made[0].open('wsgw.v1.json');
  made[0].drop(4001);
  assert.strictEqual(c.state, 'closed');
  assert.deepStrictEqual(states, ['connecting', 'open', 'closed']);
});

test('positions from envelopes go into the next connect; rooms rejoin and recover', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { Fake, made } = fakeSockets();
  const c = new WsgwClient('ws://gw/gateway/ws?x=1', { WebSocket: Fake, user: 'al ice', minDelay: 10, jitter: 0 });
  const got = [];
  c.on('message', (m) => got.push(m));
  c.on('message:room:lobby', (m) => got.push('lobby:' + m.offset));
  c.connect();
  await tick();
  assert.deepStrictEqual(made[0].protocols, ['wsgw.v1.json']);
  assert.strictEqual(made[0].url, 'ws://gw/gateway/ws?x=1&user=al%20ice');
  made[0].open('wsgw.v1.json');
  c.join('lobby');
  made[0].recv({ type: 'message', channel: 'user:al ice', offset: 7, epoch: 'e1', data: 'a' });
  made[0].recv({ type: 'message', channel: 'room:lobby', offset: 3, epoch: 'e2', data: 'b' });
  made[0].recv({ type: 'message', data_base64: 'AAEC/w==' });
  assert.deepStrictEqual(got[0], { data: 'a', binary: false, channel: 'user:al ice', offset: 7, epoch: 'e1', recovered: false });
  assert.strictEqual(got[2], 'lobby:3');
  assert.deepStrictEqual(Array.from(got[3].data), [0, 1, 2, 255]);
  assert.strictEqual(got[3].binary, true);
  made[0].drop();
  t.mock.timers.tick(10);
  await tick();
  const u = new URL(made[1].url);
  assert.deepStrictEqual(u.searchParams.getAll('recover').sort(), ['3.e2.room:lobby', '7.e1.user:al ice']);
  made[1].open('wsgw.v1.json');
  assert.deepStrictEqual(made[1].sent, [JSON.stringify({ op: 'join', room: 'lobby' })]);
  made[1].recv({ type: 'message', channel: 'user:al ice', offset: 8, epoch: 'e1', data: 'c' });
  const recov = [];
  c.on('recovery', (r) => recov.push(r));
  made[1].recv({ type: 'recovery', channel: 'user:al ice', recovered: true, offset: 8, epoch: 'e1' });
  made[1].recv({ type: 'message', channel: 'user:al ice', offset: 9, epoch: 'e1', data: 'd' });
  assert.strictEqual(got[4].recovered, true, 'before the notice: a recovered message');
  assert.strictEqual(got[5].recovered, false, 'after it: live');
  assert.deepStrictEqual(recov, [{ channel: 'user:al ice', recovered: true, offset: 8, epoch: 'e1' }]);
  assert.deepStrictEqual(c.positions()['user:al ice'], { offset: 9, epoch: 'e1' });
  c.leave('lobby');
  assert.strictEqual(c.positions()['room:lobby'], undefined);
  c.close();
});

test('without the subprotocol: raw frames', async () => {
  const { Fake, made } = fakeSockets();
  const c = new WsgwClient('ws://gw/gateway/ws', { WebSocket: Fake });
  const got = [];
  c.on('message', (m) => got.push(m));
  c.connect();
  await tick();
  made[0].open(''); // the gateway did not choose it
  made[0].recv('{"type":"message","data":"x"}');
  assert.deepStrictEqual(got, [{ data: '{"type":"message","data":"x"}', binary: false, channel: null,
                                 offset: 0, epoch: '', recovered: false }]);
  c.close();
});

test('a token function is asked before every try', async () => {
  const { Fake, made } = fakeSockets();
  let n = 0;
  const c = new WsgwClient('ws://gw/gateway/ws', { WebSocket: Fake, token: async () => 'tok' + ++n, minDelay: 1, jitter: 0 });
  c.connect();
  await tick();
  made[0].drop();
  await new Promise((r) => setTimeout(r, 20));
  assert.strictEqual(new URL(made[0].url).searchParams.get('token'), 'tok1');
  assert.strictEqual(new URL(made[1].url).searchParams.get('token'), 'tok2');
  c.close();
});
