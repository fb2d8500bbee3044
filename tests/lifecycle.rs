//! Process lifecycle and command-line flags. These tests spawn their own
//! server; under MEMCORE_TEST_ADDR they skip unless MEMCORE_TEST_MEMCACHED_BIN
//! is set (then the memcached binary is spawned, with flag values adjusted
//! where memcached needs it).

#[macro_use]
mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn signal_exits_cleanly(sig: i32, name: &str) {
    let Some(mut s) = Server::start_custom_or_skip(name, 2, &[]) else { return };
    // idle connections, one of them in the middle of a command
    let mut conns: Vec<Conn> = (0..5).map(|_| s.conn()).collect();
    conns[0].version_check();
    let mut sc = s.conn();
    let read = |sc: &mut Conn| stat_u64(&sc.stats("stats"), "bytes_read");
    let before = read(&mut sc);
    conns[1].send(b"set half 0 0 10\r\nabc");
    conns[2].send(b"get a b");
    // The halves have arrived once the server read their 27 bytes (and
    // the 7 of each `stats` asking).
    let mut asked = 0;
    let arrived = poll_every(Duration::from_secs(2), Duration::from_millis(5), || {
        asked += 1;
        read(&mut sc) >= before + 27 + 7 * asked
    });
    assert!(arrived, "the half requests were not read");
    drop(sc);
    let t0 = Instant::now();
    s.signal(sig);
    let st = s.wait_exit(Duration::from_secs(2));
    let st = st.unwrap_or_else(|| panic!("server did not exit within 2 s of signal {sig}; log: {}", s.log()));
    assert!(st.success(), "exit status {st} after signal {sig}; log: {}", s.log());
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(!s.log().contains("panicked"), "log: {}", s.log());
    drop(conns);
}

#[test]
fn sigterm_exits_zero() {
    signal_exits_cleanly(libc::SIGTERM, "sigterm_exits_zero");
}

#[test]
fn sigint_exits_zero() {
    signal_exits_cleanly(libc::SIGINT, "sigint_exits_zero");
}

#[test]
fn sigterm_under_load_exits_zero() {
    let Some(mut s) = Server::start_custom_or_skip("sigterm_under_load_exits_zero", 2, &[]) else { return };
    let addr = s.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..4 {
        let addr = addr.clone();
        let stop = stop.clone();
        hs.push(std::thread::spawn(move || {
            use std::io::Write;
            let Ok(mut st) = std::net::TcpStream::connect(&addr) else { return };
            let _ = st.set_write_timeout(Some(Duration::from_secs(1)));
            let req = store_cmd("set", &format!("load{t}"), 0, 0, &[b'x'; 500]);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if st.write_all(&req).is_err() {
                    return;
                }
            }
        }));
    }
    // The signal must land while the sets stream in.
    let mut stats = s.conn();
    let loaded = poll_until(Duration::from_secs(5), || stat_u64(&stats.stats("stats"), "cmd_set") >= 1000);
    assert!(loaded, "the load did not start");
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hs {
        let _ = h.join();
    }
    let st = st.unwrap_or_else(|| panic!("server did not exit within 2 s under load; log: {}", s.log()));
    assert!(st.success(), "exit status {st}; log: {}", s.log());
}

#[test]
fn bad_flags_fail_cleanly() {
    if !memcore_only("bad_flags_fail_cleanly") {
        return;
    }
    let bin = memcore_bin();
    // Each case fails before it binds; should one start, it takes a free port.
    let port = "0";
    let cases: Vec<Vec<&str>> = vec![
        vec!["-m", "abc", "-p", port, "-U", "0"],
        vec!["--bogus", "-p", port, "-U", "0"],
        vec!["-U", "1", "-p", port],
        vec!["-p", "99999", "-U", "0"],
        vec!["-t", "0", "-p", port, "-U", "0"],
        vec!["-c", "abc", "-p", port, "-U", "0"],
    ];
    for case in cases {
        let mut args = vec!["-l", "127.0.0.1", "-u", "root"];
        args.extend(case.iter().copied());
        let o = run_to_exit(bin, &args, Duration::from_secs(5));
        assert!(!o.status.success(), "{args:?} exited with success");
        assert!(!o.stderr.contains("panicked"), "{args:?} panicked: {}", o.stderr);
        let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: expected one line on stderr, got {:?}", o.stderr);
    }
}

#[test]
fn port_in_use_fails() {
    let Some((bin, _kind)) = Server::custom_bin() else {
        eprintln!("SKIP port_in_use_fails: needs a binary to spawn");
        return;
    };
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let o = run_to_exit(&bin, &["-p", &port, "-l", "127.0.0.1", "-U", "0", "-u", "root"], Duration::from_secs(5));
    assert!(!o.status.success(), "started on a port in use");
    assert!(!o.stderr.trim().is_empty(), "no error message on stderr");
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    drop(l);
}

#[test]
fn root_without_u_refused() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP root_without_u_refused: not running as root");
        return;
    }
    let Some((bin, kind)) = Server::custom_bin() else {
        eprintln!("SKIP root_without_u_refused: needs a binary to spawn");
        return;
    };
    let o = run_to_exit(&bin, &["-p", any_port(kind), "-l", "127.0.0.1", "-U", "0"], Duration::from_secs(5));
    assert!(!o.status.success(), "ran as root without -u");
    assert!(!o.stderr.trim().is_empty());
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
}

#[test]
fn version_flag() {
    let Some((bin, _)) = Server::custom_bin() else {
        eprintln!("SKIP version_flag: needs a binary to spawn");
        return;
    };
    let o = run_to_exit(&bin, &["-V"], Duration::from_secs(5));
    assert!(o.status.success(), "-V exit {}", o.status);
    let line = o.stdout.trim();
    assert!(!line.is_empty() && !line.contains('\n'), "-V output {:?}", o.stdout);
    assert!(line.chars().any(|c| c.is_ascii_digit()), "-V output has no version number: {line:?}");
}

#[test]
fn pidfile_written() {
    let path = temp_path("pid");
    let ps = path.to_str().unwrap().to_string();
    let Some(s) = Server::start_custom_or_skip("pidfile_written", 1, &["-P", &ps]) else { return };
    let ok = poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&path).map(|t| t.trim() == s.pid().unwrap().to_string()).unwrap_or(false)
    });
    let content = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    assert!(ok, "pid file {ps} holds {content:?}, want {}", s.pid().unwrap());
}

/// Issue 17 #7: the pid file replaces a symlink planted at its path instead
/// of writing through it, and a start that fails leaves no pid file behind.
#[test]
fn pidfile_replaces_a_planted_symlink_and_a_failed_start_leaves_none() {
    if !memcore_only("pidfile_replaces_a_planted_symlink_and_a_failed_start_leaves_none") {
        return;
    }
    let dir = temp_path("piddir");
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let path = dir.join("memcore.pid");
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let ps = path.to_str().unwrap().to_string();
    {
        let s = Server::start(1, &["-P", &ps]);
        let pid = s.pid().unwrap().to_string();
        assert!(poll_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == pid)
        }));
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // The harness kills its server, which leaves the file behind.
        let _ = std::fs::remove_file(&path);
        let o = run_to_exit(memcore_bin(), &["-p", "0", "-u", "no-such-user-here", "-P", &ps], Duration::from_secs(10));
        assert_eq!(o.status.code(), Some(71), "stderr: {}", o.stderr);
        assert!(!path.exists(), "a failed start left its pid file");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-p 0` takes a free port and tells it: in the port file (which the
/// harness reads), in the startup line and in `stats settings`.
#[test]
fn port_zero_is_told_in_the_log_and_stats() {
    if !memcore_only("port_zero_is_told_in_the_log_and_stats") {
        return;
    }
    let s = Server::start(2, &[]);
    assert_ne!(s.port, 0);
    let line = format!("listening on 127.0.0.1:{} ", s.port);
    assert!(poll_until(Duration::from_secs(5), || s.log().contains(&line)), "no {line:?} in the log: {}", s.log());
    let settings = s.conn().stats("stats settings");
    assert_eq!(settings.get("tcpport"), Some(&s.port.to_string()));
}

#[test]
fn max_connections() {
    // memcached reserves descriptors for itself: with -t 1, -c 16 leaves room
    // for exactly 3 clients. memcore's -c counts client connections.
    let kind = match Server::custom_bin() {
        Some((_, k)) => k,
        None => {
            eprintln!("SKIP max_connections: needs its own server");
            return;
        }
    };
    let c_arg = if kind == Kind::Memcached { "16" } else { "3" };
    let s = Server::start_custom(1, &["-c", c_arg]).unwrap();
    let mut conns: Vec<Conn> = (0..3).map(|_| s.conn()).collect();
    for c in conns.iter_mut() {
        c.version_check();
    }
    let mut fourth = s.conn();
    assert_bytes!(fourth.read_to_close(), b"ERROR Too many open connections\r\n");
    // the first three still work
    for c in conns.iter_mut() {
        c.version_check();
    }
    // freeing one slot lets a new client in
    drop(conns.pop());
    let ok = poll_until(Duration::from_secs(3), || {
        let mut c = s.conn();
        c.send(b"version\r\n");
        let r = c.read_to_close_or_reply();
        r.starts_with(b"VERSION ")
    });
    assert!(ok, "a slot freed by a closed connection was not reused");
}

trait ReplyOrClose {
    fn read_to_close_or_reply(&mut self) -> Vec<u8>;
}
impl ReplyOrClose for Conn {
    /// Read one line, or whatever arrives before the server closes.
    fn read_to_close_or_reply(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let mut out = Vec::new();
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return out,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.ends_with(b"\r\n") {
                        return out;
                    }
                }
            }
        }
    }
}

#[test]
fn flush_disabled() {
    let Some(s) = Server::start_custom_or_skip("flush_disabled", 1, &["-F"]) else { return };
    let mut c = s.conn();
    assert_bytes!(c.request(&store_cmd("set", "k", 0, 0, b"v")), b"STORED\r\n");
    assert_bytes!(c.request(b"flush_all\r\n"), b"CLIENT_ERROR flush_all not allowed\r\n");
    assert_bytes!(c.request(b"flush_all 0\r\n"), b"CLIENT_ERROR flush_all not allowed\r\n");
    // noreply silences the error too
    c.send(b"flush_all noreply\r\n");
    c.version_check();
    assert_bytes!(c.request(b"get k\r\n"), [value("k", 0, b"v"), b"END\r\n".to_vec()].concat());
}

#[test]
fn cas_disabled() {
    let Some(s) = Server::start_custom_or_skip("cas_disabled", 2, &["-C"]) else { return };
    let mut c = s.conn();
    assert_bytes!(c.request(&store_cmd("set", "k", 3, 0, b"v")), b"STORED\r\n");
    assert_bytes!(c.request(b"gets k\r\n"), b"VALUE k 3 1 0\r\nv\r\nEND\r\n");
    assert_bytes!(c.request(b"gats 0 k\r\n"), b"VALUE k 3 1 0\r\nv\r\nEND\r\n");
    // with CAS disabled every cas command fails, even with the advertised 0
    assert_bytes!(c.request(b"cas k 0 0 1 0\r\nw\r\n"), b"EXISTS\r\n");
    assert_bytes!(c.request(b"cas k 0 0 1 1\r\nw\r\n"), b"EXISTS\r\n");
    assert_bytes!(c.request(b"cas nokey 0 0 1 0\r\nw\r\n"), b"NOT_FOUND\r\n");
    assert_bytes!(c.request(b"get k\r\n"), b"VALUE k 3 1\r\nv\r\nEND\r\n");
    // other commands unaffected
    assert_bytes!(c.request(&store_cmd("set", "n", 0, 0, b"1")), b"STORED\r\n");
    assert_bytes!(c.request(b"incr n 1\r\n"), b"2\r\n");
    assert_bytes!(c.request(b"gets n\r\n"), b"VALUE n 0 1 0\r\n2\r\nEND\r\n");
}

#[test]
fn no_evict_out_of_memory() {
    let Some((_, kind)) = Server::custom_bin() else {
        eprintln!("SKIP no_evict_out_of_memory: needs its own server");
        return;
    };
    // memcached (and memcore, mirroring it) refuses -m 1 with the default
    // 1 MiB item size limit (-I must be at most half of -m)
    let _ = kind;
    let s = Server::start_custom(1, &["-M", "-m", "1", "-I", "512k"]).unwrap();
    let mut c = s.conn();
    // Incompressible, so that memcore's compression does not stretch -m.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<u8> = (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut refused_at = None;
    for i in 0..20_000 {
        let r = c.request(&store_cmd("set", &format!("mk{i}"), 0, 0, &data));
        if r == b"STORED\r\n" {
            continue;
        }
        assert_bytes!(r, b"SERVER_ERROR out of memory storing object\r\n", "set #{i}");
        refused_at = Some(i);
        break;
    }
    let n = refused_at.expect("-M -m 1 never ran out of memory after 20000 x 1000-byte sets (evicting?)");
    assert!(n > 100, "ran out of memory after only {n} items");
    // nothing was evicted
    for i in [0, n / 2, n - 1] {
        assert_bytes!(
            c.request(format!("get mk{i}\r\n").as_bytes()),
            [value(&format!("mk{i}"), 0, &data), b"END\r\n".to_vec()].concat()
        );
    }
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "evictions"), 0);
    // deleting makes room again
    for i in 0..200 {
        c.request(format!("delete mk{i}\r\n").as_bytes());
    }
    assert_bytes!(c.request(&store_cmd("set", "again", 0, 0, &data)), b"STORED\r\n");
}

/// As root with `-u nobody`: binds, then serves as nobody; and an
/// unprivileged user with the usual 8 MiB RLIMIT_MEMLOCK can run it at all
/// (glommio's registered buffers would not fit by default).
#[test]
fn runs_unprivileged_with_default_memlock() {
    if !memcore_only("runs_unprivileged_with_default_memlock") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP runs_unprivileged_with_default_memlock: needs root to switch users");
        return;
    }
    use std::os::unix::process::CommandExt;
    // The binary must be readable by nobody wherever the checkout lives.
    let bin = std::env::temp_dir().join(format!("memcore-unpriv-{}", std::process::id()));
    std::fs::copy(memcore_bin(), &bin).unwrap();
    // The port file is written as nobody, so in a directory nobody may write.
    let port_file = temp_path("port");
    let mut cmd = Command::new(&bin);
    cmd.args(["-p", "0", "--port-file", port_file.to_str().unwrap(), "-l", "127.0.0.1", "-t", "2", "-u", "nobody"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 8 << 20, rlim_max: 8 << 20 };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let port = read_port_file(&port_file, &mut child, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Conn::connect(&format!("127.0.0.1:{port}"));
    assert_eq!(show(&c.request(b"set unpriv 0 0 2\r\nok\r\n")), "STORED\\r\\n");
    assert_eq!(show(&c.request(b"get unpriv\r\n")), "VALUE unpriv 0 2\\r\\nok\\r\\nEND\\r\\n");
    // The executors start only after the switch of user, so check once one
    // has answered.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exit = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let _ = std::fs::remove_file(&bin);
    assert!(uid_line.split_whitespace().nth(1) != Some("0"), "still root: {uid_line}");
    assert!(exit.success(), "exit {exit:?}, stderr: {stderr}");
    assert!(!stderr.contains("WARN") && !stderr.contains("rror"), "warnings at start: {stderr}");
}

/// SIGHUP (a closed terminal, or a request to reload -Y and -Z files)
/// neither stops the server nor loses data.
#[test]
fn sighup_is_ignored() {
    if !memcore_only("sighup_is_ignored") {
        return;
    }
    let Some(mut s) = Server::start_custom_or_skip("sighup_is_ignored", 2, &[]) else { return };
    let mut c = s.conn();
    assert_bytes!(c.request(&store_cmd("set", "hup", 0, 0, b"kept")), b"STORED\r\n");
    let pid = s.pid().expect("own server");
    s.signal(libc::SIGHUP);
    // Once no thread has it pending, the kernel has dealt with it (a
    // fatal one would have begun to end the process by then).
    assert!(poll_every(Duration::from_secs(2), Duration::from_millis(5), || !signal_pending(pid, libc::SIGHUP)));
    assert_bytes!(c.request(b"get hup\r\n"), b"VALUE hup 0 4\r\nkept\r\nEND\r\n");
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(2)).expect("exit after SIGTERM");
    assert!(st.success());
}

/// Whether signal `sig` is pending for `pid` (process-wide or on any thread).
fn signal_pending(pid: u32, sig: i32) -> bool {
    let bit = 1u64 << (sig - 1);
    let pending = |status: &str| {
        status
            .lines()
            .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
            .any(|l| u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16).unwrap_or(0) & bit != 0)
    };
    let threads =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    threads.iter().any(|t| std::fs::read_to_string(t.path().join("status")).map(|s| pending(&s)).unwrap_or(false))
}

/// utime + stime of all of `pid`'s threads, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn idle_server_uses_no_cpu() {
    // Busy polling is only allowed while there is work: after a burst that
    // keeps both cores (and the forwarding between them) busy, an idle
    // server with open connections must go to sleep.
    if !memcore_only("idle_server_uses_no_cpu") {
        return;
    }
    let server = Server::start(2, &[]);
    let pid = server.pid().expect("own server");
    let mut conns: Vec<Conn> = (0..8).map(|_| server.conn()).collect();
    for round in 0..200 {
        for (i, c) in conns.iter_mut().enumerate() {
            c.send(format!("set k{round}-{i} 0 0 5\r\nhello\r\nget k{round}-{i} k{i}\r\n").as_bytes());
        }
        for c in conns.iter_mut() {
            assert_eq!(c.read_line(), b"STORED\r\n");
            c.read_until(b"END\r\n");
        }
    }
    // The point of the test: CPU used while idle, over a fixed second, once
    // the burst's tail (and any spin before parking) is over: no tick for
    // 100 ms (a spinning server never gets there, and fails below).
    let mut last = cpu_ticks(pid);
    poll_every(Duration::from_secs(2), Duration::from_millis(100), || {
        let now = cpu_ticks(pid);
        std::mem::replace(&mut last, now) == now
    });
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    // 100 ticks per second per core is a spinning core; allow timers.
    assert!(used <= 5, "idle server used {used} clock ticks in 1 s");
    drop(conns);
}

/// The README's first set-up command, run as it is written there (from the
/// top of the checkout), serves on 127.0.0.1:11211 and stops on SIGTERM.
#[test]
fn readme_first_command_runs_the_server() {
    if !memcore_only("readme_first_command_runs_the_server") {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let block = readme.split("```sh\n").nth(1).expect("README has a sh block");
    let line = block.lines().next().unwrap();
    let command = line.split('#').next().unwrap().trim();
    assert_eq!(command, "cargo run --release -- -u nobody", "the README's first command changed: update this test");
    if std::net::TcpStream::connect("127.0.0.1:11211").is_ok() {
        eprintln!("SKIP readme_first_command_runs_the_server: something already listens on 127.0.0.1:11211");
        return;
    }
    let mut child = Command::new("sh")
        .args(["-c", &format!("exec {command}")])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // cargo may have to build first; it then runs the server in its place.
    let up = poll_every(Duration::from_secs(600), Duration::from_millis(100), || {
        std::net::TcpStream::connect("127.0.0.1:11211").is_ok() || child.try_wait().ok().flatten().is_some()
    });
    let exited = child.try_wait().unwrap();
    if exited.is_none() && up {
        let mut c = Conn::connect("127.0.0.1:11211");
        c.version_check();
        assert_bytes!(c.request(b"set readme 0 0 2\r\nok\r\n"), b"STORED\r\n");
    }
    // `exec` in sh, and cargo run execs the server too: this is its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(exited.is_none() && up, "the server did not come up: {stderr}");
    assert!(status.success(), "exit {status:?} after SIGTERM: {stderr}");
}

/// Killed with SIGKILL after its clients closed, a server started again at
/// once on the same port comes up on the first try (the dead process's
/// listeners linger a few ms while the kernel tears its io_uring down), as
/// memcached does; a live server on that port is still refused
/// (`port_in_use_fails`).
#[test]
fn restarts_at_once_after_sigkill_on_the_same_port() {
    if !memcore_only("restarts_at_once_after_sigkill_on_the_same_port") {
        return;
    }
    let mut port = 0;
    for round in 0..3 {
        let port_path = temp_path("port");
        let log_path = temp_path("log");
        let mut child = Command::new(memcore_bin())
            .args(["-p", &port.to_string(), "-l", "127.0.0.1", "-t", "2", "-u", "root", "--port-file"])
            .arg(&port_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let got = read_port_file(&port_path, &mut child, Duration::from_secs(10));
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let _ = std::fs::remove_file(&log_path);
        let got = got.unwrap_or_else(|e| panic!("round {round}: restart on port {port} failed: {e}; log: {log}"));
        port = got;
        let mut conns: Vec<Conn> = (0..4).map(|_| Conn::connect(&format!("127.0.0.1:{port}"))).collect();
        for c in conns.iter_mut() {
            assert_bytes!(c.request(b"set k 0 0 1\r\nx\r\n"), b"STORED\r\n");
        }
        drop(conns);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Debian's `-m 64 -I 1m` on a host of 128 CPUs (simulated): memcore
/// starts, runs as many cores as 8 MiB each allows (logged), serves 1 MiB
/// items and compresses; an explicit `-t 128` is refused with the `-m` that
/// would work.
#[test]
fn debian_defaults_start_on_a_large_host() {
    if !memcore_only("debian_defaults_start_on_a_large_host") {
        return;
    }
    let (mut child, port, log_path) = start_plain(&["--simulate-cpus", "128", "-m", "64", "-I", "1m"]);
    let mut c = Conn::connect(&format!("127.0.0.1:{port}"));
    let s = c.stats("stats");
    assert_eq!(s["threads"], "8");
    let settings = c.stats("stats settings");
    assert_eq!(settings["compress"], "on");
    let big: Vec<u8> = (0..(1 << 20) - 512).map(|i| b"abcdefgh"[i % 8]).collect();
    assert_bytes!(c.request(&store_cmd("set", "big", 0, 0, &big)), b"STORED\r\n");
    assert_bytes!(c.request(b"get big\r\n"), [value("big", 0, &big), b"END\r\n".to_vec()].concat());
    assert!(stat_u64(&c.stats("stats"), "compress_items") >= 1, "the 1 MiB value was not compressed");
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(log.contains("running 8 of 128 cores: -m 64 gives each 8 MiB"), "{log}");

    let o = run_to_exit(
        memcore_bin(),
        &["--simulate-cpus", "128", "-t", "128", "-p", "0", "-u", "root"],
        Duration::from_secs(5),
    );
    assert_eq!(o.status.code(), Some(64), "{}", o.stderr);
    assert!(o.stderr.contains("use -m 128 or more"), "{}", o.stderr);
}
