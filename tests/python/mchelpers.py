"""Helpers shared by the client-level tests (raw protocol access, polling)."""

from __future__ import annotations

import socket
import time

CLIENT_TIMEOUT = 5.0  # socket timeout handed to clients


class Raw:
    """Minimal raw ASCII-protocol connection for checks clients can't do."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=CLIENT_TIMEOUT)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"server closed the connection; buffered {self.buf!r}")
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def cmd(self, data: bytes) -> bytes:
        self.send(data)
        return self.line()

    def get_values(self, command: bytes):
        """Send a retrieval command; return {key: (flags, data, cas|None)}."""
        self.send(command)
        out = {}
        while True:
            ln = self.line()
            if ln == b"END":
                return out
            parts = ln.split()
            if not parts or parts[0] != b"VALUE":
                raise AssertionError(f"unexpected line {ln!r} for {command!r}")
            key, flags, nbytes = parts[1], int(parts[2]), int(parts[3])
            cas = int(parts[4]) if len(parts) > 4 else None
            data = self.exact(nbytes)
            assert self.exact(2) == b"\r\n"
            out[key] = (flags, data, cas)



def wait_until(pred, timeout=5.0, interval=0.05):
    """Poll `pred` until it returns truthy or `timeout` passes; return the
    last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
