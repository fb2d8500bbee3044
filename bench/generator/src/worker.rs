//! One load-generating thread: an epoll (level-triggered) event loop over
//! its non-blocking connections, each keeping up to `depth` requests in
//! flight, with a streaming parser for memcached text replies.
//!
//! Hot path rules: no allocation per request (buffers and the in-flight
//! ring are sized up front), one `write` per connection per loop turn, one
//! `read` per readable connection per loop turn.

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use hdrhistogram::Histogram;

use crate::keygen::{KeyGen, Rng, SeqState, slice};
use crate::{Config, Limit};

/// Monotonic clock in nanoseconds (vDSO, ~20 ns).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Live counters a worker publishes once per loop turn for the progress line
/// (single writer, so plain stores).
#[repr(align(64))]
#[derive(Default)]
pub struct Progress {
    pub ops: AtomicU64,
    pub lat_ns: AtomicU64,
    pub bytes: AtomicU64,
    /// Requests issued that count toward -n (request mode) / prefill keys set.
    pub issued: AtomicU64,
    pub done: AtomicBool,
}

/// Times shared by all workers (ns on `now_ns`'s clock), published by the
/// main thread after every worker has connected.
#[derive(Default)]
pub struct Times {
    pub start_ns: AtomicU64,
    pub measure_ns: AtomicU64,
    pub end_ns: AtomicU64,
}

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

pub struct TypeStats {
    pub ops: u64,
    pub lat_ns: u64,
    pub bytes: u64,
    /// Latency in microseconds.
    pub hist: Histogram<u64>,
}

impl TypeStats {
    fn new() -> TypeStats {
        TypeStats { ops: 0, lat_ns: 0, bytes: 0, hist: new_hist() }
    }
    pub fn merge(&mut self, o: &TypeStats) {
        self.ops += o.ops;
        self.lat_ns += o.lat_ns;
        self.bytes += o.bytes;
        self.hist.add(&o.hist).expect("histogram add");
    }
}

pub struct Stats {
    pub sets: TypeStats,
    pub gets: TypeStats,
    pub hits: u64,
    pub misses: u64,
    /// ERROR / CLIENT_ERROR / SERVER_ERROR replies.
    pub errors: u64,
    /// NOT_STORED / EXISTS / NOT_FOUND replies to sets.
    pub not_stored: u64,
    /// VALUE blocks whose payload or length failed --verify-data.
    pub verify_failures: u64,
    pub conn_errors: u64,
    /// send / recv system calls that moved data.
    pub sends: u64,
    pub recvs: u64,
    /// Completion time of the last measured reply.
    pub last_ns: u64,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            sets: TypeStats::new(),
            gets: TypeStats::new(),
            hits: 0,
            misses: 0,
            errors: 0,
            not_stored: 0,
            verify_failures: 0,
            conn_errors: 0,
            sends: 0,
            recvs: 0,
            last_ns: 0,
        }
    }
    pub fn merge(&mut self, o: &Stats) {
        self.sets.merge(&o.sets);
        self.gets.merge(&o.gets);
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
        self.not_stored += o.not_stored;
        self.verify_failures += o.verify_failures;
        self.conn_errors += o.conn_errors;
        self.sends += o.sends;
        self.recvs += o.recvs;
        self.last_ns = self.last_ns.max(o.last_ns);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Set every key of the connection's slice once, then finish.
    Prefill,
    Run,
}

#[derive(Clone, Copy, Default)]
struct Pending {
    send_ns: u64,
    /// Key of a single-key get (for --set-on-miss).
    key: u64,
    tx: u32,
    nkeys: u16,
    is_get: bool,
    measured: bool,
}

struct Conn {
    _stream: TcpStream,
    fd: i32,
    wbuf: Vec<u8>,
    wpos: usize,
    wblocked: bool,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Bytes a partially received VALUE block needs from `rpos`.
    need: usize,
    ring: Vec<Pending>,
    head: usize,
    len: usize,
    cur_hits: u32,
    cur_rx: u32,
    cycle: u64,
    set_seq: SeqState,
    get_seq: SeqState,
    /// Prefill cursor: next key and keys left in this connection's slice.
    pf_next: u64,
    pf_left: u64,
    issued_measured: u64,
    /// --set-on-miss: keys whose get missed, to be set before the next
    /// regular request (at most `depth` at a time: one per get in flight).
    miss_q: VecDeque<u64>,
    done: bool,
    dead: bool,
}

pub struct Worker {
    cfg: Arc<Config>,
    mode: Mode,
    depth: usize,
    epfd: i32,
    conns: Vec<Conn>,
    rng: Rng,
    set_keys: KeyGen,
    get_keys: KeyGen,
    /// Values are slices of this buffer (compressible filler or random bytes).
    values: Arc<Vec<u8>>,
    active: usize,
    pub stats: Stats,
    prog: Arc<Progress>,
    p_ops: u64,
    p_lat: u64,
    p_bytes: u64,
    p_issued: u64,
    measure_ns: u64,
    end_ns: u64,
}

/// Per-key offset into the filler buffer, so payloads are verifiable.
#[inline]
fn filler_offset(key: u64) -> usize {
    (key % 26) as usize
}

/// Build the shared value buffer: filler (a repeating alphabet; compressible
/// and verifiable per key) or random bytes.
pub fn make_values(cfg: &Config) -> Vec<u8> {
    if cfg.random_data {
        let mut rng = Rng::new(cfg.seed ^ 0x5eed);
        let n = cfg.size_max + 65536;
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    } else {
        (0..cfg.size_max + 32).map(|i| b'a' + (i % 26) as u8).collect()
    }
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v = 0u64;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as u64;
    }
    Some(v)
}

fn set_nonblocking_nodelay(s: &TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_nonblocking(true)
}

impl Worker {
    /// Connect `cfg.clients` connections for thread `tid`.
    pub fn new(
        cfg: Arc<Config>,
        mode: Mode,
        tid: usize,
        values: Arc<Vec<u8>>,
        prog: Arc<Progress>,
    ) -> io::Result<Worker> {
        let depth = match mode {
            Mode::Prefill => cfg.pipeline.max(32),
            Mode::Run => cfg.pipeline,
        };
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let total = (cfg.threads * cfg.clients) as u64;
        let key_room = cfg.prefix.len() + 21;
        let set_size = 40 + key_room + cfg.size_max;
        let get_size = 8 + cfg.multi_get * key_room;
        let wcap = depth * set_size.max(get_size) + 64;
        let rcap = (32 * 1024).max(4 * (cfg.size_max + key_room + 64) * cfg.multi_get.min(4));
        let mut conns = Vec::with_capacity(cfg.clients);
        for ci in 0..cfg.clients {
            let g = (tid * cfg.clients + ci) as u64;
            let stream = TcpStream::connect((cfg.host.as_str(), cfg.port))?;
            set_nonblocking_nodelay(&stream)?;
            let fd = stream.as_raw_fd();
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: ci as u64 };
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let (pf_lo, pf_hi) = slice(cfg.key_min, cfg.key_max, g, total);
            let pf_left = if pf_hi >= pf_lo && pf_hi != u64::MAX { pf_hi - pf_lo + 1 } else { 0 };
            conns.push(Conn {
                _stream: stream,
                fd,
                wbuf: Vec::with_capacity(wcap),
                wpos: 0,
                wblocked: false,
                rbuf: vec![0u8; rcap],
                rpos: 0,
                rend: 0,
                need: 0,
                ring: vec![Pending::default(); depth],
                head: 0,
                len: 0,
                cur_hits: 0,
                cur_rx: 0,
                cycle: 0,
                set_seq: SeqState::new(&cfg.set_pattern, cfg.key_min, cfg.key_max, g, total),
                get_seq: SeqState::new(&cfg.get_pattern, cfg.key_min, cfg.key_max, g, total),
                pf_next: pf_lo,
                pf_left,
                issued_measured: 0,
                miss_q: VecDeque::with_capacity(if cfg.set_on_miss { depth } else { 0 }),
                done: false,
                dead: false,
            });
        }
        let rng = Rng::new(cfg.seed.wrapping_add((tid as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let set_keys = KeyGen { pattern: cfg.set_pattern.clone(), min: cfg.key_min, max: cfg.key_max };
        let get_keys = KeyGen { pattern: cfg.get_pattern.clone(), min: cfg.key_min, max: cfg.key_max };
        let active = conns.len();
        Ok(Worker {
            cfg,
            mode,
            depth,
            epfd,
            conns,
            rng,
            set_keys,
            get_keys,
            values,
            active,
            stats: Stats::new(),
            prog,
            p_ops: 0,
            p_lat: 0,
            p_bytes: 0,
            p_issued: 0,
            measure_ns: 0,
            end_ns: u64::MAX,
        })
    }

    /// Run the event loop until the phase ends. `barrier` is passed twice:
    /// once after connecting (so the main thread can take the start time),
    /// once after the start time has been published in `times`.
    pub fn run(&mut self, barrier: &Barrier, times: &Times) {
        barrier.wait();
        barrier.wait();
        self.measure_ns = times.measure_ns.load(Ordering::Acquire);
        let end = times.end_ns.load(Ordering::Acquire);
        self.end_ns = if end == 0 { u64::MAX } else { end };
        let timed = self.mode == Mode::Run && matches!(self.cfg.limit, Limit::Time(_));

        if self.mode == Mode::Prefill {
            // More connections than keys: some have nothing to do.
            for c in &mut self.conns {
                if c.pf_left == 0 {
                    c.done = true;
                    self.active -= 1;
                }
            }
        }
        for ci in 0..self.conns.len() {
            self.pump(ci);
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; self.conns.len().max(1)];
        // Turn pacing: start a loop turn at most every `--poll-interval-us`,
        // sleeping (not spinning) for the rest of the interval. A fast client
        // that reacts to every reply fragment at once sends the server a
        // trickle of tiny writes and, blocked in epoll_wait, has to be woken
        // by the server for each reply (expensive IPIs on VMs); memcached
        // then spends up to ~1.5x the CPU per request. Pacing lets replies
        // and refills accumulate per turn, as they do in memtier (which is
        // simply slower per event). It can delay noticing a reply by up to
        // the interval, which bounds the added latency error.
        let interval_ns = self.cfg.poll_interval_us * 1000;
        if interval_ns > 0 {
            // Default timer slack (50 µs) would swamp short pauses.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
        }
        let mut turn_start = now_ns();
        // The pause is also capped at 1/8 of the recent mean reply latency,
        // so low-concurrency (ping-pong) runs are not slowed down by it.
        let (mut lat_ewma, mut seen_ops, mut seen_lat) = (0u64, 0u64, 0u64);
        loop {
            if self.p_ops > seen_ops {
                let l = (self.p_lat - seen_lat) / (self.p_ops - seen_ops);
                lat_ewma = if lat_ewma == 0 { l } else { (lat_ewma * 7 + l) / 8 };
                (seen_ops, seen_lat) = (self.p_ops, self.p_lat);
            }
            let pause = interval_ns.min(lat_ewma / 8);
            if pause > 0 {
                let target = turn_start + pause;
                let mut t = now_ns();
                if t + 2_000 < target {
                    let d = target - t;
                    let ts = libc::timespec { tv_sec: (d / 1_000_000_000) as _, tv_nsec: (d % 1_000_000_000) as _ };
                    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
                    t = now_ns();
                }
                turn_start = t;
            }
            let n = unsafe { libc::epoll_wait(self.epfd, events.as_mut_ptr(), events.len() as i32, 5) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("epoll_wait: {e}");
                break;
            }
            for ev in &events[..n as usize] {
                let (bits, ci) = (ev.events, ev.u64 as usize);
                if bits & (libc::EPOLLOUT as u32) != 0 {
                    self.flush(ci);
                }
                if bits & ((libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0 {
                    self.on_readable(ci);
                }
            }
            // Refill and send only after every reply of this turn has been
            // consumed, so the server sees a burst of requests per turn (as
            // with memtier/libevent) rather than a trickle of tiny writes.
            for ev in &events[..n as usize] {
                self.pump(ev.u64 as usize);
            }
            self.publish();
            if self.active == 0 {
                break;
            }
            if timed && now_ns() >= self.end_ns {
                break;
            }
        }
        self.publish();
        self.prog.done.store(true, Ordering::Release);
    }

    fn publish(&self) {
        self.prog.ops.store(self.p_ops, Ordering::Relaxed);
        self.prog.lat_ns.store(self.p_lat, Ordering::Relaxed);
        self.prog.bytes.store(self.p_bytes, Ordering::Relaxed);
        self.prog.issued.store(self.p_issued, Ordering::Relaxed);
    }

    /// Fill connection `ci`'s pipeline and send everything in one write.
    fn pump(&mut self, ci: usize) {
        let now = now_ns();
        let cfg = &*self.cfg;
        let c = &mut self.conns[ci];
        if c.dead || c.wblocked || c.done {
            return;
        }
        let measured = now >= self.measure_ns;
        let req_limit = match (self.mode, cfg.limit) {
            (Mode::Run, Limit::Requests(n)) => n,
            _ => u64::MAX,
        };
        while c.len < self.depth {
            let is_get;
            let start = c.wbuf.len();
            let nkeys;
            let mut req_key = 0;
            match self.mode {
                Mode::Prefill => {
                    if c.pf_left == 0 {
                        break;
                    }
                    let key = c.pf_next;
                    c.pf_next += 1;
                    c.pf_left -= 1;
                    self.p_issued += 1;
                    push_set(c, cfg, &self.values, &mut self.rng, key);
                    is_get = false;
                    nkeys = 1;
                }
                Mode::Run => {
                    if now >= self.end_ns {
                        break;
                    }
                    if let Some(key) = c.miss_q.pop_front() {
                        // Look-aside fill of a missed key: an extra set,
                        // outside -n and --ratio.
                        push_set(c, cfg, &self.values, &mut self.rng, key);
                        let slot = (c.head + c.len) % self.depth;
                        c.ring[slot] = Pending {
                            send_ns: now,
                            key,
                            tx: (c.wbuf.len() - start) as u32,
                            nkeys: 1,
                            is_get: false,
                            measured,
                        };
                        c.len += 1;
                        continue;
                    }
                    if measured {
                        if c.issued_measured >= req_limit {
                            break;
                        }
                        c.issued_measured += 1;
                        self.p_issued += 1;
                    }
                    let period = cfg.ratio_set + cfg.ratio_get + cfg.ratio_delete;
                    let slot = c.cycle % period;
                    c.cycle += 1;
                    if slot < cfg.ratio_set {
                        let key = self.set_keys.next(&mut self.rng, &mut c.set_seq);
                        push_set(c, cfg, &self.values, &mut self.rng, key);
                        is_get = false;
                        nkeys = 1;
                    } else if slot >= cfg.ratio_set + cfg.ratio_get {
                        // Counted with the sets (a one-line reply).
                        let key = self.get_keys.next(&mut self.rng, &mut c.get_seq);
                        c.wbuf.extend_from_slice(b"delete ");
                        c.wbuf.extend_from_slice(&cfg.prefix);
                        crate::push_u64(&mut c.wbuf, key);
                        c.wbuf.extend_from_slice(b"\r\n");
                        is_get = false;
                        nkeys = 1;
                    } else {
                        c.wbuf.extend_from_slice(b"get");
                        for _ in 0..cfg.multi_get {
                            let key = self.get_keys.next(&mut self.rng, &mut c.get_seq);
                            req_key = key;
                            c.wbuf.push(b' ');
                            c.wbuf.extend_from_slice(&cfg.prefix);
                            crate::push_u64(&mut c.wbuf, key);
                        }
                        c.wbuf.extend_from_slice(b"\r\n");
                        is_get = true;
                        nkeys = cfg.multi_get as u16;
                    }
                }
            }
            let slot = (c.head + c.len) % self.depth;
            c.ring[slot] =
                Pending { send_ns: now, key: req_key, tx: (c.wbuf.len() - start) as u32, nkeys, is_get, measured };
            c.len += 1;
        }
        self.flush(ci);
    }

    fn flush(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        if c.dead {
            return;
        }
        while c.wpos < c.wbuf.len() {
            let rest = &c.wbuf[c.wpos..];
            let n = unsafe { libc::send(c.fd, rest.as_ptr() as *const libc::c_void, rest.len(), libc::MSG_NOSIGNAL) };
            if n >= 0 {
                self.stats.sends += 1;
                c.wpos += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    if !c.wblocked {
                        c.wblocked = true;
                        let mut ev =
                            libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLOUT) as u32, u64: ci as u64 };
                        unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_MOD, c.fd, &mut ev) };
                    }
                    return;
                }
                _ => {
                    log::error!("send on connection {ci}: {e}");
                    self.kill(ci);
                    return;
                }
            }
        }
        c.wbuf.clear();
        c.wpos = 0;
        if c.wblocked {
            c.wblocked = false;
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: ci as u64 };
            unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_MOD, c.fd, &mut ev) };
        }
    }

    fn kill(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        if c.dead {
            return;
        }
        c.dead = true;
        self.stats.conn_errors += 1;
        unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, c.fd, std::ptr::null_mut()) };
        if !c.done {
            c.done = true;
            self.active -= 1;
        }
    }

    fn on_readable(&mut self, ci: usize) {
        {
            let c = &mut self.conns[ci];
            if c.dead {
                return;
            }
            if c.rpos == c.rend {
                c.rpos = 0;
                c.rend = 0;
            } else if c.rpos > 0
                && (c.rend - c.rpos <= 2048 || c.rbuf.len() - c.rend < 4096 || c.rpos + c.need > c.rbuf.len())
            {
                // Keep the leftover at the front so reads reuse the same few
                // cache lines instead of sweeping the whole buffer (50
                // connections x a big buffer would flush the shared L3 the
                // server also uses).
                c.rbuf.copy_within(c.rpos..c.rend, 0);
                c.rend -= c.rpos;
                c.rpos = 0;
            }
            if c.need > c.rbuf.len() {
                // A value larger than expected (e.g. written by another tool).
                let n = (c.need + 4096).next_power_of_two();
                c.rbuf.resize(n, 0);
            }
        }
        let c = &mut self.conns[ci];
        let room = &mut c.rbuf[c.rend..];
        let n = unsafe { libc::recv(c.fd, room.as_mut_ptr() as *mut libc::c_void, room.len(), 0) };
        if n == 0 {
            if !c.done || c.len > 0 {
                log::error!("connection {ci}: server closed the connection");
            }
            self.kill(ci);
            return;
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => return,
                _ => {
                    log::error!("recv on connection {ci}: {e}");
                    self.kill(ci);
                    return;
                }
            }
        }
        c.rend += n as usize;
        self.stats.recvs += 1;
        let done_ns = now_ns();
        if let Err(msg) = self.parse(ci, done_ns) {
            log::error!("connection {ci}: protocol error: {msg}");
            self.kill(ci);
        }
    }

    /// Consume every complete reply in connection `ci`'s read buffer.
    fn parse(&mut self, ci: usize, done_ns: u64) -> Result<(), String> {
        loop {
            let c = &mut self.conns[ci];
            if c.len == 0 {
                if c.rpos < c.rend {
                    return Err(format!(
                        "unexpected data with no request in flight: {:?}",
                        String::from_utf8_lossy(&c.rbuf[c.rpos..c.rend.min(c.rpos + 80)])
                    ));
                }
                break;
            }
            let buf = &c.rbuf[c.rpos..c.rend];
            if buf.is_empty() {
                break;
            }
            let p = c.ring[c.head];
            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > 8192 {
                    return Err("reply line longer than 8 KiB".into());
                }
                break;
            };
            let line = &buf[..=nl];
            if p.is_get {
                if line.starts_with(b"VALUE ") {
                    let body = line.strip_suffix(b"\r\n").ok_or("VALUE line without CRLF")?;
                    let mut f = body[6..].split(|&b| b == b' ');
                    let key = f.next().unwrap_or(b"");
                    let _flags = f.next();
                    let bytes = f
                        .next()
                        .and_then(parse_u64)
                        .ok_or_else(|| format!("bad VALUE line {:?}", String::from_utf8_lossy(body)))?
                        as usize;
                    let total = nl + 1 + bytes + 2;
                    if buf.len() < total {
                        c.need = total;
                        break;
                    }
                    if &buf[nl + 1 + bytes..total] != b"\r\n" {
                        return Err(format!("VALUE data of {bytes} bytes not followed by CRLF"));
                    }
                    if self.cfg.verify_data {
                        let cfg = &*self.cfg;
                        let data = &buf[nl + 1..nl + 1 + bytes];
                        let ok = bytes >= cfg.size_min
                            && bytes <= cfg.size_max
                            && key.starts_with(&cfg.prefix)
                            && parse_u64(&key[cfg.prefix.len()..]).is_some_and(|k| {
                                let o = filler_offset(k);
                                self.values[o..o + bytes] == *data
                            });
                        if !ok {
                            self.stats.verify_failures += 1;
                        }
                    }
                    c.need = 0;
                    c.cur_hits += 1;
                    c.cur_rx += total as u32;
                    c.rpos += total;
                    continue;
                }
                let rx = c.cur_rx + line.len() as u32;
                c.rpos += line.len();
                c.need = 0;
                let hits = c.cur_hits;
                c.cur_hits = 0;
                c.cur_rx = 0;
                if line == b"END\r\n" {
                    let misses = (p.nkeys as u32).saturating_sub(hits);
                    if self.cfg.set_on_miss && misses > 0 && self.mode == Mode::Run {
                        c.miss_q.push_back(p.key);
                    }
                    self.complete(ci, p, done_ns, rx, hits, misses);
                } else if is_error_line(line) {
                    self.stats.errors += 1;
                    self.complete(ci, p, done_ns, rx, 0, 0);
                } else {
                    return Err(format!("unexpected reply to get: {:?}", String::from_utf8_lossy(line)));
                }
            } else {
                let rx = line.len() as u32;
                c.rpos += line.len();
                if line == b"STORED\r\n" || line == b"DELETED\r\n" {
                } else if line == b"NOT_STORED\r\n" || line == b"EXISTS\r\n" || line == b"NOT_FOUND\r\n" {
                    self.stats.not_stored += 1;
                } else if is_error_line(line) {
                    self.stats.errors += 1;
                    if self.stats.errors <= 3 {
                        log::warn!("set failed: {:?}", String::from_utf8_lossy(line).trim_end());
                    }
                } else {
                    return Err(format!("unexpected reply to set: {:?}", String::from_utf8_lossy(line)));
                }
                self.complete(ci, p, done_ns, rx, 0, 0);
            }
        }
        Ok(())
    }

    #[inline]
    fn complete(&mut self, ci: usize, p: Pending, done_ns: u64, rx: u32, hits: u32, misses: u32) {
        let c = &mut self.conns[ci];
        c.head = (c.head + 1) % self.depth;
        c.len -= 1;
        let lat = done_ns.saturating_sub(p.send_ns);
        let bytes = (p.tx + rx) as u64;
        self.p_ops += 1;
        self.p_lat += lat;
        self.p_bytes += bytes;
        let recorded = match (self.mode, self.cfg.limit) {
            (Mode::Prefill, _) => false,
            (Mode::Run, Limit::Time(_)) => done_ns >= self.measure_ns && done_ns <= self.end_ns,
            (Mode::Run, Limit::Requests(_)) => p.measured,
        };
        if recorded {
            let t = if p.is_get { &mut self.stats.gets } else { &mut self.stats.sets };
            t.ops += 1;
            t.lat_ns += lat;
            t.bytes += bytes;
            t.hist.saturating_record(((lat + 500) / 1000).max(1));
            self.stats.hits += hits as u64;
            self.stats.misses += misses as u64;
            self.stats.last_ns = done_ns;
        }
        // Finished? (prefill: slice exhausted; -n: quota issued and answered)
        if c.len == 0 && !c.done {
            let finished = match (self.mode, self.cfg.limit) {
                (Mode::Prefill, _) => c.pf_left == 0,
                (Mode::Run, Limit::Requests(n)) => c.issued_measured >= n && c.miss_q.is_empty(),
                (Mode::Run, Limit::Time(_)) => false,
            };
            if finished {
                c.done = true;
                self.active -= 1;
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        unsafe { libc::close(self.epfd) };
    }
}

fn is_error_line(line: &[u8]) -> bool {
    line.starts_with(b"ERROR") || line.starts_with(b"SERVER_ERROR") || line.starts_with(b"CLIENT_ERROR")
}

#[inline]
fn push_set(c: &mut Conn, cfg: &Config, values: &[u8], rng: &mut Rng, key: u64) {
    if let Some(j) = &cfg.json {
        let len = j.len_for(key, cfg.size_min, cfg.size_max);
        let w = &mut c.wbuf;
        set_header(w, cfg, key, len);
        j.write(w, key, len);
        w.extend_from_slice(b"\r\n");
        return;
    }
    let len = if cfg.size_max > cfg.size_min {
        cfg.size_min + rng.below((cfg.size_max - cfg.size_min + 1) as u64) as usize
    } else {
        cfg.size_min
    };
    let off = if cfg.random_data { rng.below(65536) as usize } else { filler_offset(key) };
    let w = &mut c.wbuf;
    set_header(w, cfg, key, len);
    w.extend_from_slice(&values[off..off + len]);
    w.extend_from_slice(b"\r\n");
}

/// The value a set of `key` sends (for --print-values).
pub fn write_value(out: &mut Vec<u8>, cfg: &Config, values: &[u8], key: u64, rng: &mut Rng) {
    if let Some(j) = &cfg.json {
        j.write(out, key, j.len_for(key, cfg.size_min, cfg.size_max));
        return;
    }
    let len = cfg.size_min + rng.below((cfg.size_max - cfg.size_min + 1) as u64) as usize;
    let off = if cfg.random_data { rng.below(65536) as usize } else { filler_offset(key) };
    out.extend_from_slice(&values[off..off + len]);
}

#[inline]
fn set_header(w: &mut Vec<u8>, cfg: &Config, key: u64, len: usize) {
    w.extend_from_slice(b"set ");
    w.extend_from_slice(&cfg.prefix);
    crate::push_u64(w, key);
    w.extend_from_slice(b" 0 ");
    crate::push_u64(w, cfg.expiry as u64);
    w.push(b' ');
    crate::push_u64(w, len as u64);
    w.extend_from_slice(b"\r\n");
}
