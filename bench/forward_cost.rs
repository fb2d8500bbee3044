//! Cost of forwarding: a request whose key lives on the other core vs one
//! whose key lives on the core that accepted the connection.
//!
//! Spawns `memcore -t 2` on a free 127.0.0.1 port, opens connections until C
//! of them were accepted by core 0 (learned from `stats conns`, matching each
//! connection's local port), picks keys owned by core 0 ("local") and by core
//! 1 ("remote") with `memcore::route::owner`, prefills both sets, then runs
//! the same load (each connection one thread doing pipelined `get`s, D per
//! batch, all D replies read back and checked) for T seconds per phase:
//! local, remote, local, remote, ... (ROUNDS rounds), for each depth.
//!
//! Run: `cargo bench --bench forward_cost`
//! Env: FC_CONNS (C, default 16), FC_DEPTH (comma list, default "16,1"),
//!      FC_SECS (T, default 5), FC_ROUNDS (default 2), FC_KEYS (keys per set,
//!      default 10000), FC_VALUE (value bytes, default 100),
//!      MEMCORE_BIN (default $CARGO_MANIFEST_DIR/target/release/memcore).
//!
//! Uses only std and the memcore library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memcore::route::{owner, set_owner_key};
use memcore::storage::HashKey;

/// A fixed key-to-core hash key, given to the server with the hidden
/// `--hash-key` flag, so that `owner` here agrees with the server's split.
const HASH_KEY_HEX: &str = "0123456789abcdeffedcba9876543210";
const HASH_KEY: HashKey = HashKey::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime (all threads) of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    let rest = &s[s.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(bin: &PathBuf) -> Server {
        for _ in 0..8 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new(bin)
                .args(["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0", "-t", "2", "-u", "root", "-m", "1024"])
                // The bench must know which core owns a key (see `owner` below).
                .args(["--hash-key", HASH_KEY_HEX])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(st)) = child.try_wait() {
                    eprintln!("memcore exited early ({st}) on port {port}; retrying");
                    break;
                }
                if TcpStream::connect(addr).is_ok() {
                    return Server { child, addr };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start memcore");
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM by pid (graceful), then SIGKILL after 5 s.
        let _ = Command::new("kill").args(["-TERM", &self.pid()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: memcore did not stop within 5 s of SIGTERM; killing");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn { r: BufReader::with_capacity(1 << 16, s.try_clone().unwrap()), w: s, line: Vec::new() }
    }

    fn read_line(&mut self) -> &[u8] {
        self.line.clear();
        let n = self.r.read_until(b'\n', &mut self.line).expect("read from memcore (timed out or reset)");
        assert!(n > 0, "memcore closed the connection");
        assert!(self.line.ends_with(b"\r\n"), "reply line without CRLF: {:?}", String::from_utf8_lossy(&self.line));
        &self.line[..self.line.len() - 2]
    }

    /// A multi-line `stats <sub>` reply as (name, value) pairs.
    fn stats(&mut self, sub: &str) -> Vec<(String, String)> {
        let cmd = if sub.is_empty() { "stats\r\n".to_string() } else { format!("stats {sub}\r\n") };
        self.w.write_all(cmd.as_bytes()).unwrap();
        let mut out = Vec::new();
        loop {
            let l = String::from_utf8_lossy(self.read_line()).into_owned();
            if l == "END" {
                return out;
            }
            let mut t = l.splitn(3, ' ');
            assert_eq!(t.next(), Some("STAT"), "unexpected stats line {l:?}");
            out.push((t.next().unwrap_or("").to_string(), t.next().unwrap_or("").to_string()));
        }
    }
}

fn stat(v: &[(String, String)], name: &str) -> u64 {
    v.iter().find(|(k, _)| k == name).and_then(|(_, x)| x.parse().ok()).unwrap_or_else(|| panic!("no stat {name}"))
}

/// The core whose `stats conns` lists this connection's local address.
fn core_of(ctl: &mut Conn, c: &Conn) -> Option<usize> {
    let me = format!("tcp:{}", c.w.local_addr().unwrap());
    for _ in 0..50 {
        for (k, v) in ctl.stats("conns") {
            if k.ends_with(":addr") && v == me {
                return k.split('.').next().and_then(|x| x.parse().ok());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn value_for(key: &[u8], len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + ((i + key.len() + key[key.len() - 1] as usize) % 26) as u8).collect()
}

fn prefill(c: &mut Conn, keys: &[Vec<u8>], vlen: usize) {
    for chunk in keys.chunks(100) {
        let mut req = Vec::new();
        for k in chunk {
            req.extend_from_slice(b"set ");
            req.extend_from_slice(k);
            req.extend_from_slice(format!(" 0 0 {vlen}\r\n").as_bytes());
            req.extend_from_slice(&value_for(k, vlen));
            req.extend_from_slice(b"\r\n");
        }
        c.w.write_all(&req).unwrap();
        for _ in chunk {
            let l = c.read_line();
            assert_eq!(l, b"STORED", "prefill: {:?}", String::from_utf8_lossy(l));
        }
    }
}

#[derive(Default)]
struct ThreadResult {
    ops: u64,
    misses: u64,
    lat_us: Vec<u32>,
}

/// One connection's loop: batches of `depth` pipelined `get`s until `stop`.
#[allow(clippy::too_many_arguments)] // a thread's whole brief, passed once
fn worker(
    c: &mut Conn,
    keys: &[Vec<u8>],
    values: &[Vec<u8>],
    first: usize,
    depth: usize,
    vlen: usize,
    barrier: &Barrier,
    stop: &AtomicBool,
) -> ThreadResult {
    let mut res = ThreadResult { lat_us: Vec::with_capacity(1 << 18), ..Default::default() };
    let mut req = Vec::with_capacity(depth * 32);
    let mut data = vec![0u8; vlen + 2];
    let mut next = first;
    barrier.wait();
    while !stop.load(Ordering::Relaxed) {
        req.clear();
        let start_idx = next;
        for _ in 0..depth {
            req.extend_from_slice(b"get ");
            req.extend_from_slice(&keys[next]);
            req.extend_from_slice(b"\r\n");
            next = (next + 1) % keys.len();
        }
        let t0 = Instant::now();
        c.w.write_all(&req).expect("write to memcore");
        let mut idx = start_idx;
        for _ in 0..depth {
            let key = &keys[idx];
            let l = c.read_line();
            if l == b"END" {
                res.misses += 1;
            } else {
                // VALUE <key> <flags> <bytes>
                let mut t = l.split(|&b| b == b' ');
                let ok = t.next() == Some(b"VALUE")
                    && t.next() == Some(&key[..])
                    && t.next().is_some()
                    && t.next() == Some(vlen.to_string().as_bytes());
                assert!(ok, "bad reply for {:?}: {:?}", String::from_utf8_lossy(key), String::from_utf8_lossy(l));
                c.r.read_exact(&mut data).expect("read value");
                assert!(
                    data[..vlen] == values[idx][..] && &data[vlen..] == b"\r\n",
                    "wrong value for {:?}",
                    String::from_utf8_lossy(key)
                );
                let l = c.read_line();
                assert_eq!(l, b"END", "missing END after value");
            }
            idx = (idx + 1) % keys.len();
        }
        res.lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        res.ops += depth as u64;
    }
    res
}

struct Phase {
    label: &'static str,
    depth: usize,
    round: usize,
    ops_s: f64,
    mean_us: f64,
    p99_us: f64,
    srv_cpu_s: f64,
    secs: f64,
    cpu_per_mop: f64,
    gen_cpu_s: f64,
    forwarded: u64,
    misses: u64,
}

#[allow(clippy::too_many_arguments)]
fn run_phase(
    server: &Server,
    ctl: &mut Conn,
    conns: &mut [Conn],
    keys: &[Vec<u8>],
    values: &[Vec<u8>],
    label: &'static str,
    depth: usize,
    round: usize,
    secs: f64,
    vlen: usize,
    hz: f64,
) -> Phase {
    let barrier = Barrier::new(conns.len() + 1);
    let stop = AtomicBool::new(false);
    let n = conns.len();
    let fwd0: u64 = {
        let s = ctl.stats("cores");
        stat(&s, "core0:forwarded_out") + stat(&s, "core1:forwarded_out")
    };
    let pid = server.pid();
    let (results, elapsed, srv_ticks, gen_ticks) = std::thread::scope(|sc| {
        let handles: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(i, c)| {
                let (barrier, stop) = (&barrier, &stop);
                sc.spawn(move || worker(c, keys, values, i * keys.len() / n, depth, vlen, barrier, stop))
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let s0 = cpu_ticks(&pid);
        let g0 = cpu_ticks("self");
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        let results: Vec<ThreadResult> = handles.into_iter().map(|h| h.join().expect("worker panicked")).collect();
        let elapsed = t0.elapsed().as_secs_f64();
        (results, elapsed, cpu_ticks(&pid) - s0, cpu_ticks("self") - g0)
    });
    let fwd1: u64 = {
        let s = ctl.stats("cores");
        stat(&s, "core0:forwarded_out") + stat(&s, "core1:forwarded_out")
    };
    let ops: u64 = results.iter().map(|r| r.ops).sum();
    let misses: u64 = results.iter().map(|r| r.misses).sum();
    let mut lat: Vec<u32> = results.into_iter().flat_map(|r| r.lat_us).collect();
    lat.sort_unstable();
    let mean_us = lat.iter().map(|&x| x as f64).sum::<f64>() / lat.len().max(1) as f64;
    let p99_us = lat.get((lat.len() * 99 / 100).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64;
    let srv_cpu_s = srv_ticks as f64 / hz;
    Phase {
        label,
        depth,
        round,
        ops_s: ops as f64 / elapsed,
        mean_us,
        p99_us,
        srv_cpu_s,
        secs: elapsed,
        cpu_per_mop: if ops > 0 { srv_cpu_s / (ops as f64 / 1e6) } else { 0.0 },
        gen_cpu_s: gen_ticks as f64 / hz,
        // minus the 2 `stats cores` requests themselves, if they were forwarded
        forwarded: fwd1.saturating_sub(fwd0),
        misses,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let nconns: usize = env_num("FC_CONNS", 16);
    let depths: Vec<usize> = std::env::var("FC_DEPTH")
        .unwrap_or_else(|_| "16,1".into())
        .split(',')
        .map(|d| d.trim().parse().expect("FC_DEPTH: comma-separated numbers"))
        .collect();
    let secs: f64 = env_num("FC_SECS", 5.0);
    let rounds: usize = env_num("FC_ROUNDS", 2);
    let nkeys: usize = env_num("FC_KEYS", 10000);
    let vlen: usize = env_num("FC_VALUE", 100);
    let bin: PathBuf = std::env::var_os("MEMCORE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/memcore"));
    if !bin.exists() {
        eprintln!("forward_cost: {} not found: run `cargo build --release` or set MEMCORE_BIN", bin.display());
        std::process::exit(2);
    }
    let hz = clk_tck();
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    println!(
        "forward_cost: memcore -t 2 ({}), C={nconns} connections on core 0, depths {depths:?}, T={secs}s per phase, {rounds} rounds, {nkeys} keys per set, {vlen}-byte values",
        bin.display()
    );
    println!(
        "note: this machine has {ncpu} CPUs; the load generator (C threads, unpinned) shares them with memcore's two pinned executors,"
    );
    println!(
        "      so throughput and latency include competition for CPU. Server CPU-s per Mop is the least generator-sensitive figure."
    );

    let server = Server::start(&bin);
    let mut ctl = Conn::open(server.addr);

    // Connections until C of them live on core 0.
    let mut conns = Vec::new();
    let mut others = Vec::new();
    let mut tries = 0;
    while conns.len() < nconns {
        tries += 1;
        assert!(tries <= 50 * nconns + 50, "only {} of {tries} connections landed on core 0", conns.len());
        let c = Conn::open(server.addr);
        match core_of(&mut ctl, &c) {
            Some(0) => conns.push(c),
            Some(_) => others.push(c),
            None => panic!("connection {} not in `stats conns`", c.w.local_addr().unwrap()),
        }
    }
    println!("connections: {tries} opened, {} on core 0 kept, {} on other cores closed", conns.len(), others.len());
    drop(others);

    // Keys by owner.
    assert!(set_owner_key(HASH_KEY), "the key-to-core hash was used before its key was set");
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let mut i = 0u64;
    while local.len() < nkeys || remote.len() < nkeys {
        let k = format!("fc:{i:010}").into_bytes();
        match owner(&k, 2) {
            0 if local.len() < nkeys => local.push(k),
            1 if remote.len() < nkeys => remote.push(k),
            _ => {}
        }
        i += 1;
    }
    let lvals: Vec<Vec<u8>> = local.iter().map(|k| value_for(k, vlen)).collect();
    let rvals: Vec<Vec<u8>> = remote.iter().map(|k| value_for(k, vlen)).collect();
    prefill(&mut ctl, &local, vlen);
    prefill(&mut ctl, &remote, vlen);
    let cores = ctl.stats("cores");
    let (items0, items1) = (stat(&cores, "core0:curr_items"), stat(&cores, "core1:curr_items"));
    println!("prefill: core0 curr_items={items0} core1 curr_items={items1} (expected {nkeys} each)");
    if items0 != nkeys as u64 || items1 != nkeys as u64 {
        println!("WARNING: item counts per core differ from owner()'s split");
    }

    // Warm-up: a short unmeasured pass over each set.
    for (keys, vals) in [(&local, &lvals), (&remote, &rvals)] {
        run_phase(&server, &mut ctl, &mut conns, keys, vals, "warmup", depths[0], 0, 1.0_f64.min(secs), vlen, hz);
    }
    let st0 = ctl.stats("");

    let mut phases = Vec::new();
    for &depth in &depths {
        for round in 1..=rounds {
            for (label, keys, vals) in [("local", &local, &lvals), ("remote", &remote, &rvals)] {
                let p = run_phase(&server, &mut ctl, &mut conns, keys, vals, label, depth, round, secs, vlen, hz);
                println!(
                    "  D={:<3} round {} {:<6}: {:>9.0} ops/s  batch mean {:>7.1} us  p99 {:>7.0} us  server cpu {:.2}s ({:.0}%)  {:.3} cpu-s/Mop  fwd {}  misses {}",
                    p.depth,
                    p.round,
                    p.label,
                    p.ops_s,
                    p.mean_us,
                    p.p99_us,
                    p.srv_cpu_s,
                    100.0 * p.srv_cpu_s / p.secs,
                    p.cpu_per_mop,
                    p.forwarded,
                    p.misses
                );
                phases.push(p);
            }
        }
    }
    let st1 = ctl.stats("");
    let hits = stat(&st1, "get_hits") - stat(&st0, "get_hits");
    let miss = stat(&st1, "get_misses") - stat(&st0, "get_misses");

    println!();
    println!(
        "| D | round | keys | ops/s | batch mean (us) | batch p99 (us) | server CPU-s | server CPU % | server CPU-s per Mop | generator CPU-s | forwarded |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for p in &phases {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.0} | {:.2} | {:.0} | {:.3} | {:.2} | {} |",
            p.depth,
            p.round,
            p.label,
            p.ops_s,
            p.mean_us,
            p.p99_us,
            p.srv_cpu_s,
            100.0 * p.srv_cpu_s / p.secs,
            p.cpu_per_mop,
            p.gen_cpu_s,
            p.forwarded
        );
    }
    println!();
    println!("remote / local, per round (remote phase vs the local phase just before it): median [min .. max]");
    for &depth in &depths {
        let pairs: Vec<(&Phase, &Phase)> = (1..=rounds)
            .map(|r| {
                let l = phases.iter().find(|p| p.depth == depth && p.round == r && p.label == "local").unwrap();
                let m = phases.iter().find(|p| p.depth == depth && p.round == r && p.label == "remote").unwrap();
                (l, m)
            })
            .collect();
        let metric = |name: &str, f: &dyn Fn(&Phase) -> f64| {
            let v: Vec<f64> = pairs.iter().map(|(l, r)| f(r) / f(l)).collect();
            let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let each: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
            println!(
                "  D={depth:<3} {name:<22} median {:.3} [{lo:.3} .. {hi:.3}]  rounds: {}",
                median(v.clone()),
                each.join(" ")
            );
        };
        metric("ops/s", &|p| p.ops_s);
        metric("mean batch latency", &|p| p.mean_us);
        metric("server CPU-s per Mop", &|p| p.cpu_per_mop);
    }
    println!();
    let total_misses: u64 = phases.iter().map(|p| p.misses).sum();
    println!("server get_hits {hits}, get_misses {miss} over the measured phases; client-seen misses {total_misses}");
    if miss > 0 || total_misses > 0 {
        println!("WARNING: misses after prefill");
    }
    drop(conns);
    drop(ctl);
    drop(server);
}
