// wsgw chat demo: a plain WebSocket client (no framework) for ws-gateway + ws-api --handler chat.
// Protocol (text frames, JSON): {"op":"join","room":R}, {"op":"leave","room":R},
// {"op":"say","room":R,"text":T}; members of R receive {"op":"said","room":R,"from":U,"text":T}.
// Anything else the server sends (echoes, pushes from the push API) is shown as it is.
//
// The gateway URL defaults to ws(s)://<this page's host>/gateway/ws (the gateway serves this page
// itself with --static-dir); ?gw=ws://host:port/gateway/ws points it elsewhere. ?user=, ?room=
// prefill the form and ?autoconnect=1 connects at once (and joins ?room=). Rooms live on the gateway per
// connection, so after a reconnect the page joins its rooms again.
'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var MAX_LINES = 500;

  var ws = null;          // the current WebSocket, or null
  var wanted = false;     // the user asked to be connected (reconnect after a drop)
  var attempt = 0;        // reconnect attempts since the last open
  var retryTimer = null;
  var rooms = new Set();  // rooms joined (joined again after a reconnect)
  var opened = false;     // a connection was open before: joins on open are "again"
  var me = '';

  function defaultGateway() {
    if (params.get('gw')) return params.get('gw');
    var proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + (location.host || '127.0.0.1:8080') + '/gateway/ws';
  }

  function setState(state, text) {
    var el = $('state');
    el.className = 'state ' + state;
    el.dataset.state = state;
    el.textContent = text;
    var open = state === 'open';
    $('connect').disabled = wanted;
    $('disconnect').disabled = !wanted;
    $('user').disabled = wanted;
    $('gw').disabled = wanted;
    ['join', 'leave', 'text', 'say'].forEach(function (id) { $(id).disabled = !open; });
  }

  function showRooms() {
    $('rooms').textContent = rooms.size ? 'in: ' + Array.from(rooms).join(', ') : 'in no room';
  }

  function addLine(kind, fields) {
    var li = document.createElement('li');
    li.className = kind;
    var t = document.createElement('time');
    t.textContent = new Date().toLocaleTimeString();
    li.appendChild(t);
    ['room', 'from', 'text'].forEach(function (k) {
      if (fields[k] === undefined) return;
      var s = document.createElement('span');
      s.className = k;
      s.textContent = fields[k];  // never innerHTML: messages are other people's text
      li.appendChild(s);
    });
    if (fields.from !== undefined && fields.from === me) li.classList.add('mine');
    var log = $('log');
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(li);
    while (log.children.length > MAX_LINES) log.removeChild(log.firstChild);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(obj));
      return true;
    }
    addLine('error', { text: 'not connected' });
    return false;
  }

  function onMessage(ev) {
    if (typeof ev.data !== 'string') {
      addLine('info', { text: '(binary message, ' + ev.data.byteLength + ' bytes)' });
      return;
    }
    var m = null;
    try { m = JSON.parse(ev.data); } catch (e) { /* not JSON: shown as text */ }
    if (m && m.op === 'said' && typeof m.room === 'string') {
      addLine('said', { room: m.room, from: m.from || '(anonymous)', text: String(m.text) });
    } else {
      addLine('info', { text: ev.data });
    }
  }

  function open() {
    clearTimeout(retryTimer);
    retryTimer = null;
    var base = $('gw').value.trim() || defaultGateway();
    var url = base + (base.indexOf('?') >= 0 ? '&' : '?') + 'user=' + encodeURIComponent(me);
    setState('connecting', 'connecting to ' + base + ' …');
    var sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      wanted = false;
      setState('closed', 'bad gateway URL: ' + e.message);
      return;
    }
    sock.binaryType = 'arraybuffer';
    ws = sock;
    sock.onopen = function () {
      if (ws !== sock) return;
      attempt = 0;
      setState('open', 'connected as ' + me);
      rooms.forEach(function (r) { send({ op: 'join', room: r }); });
      showRooms();
      addLine('info', { text: 'connected' + (rooms.size ? ', joined ' + Array.from(rooms).join(', ') + (opened ? ' again' : '') : '') });
      opened = true;
    };
    sock.onmessage = function (ev) { if (ws === sock) onMessage(ev); };
    sock.onclose = function (ev) {
      if (ws !== sock) return;
      ws = null;
      var why = 'closed ' + ev.code + (ev.reason ? ' "' + ev.reason + '"' : '');
      // 4000-4999: the application closed us on purpose (a kick): do not come back by itself.
      if (ev.code >= 4000 && ev.code <= 4999) wanted = false;
      if (!wanted) {
        setState('closed', 'disconnected (' + why + ')');
        addLine('info', { text: 'disconnected: ' + why });
        return;
      }
      var delay = Math.min(15000, 500 * Math.pow(2, attempt++));
      setState('reconnecting', why + ', reconnecting in ' + Math.round(delay / 1000) + ' s');
      retryTimer = setTimeout(open, delay);
    };
  }

  $('connect-form').addEventListener('submit', function (e) {
    e.preventDefault();
    me = $('user').value.trim();
    if (!me) return;
    wanted = true;
    attempt = 0;
    open();
  });

  $('disconnect').addEventListener('click', function () {
    wanted = false;
    clearTimeout(retryTimer);
    if (ws) ws.close(1000, 'bye');
    else setState('closed', 'disconnected');
  });

  $('room-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var r = $('room').value.trim();
    if (r && send({ op: 'join', room: r })) {
      rooms.add(r);
      showRooms();
      addLine('info', { text: 'joined ' + r });
    }
  });

  $('leave').addEventListener('click', function () {
    var r = $('room').value.trim();
    if (r && send({ op: 'leave', room: r })) {
      rooms.delete(r);
      showRooms();
      addLine('info', { text: 'left ' + r });
    }
  });

  $('say-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var text = $('text').value;
    var r = $('room').value.trim();
    if (!text || !r) return;
    if (!rooms.has(r)) addLine('info', { text: 'note: you are not in ' + r + ' (join it to see replies)' });
    if (send({ op: 'say', room: r, text: text })) $('text').value = '';
  });

  // initial state from the query string
  $('gw').value = defaultGateway();
  if (params.get('user')) $('user').value = params.get('user');
  if (params.get('room')) $('room').value = params.get('room');
  showRooms();
  setState('closed', 'disconnected');
  if (params.get('autoconnect') === '1' && $('user').value.trim()) {
    // ?room= with autoconnect=1 joins it as soon as the connection is open
    if ($('room').value.trim() && params.get('room')) rooms.add($('room').value.trim());
    $('connect-form').requestSubmit();
  }
})();
