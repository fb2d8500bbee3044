#!/usr/bin/env python3
"""TLS cost (issue 15): get-heavy throughput and server CPU per operation,
plain and TLS, memcore beside memcached 1.6.18 (built with TLS), alternating
in each round. Certificates are made with openssl in a temp dir.

    bench/tls.py [--rounds 3] [--seconds 8] [--threads 1]

Prints one line per run and, per round, TLS/plain ratios of ops per server
CPU-second for each server. memtier_benchmark: -P memcache_text, 2 threads x
10 connections, 1:10 set:get over 10,000 keys of 100 bytes, preloaded.
"""
import argparse, os, re, subprocess, sys, tempfile, time, socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEMCORE = os.environ.get("MEMCORE", str(REPO / "target/release/memcore"))
MEMCACHED = os.environ.get("MEMCACHED", "/usr/bin/memcached")
MEMTIER = os.environ.get("MEMTIER", "/usr/local/bin/memtier_benchmark")


def certs(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run(server, tls, d, seconds, threads):
    port = free_port()
    argv = [MEMCORE if server == "memcore" else MEMCACHED, "-p", str(port), "-l", "127.0.0.1", "-U", "0",
            "-t", str(threads), "-m", "256", "-u", "root"]
    if tls:
        argv += ["-Z", "-o", f"ssl_chain_cert={d}/cert.pem,ssl_key={d}/key.pem"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); break
            except OSError:
                time.sleep(0.02)
        base = [MEMTIER, "-s", "127.0.0.1", "-p", str(port), "-P", "memcache_text", "--hide-histogram",
                "-d", "100", "--key-maximum", "10000"]
        if tls:
            base += ["--tls", "--tls-skip-verify"]
        subprocess.run(base + ["-t", "1", "-c", "1", "--ratio", "1:0", "--key-pattern", "P:P", "-n", "allkeys"],
                       check=True, capture_output=True)
        c0 = cpu(p.pid)
        out = subprocess.run(base + ["-t", "2", "-c", "10", "--ratio", "1:10", "--test-time", str(seconds)],
                             check=True, capture_output=True, text=True).stdout
        c1 = cpu(p.pid)
        ops = float(re.search(r"^Totals\s+([\d.]+)", out, re.M).group(1))
        return ops, ops * seconds / max(c1 - c0, 1e-9)
    finally:
        p.kill(); p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        certs(d)
        print(f"load average at start: {os.getloadavg()}")
        for r in range(a.rounds):
            res = {}
            for server in ("memcached", "memcore"):
                for tls in (False, True):
                    ops, per_cpu = run(server, tls, d, a.seconds, a.threads)
                    res[(server, tls)] = (ops, per_cpu)
                    print(f"round {r} {server:9} {'tls  ' if tls else 'plain'} ops/s {ops:10.0f}  ops per server CPU-s {per_cpu:10.0f}", flush=True)
            for server in ("memcached", "memcore"):
                print(f"round {r} {server:9} TLS/plain: ops/s {res[(server, True)][0] / res[(server, False)][0]:.3f}, "
                      f"ops per CPU-s {res[(server, True)][1] / res[(server, False)][1]:.3f}")
            print(f"round {r} memcore/memcached TLS: ops per CPU-s {res[('memcore', True)][1] / res[('memcached', True)][1]:.3f}; "
                  f"load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
