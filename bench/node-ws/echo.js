// echo.js: a WebSocket echo server on the Node.js `ws` package (8.x), written as its users
// write one: every message is sent back to its connection as it came (text or binary), no
// permessage-deflate. With `bufferutil` installed ws masks and unmasks in native code.
// The peer `make bench` compares the gateway with (bench/case_throughput.sh, case_rtt.sh).
//
// usage: NODE_PATH=DIR/node_modules node echo.js PORT [HOST]
'use strict';
const { WebSocketServer } = require('ws');

const port = parseInt(process.argv[2] || '9000', 10);
const host = process.argv[3] || '127.0.0.1';
let bufferutil = 'no';
try {
  require('bufferutil');
  bufferutil = require('bufferutil/package.json').version;
} catch (e) {
  // ws runs without it (masking in JavaScript)
}
const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 64 << 20 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
wss.on('listening', () => {
  console.log(`ws ${require('ws/package.json').version} bufferutil ${bufferutil} ` +
              `node ${process.version} listening on ${host}:${port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => process.exit(0));
  });
}
