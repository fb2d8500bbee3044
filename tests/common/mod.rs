//! Shared harness for the memcore integration tests.
//!
//! * `Server::start(threads, extra_args)` spawns the `memcore` binary with
//!   `-p 0` and learns the port it bound from its `--port-file` (or, when
//!   `MEMCORE_TEST_ADDR` is set, uses that already running server, e.g. a
//!   real memcached, and marks it external).
//! * `Server::start_custom(threads, args)` is for tests that need specific
//!   flags or need to own the process (kill it, restart it, flush it). Under
//!   `MEMCORE_TEST_ADDR` it returns `None` (the test prints a note and skips)
//!   unless `MEMCORE_TEST_MEMCACHED_BIN` names a memcached binary, which is
//!   then spawned with the same flags.
//! * `Conn` is a tiny raw-socket client that understands enough of the text
//!   protocol to know where a reply ends.
//!
//! Two ways to hold memcore against memcached, for two different questions:
//! * This suite run against memcached (`MEMCORE_TEST_ADDR`, and
//!   `MEMCORE_TEST_MEMCACHED_BIN` for the tests that own their server)
//!   checks the tests: the expected bytes written in them must be what
//!   memcached answers, so they are memcached's behaviour, not memcore's.
//! * tests/python/test_differential.py checks memcore where no test wrote an
//!   expectation: it sends the same bytes (odd inputs included) to both
//!   servers and requires the same replies.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Which program is answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// memcore spawned by the harness.
    Memcore,
    /// memcached spawned by the harness (MEMCORE_TEST_MEMCACHED_BIN).
    Memcached,
    /// Somebody else's server at MEMCORE_TEST_ADDR: shared, not ours to kill.
    External,
}

pub struct Server {
    pub addr: String,
    pub port: u16,
    pub kind: Kind,
    pub threads: usize,
    child: Option<Child>,
    pub log_path: Option<PathBuf>,
}

pub fn external_addr() -> Option<String> {
    std::env::var("MEMCORE_TEST_ADDR").ok().filter(|s| !s.is_empty())
}

pub fn memcached_bin() -> Option<String> {
    std::env::var("MEMCORE_TEST_MEMCACHED_BIN").ok().filter(|s| !s.is_empty())
}

pub fn memcore_bin() -> &'static str {
    env!("CARGO_BIN_EXE_memcore")
}

/// True when tests run against a server the harness did not spawn.
pub fn is_external() -> bool {
    external_addr().is_some()
}

/// A port that was free a moment ago: bound, read and dropped, so another
/// process may take it before the caller binds it. Only for replication
/// ports, which the peers must know before the server starts; client ports
/// come from `-p 0` and the port file.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A path in the temp dir that no other test (of any process) uses.
pub fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "memcore-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The `-p` value that asks `kind` for a free port: memcached reads `-p 0`
/// as "no TCP" and takes `-p -1` for "any port" (its own test suite's way).
pub fn any_port(kind: Kind) -> &'static str {
    if kind == Kind::Memcached { "-1" } else { "0" }
}

/// Ask `cmd` for a free port, told in the file at `path`: memcore's
/// `--port-file`, or memcached's MEMCACHED_PORT_FILENAME (same format).
pub fn ask_for_any_port(cmd: &mut Command, kind: Kind, path: &std::path::Path) {
    cmd.arg("-p").arg(any_port(kind));
    if kind == Kind::Memcached {
        cmd.env("MEMCACHED_PORT_FILENAME", path);
    } else {
        cmd.arg("--port-file").arg(path);
    }
}

/// Wait for the port file at `path` (written, whole, once the server
/// listens) and return its first TCP port. Err if `child` exits first or
/// nothing comes within `limit`.
pub fn read_port_file(path: &std::path::Path, child: &mut Child, limit: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(port) =
                text.lines().find_map(|l| l.strip_prefix("TCP INET")?.split(": ").nth(1)?.trim().parse().ok())
        {
            return Ok(port);
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("server exited at start with {st}"));
        }
        if Instant::now() > deadline {
            return Err(format!("no port file {} after {limit:?}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Server {
    /// Server for behaviour tests: the external one if MEMCORE_TEST_ADDR is
    /// set, else a freshly spawned memcore with `-t threads` plus extra_args.
    pub fn start(threads: usize, extra_args: &[&str]) -> Server {
        if let Some(addr) = external_addr() {
            let port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
            return Server { addr, port, kind: Kind::External, threads, child: None, log_path: None };
        }
        Self::spawn(memcore_bin(), Kind::Memcore, threads, extra_args)
    }

    /// Server that this test owns (may be killed/flushed/configured). None when
    /// running against an external server and no memcached binary is given.
    pub fn start_custom(threads: usize, extra_args: &[&str]) -> Option<Server> {
        if is_external() {
            memcached_bin().map(|bin| Self::spawn(&bin, Kind::Memcached, threads, extra_args))
        } else {
            Some(Self::spawn(memcore_bin(), Kind::Memcore, threads, extra_args))
        }
    }

    /// Like start_custom but prints a skip note when None.
    pub fn start_custom_or_skip(test: &str, threads: usize, extra_args: &[&str]) -> Option<Server> {
        let s = Self::start_custom(threads, extra_args);
        if s.is_none() {
            eprintln!(
                "SKIP {test}: needs its own server (MEMCORE_TEST_ADDR is set; set MEMCORE_TEST_MEMCACHED_BIN to spawn memcached)"
            );
        }
        s
    }

    /// The binary that `start_custom` would spawn, with its kind.
    pub fn custom_bin() -> Option<(String, Kind)> {
        if is_external() {
            memcached_bin().map(|b| (b, Kind::Memcached))
        } else {
            Some((memcore_bin().to_string(), Kind::Memcore))
        }
    }

    /// Start `bin` on a free port (`-p 0`, or memcached's `-p -1`) and learn
    /// the port from its port file. The port listens once the file exists:
    /// connections made from then on wait in the backlog until the server
    /// accepts them, so no readiness probe is needed.
    ///
    /// A start that fails because a port given in `extra_args` (a
    /// replication port from `free_port`, or the port of a node restarted
    /// after kill -9, which the kernel frees a few ms after the process dies)
    /// is still in use is retried for up to 3 s.
    pub fn spawn(bin: &str, kind: Kind, threads: usize, extra_args: &[&str]) -> Server {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match Self::try_spawn(bin, kind, threads, extra_args) {
                Ok(s) => return s,
                Err(log) if log.contains("already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(log) => panic!("server {bin} did not start: {log}"),
            }
        }
    }

    fn try_spawn(bin: &str, kind: Kind, threads: usize, extra_args: &[&str]) -> Result<Server, String> {
        let log_path = temp_path("log");
        let port_path = temp_path("port");
        let log = std::fs::File::create(&log_path).expect("create server log");
        let mut cmd = Command::new(bin);
        ask_for_any_port(&mut cmd, kind, &port_path);
        cmd.arg("-l")
            .arg("127.0.0.1")
            .arg("-U")
            .arg("0")
            .arg("-t")
            .arg(threads.to_string())
            .arg("-u")
            .arg("root")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {bin}: {e}"));
        let port = read_port_file(&port_path, &mut child, Duration::from_secs(10));
        // memcached leaves its port file behind; memcore removes its own.
        let _ = std::fs::remove_file(&port_path);
        let mut srv =
            Server { addr: String::new(), port: 0, kind, threads, child: Some(child), log_path: Some(log_path) };
        match port {
            Ok(port) => {
                srv.addr = format!("127.0.0.1:{port}");
                srv.port = port;
                Ok(srv)
            }
            Err(e) => Err(format!("{e}; log: {}", srv.log())),
        }
    }

    /// memcore listening on a UNIX socket only (`-s`, TCP off), with
    /// `-t threads` and `extra_args`; `addr` is `unix:PATH`.
    pub fn start_unix(threads: usize, extra_args: &[&str]) -> Server {
        let path = temp_path("sock");
        let log_path = temp_path("log");
        let log = std::fs::File::create(&log_path).expect("create server log");
        let mut child = Command::new(memcore_bin())
            .arg("-s")
            .arg(&path)
            .args(["-t", &threads.to_string(), "-u", "root"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let up = poll_until(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&path).is_ok() || child.try_wait().ok().flatten().is_some()
        });
        let srv = Server {
            addr: format!("unix:{}", path.display()),
            port: 0,
            kind: Kind::Memcore,
            threads,
            child: Some(child),
            log_path: Some(log_path),
        };
        assert!(up && std::os::unix::net::UnixStream::connect(&path).is_ok(), "no UNIX socket: {}", srv.log());
        srv
    }

    pub fn log(&self) -> String {
        self.log_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn is_external(&self) -> bool {
        self.kind == Kind::External
    }

    /// Spawned memcore (not memcached, not external).
    pub fn is_memcore(&self) -> bool {
        self.kind == Kind::Memcore
    }

    pub fn owned(&self) -> bool {
        self.kind != Kind::External
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(&self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.pid().expect("signal: not a spawned server");
        let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(r, 0, "kill({pid}, {sig}) failed");
    }

    /// Wait up to `limit` for the spawned server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("not a spawned server");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            match c.try_wait() {
                Ok(None) => {
                    let _ = c.kill();
                }
                // A server that died under a test explains resets and
                // missing replies better than the test's own message.
                Ok(Some(st)) if std::thread::panicking() => eprintln!("the server had already exited: {st}"),
                _ => {}
            }
            let _ = c.wait();
        }
        if let Some(p) = self.log_path.take() {
            if !std::thread::panicking() {
                let _ = std::fs::remove_file(p);
            } else {
                eprintln!("server log kept at {}", p.display());
            }
        }
    }
}

/// Resident memory of process `pid`, in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// A unique key prefix for this test (tests share an external server).
pub fn uniq(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    format!("{name}:{:x}{:x}:{}:", std::process::id(), nanos & 0xffff_ffff, N.fetch_add(1, Ordering::Relaxed))
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Show bytes readably in assertion messages.
pub fn show(b: &[u8]) -> String {
    let mut s = String::new();
    let lim = b.len().min(600);
    for &c in &b[..lim] {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > lim {
        s.push_str(&format!("...({} bytes total)", b.len()));
    }
    s
}

#[macro_export]
macro_rules! assert_bytes {
    ($got:expr, $want:expr) => {{
        match (&$got, &$want) {
            (g, w) => {
                let g: &[u8] = &g[..];
                let w: &[u8] = &w[..];
                if g != w {
                    panic!("reply mismatch\n  got:  {}\n  want: {}", $crate::common::show(g), $crate::common::show(w));
                }
            }
        }
    }};
    ($got:expr, $want:expr, $($ctx:tt)+) => {{
        match (&$got, &$want) {
            (g, w) => {
                let g: &[u8] = &g[..];
                let w: &[u8] = &w[..];
                if g != w {
                    panic!("reply mismatch ({})\n  got:  {}\n  want: {}", format!($($ctx)+), $crate::common::show(g), $crate::common::show(w));
                }
            }
        }
    }};
}

pub fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if !from.is_empty() && hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// A client socket: TCP, or a UNIX socket (`-s`; an address `unix:PATH`).
pub enum Stream {
    Tcp(TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    pub fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
    pub fn set_write_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }
    pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
    pub fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Conn {
    pub stream: Stream,
    buf: Vec<u8>,
    pos: usize,
}

impl Conn {
    pub fn connect(addr: &str) -> Conn {
        if let Some(path) = addr.strip_prefix("unix:") {
            let s = std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            return Conn { stream: Stream::Unix(s), buf: Vec::new(), pos: 0 };
        }
        let deadline = Instant::now() + IO_TIMEOUT;
        let stream = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() > deadline {
                        panic!("connect {addr}: {e}");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        Self::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn { stream: Stream::Tcp(stream), buf: Vec::new(), pos: 0 }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.stream.write_all(b).unwrap_or_else(|e| panic!("send failed: {e}"));
    }

    /// Unread buffered bytes.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Read more bytes into the buffer; returns how many (0 = EOF). Panics
    /// on timeout.
    fn fill(&mut self) -> usize {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut tmp = [0u8; 65536];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    panic!("timed out waiting for server reply; unread so far: {}", show(self.pending()))
                }
                Err(e) => panic!("read error: {e}; unread so far: {}", show(self.pending())),
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let v = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        v
    }

    /// Read exactly n bytes.
    pub fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() - self.pos < n {
            if self.fill() == 0 {
                panic!("EOF after {} of {n} bytes: {}", self.buf.len() - self.pos, show(self.pending()));
            }
        }
        self.take(n)
    }

    /// Read up to and including `term`.
    pub fn read_until(&mut self, term: &[u8]) -> Vec<u8> {
        // `rel` is an offset from self.pos (fill() may compact the buffer)
        let mut rel = 0;
        loop {
            if let Some(i) = find(&self.buf[self.pos + rel..], term) {
                let n = rel + i + term.len();
                return self.take(n);
            }
            rel = (self.buf.len() - self.pos).saturating_sub(term.len() - 1);
            if self.fill() == 0 {
                panic!("EOF before {:?}; unread: {}", show(term), show(self.pending()));
            }
        }
    }

    pub fn read_line(&mut self) -> Vec<u8> {
        self.read_until(b"\r\n")
    }

    /// Read one complete reply: a single line, or VALUE blocks up to END,
    /// or STAT lines up to END.
    pub fn read_reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.read_line();
            out.extend_from_slice(&line);
            if line.starts_with(b"VALUE ") {
                let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                let parts: Vec<&str> = text.split(' ').collect();
                let len: usize =
                    parts.get(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad VALUE header {text:?}"));
                let data = self.read_exact_n(len + 2);
                out.extend_from_slice(&data);
                continue;
            }
            if line.starts_with(b"STAT ") {
                continue;
            }
            return out;
        }
    }

    pub fn read_replies(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend(self.read_reply());
        }
        out
    }

    /// Send a single request and read its single reply.
    pub fn request(&mut self, b: &[u8]) -> Vec<u8> {
        self.send(b);
        self.read_reply()
    }

    /// Send bytes and read `n` replies.
    pub fn request_n(&mut self, b: &[u8], n: usize) -> Vec<u8> {
        self.send(b);
        self.read_replies(n)
    }

    /// Assert nothing else arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        assert!(self.pending().is_empty(), "unexpected extra bytes: {}", show(self.pending()));
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut tmp = [0u8; 4096];
        let r = self.stream.read(&mut tmp);
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        match r {
            Ok(0) => panic!("connection closed unexpectedly"),
            Ok(n) => panic!("unexpected extra bytes: {}", show(&tmp[..n])),
            Err(_) => {}
        }
    }

    /// Read until the server closes the connection (EOF or reset). Returns
    /// everything read. Panics if it stays open for IO_TIMEOUT.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = self.pending().to_vec();
        self.pos = self.buf.len();
        let mut tmp = [0u8; 65536];
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    panic!("server did not close the connection; got so far: {}", show(&out))
                }
                Err(_) => return out, // reset counts as closed
            }
            if Instant::now() > deadline {
                panic!("server did not close the connection; got so far: {}", show(&out));
            }
        }
    }

    pub fn version_check(&mut self) {
        let v = self.request(b"version\r\n");
        assert!(v.starts_with(b"VERSION ") && v.ends_with(b"\r\n"), "bad version reply {}", show(&v));
    }

    /// `stats [sub]` parsed into name -> value.
    pub fn stats(&mut self, cmd: &str) -> HashMap<String, String> {
        let r = self.request(format!("{cmd}\r\n").as_bytes());
        parse_stats(&r)
    }
}

pub fn parse_stats(r: &[u8]) -> HashMap<String, String> {
    assert!(r.ends_with(b"END\r\n"), "stats reply does not end with END: {}", show(r));
    let text = String::from_utf8_lossy(r);
    let mut m = HashMap::new();
    for line in text.split("\r\n") {
        if let Some(rest) = line.strip_prefix("STAT ") {
            let mut it = rest.splitn(2, ' ');
            let k = it.next().unwrap_or("").to_string();
            let v = it.next().unwrap_or("").to_string();
            m.insert(k, v);
        }
    }
    m
}

pub fn stat_u64(m: &HashMap<String, String>, k: &str) -> u64 {
    m.get(k)
        .unwrap_or_else(|| panic!("stat {k} missing"))
        .parse()
        .unwrap_or_else(|_| panic!("stat {k} not a number: {:?}", m.get(k)))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Expected reply for a get hit.
pub fn value(key: &str, flags: u32, data: &[u8]) -> Vec<u8> {
    let mut v = format!("VALUE {key} {flags} {}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// Build a storage command.
pub fn store_cmd(cmd: &str, key: &str, flags: u32, exp: i64, data: &[u8]) -> Vec<u8> {
    let mut v = format!("{cmd} {key} {flags} {exp} {}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// Poll `f` until it returns true or `limit` passes.
pub fn poll_until(limit: Duration, f: impl FnMut() -> bool) -> bool {
    poll_every(limit, Duration::from_millis(50), f)
}

/// Poll `f` every `interval` until it returns true or `limit` passes.
pub fn poll_every(limit: Duration, interval: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(interval);
    }
}

/// Small deterministic PRNG (xorshift64*).
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Generates `#[test] fn t1` and `#[test] fn t2` in a module named after a
/// behaviour function `fn name(s: &Server)`, running it against -t 1 / -t 2.
#[macro_export]
macro_rules! both_threads {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn t1() {
                    let s = $crate::common::Server::start(1, &[]);
                    super::$name(&s);
                }
                #[test]
                fn t2() {
                    let s = $crate::common::Server::start(2, &[]);
                    super::$name(&s);
                }
            }
        )*
    };
}

/// Start memcore with `-p 0 -l 127.0.0.1 -u root --port-file F` and exactly
/// `args` (no `-t` from the harness); returns the child, its port and the
/// path of its log (stdout and stderr).
pub fn start_plain(args: &[&str]) -> (Child, u16, PathBuf) {
    let port_path = temp_path("port");
    let log_path = temp_path("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(memcore_bin())
        .args(["-p", "0", "-l", "127.0.0.1", "-u", "root", "--port-file"])
        .arg(&port_path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let port = read_port_file(&port_path, &mut child, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{args:?}: {e}; log: {}", std::fs::read_to_string(&log_path).unwrap_or_default()));
    (child, port, log_path)
}

/// How a process run to its end ended, and what it printed.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Run `bin args` to completion, capturing its output; one still running
/// after `limit` is killed and fails the test.
pub fn run_to_exit(bin: &str, args: &[&str], limit: Duration) -> Outcome {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} {args:?} still running after {limit:?} (expected it to exit)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    Outcome { status, stdout, stderr }
}

/// False (after a SKIP line) when the suite runs against an external
/// server: the test needs to start memcore itself.
pub fn memcore_only(test: &str) -> bool {
    if is_external() {
        eprintln!("SKIP {test}: memcore-specific (MEMCORE_TEST_ADDR is set)");
        return false;
    }
    true
}
