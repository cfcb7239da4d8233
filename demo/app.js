// wsgw chat demo on the JavaScript client (wsgw-client.js, clients/js in the repository) for
// ws-gateway + ws-api --handler chat. Chat protocol (text, JSON): {"op":"join","room":R},
// {"op":"leave","room":R}, {"op":"say","room":R,"text":T}; members of R receive
// {"op":"said","room":R,"from":U,"text":T}. Anything else (echoes, pushes from the push API) is
// shown as it is.
//
// The client speaks wsgw.v1.json: when the connection drops it reconnects by itself (jittered
// backoff), joins its rooms again, and what was published to the user and its rooms meanwhile
// (kept in the history: ws-api --history-all, or pushes with "history": true) comes first,
// marked "recovered", then a line saying whether everything could be recovered. Positions are
// kept in sessionStorage, so a reload of the page recovers too.
//
// The gateway URL defaults to ws(s)://<this page's host>/gateway/ws (the gateway serves this page
// itself with --static-dir); ?gw=ws://host:port/gateway/ws points it elsewhere. ?user=, ?room=
// prefill the form and ?autoconnect=1 connects at once (and joins ?room=).
'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var MAX_LINES = 500;

  var client = null;      // the WsgwClient while the user wants to be connected
  var me = '';
  var pending = [];       // rooms to join when the connection is open (?room= with autoconnect)

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
    var wanted = !!client, open = state === 'open';
    $('connect').disabled = wanted;
    $('disconnect').disabled = !wanted;
    $('drop').disabled = !open;
    $('user').disabled = wanted;
    $('gw').disabled = wanted;
    ['join', 'leave', 'text', 'say'].forEach(function (id) { $(id).disabled = !open; });
  }

  function showRooms() {
    var rooms = client ? client.rooms() : [];
    $('rooms').textContent = rooms.length ? 'in: ' + rooms.join(', ') : 'in no room';
  }

  function addLine(kind, fields, recovered) {
    var li = document.createElement('li');
    li.className = kind + (recovered ? ' recovered' : '');
    if (recovered) li.title = 'recovered after a reconnect';
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

  function onMessage(m) {
    if (m.binary) {
      addLine('info', { text: '(binary message, ' + m.data.byteLength + ' bytes)' }, m.recovered);
      return;
    }
    var o = null;
    try { o = JSON.parse(m.data); } catch (e) { /* not JSON: shown as text */ }
    if (o && o.op === 'said' && typeof o.room === 'string') {
      addLine('said', { room: o.room, from: o.from || '(anonymous)', text: String(o.text) }, m.recovered);
    } else {
      addLine('info', { text: m.data }, m.recovered);
    }
  }

  function onRecovery(r) {
    var where = r.channel.indexOf('room:') === 0 ? 'room ' + r.channel.slice(5) : 'your messages';
    if (r.recovered) addLine('info recovery', { text: 'caught up on ' + where });
    else addLine('error recovery', { text: 'some messages in ' + where + ' were missed (history no longer reaches back)' });
  }

  function storageKey() { return 'wsgw-positions:' + me; }

  function loadPositions() {
    try { return JSON.parse(sessionStorage.getItem(storageKey()) || 'null'); } catch (e) { return null; }
  }

  function open() {
    var base = $('gw').value.trim() || defaultGateway();
    var saved = loadPositions() || {};
    var c = new WsgwClient(base, { user: me, positions: saved.positions, rooms: saved.rooms });
    client = c;
    c.on('state', function (s) {
      if (client !== c) return;
      if (s === 'open') setState('open', 'connected as ' + me);
      else if (s === 'connecting') setState('connecting', 'connecting to ' + base + ' …');
      else if (s === 'closed') { client = null; setState('closed', 'disconnected'); showRooms(); }
    });
    c.on('open', function (e) {
      var rooms = c.rooms();
      pending.forEach(function (r) { if (rooms.indexOf(r) < 0) c.join(r); });
      pending = [];
      showRooms();
      addLine('info', { text: (e.reconnect ? 'reconnected' : 'connected') +
                              (e.protocol ? '' : ' (raw frames: no recovery)') +
                              (rooms.length ? ', joined ' + rooms.join(', ') + ' again' : '') });
    });
    c.on('close', function (e) {
      if (client !== c) return;
      var why = 'closed ' + e.code + (e.reason ? ' "' + e.reason + '"' : '');
      if (e.reconnect >= 0) setState('reconnecting', why + ', reconnecting in ' + (e.reconnect / 1000).toFixed(1) + ' s');
      else addLine('info', { text: 'disconnected: ' + why });
    });
    c.on('message', onMessage);
    c.on('recovery', onRecovery);
    c.on('position', function () {
      try { sessionStorage.setItem(storageKey(), JSON.stringify({ positions: c.positions(), rooms: c.rooms() })); } catch (e) { /* full or off */ }
    });
    c.on('error', function (e) { if (client === c && c.state === 'open') addLine('error', { text: String(e.message || e) }); });
    try {
      c.connect();
    } catch (e) {
      client = null;
      setState('closed', 'bad gateway URL: ' + e.message);
    }
  }

  $('connect-form').addEventListener('submit', function (e) {
    e.preventDefault();
    me = $('user').value.trim();
    if (!me || client) return;
    open();
  });

  $('disconnect').addEventListener('click', function () {
    if (client) client.close(1000, 'bye');
    else setState('closed', 'disconnected');
  });

  // as if the network dropped: the client reconnects and recovers by itself
  $('drop').addEventListener('click', function () {
    if (client) client.disconnect();
  });

  $('room-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var r = $('room').value.trim();
    if (r && client && client.join(r)) {
      showRooms();
      addLine('info', { text: 'joined ' + r });
    }
  });

  $('leave').addEventListener('click', function () {
    var r = $('room').value.trim();
    if (r && client && client.leave(r)) {
      showRooms();
      addLine('info', { text: 'left ' + r });
    }
  });

  $('say-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var text = $('text').value;
    var r = $('room').value.trim();
    if (!text || !r || !client) return;
    if (client.rooms().indexOf(r) < 0) addLine('info', { text: 'note: you are not in ' + r + ' (join it to see replies)' });
    if (client.say(r, text)) $('text').value = '';
    else addLine('error', { text: 'not connected' });
  });

  // initial state from the query string
  $('gw').value = defaultGateway();
  if (params.get('user')) $('user').value = params.get('user');
  if (params.get('room')) $('room').value = params.get('room');
  setState('closed', 'disconnected');
  showRooms();
  if (params.get('autoconnect') === '1' && $('user').value.trim()) {
    // ?room= with autoconnect=1 joins it as soon as the connection is open
    if ($('room').value.trim() && params.get('room')) pending.push($('room').value.trim());
    $('connect-form').requestSubmit();
  }
})();
