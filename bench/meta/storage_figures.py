"""Storage figures of the meta protocol's per-item state (docs/benchmarks.md):
200,000 items of 100-byte values written by `set`, by `ms`, and by `ms` then
`md I` (every item stale), into memcore and memcached, each on a fresh
server; prints curr_items, bytes, engine_memory and bytes_per_item_overhead.
Usage: python3 bench/meta/storage_figures.py [memcore binary]
Loopback only; each server is ended by its own PID."""
import os, socket, subprocess, time, sys
def spawn(cmd, port):
    p = subprocess.Popen(cmd + ["-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close(); return p
        except OSError: time.sleep(0.05)
    p.kill(); raise SystemExit("no start")
def stats(s):
    s.sendall(b"stats\r\n"); out=b""
    while not out.endswith(b"END\r\n"): out += s.recv(1<<20)
    d={}
    for l in out.decode().split("\r\n"):
        if l.startswith("STAT "): _,k,v=l.split(" ",2); d[k]=v
    return d
def drain(s, n, term):
    got=b""
    while got.count(term) < n: got += s.recv(1<<20)
MEMCORE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../target/release/memcore")
N=200000
val=b"x"*100
def run(port, mode):
    s=socket.create_connection(("127.0.0.1",port))
    for base in range(0,N,10000):
        if mode=="set":
            req=b"".join(b"set key:%09d 0 0 100 noreply\r\n%s\r\n"%(i,val) for i in range(base,base+10000))
        else:
            req=b"".join(b"ms key:%09d 100 q\r\n%s\r\n"%(i,val) for i in range(base,base+10000))
        s.sendall(req+b"mn\r\n" if mode!="set" else req+b"version\r\n"); drain(s,1,b"\r\n")
    if mode=="ms+mdI":
        for base in range(0,N,10000):
            s.sendall(b"".join(b"md key:%09d I q\r\n"%i for i in range(base,base+10000))+b"mn\r\n"); drain(s,1,b"MN\r\n")
    st=stats(s)
    return {k:st.get(k) for k in ["curr_items","bytes","engine_memory","bytes_per_item_overhead"]}
for mode in ["set","ms","ms+mdI"]:
    p=spawn([MEMCORE,"-u","nobody","-t","1","-m","1024","--compress","off"],21811)
    try: print("memcore", mode, run(21811, mode))
    finally: p.kill(); p.wait()
    p=spawn(["memcached","-u","nobody","-U","0","-m","1024"],21812)
    try: print("memcached", mode, run(21812, mode))
    finally: p.kill(); p.wait()
