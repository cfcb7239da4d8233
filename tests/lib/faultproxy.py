"""faultproxy: a small fault-injecting TCP proxy for integration tests (python3 stdlib only).

    from faultproxy import FaultProxy
    fp = FaultProxy(("127.0.0.1", api_port))   # listens on 127.0.0.1:fp.port, runs in a thread
    gw = Gateway([fp.addr])                      # the gateway talks to the API through it
    fp.pause()        # black hole: nothing forwarded either way, nothing accepted, no close
    fp.resume()       # bytes held in the kernel buffers flow again, held accepts are taken
    fp.drop("up")     # read and discard (direction "up" = client->target, "down", "both")
    fp.forward()      # stop dropping
    fp.cut(rst=True)  # end every proxied connection (FIN, or RST with rst=True)
    fp.refuse(True)   # new connections are accepted and closed at once (a dead port) ...
    fp.refuse(False)  # ... until this
    fp.stats()        # {"up": forwarded bytes, "down": ..., "dropped_up", "dropped_down",
                      #  "accepted", "active"}
    fp.close()

"Client" is whoever connects to the proxy, "target" what it forwards to. Every control method
returns once the proxy thread has applied it, so what the test does next sees the new state.
Each direction keeps at most BUF bytes read but not yet written: a slow side slows the other
(TCP backpressure passes through, nothing is buffered without bound). One thread, one
selector: everything below runs on the proxy thread except the public methods.
"""
import errno
import selectors
import socket
import struct
import threading

BUF = 256 * 1024
DIRS = ("up", "down")


class _Pipe:
    """One direction of one proxied connection: bytes read from src, queued, written to dst."""

    def __init__(self, src, dst, direction):
        self.src, self.dst, self.dir = src, dst, direction
        self.buf = bytearray()
        self.eof = False       # src sent FIN: shut dst's write side once buf is written
        self.shut = False


class _Conn:
    def __init__(self, client, target):
        self.client, self.target = client, target
        self.pipes = {"up": _Pipe(client, target, "up"), "down": _Pipe(target, client, "down")}
        self.connected = False  # target connect finished
        self.dead = False


class FaultProxy:
    def __init__(self, target, host="127.0.0.1"):
        self.target = target
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, 0))
        self._lsock.listen(512)
        self._lsock.setblocking(False)
        self.host = host
        self.port = self._lsock.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._wr, self._ww = socket.socketpair()
        self._wr.setblocking(False)
        self._ops = []
        self._lock = threading.Lock()
        self._conns = []
        self._paused = False
        self._refusing = False
        self._drop = {"up": False, "down": False}
        self._stats = {"up": 0, "down": 0, "dropped_up": 0, "dropped_down": 0, "accepted": 0,
                       "active": 0}
        self._stop = False
        self._mask = {}  # socket -> events it is registered for (absent: not registered)
        self._sel.register(self._wr, selectors.EVENT_READ, ("wake", None))
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        self._call(self._rearm_all)

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    # ---- control (any thread) ----------------------------------------------------------

    def _call(self, fn, *args):
        """Runs fn(*args) on the proxy thread; returns its result once it ran."""
        done = threading.Event()
        box = []

        def op():
            try:
                box.append(fn(*args))
            finally:
                done.set()
        with self._lock:
            if self._stop:
                return None
            self._ops.append(op)
        self._ww.send(b"x")
        if not done.wait(10):
            raise TimeoutError("faultproxy thread did not answer")
        return box[0] if box else None

    def _mode(self, attr, value):
        """Sets a mode on the proxy thread and re-arms every socket for it."""
        def op():
            setattr(self, attr, value)
            self._rearm_all()
        self._call(op)

    def pause(self):
        """Black hole: stop reading, writing and accepting; connections stay open."""
        self._mode("_paused", True)

    def resume(self):
        self._mode("_paused", False)

    def drop(self, direction="both", on=True):
        """Read and discard bytes in direction "up" (client->target), "down" or "both" (on=False:
        forward them again)."""
        dirs = DIRS if direction == "both" else (direction,)

        def op():
            for d in dirs:
                self._drop[d] = on
        self._call(op)

    def forward(self, direction="both"):
        """Stop dropping (bytes already discarded are gone)."""
        self.drop(direction, on=False)

    def cut(self, rst=False):
        """Ends every proxied connection now: FIN both ways, or RST with rst=True. Returns how
        many connections were cut."""
        def op():
            n = 0
            for c in list(self._conns):
                self._kill(c, rst)
                n += 1
            return n
        return self._call(op)

    def refuse(self, on=True):
        """While on, new connections are accepted and closed at once (RST): a dead port."""
        self._mode("_refusing", on)

    def stats(self):
        return self._call(lambda: dict(self._stats))

    def close(self):
        if self._stop:
            return
        self.cut(rst=True)
        with self._lock:
            self._stop = True
        self._ww.send(b"x")
        self._thread.join(5)
        for s in (self._lsock, self._wr, self._ww):
            s.close()
        self._sel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- proxy thread ---------------------------------------------------------------------

    def _run(self):
        while True:
            with self._lock:
                ops, self._ops = self._ops, []
                stop = self._stop
            for op in ops:
                op()
            if stop:
                for c in list(self._conns):
                    self._kill(c, True)
                return
            for key, ev in self._sel.select(0.5):
                kind, obj = key.data
                if kind == "wake":
                    try:
                        while self._wr.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                elif kind == "listen":
                    self._accept()
                else:
                    self._io(obj, key.fileobj, ev)

    def _accept(self):
        for _ in range(64):
            try:
                cs, _ = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._stats["accepted"] += 1
            if self._refusing:
                _linger0(cs)
                cs.close()
                continue
            cs.setblocking(False)
            ts = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ts.setblocking(False)
            for s in (cs, ts):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = ts.connect_ex(self.target)
            if rc not in (0, errno.EINPROGRESS):
                _linger0(cs)
                cs.close()
                ts.close()
                continue
            c = _Conn(cs, ts)
            c.connected = rc == 0
            self._conns.append(c)
            self._stats["active"] += 1
            self._rearm(c)

    def _want(self, c, sock):
        """The selector events sock needs now."""
        if self._paused or c.dead:
            return 0
        if sock is c.target and not c.connected:
            return selectors.EVENT_WRITE
        ev = 0
        rd = c.pipes["up"] if sock is c.client else c.pipes["down"]  # read from sock
        wr = c.pipes["down"] if sock is c.client else c.pipes["up"]  # write to sock
        if not rd.eof and len(rd.buf) < BUF and (c.connected or sock is c.target):
            ev |= selectors.EVENT_READ
        if wr.buf:
            ev |= selectors.EVENT_WRITE
        return ev

    def _set(self, s, c, ev):
        """Puts sock s in the selector with events ev (0: out of it; selectors take no empty
        mask)."""
        cur = self._mask.get(s, 0)
        if ev == cur:
            return
        if cur == 0:
            self._sel.register(s, ev, ("conn", c))
        elif ev == 0:
            self._sel.unregister(s)
        else:
            self._sel.modify(s, ev, ("conn", c))
        if ev:
            self._mask[s] = ev
        else:
            self._mask.pop(s, None)

    def _rearm(self, c):
        for s in (c.client, c.target):
            self._set(s, c, self._want(c, s))

    def _rearm_all(self):
        listening = self._mask.get(self._lsock, 0)
        if self._paused and listening:
            self._sel.unregister(self._lsock)
            self._mask.pop(self._lsock, None)
        elif not self._paused and not listening:
            self._sel.register(self._lsock, selectors.EVENT_READ, ("listen", None))
            self._mask[self._lsock] = selectors.EVENT_READ
        for c in list(self._conns):
            self._rearm(c)

    def _io(self, c, sock, ev):
        if c.dead:
            return
        if sock is c.target and not c.connected:
            err = c.target.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._kill(c, True)
                return
            c.connected = True
            self._rearm(c)
            return
        if ev & selectors.EVENT_READ:
            p = c.pipes["up"] if sock is c.client else c.pipes["down"]
            try:
                data = sock.recv(min(65536, BUF - len(p.buf)) or 1)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._kill(c, True)
                return
            if data == b"":
                p.eof = True
            elif data:
                if self._drop[p.dir]:
                    self._stats["dropped_" + p.dir] += len(data)
                else:
                    p.buf += data
        if ev & selectors.EVENT_WRITE:
            p = c.pipes["down"] if sock is c.client else c.pipes["up"]
            if p.buf:
                try:
                    n = sock.send(p.buf)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self._kill(c, True)
                    return
                del p.buf[:n]
                self._stats[p.dir] += n
        for p in c.pipes.values():
            if p.eof and not p.buf and not p.shut:
                p.shut = True
                try:
                    p.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        if all(p.shut for p in c.pipes.values()):
            self._kill(c, False)
            return
        self._rearm(c)

    def _kill(self, c, rst):
        if c.dead:
            return
        c.dead = True
        for s in (c.client, c.target):
            self._set(s, c, 0)
            if rst:
                _linger0(s)
            try:
                s.close()
            except OSError:
                pass
        self._conns.remove(c)
        self._stats["active"] -= 1


def _linger0(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
