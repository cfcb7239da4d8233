// node-websocket.js: a minimal RFC 6455 WebSocket client for Node (>= 18), used by wsgw-client.js
// only when the runtime has no global WebSocket (Node 18-21). Browser-shaped: readyState,
// protocol, binaryType, onopen/onmessage/onclose/onerror, send(), close(). No dependencies:
// node:net, node:tls, node:crypto. Not a general-purpose client: no extensions, no proxies.
'use strict';

const net = require('node:net');
const tls = require('node:tls');
const crypto = require('node:crypto');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 §1.3
const CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
const MAX_MESSAGE = 64 * 1024 * 1024; // refuse larger messages from the server (1009)

class NodeWebSocket {
  constructor(url, protocols) {
    this.url = String(url);
    this.readyState = CONNECTING;
    this.protocol = '';
    this.binaryType = 'arraybuffer';
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._buf = Buffer.alloc(0);
    this._frags = [];
    this._fragOp = 0;
    this._closeSent = false;
    this._closeInfo = null;
    const u = new URL(this.url);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new SyntaxError('not a ws:// or wss:// URL: ' + url);
    const secure = u.protocol === 'wss:';
    const port = Number(u.port) || (secure ? 443 : 80);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    this._protocols = protocols === undefined ? [] : [].concat(protocols);
    this._key = crypto.randomBytes(16).toString('base64');
    const opts = { host, port };
    this._sock = secure ? tls.connect({ ...opts, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'] })
                        : net.connect(opts);
    this._sock.setNoDelay(true);
    this._sock.once(secure ? 'secureConnect' : 'connect', () => {
      const lines = [
        'GET ' + (u.pathname || '/') + u.search + ' HTTP/1.1',
        'Host: ' + u.host,
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: ' + this._key,
        'Sec-WebSocket-Version: 13',
      ];
      if (this._protocols.length) lines.push('Sec-WebSocket-Protocol: ' + this._protocols.join(', '));
      this._sock.write(lines.join('\r\n') + '\r\n\r\n');
    });
    this._sock.on('data', (d) => this._onData(d));
    this._sock.on('error', (e) => this._fail(e));
    this._sock.on('close', () => this._finish());
  }

  get bufferedAmount() { return this._sock ? this._sock.writableLength : 0; }

  send(data) {
    if (this.readyState === CONNECTING) throw new Error('InvalidStateError: still connecting');
    if (this.readyState !== OPEN) return;
    if (typeof data === 'string') this._frame(0x1, Buffer.from(data, 'utf8'));
    else if (data instanceof ArrayBuffer) this._frame(0x2, Buffer.from(data));
    else if (ArrayBuffer.isView(data)) this._frame(0x2, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    else this._frame(0x1, Buffer.from(String(data), 'utf8'));
  }

  close(code, reason) {
    if (this.readyState === CLOSING || this.readyState === CLOSED) return;
    if (this.readyState === CONNECTING) {
      this._closeInfo = { code: 1006, reason: '', wasClean: false };
      this.readyState = CLOSING;
      this._sock.destroy();
      return;
    }
    this.readyState = CLOSING;
    this._sendClose(code === undefined ? 1000 : code, reason || '');
    // the server answers with its close frame and ends the TCP connection; do not wait forever
    this._closeTimer = setTimeout(() => this._sock.destroy(), 5000);
  }

  _sendClose(code, reason) {
    if (this._closeSent) return;
    this._closeSent = true;
    const r = Buffer.from(reason, 'utf8');
    const b = Buffer.alloc(2 + r.length);
    b.writeUInt16BE(code, 0);
    r.copy(b, 2);
    this._frame(0x8, code === 1005 ? Buffer.alloc(0) : b);
  }

  // One unfragmented frame, masked (RFC 6455 §5.3: a client masks every frame).
  _frame(op, payload) {
    const n = payload.length;
    const hlen = n < 126 ? 2 : n < 65536 ? 4 : 10;
    const h = Buffer.alloc(hlen + 4);
    h[0] = 0x80 | op;
    if (n < 126) h[1] = 0x80 | n;
    else if (n < 65536) { h[1] = 0x80 | 126; h.writeUInt16BE(n, 2); }
    else { h[1] = 0x80 | 127; h.writeBigUInt64BE(BigInt(n), 2); }
    const mask = crypto.randomBytes(4);
    mask.copy(h, hlen);
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i++) body[i] = payload[i] ^ mask[i & 3];
    this._sock.write(Buffer.concat([h, body]));
  }

  _onData(d) {
    this._buf = this._buf.length ? Buffer.concat([this._buf, d]) : d;
    if (this.readyState === CONNECTING) {
      const end = this._buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this._buf.length > 16384) this._fail(new Error('handshake response too long'));
        return;
      }
      const head = this._buf.subarray(0, end).toString('latin1').split('\r\n');
      this._buf = this._buf.subarray(end + 4);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head[0]);
      const hdr = {};
      for (const l of head.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) hdr[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const want = crypto.createHash('sha1').update(this._key + GUID).digest('base64');
      if (!status || status[1] !== '101') return this._fail(new Error('handshake refused: ' + head[0]), status ? Number(status[1]) : 0);
      if (hdr['sec-websocket-accept'] !== want) return this._fail(new Error('bad Sec-WebSocket-Accept'));
      const proto = hdr['sec-websocket-protocol'] || '';
      if (proto && !this._protocols.includes(proto)) return this._fail(new Error('server chose a subprotocol not offered: ' + proto));
      this.protocol = proto;
      this.readyState = OPEN;
      if (this.onopen) this.onopen({ type: 'open' });
    }
    this._parse();
  }

  _parse() {
    while (this.readyState === OPEN || this.readyState === CLOSING) {
      const b = this._buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0, op = b[0] & 0x0f;
      if (b[1] & 0x80) return this._protocolError('masked server frame');
      let len = b[1] & 0x7f, off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) {
        if (b.length < 10) return;
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(MAX_MESSAGE)) return this._protocolError('message too big', 1009);
        len = Number(big); off = 10;
      }
      if (b.length < off + len) return;
      const payload = b.subarray(off, off + len);
      this._buf = b.subarray(off + len);
      if (op >= 0x8) { this._control(op, payload); continue; }
      if (op !== 0 && this._frags.length) return this._protocolError('new message inside a fragmented one');
      if (op === 0 && !this._frags.length) return this._protocolError('continuation without a message');
      if (op !== 0 && op !== 1 && op !== 2) return this._protocolError('reserved opcode');
      if (op) this._fragOp = op;
      this._frags.push(payload);
      if (!fin) continue;
      const whole = this._frags.length === 1 ? this._frags[0] : Buffer.concat(this._frags);
      this._frags = [];
      let data;
      if (this._fragOp === 1) {
        try { data = new TextDecoder('utf-8', { fatal: true }).decode(whole); } catch (e) {
          return this._protocolError('invalid UTF-8', 1007);
        }
      } else {
        data = this.binaryType === 'nodebuffer' ? Buffer.from(whole)
          : whole.buffer.slice(whole.byteOffset, whole.byteOffset + whole.byteLength);
      }
      if (this.onmessage && this.readyState === OPEN) this.onmessage({ type: 'message', data });
    }
  }

  _control(op, payload) {
    if (op === 0x9) { if (this.readyState === OPEN) this._frame(0xa, payload); return; }
    if (op === 0xa) return;
    if (op !== 0x8) return this._protocolError('reserved control opcode');
    const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
    const reason = payload.length > 2 ? payload.subarray(2).toString('utf8') : '';
    this._closeInfo = { code, reason, wasClean: true };
    this._sendClose(code, '');
    this.readyState = CLOSING;
    this._sock.end();
  }

  _protocolError(why, code) {
    this._closeInfo = { code: code || 1002, reason: why, wasClean: false };
    this._sendClose(code || 1002, why);
    this.readyState = CLOSING;
    this._sock.end();
  }

  _fail(err, status) {
    if (this.readyState === CLOSED) return;
    if (!this._closeInfo) this._closeInfo = { code: 1006, reason: '', wasClean: false };
    if (this.onerror) this.onerror({ type: 'error', error: err, message: err.message, status: status || 0 });
    this._sock.destroy();
  }

  _finish() {
    if (this.readyState === CLOSED) return;
    clearTimeout(this._closeTimer);
    const info = this._closeInfo || { code: 1006, reason: '', wasClean: false };
    this.readyState = CLOSED;
    if (this.onclose) this.onclose({ type: 'close', code: info.code, reason: info.reason, wasClean: info.wasClean });
  }
}

NodeWebSocket.CONNECTING = CONNECTING;
NodeWebSocket.OPEN = OPEN;
NodeWebSocket.CLOSING = CLOSING;
NodeWebSocket.CLOSED = CLOSED;
module.exports = NodeWebSocket;
