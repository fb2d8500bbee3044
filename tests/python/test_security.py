"""Issue 15, data security through the real binary: ASCII authentication
(-Y) and TLS on client connections (-Z, -o ssl_*).

The authentication tests run against whichever server the suite spawns
(``MEMCORE_BIN=/usr/bin/memcached`` runs them against memcached 1.6.18,
whose replies they were written from).  The TLS tests spawn memcore with
certificates made here (the ``cryptography`` package): a CA, a server
certificate for 127.0.0.1, client certificates from that CA (one valid,
one expired) and one from a CA the server does not trust.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError

from conftest import READY_TIMEOUT, server_bin, is_memcached
from mchelpers import CLIENT_TIMEOUT, Raw

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def poll(cond, limit=5.0, what="condition"):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {limit}s")


# --- authentication (-Y) -------------------------------------------------


@pytest.fixture
def auth_file(tmp_path):
    p = tmp_path / "auth"
    p.write_text("alice:secret1\nbob:pw2\n")
    return p


@pytest.fixture
def auth_server(spawned_server_factory, auth_file):
    return spawned_server_factory(threads=2, extra=["-Y", str(auth_file)])


def exchange(srv, data: bytes, wait_for: int) -> bytes:
    """Send `data` and read until `wait_for` lines came back."""
    r = Raw(srv.host, srv.port)
    try:
        r.send(data)
        return b"".join(r.line() + b"\r\n" for _ in range(wait_for))
    finally:
        r.close()


@pytest.mark.parametrize("sent,want", [
    (b"get foo\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
    (b"quit\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
    (b"mg foo v\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
    (b"add a 0 0 7\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
    (b"SET a 0 0 7\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
    (b"set foo 0 0 5\r\nhello\r\n", b"CLIENT_ERROR bad authentication token format\r\n"),
    (b"set foo 0 0 6\r\nalice \r\n", b"CLIENT_ERROR bad authentication token format\r\n"),
    (b"set foo 0 0 13\r\nalice secretX\r\n", b"CLIENT_ERROR authentication failure\r\n"),
    (b"set foo 0 0 13\r\nALICE secret1\r\n", b"CLIENT_ERROR authentication failure\r\n"),
    (b"set foo 0 0 13\r\nalice secret1XX", b"CLIENT_ERROR bad command line termination\r\n"),
    (b"set foo 0 0 13\r\nalice secret1\r\n", b"STORED\r\n"),
    (b"set a 0 0 7 noreply\r\nbob pw2\r\n", b"STORED\r\n"),
    (b"set foo 0 0 8\r\nbob pw2 \r\n", b"STORED\r\n"),
    (b"set  foo 0 0 +19\nalice secret1 extra\r\n", b"STORED\r\n"),
])
def test_auth_replies_are_memcacheds(auth_server, sent, want):
    assert exchange(auth_server, sent, 1) == want


def test_failed_auth_keeps_the_connection_unauthenticated(auth_server):
    r = Raw(auth_server.host, auth_server.port)
    assert r.cmd(b"set x 0 0 9\r\nbob wrong\r\n") == b"CLIENT_ERROR authentication failure"
    assert r.cmd(b"get x\r\n") == b"CLIENT_ERROR unauthenticated"
    assert r.cmd(b"set x 0 0 7\r\nbob pw2\r\n") == b"STORED"
    assert r.cmd(b"set x 0 0 1\r\nv\r\n") == b"STORED"
    assert r.get_values(b"get x\r\n") == {b"x": (0, b"v", None)}
    r.close()


def test_pymemcache_authenticates_with_its_first_set(auth_server):
    c = Client((auth_server.host, auth_server.port), timeout=CLIENT_TIMEOUT)
    with pytest.raises(MemcacheClientError):
        c.get("k")
    c.close()
    c = Client((auth_server.host, auth_server.port), timeout=CLIENT_TIMEOUT)
    assert c.set("alice", b"alice secret1", noreply=False)
    c.set("k", b"value", noreply=False)
    assert c.get("k") == b"value"
    c.close()
    c = Client((auth_server.host, auth_server.port), timeout=CLIENT_TIMEOUT)
    with pytest.raises(MemcacheClientError, match="authentication failure"):
        c.set("alice", b"alice guess", noreply=False)
    c.close()


def stats(host, port, login=b"alice secret1"):
    r = Raw(host, port)
    assert r.cmd(b"set a 0 0 %d\r\n%s\r\n" % (len(login), login)) == b"STORED"
    r.send(b"stats\r\n")
    out = {}
    while (ln := r.line()) != b"END":
        _, k, v = ln.split(b" ", 2)
        out[k.decode()] = v.decode()
    r.close()
    return out


def test_auth_counts_and_reload_on_sighup(auth_server, auth_file):
    srv = auth_server
    before = stats(srv.host, srv.port)
    assert exchange(srv, b"set a 0 0 16\r\nalice hunter2-xy\r\n", 1) == b"CLIENT_ERROR authentication failure\r\n"
    after = stats(srv.host, srv.port)
    assert int(after["auth_cmds"]) - int(before["auth_cmds"]) == 2
    assert int(after["auth_errors"]) - int(before["auth_errors"]) == 1
    if srv.spawned and not is_memcached(srv.argv[0]):
        log = srv.stderr_tail(200)
        assert "authentication failure" in log and "hunter2" not in log, log

    # A connection that authenticated stays so across a reload.
    kept = Raw(srv.host, srv.port)
    assert kept.cmd(b"set a 0 0 7\r\nbob pw2\r\n") == b"STORED"
    auth_file.write_text("alice:rotated\n")
    os.kill(srv.proc.pid, signal.SIGHUP)
    poll(lambda: exchange(srv, b"set a 0 0 13\r\nalice rotated\r\n", 1) == b"STORED\r\n",
         what="the new password accepted after SIGHUP")
    assert exchange(srv, b"set a 0 0 7\r\nbob pw2\r\n", 1) == b"CLIENT_ERROR authentication failure\r\n"
    assert kept.cmd(b"version\r\n").startswith(b"VERSION ")
    kept.close()
    assert srv.proc.poll() is None


def test_auth_bounds_hostile_input(auth_server):
    # No newline in 1 KiB, or a token longer than the gate takes: closed.
    # (memcached 1.6.18 keeps reading the first; its source closes past
    # 1 KiB, memcore does.)
    if is_memcached(auth_server.argv[0]):
        pytest.skip("memcore's bound")
    for data in (b"a" * 5000, b"set a 0 0 100000\r\n" + b"x" * 10):
        s = socket.create_connection((auth_server.host, auth_server.port), timeout=CLIENT_TIMEOUT)
        s.sendall(data)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        s.close()


# --- TLS (-Z) ------------------------------------------------------------


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca=False, server=False, days=(-1, 30)):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=days[0]))
         .not_valid_after(now + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(dir: Path, name, cert=None, key=None):
    if cert is not None:
        (dir / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        (dir / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def make_pki(dir: Path, tag: str):
    """A CA `tag`, a server certificate and a client certificate from it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(f"{tag} CA", ca_key, f"{tag} CA", ca_key, ca=True)
    _write(dir, f"{tag}-ca", ca, ca_key)
    for name, server, days in (("server", True, (-1, 30)), ("client", False, (-1, 30)),
                               ("expired", False, (-30, -1))):
        k = ec.generate_private_key(ec.SECP256R1())
        _write(dir, f"{tag}-{name}", _cert(f"{tag} {name}", k, f"{tag} CA", ca_key, server=server, days=days), k)


@pytest.fixture
def pki(tmp_path):
    make_pki(tmp_path, "a")
    make_pki(tmp_path, "b")
    return tmp_path


class Spawned:
    def __init__(self, argv, tmp: Path):
        self.port_file = tmp / f"port-{time.monotonic_ns()}"
        self.err = tmp / f"stderr-{time.monotonic_ns()}"
        self.argv = [*argv, "--port-file", str(self.port_file)]
        with open(self.err, "wb") as f:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f)

    def ports(self, n):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                ports = [int(ln.split(": ")[1]) for ln in self.port_file.read_text().splitlines()]
                if len(ports) >= n:
                    return ports
            except (OSError, ValueError, IndexError):
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise AssertionError(f"server did not start: {self.log()}")

    def log(self):
        return self.err.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def spawn(tmp_path):
    started = []

    def make(*args):
        s = Spawned([server_bin(), "-p", "0", "-U", "0", "-u", "root", "-t", "2", *args], tmp_path)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def tls_flags(pki, tag="a", verify=0):
    opts = f"ssl_chain_cert={pki}/{tag}-server.crt,ssl_key={pki}/{tag}-server.key,ssl_ca_cert={pki}/{tag}-ca.crt"
    return ["-Z", "-o", f"{opts},ssl_verify_mode={verify}"]


def client_ctx(pki, ca="a", cert=None):
    ctx = ssl.create_default_context(cafile=str(pki / f"{ca}-ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


def tls_cmd(port, ctx, data=b"version\r\n", until=b"\r\n"):
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(data)
            out = b""
            while not out.endswith(until):
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
            return out


needs_memcore = pytest.mark.skipif(is_memcached(server_bin()) or bool(os.environ.get("MEMCORE_TEST_ADDR")),
                                   reason="spawns memcore with its --port-file")


@needs_memcore
def test_tls_and_plain_listeners_side_by_side(pki, spawn):
    srv = spawn("-l", "127.0.0.1:0,notls:127.0.0.1:0", *tls_flags(pki))
    tls_port, plain_port = srv.ports(2)
    assert tls_cmd(tls_port, client_ctx(pki)).startswith(b"VERSION ")
    # pymemcache over TLS, and the same item seen on the plain port.
    c = Client(("127.0.0.1", tls_port), tls_context=client_ctx(pki), timeout=CLIENT_TIMEOUT)
    c.set("k", b"x" * 100_000, noreply=False)
    assert c.get("k") == b"x" * 100_000
    assert c.get_many([f"m{i}" for i in range(50)] + ["k"]) == {"k": b"x" * 100_000}
    c.close()
    assert Raw("127.0.0.1", plain_port).get_values(b"get k\r\n")[b"k"][1] == b"x" * 100_000
    r = Raw("127.0.0.1", plain_port)
    r.send(b"stats settings\r\n")
    settings = {}
    while (ln := r.line()) != b"END":
        settings[ln.split(b" ")[1]] = ln.split(b" ", 2)[2]
    assert settings[b"ssl_enabled"] == b"yes" and settings[b"ssl_verify_mode"] == b"0"
    r.close()
    # A plain client on the TLS port is told, then closed.
    r = socket.create_connection(("127.0.0.1", tls_port), timeout=CLIENT_TIMEOUT)
    r.sendall(b"version\r\n")
    assert r.recv(100) == b"SERVER_ERROR this port requires TLS\r\n"
    assert r.recv(100) == b""
    r.close()


@needs_memcore
def test_every_handshake_completes(pki, spawn):
    # Found by repetition: a handshake that began with glommio's peek hung
    # about once in a hundred connections.
    srv = spawn(*tls_flags(pki))
    (port,) = srv.ports(1)
    ctx = client_ctx(pki)
    for _ in range(300):
        assert tls_cmd(port, ctx).startswith(b"VERSION ")


@needs_memcore
def test_openssl_s_client_speaks_to_the_tls_port(pki, spawn):
    srv = spawn(*tls_flags(pki))
    (port,) = srv.ports(1)
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki / "a-ca.crt"),
                          "-verify_return_error", "-quiet", "-ign_eof"],
                         input=b"set k 0 0 2\r\nhi\r\nget k\r\nquit\r\n", capture_output=True, timeout=20)
    assert b"STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n" in out.stdout, out


@needs_memcore
def test_client_certificates_are_verified(pki, spawn):
    srv = spawn(*tls_flags(pki, verify=2))
    (port,) = srv.ports(1)
    assert tls_cmd(port, client_ctx(pki, cert="a-client")).startswith(b"VERSION ")
    for cert in (None, "b-client", "a-expired"):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            out = tls_cmd(port, client_ctx(pki, cert=cert))
            # TLS 1.3: the refusal may come at the first read instead.
            assert out.startswith(b"VERSION "), out
    poll(lambda: "Expired" in srv.log() or "expired" in srv.log(), what="expired certificate logged")
    out = tls_cmd(port, client_ctx(pki, cert="a-client"), b"stats\r\n", until=b"END\r\n")
    assert int(re.search(rb"STAT ssl_handshake_errors (\d+)", out).group(1)) == 3, out
    # Mode 1: a certificate is optional, but one given must verify.
    srv = spawn(*tls_flags(pki, verify=1))
    (port,) = srv.ports(1)
    assert tls_cmd(port, client_ctx(pki)).startswith(b"VERSION ")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        assert tls_cmd(port, client_ctx(pki, cert="b-client")).startswith(b"VERSION ")


@needs_memcore
def test_certificates_reload_on_sighup_without_dropping_connections(pki, spawn, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    for f in ("server.crt", "server.key"):
        (live / f).write_bytes((pki / f"a-{f}").read_bytes())
    srv = spawn("-Z", "-o", f"ssl_chain_cert={live}/server.crt,ssl_key={live}/server.key")
    (port,) = srv.ports(1)
    raw = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    kept = client_ctx(pki, "a").wrap_socket(raw, server_hostname="127.0.0.1")
    kept.sendall(b"version\r\n")
    assert kept.recv(100).startswith(b"VERSION ")

    # A key that does not match: the reload is refused, the old pair stays.
    (live / "server.key").write_bytes((pki / "b-server.key").read_bytes())
    srv.proc.send_signal(signal.SIGHUP)
    poll(lambda: "does not match" in srv.log(), what="refused reload logged")
    assert tls_cmd(port, client_ctx(pki, "a")).startswith(b"VERSION ")

    for f in ("server.crt", "server.key"):
        (live / f).write_bytes((pki / f"b-{f}").read_bytes())
    srv.proc.send_signal(signal.SIGHUP)

    def new_cert_served():
        try:
            return tls_cmd(port, client_ctx(pki, "b")).startswith(b"VERSION ")
        except (ssl.SSLError, OSError):
            return False
    try:
        poll(new_cert_served, what="the new certificate served after SIGHUP")
    except AssertionError:
        raise AssertionError(srv.log())
    kept.sendall(b"version\r\n")
    assert kept.recv(100).startswith(b"VERSION ")
    kept.close()
    assert srv.proc.poll() is None


@needs_memcore
@pytest.mark.parametrize("case", ["wrong_key", "missing_key", "no_key_flag", "not_pem"])
def test_bad_tls_files_stop_the_start_with_one_line(pki, spawn, case):
    opts = {
        "wrong_key": f"ssl_chain_cert={pki}/a-server.crt,ssl_key={pki}/b-server.key",
        "missing_key": f"ssl_chain_cert={pki}/a-server.crt,ssl_key={pki}/nope.key",
        "no_key_flag": f"ssl_chain_cert={pki}/a-server.crt",
        "not_pem": f"ssl_chain_cert={pki}/a-server.key,ssl_key={pki}/a-server.key",
    }[case]
    srv = spawn("-Z", "-o", opts)
    assert srv.proc.wait(timeout=10) == 64
    lines = [ln for ln in srv.log().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("memcore: "), lines


@needs_memcore
def test_tls_with_auth(pki, spawn, auth_file):
    srv = spawn("-Y", str(auth_file), *tls_flags(pki))
    (port,) = srv.ports(1)
    assert tls_cmd(port, client_ctx(pki), b"get a\r\n") == b"CLIENT_ERROR unauthenticated\r\n"
    assert tls_cmd(port, client_ctx(pki), b"set a 0 0 7\r\nbob pw2\r\nversion\r\n").startswith(b"STORED\r\n")
