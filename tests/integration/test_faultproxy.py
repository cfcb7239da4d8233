"""tests/lib/faultproxy.py against a plain TCP echo server: forwarding (1 MB both ways, counted),
pause (black hole: nothing through, nothing closed, accepts held) and resume, drop, cut (FIN and
RST), refuse."""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from faultproxy import FaultProxy  # noqa: E402
from wsgwtest import check, eq, run, wait_until  # noqa: E402


class EchoServer:
    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(s)
            threading.Thread(target=self._echo, args=(s,), daemon=True).start()

    def _echo(self, s):
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    s.shutdown(socket.SHUT_WR)
                    return
                s.sendall(d)
        except OSError:
            pass

    def close(self):
        self.ls.close()
        for s in self.conns:
            s.close()


def recv_exact(s, n, timeout=5):
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            break
        out += d
    return bytes(out)


def proxied():
    """(echo server, proxy to it, a client socket through the proxy)."""
    es = EchoServer()
    fp = FaultProxy(("127.0.0.1", es.port))
    return es, fp, socket.create_connection(("127.0.0.1", fp.port), timeout=5)


def echoed(s, data):
    """data sent through comes back."""
    s.sendall(data)
    eq(recv_exact(s, len(data)), data)


def nothing_arrives(s, wait=0.3):
    s.settimeout(wait)
    try:
        d = s.recv(10)
        return False if d else "eof"
    except socket.timeout:
        return True


def test_forward_counts_both_ways():
    es, fp, s = proxied()
    with fp:
        data = os.urandom(1 << 20)
        t = threading.Thread(target=s.sendall, args=(data,))
        t.start()
        eq(recv_exact(s, len(data), 10), data)
        t.join(5)
        st = fp.stats()
        eq((st["up"], st["down"], st["accepted"], st["active"]), (len(data), len(data), 1, 1))
        s.close()
        wait_until(lambda: fp.stats()["active"] == 0, 5, what="the proxied connection to end")
    es.close()


def test_pause_holds_without_closing_then_resume_delivers():
    es, fp, s = proxied()
    with fp:
        echoed(s, b"one")
        fp.pause()
        s.sendall(b"two")
        check(nothing_arrives(s) is True, "bytes crossed a paused proxy (or it closed)")
        # a new connection while paused completes in the kernel backlog but gets no service
        s2 = socket.create_connection(("127.0.0.1", fp.port), timeout=5)
        s2.sendall(b"late")
        check(nothing_arrives(s2) is True, "a connection made while paused was served")
        eq(fp.stats()["accepted"], 1)
        fp.resume()
        eq(recv_exact(s, 3), b"two")
        eq(recv_exact(s2, 4), b"late")
        s.close()
        s2.close()
    es.close()


def test_drop_discards_and_counts():
    es, fp, s = proxied()
    with fp:
        fp.drop("up")
        s.sendall(b"lost")
        check(nothing_arrives(s) is True, "dropped bytes arrived")
        wait_until(lambda: fp.stats()["dropped_up"] == 4, 5, what="4 bytes dropped")
        fp.forward()
        echoed(s, b"kept")
        fp.drop("down")
        s.sendall(b"gone")
        check(nothing_arrives(s) is True, "bytes dropped downstream arrived")
        wait_until(lambda: fp.stats()["dropped_down"] == 4, 5, what="4 bytes dropped down")
        s.close()
    es.close()


def test_cut_fin_rst_and_refuse():
    es, fp, a = proxied()
    with fp:
        echoed(a, b"x")
        eq(fp.cut(), 1)
        eq(recv_exact(a, 1), b"")  # FIN
        b = socket.create_connection(("127.0.0.1", fp.port), timeout=5)
        echoed(b, b"y")
        eq(fp.cut(rst=True), 1)
        try:
            got = recv_exact(b, 1)
            check(False, "read %r after an RST" % got)
        except ConnectionResetError:
            pass
        fp.refuse(True)
        try:  # the reset may come before connect() returns, or on the first read
            c = socket.create_connection(("127.0.0.1", fp.port), timeout=5)
            got = recv_exact(c, 1)
            c.close()
            eq(got, b"", "a refused connection stayed open")
        except ConnectionResetError:
            pass
        fp.refuse(False)
        d = socket.create_connection(("127.0.0.1", fp.port), timeout=5)
        echoed(d, b"z")
        eq(fp.stats()["active"], 1)
        for s in (a, b, d):
            s.close()
    es.close()


def test_close_is_quick_and_idempotent():
    es, fp, s = proxied()
    fp.pause()
    t0 = time.monotonic()
    fp.close()
    fp.close()
    check(time.monotonic() - t0 < 2, "close took %.1fs" % (time.monotonic() - t0))
    s.close()
    es.close()


if __name__ == "__main__":
    run(globals())
