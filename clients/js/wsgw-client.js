/*! wsgw-client: the JavaScript client of ws-gateway (README "Client protocol").
 *
 * Browsers (a classic <script>: window.WsgwClient) and Node >= 18 (require / import). No
 * dependencies: in Node without a global WebSocket (18-21) it uses ./node-websocket.js.
 *
 *   const c = new WsgwClient('ws://127.0.0.1:8080/gateway/ws', { token: 'JWT', user: 'alice' });
 *   c.on('message', (m) => console.log(m.channel, m.offset, m.data));
 *   c.on('recovery', (r) => { if (!r.recovered) refetchState(r.channel); });
 *   c.connect();
 *
 * It speaks the subprotocol wsgw.v1.json: every message comes in an envelope with its channel
 * (user:<id>, room:<name>) and, when the API kept it in the channel's history, its offset and
 * epoch. The client remembers the last position per channel and, when the connection drops,
 * reconnects with jittered exponential backoff, giving the gateway its positions: what it
 * missed comes first, in order, then a 'recovery' event per channel (recovered: false when the
 * history no longer reaches back: refetch your state), then live messages. Rooms joined with
 * join() are joined again after a reconnect (the chat handler's {"op":"join"}), and recover at
 * that Join. A gateway without the subprotocol gives raw frames: messages without channel.
 *
 * Events (on/off/once): 'state' (connecting | open | reconnecting | closed), 'open'
 * ({protocol, reconnect}), 'message' ({data, binary, channel, offset, epoch, recovered}),
 * 'message:<channel>' (the same, one channel), 'recovery' ({channel, recovered, offset,
 * epoch}), 'position' ({channel, offset, epoch}: persist it to survive a page reload),
 * 'close' ({code, reason, reconnect: ms until the next try, or -1}), 'error' (Error).
 */
(function (root, factory) {
  'use strict';
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.WsgwClient = factory();
})(typeof globalThis !== 'undefined' ? globalThis : this, function () {
  'use strict';

  var PROTOCOL = 'wsgw.v1.json';
  var DEFAULTS = {
    protocol: true,          // ask for wsgw.v1.json (false: raw frames, no recovery)
    token: null,             // string, or function returning one (or a Promise): ?token=
    user: null,              // ?user= (gateways without --auth-secret)
    params: null,            // more query arguments: { name: value }
    positions: null,         // { channel: { offset, epoch } } to start from (e.g. stored)
    rooms: null,             // rooms to join (and recover) on every connect: ['lobby']
    reconnect: true,
    minDelay: 500,           // ms before the first retry
    maxDelay: 15000,         // ms, the most between retries
    factor: 2,
    jitter: 0.5,             // each delay is cut by up to this fraction, at random
    reconnectOnKick: false,  // close codes 4000-4999 are the application's: stay closed
    maxPositions: 128,       // positions sent on a reconnect (the gateway allows its
                             // --max-rooms-per-conn + 2)
    WebSocket: null,         // a WebSocket constructor to use instead of the runtime's
    random: Math.random,
  };

  function Emitter() { this._ev = Object.create(null); }
  Emitter.prototype.on = function (name, fn) {
    (this._ev[name] || (this._ev[name] = [])).push(fn);
    var self = this;
    return function () { self.off(name, fn); };
  };
  Emitter.prototype.off = function (name, fn) {
    var l = this._ev[name];
    if (!l) return;
    var i = l.indexOf(fn);
    if (i >= 0) l.splice(i, 1);
  };
  Emitter.prototype.once = function (name, fn) {
    var off = this.on(name, function (a) { off(); fn(a); });
    return off;
  };
  Emitter.prototype.emit = function (name, arg) {
    var l = this._ev[name];
    if (!l) return;
    l.slice().forEach(function (fn) {
      try { fn(arg); } catch (e) { setTimeout(function () { throw e; }, 0); }
    });
  };

  function webSocketImpl(opts) {
    if (opts.WebSocket) return opts.WebSocket;
    if (typeof WebSocket === 'function') return WebSocket;
    if (typeof require === 'function') return require('./node-websocket.js');
    throw new Error('no WebSocket implementation: pass options.WebSocket');
  }

  function decodeBase64(s) {
    if (typeof atob === 'function') {
      var bin = atob(s), out = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    }
    return new Uint8Array(Buffer.from(s, 'base64'));
  }

  // recover=<offset>.<epoch>.<channel> (README "Client protocol")
  function recoverArg(channel, p) {
    return 'recover=' + encodeURIComponent(String(p.offset) + '.' + (p.epoch || '') + '.' + channel);
  }

  function WsgwClient(url, options) {
    Emitter.call(this);
    this.url = url;
    this.opts = {};
    var k;
    for (k in DEFAULTS) this.opts[k] = DEFAULTS[k];
    for (k in options || {}) this.opts[k] = options[k];
    this._pos = Object.create(null);       // channel -> {offset, epoch}
    var start = this.opts.positions || {};
    for (k in start) this._pos[k] = { offset: Number(start[k].offset) || 0, epoch: String(start[k].epoch || '') };
    this._rooms = new Set(this.opts.rooms || []); // joined with join(): again on reconnect
    this._recovering = new Set();          // channels asked for whose notice has not come
    this._ws = null;
    this._state = 'closed';
    this._wanted = false;
    this._attempt = 0;
    this._timer = null;
    this._opens = 0;
    this.protocol = '';
  }
  WsgwClient.prototype = Object.create(Emitter.prototype);
  WsgwClient.prototype.constructor = WsgwClient;
  WsgwClient.PROTOCOL = PROTOCOL;

  Object.defineProperty(WsgwClient.prototype, 'state', { get: function () { return this._state; } });

  WsgwClient.prototype._setState = function (s) {
    if (this._state === s) return;
    this._state = s;
    this.emit('state', s);
  };

  // connect: connects now (and again after every drop, until close()).
  WsgwClient.prototype.connect = function () {
    this._wanted = true;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._ws) return this;
    this._open();
    return this;
  };

  // close: closes the connection and stops reconnecting.
  WsgwClient.prototype.close = function (code, reason) {
    this._wanted = false;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._ws) this._ws.close(code || 1000, reason || '');
    else this._setState('closed');
  };

  // disconnect: drops the connection as a network failure would (it reconnects by itself).
  // Code 3001 (RFC 6455 §7.4.2: for libraries); 4000-4999 would read as the server's kick.
  WsgwClient.prototype.disconnect = function () {
    if (this._ws) this._ws.close(3001, 'client disconnect');
  };

  // ready: a Promise of the next 'open' (at once if open now).
  WsgwClient.prototype.ready = function () {
    var self = this;
    if (this._state === 'open') return Promise.resolve();
    return new Promise(function (resolve) { self.once('open', function () { resolve(); }); });
  };

  // send: data (string, ArrayBuffer or view) to the API as one message; false when not open.
  WsgwClient.prototype.send = function (data) {
    var ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(data);
    return true;
  };

  // The chat handler's ops (ws-api --handler chat). Joined rooms are joined again after a
  // reconnect, and recover from their position at that Join.
  WsgwClient.prototype.join = function (room) {
    this._rooms.add(room);
    return this.send(JSON.stringify({ op: 'join', room: room }));
  };
  WsgwClient.prototype.leave = function (room) {
    this._rooms.delete(room);
    delete this._pos['room:' + room];
    return this.send(JSON.stringify({ op: 'leave', room: room }));
  };
  WsgwClient.prototype.say = function (room, text) {
    return this.send(JSON.stringify({ op: 'say', room: room, text: String(text) }));
  };
  WsgwClient.prototype.rooms = function () { return Array.from(this._rooms); };

  // positions: { channel: {offset, epoch} } (a copy: store it to resume after a reload).
  WsgwClient.prototype.positions = function () {
    var out = {};
    for (var k in this._pos) out[k] = { offset: this._pos[k].offset, epoch: this._pos[k].epoch };
    return out;
  };
  WsgwClient.prototype.setPosition = function (channel, offset, epoch) {
    this._pos[channel] = { offset: Number(offset) || 0, epoch: String(epoch || '') };
  };

  // The URL of the next try; this._asked: the channels whose positions it carries.
  WsgwClient.prototype._url = function (token) {
    var o = this.opts, q = [];
    this._asked = [];
    if (o.user !== null && o.user !== undefined) q.push('user=' + encodeURIComponent(o.user));
    if (token) q.push('token=' + encodeURIComponent(token));
    for (var k in o.params || {}) q.push(encodeURIComponent(k) + '=' + encodeURIComponent(o.params[k]));
    if (o.protocol) {
      var n = 0;
      for (var ch in this._pos) {
        if (n >= o.maxPositions) break;
        // a room recovers at its Join: only those this client joins again
        if (ch.indexOf('room:') === 0 && !this._rooms.has(ch.slice(5))) continue;
        q.push(recoverArg(ch, this._pos[ch]));
        this._asked.push(ch);
        n++;
      }
    }
    if (!q.length) return this.url;
    return this.url + (this.url.indexOf('?') >= 0 ? '&' : '?') + q.join('&');
  };

  WsgwClient.prototype._open = function () {
    var self = this, o = this.opts;
    this._setState(this._opens ? 'reconnecting' : 'connecting');
    var tok = typeof o.token === 'function' ? o.token() : o.token;
    Promise.resolve(tok).then(function (t) {
      if (!self._wanted || self._ws) return;
      var Impl = webSocketImpl(o), ws;
      var url = self._url(t);
      try {
        ws = o.protocol ? new Impl(url, [PROTOCOL]) : new Impl(url);
      } catch (e) {
        self.emit('error', e);
        self._scheduled(-1);
        return;
      }
      ws.binaryType = 'arraybuffer';
      self._ws = ws;
      self._recovering = new Set();
      ws.onopen = function () {
        if (self._ws !== ws) return;
        self.protocol = ws.protocol || '';
        var reconnect = self._opens > 0;
        self._opens++;
        self._attempt = 0;
        // what the gateway recovers (the user channel at once, rooms at their Join): their
        // messages until the notice are recovered ones
        if (self.protocol === PROTOCOL) self._recovering = new Set(self._asked);
        self._setState('open');
        self._rooms.forEach(function (r) { ws.send(JSON.stringify({ op: 'join', room: r })); });
        self.emit('open', { protocol: self.protocol, reconnect: reconnect });
      };
      ws.onmessage = function (ev) { if (self._ws === ws) self._onMessage(ev.data); };
      ws.onerror = function (ev) {
        if (self._ws !== ws) return;
        self.emit('error', ev && ev.error ? ev.error : new Error('WebSocket error'));
      };
      ws.onclose = function (ev) {
        if (self._ws !== ws) return;
        self._ws = null;
        // 4000-4999: the application closed us on purpose (a Kick): stay closed
        if (ev.code >= 4000 && ev.code <= 4999 && !o.reconnectOnKick) self._wanted = false;
        self._scheduled(ev.code, ev.reason);
      };
    }, function (e) {
      self.emit('error', e instanceof Error ? e : new Error(String(e)));
      self._scheduled(-1);
    });
  };

  // After a close (or a failed try): the next try, with backoff, unless unwanted.
  WsgwClient.prototype._scheduled = function (code, reason) {
    var o = this.opts, delay = -1;
    if (this._wanted && o.reconnect) {
      var base = Math.min(o.maxDelay, o.minDelay * Math.pow(o.factor, this._attempt++));
      delay = Math.round(base * (1 - o.jitter * o.random()));
    }
    this.emit('close', { code: code, reason: reason || '', reconnect: delay });
    if (delay < 0) {
      this._wanted = false;
      this._setState('closed');
      return;
    }
    this._setState('reconnecting');
    var self = this;
    this._timer = setTimeout(function () { self._timer = null; if (self._wanted) self._open(); }, delay);
  };

  WsgwClient.prototype._onMessage = function (data) {
    if (this.protocol !== PROTOCOL || typeof data !== 'string') {
      this.emit('message', { data: data, binary: typeof data !== 'string', channel: null,
                             offset: 0, epoch: '', recovered: false });
      return;
    }
    var f;
    try { f = JSON.parse(data); } catch (e) { f = null; }
    if (!f || typeof f !== 'object') {
      this.emit('error', new Error('wsgw.v1.json: not an envelope: ' + data.slice(0, 80)));
      return;
    }
    var ch = typeof f.channel === 'string' ? f.channel : null;
    if (f.type === 'recovery') {
      this._recovering.delete(ch);
      this._setPos(ch, f.offset, f.epoch);
      this.emit('recovery', { channel: ch, recovered: !!f.recovered, offset: f.offset, epoch: f.epoch });
      return;
    }
    if (f.type !== 'message') return; // (a frame type of a later version: ignored)
    var m = {
      data: f.data_base64 !== undefined ? decodeBase64(f.data_base64) : f.data,
      binary: f.data_base64 !== undefined,
      channel: ch,
      offset: f.offset || 0,
      epoch: f.epoch || '',
      recovered: ch !== null && this._recovering.has(ch),
    };
    if (ch !== null && m.offset) this._setPos(ch, m.offset, m.epoch);
    this.emit('message', m);
    if (ch !== null) this.emit('message:' + ch, m);
  };

  WsgwClient.prototype._setPos = function (ch, offset, epoch) {
    if (ch === null || typeof offset !== 'number') return;
    this._pos[ch] = { offset: offset, epoch: String(epoch || '') };
    this.emit('position', { channel: ch, offset: offset, epoch: String(epoch || '') });
  };

  return WsgwClient;
});
