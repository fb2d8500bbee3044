//! Operating memcore as memcached is operated (issue 20): every flag of
//! `memcached -h` answered, daemon mode, core files, memory locking, the
//! shutdown command, `--help`'s grouping. Each test runs the real binary.

#[macro_use]
mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Run memcore with `args` to completion (at most 10 s).
fn run(args: &[&str]) -> Outcome {
    run_to_exit(memcore_bin(), args, Duration::from_secs(10))
}

fn stop(mut child: std::process::Child, log_path: &std::path::Path) -> String {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    let _ = std::fs::remove_file(log_path);
    assert!(st.success(), "exit {st}: {log}");
    log
}

/// Ends a daemon the test started if the test fails before stopping it.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if pid_alive(self.0) {
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped by init) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|r| !r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn tuning_flags_without_effect_are_accepted_with_one_warning() {
    if !memcore_only("tuning_flags_without_effect_are_accepted_with_one_warning") {
        return;
    }
    let (child, port, log_path) = start_plain(&[
        "-t",
        "1",
        "-f",
        "1.25",
        "-n",
        "48",
        "-L",
        "-N",
        "2",
        "-B",
        "ascii",
        "-o",
        "hashpower=20,lru_crawler,track_sizes",
        "-o",
        "slab_reassign",
    ]);
    Conn::connect(&format!("127.0.0.1:{port}")).version_check();
    let log = stop(child, &log_path);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    for f in ["-f 1.25", "-n 48", "-L", "-N 2", "-o hashpower=20", "-o slab_reassign"] {
        assert!(warnings[0].contains(f), "{f} missing from {}", warnings[0]);
    }
}

#[test]
fn unsupported_flags_are_refused_with_a_hint() {
    if !memcore_only("unsupported_flags_are_refused_with_a_hint") {
        return;
    }
    for (args, hint) in [
        (&["-S"][..], "-Y"),
        (&["-e", "/dev/shm/mc"], "replication"),
        (&["-Z"], "-Z needs -o ssl_chain_cert=FILE,ssl_key=FILE"),
        (&["-B", "binary"], "-B ascii"),
        (&["-B", "bogus"], "auto, binary or ascii"),
        (&["-o", "ext_path=/tmp/x:1G"], "extstore"),
        (&["-o", "ssl_session_cache=1"], "not a TLS setting"),
        (&["-o", "no_such_option"], "illegal suboption \"no_such_option\""),
        (&["-U", "11211"], "-U 0"),
    ] {
        let mut all = vec!["-p", "0", "-u", "root"];
        all.extend(args);
        let o = run(&all);
        assert_eq!(o.code(), Some(64), "{args:?}: {}", o.stderr);
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", o.stderr);
        assert!(lines[0].contains(hint), "{args:?}: {}", lines[0]);
    }
}

#[test]
fn read_buf_mem_limit_sets_the_connection_budget() {
    if !memcore_only("read_buf_mem_limit_sets_the_connection_budget") {
        return;
    }
    let (child, port, log_path) = start_plain(&["-t", "1", "-o", "read_buf_mem_limit=40"]);
    let s = Conn::connect(&format!("127.0.0.1:{port}")).stats("stats");
    assert_eq!(stat_u64(&s, "conn_memory_limit"), 40 << 20);
    stop(child, &log_path);
}

#[test]
fn help_lists_memcached_flags_in_memcached_order_then_memcores_own() {
    if !memcore_only("help_lists_memcached_flags_in_memcached_order_then_memcores_own") {
        return;
    }
    let help = run(&["--help"]);
    assert_eq!(help.code(), Some(0));
    let shorts = |text: &str| -> Vec<char> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix('-'))
            .filter_map(|l| l.chars().next().filter(|c| c.is_ascii_alphabetic() && l[1..].starts_with([',', ' '])))
            .collect()
    };
    let ours = shorts(&help.stdout);
    // memcached 1.6.18's `-h`, in its order.
    let memcached = "pUsaAldrumMckvhiVPfnLDtRCbBISFXWYeZoN".chars().collect::<Vec<_>>();
    assert_eq!(ours, memcached, "{}", help.stdout);
    if let Some(bin) = memcached_bin().or_else(|| Some("/usr/bin/memcached".into()))
        && let Ok(o) = Command::new(&bin).arg("-h").output()
    {
        assert_eq!(shorts(&String::from_utf8_lossy(&o.stdout)), memcached, "memcached -h lists other flags");
    }
    let headings: Vec<&str> = help.stdout.lines().filter(|l| !l.starts_with(' ') && l.ends_with(':')).collect();
    assert_eq!(
        headings,
        [
            "memcached flags (memcached -h order):",
            "memcore: process:",
            "memcore: memory and cores:",
            "memcore: compression:",
            "memcore: replication:",
            "memcore: monitoring:"
        ]
    );
}

#[test]
fn license_flag_prints_the_license() {
    if !memcore_only("license_flag_prints_the_license") {
        return;
    }
    let o = run(&["-i"]);
    assert_eq!(o.code(), Some(0));
    assert!(o.stdout.contains("Apache License"), "{}", o.stdout);
}

/// `-d`: the command returns 0 once the server listens (the port file is
/// there), the server runs on in its own session with the pid in `-P`, and
/// SIGTERM ends it and removes the pid file.
#[test]
fn daemon_mode_returns_once_listening() {
    if !memcore_only("daemon_mode_returns_once_listening") {
        return;
    }
    let (port_path, pid_path) = (temp_path("port"), temp_path("pid"));
    let o = run(&[
        "-d",
        "-p",
        "0",
        "-l",
        "127.0.0.1",
        "-u",
        "root",
        "-t",
        "1",
        "--port-file",
        port_path.to_str().unwrap(),
        "-P",
        pid_path.to_str().unwrap(),
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let port_text = std::fs::read_to_string(&port_path).expect("port file written before the command returned");
    let pid: i32 = std::fs::read_to_string(&pid_path).expect("pid file").trim().parse().unwrap();
    let _guard = KillOnDrop(pid);
    let port = port_text.trim().rsplit(' ').next().unwrap();
    let mut c = Conn::connect(&format!("127.0.0.1:{port}"));
    assert_bytes!(c.request(b"set d 0 0 1\r\nx\r\n"), b"STORED\r\n");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let session: i32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(session, pid, "the daemon leads a session of its own");
    drop(c);
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(poll_until(Duration::from_secs(3), || !pid_alive(pid)), "daemon {pid} did not stop on SIGTERM");
    assert!(poll_until(Duration::from_secs(1), || !pid_path.exists()), "pid file left behind");
}

/// `-d` with a start that fails: the command's own stderr says why, and it
/// exits with the server's status.
#[test]
fn daemon_start_failure_is_told_by_the_command() {
    if !memcore_only("daemon_start_failure_is_told_by_the_command") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let o = run(&["-d", "-p", &port, "-l", "127.0.0.1", "-u", "root", "-t", "1"]);
    assert_eq!(o.code(), Some(71), "{}", o.stderr);
    assert!(o.stderr.contains("address already in use"), "{}", o.stderr);
}

/// `-r` raises the core file limit (from 0) to unlimited or the hard limit.
#[test]
fn enable_coredumps_raises_the_core_limit() {
    if !memcore_only("enable_coredumps_raises_the_core_limit") {
        return;
    }
    let port_path = temp_path("port");
    let mut cmd = Command::new(memcore_bin());
    cmd.args(["-r", "-p", "0", "-l", "127.0.0.1", "-u", "root", "-t", "1", "--port-file"])
        .arg(&port_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let mut lim: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_CORE, &mut lim);
            lim.rlim_cur = 0;
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    read_port_file(&port_path, &mut child, Duration::from_secs(10)).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    let soft = core.split_whitespace().nth(4).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ne!(soft, "0", "{core}");
}

/// `-k` locks memory when the memlock limit allows what the server will
/// use, and otherwise says so in one warning and runs unlocked.
#[test]
fn lock_memory_locks_or_warns() {
    if !memcore_only("lock_memory_locks_or_warns") {
        return;
    }
    let (child, port, log_path) = start_plain(&["-k", "-t", "1", "-m", "64"]);
    Conn::connect(&format!("127.0.0.1:{port}")).version_check();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let locked_kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmLck:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap();
    let log = stop(child, &log_path);
    if log.contains("memory not locked") {
        assert_eq!(locked_kb, 0);
        assert!(log.contains("raise LimitMEMLOCK or ulimit -l"), "{log}");
    } else {
        assert!(locked_kb > 1024, "VmLck {locked_kb} kB; log: {log}");
    }
}

/// `shutdown`: refused without `-A` as memcached refuses it; with `-A`, a
/// bad mode is a client error and `shutdown` closes the connection and
/// stops the server (exit 0).
#[test]
fn shutdown_command_needs_enable_shutdown() {
    if !memcore_only("shutdown_command_needs_enable_shutdown") {
        return;
    }
    let s = Server::start(1, &[]);
    assert_bytes!(s.conn().request(b"shutdown\r\n"), b"ERROR: shutdown not enabled\r\n");
    let mut s = Server::start(2, &["-A"]);
    let mut c = s.conn();
    assert_bytes!(c.request(b"shutdown now\r\n"), b"CLIENT_ERROR invalid shutdown mode\r\n");
    c.send(b"shutdown\r\n");
    assert_bytes!(c.read_to_close(), b"");
    let st = s.wait_exit(Duration::from_secs(3)).expect("server still running after shutdown");
    assert!(st.success(), "{st}");
}

/// Debian's shipped /etc/memcached.conf (a copy in tests/data), unchanged:
/// `-d`, `logfile`, `-m 64`, `-p 11211`, `-u memcache`, `-l 127.0.0.1`, `-P`.
/// The command line moves the port, pid file and log to test places (the
/// command line wins); everything else comes from the file.
#[test]
fn debians_memcached_conf_works_unchanged() {
    if !memcore_only("debians_memcached_conf_works_unchanged") {
        return;
    }
    if unsafe { libc::geteuid() } != 0
        || !std::process::Command::new("id").arg("memcache").output().is_ok_and(|o| o.status.success())
    {
        eprintln!(
            "SKIP debians_memcached_conf_works_unchanged: needs root and the memcache user (apt-get install memcached)"
        );
        return;
    }
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/debian-memcached.conf");
    let (port_path, pid_path, log_path) = (temp_path("port"), temp_path("pid"), temp_path("log"));
    let o = run(&[
        "--config-file",
        conf,
        "-p",
        "0",
        "-t",
        "1",
        "--port-file",
        port_path.to_str().unwrap(),
        "-P",
        pid_path.to_str().unwrap(),
        "--log-file",
        log_path.to_str().unwrap(),
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let pid: i32 = std::fs::read_to_string(&pid_path).unwrap().trim().parse().unwrap();
    let _guard = KillOnDrop(pid);
    let port = std::fs::read_to_string(&port_path).unwrap().trim().rsplit(' ').next().unwrap().to_string();
    let mut c = Conn::connect(&format!("127.0.0.1:{port}"));
    let settings = c.stats("stats settings");
    assert_eq!(stat_u64(&settings, "maxbytes"), 64 << 20);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap();
    let memcache = String::from_utf8(Command::new("id").args(["-u", "memcache"]).output().unwrap().stdout).unwrap();
    assert_eq!(uid, memcache.trim(), "runs as -u memcache");
    drop(c);
    // Log rotation: move the file away, SIGHUP, and the log goes on in a
    // new file (created by the -u user).
    let rotated = temp_path("log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(poll_until(Duration::from_secs(3), || log_path.exists()), "SIGHUP did not reopen the log file");
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(poll_until(Duration::from_secs(3), || !pid_alive(pid)));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let old = std::fs::read_to_string(&rotated).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(&rotated);
    assert!(old.is_empty() || !old.contains("signal 15"), "{old}");
    assert!(
        log.contains("SIGHUP:") && log.contains("signal 15 received"),
        "the daemon's log goes to --log-file: {log}"
    );
}

/// A bad line: `file:line: reason`, exit 64; also for options that only
/// fail together (the line with which they stop making sense).
#[test]
fn a_bad_config_line_is_named_by_file_and_line() {
    if !memcore_only("a_bad_config_line_is_named_by_file_and_line") {
        return;
    }
    let path = temp_path("conf");
    let p = path.to_str().unwrap();
    for (text, line, reason) in [
        ("# memcached.conf\n-m 64\n\n-t nope\n", 4, "invalid value 'nope'"),
        ("-m 64\n-I 64m # too large\n", 2, "1/2 of memory max"),
        ("-m 64\nlisten 127.0.0.1\n", 2, "unknown directive"),
        ("-m 64\n--bogus\n", 2, "unexpected argument"),
        ("--config-file /etc/other.conf\n", 1, "for the command line"),
    ] {
        std::fs::write(&path, text).unwrap();
        let o = run(&["--config-file", p, "-p", "0", "-u", "root"]);
        assert_eq!(o.code(), Some(64), "{text:?}: {}", o.stderr);
        let want = format!("memcore: {p}:{line}: ");
        assert!(o.stderr.starts_with(&want) && o.stderr.contains(reason), "{text:?}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    }
    let o = run(&["--config-file", "/nonexistent/memcached.conf", "-p", "0"]);
    assert_eq!(o.code(), Some(64));
    assert!(o.stderr.contains("cannot read --config-file /nonexistent/memcached.conf"), "{}", o.stderr);
    let _ = std::fs::remove_file(&path);
}

/// The command line wins over the file; memcore's long options work in it.
#[test]
fn the_command_line_wins_over_the_config_file() {
    if !memcore_only("the_command_line_wins_over_the_config_file") {
        return;
    }
    let path = temp_path("conf");
    std::fs::write(&path, "-m 128\n-c 10   # connections\n--compress-min 200\n-vv\n").unwrap();
    let (child, port, log_path) = start_plain(&["-t", "1", "--config-file", path.to_str().unwrap(), "-m", "32"]);
    let s = Conn::connect(&format!("127.0.0.1:{port}")).stats("stats settings");
    assert_eq!(stat_u64(&s, "maxbytes"), 32 << 20);
    assert_eq!(stat_u64(&s, "maxconns"), 10);
    assert_eq!(stat_u64(&s, "compress_min"), 200);
    assert_eq!(stat_u64(&s, "verbosity"), 2);
    stop(child, &log_path);
    let _ = std::fs::remove_file(&path);
}

/// SIGHUP re-reads the file: memory limit, verbosity and compression
/// change at once; what needs a restart is logged; a bad file changes
/// nothing and the server runs on.
#[test]
fn sighup_applies_what_can_change_at_run_time() {
    if !memcore_only("sighup_applies_what_can_change_at_run_time") {
        return;
    }
    let path = temp_path("conf");
    std::fs::write(&path, "-m 64\n--compress on\n").unwrap();
    let (child, port, log_path) = start_plain(&["-t", "2", "--config-file", path.to_str().unwrap()]);
    let pid = child.id() as i32;
    let mut c = Conn::connect(&format!("127.0.0.1:{port}"));
    assert_eq!(c.stats("stats settings")["compress"], "on");
    std::fs::write(&path, "-m 128\n-vv\n--compress off\n-c 99\n").unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(
        poll_until(Duration::from_secs(3), || stat_u64(&c.stats("stats"), "limit_maxbytes") == 128 << 20),
        "memory limit not applied: {}",
        std::fs::read_to_string(&log_path).unwrap()
    );
    let s = c.stats("stats settings");
    assert_eq!((s["compress"].as_str(), s["verbosity"].as_str(), s["maxconns"].as_str()), ("off", "2", "1024"));
    std::fs::write(&path, "-m 128\n-t zero\n").unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(poll_until(Duration::from_secs(3), || std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("nothing changed")));
    c.version_check();
    let log = stop(child, &log_path);
    assert!(log.contains("applied: verbosity 0 -> 2, memory per core 32 -> 64 MiB, compression on"), "{log}");
    assert!(log.contains("applied only at restart: -c"), "{log}");
    assert!(log.contains(":2: error: invalid value 'zero'"), "{log}");
    let _ = std::fs::remove_file(&path);
}

/// Run memcore under a seccomp filter that fails `io_uring_setup` with
/// `errno` (as Docker's default profile does with EPERM), like a container.
fn run_without_io_uring(errno: i32) -> Outcome {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(memcore_bin());
    cmd.args(["-p", "0", "-l", "127.0.0.1", "-u", "root", "-t", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            const LD_NR: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS, seccomp_data.nr
            const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
            const RET: u16 = 0x06; // BPF_RET | BPF_K
            let filter = [
                libc::sock_filter { code: LD_NR, jt: 0, jf: 0, k: 0 },
                libc::sock_filter { code: JEQ, jt: 0, jf: 1, k: libc::SYS_io_uring_setup as u32 },
                libc::sock_filter { code: RET, jt: 0, jf: 0, k: 0x0005_0000 | errno as u32 }, // SECCOMP_RET_ERRNO
                libc::sock_filter { code: RET, jt: 0, jf: 0, k: 0x7fff_0000 },                // SECCOMP_RET_ALLOW
            ];
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    Outcome {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Without io_uring (a container's seccomp profile, an old kernel) memcore
/// exits 71 with one line that names the cause and the fix.
#[test]
fn without_io_uring_one_line_names_the_cause_and_the_fix() {
    if !memcore_only("without_io_uring_one_line_names_the_cause_and_the_fix") {
        return;
    }
    for (errno, cause, fix) in [
        (libc::EPERM, "a seccomp filter blocks io_uring", "allow io_uring_setup, io_uring_enter and io_uring_register"),
        (libc::ENOSYS, "io_uring is not available", "Linux 5.8 or newer"),
    ] {
        let o = run_without_io_uring(errno);
        assert_eq!(o.code(), Some(71), "errno {errno}: {}{}", o.stdout, o.stderr);
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "errno {errno}: {}", o.stderr);
        assert!(lines[0].contains(cause) && lines[0].contains(fix), "errno {errno}: {}", lines[0]);
    }
}

/// With `$NOTIFY_SOCKET` set (as systemd's Type=notify does), memcore sends
/// `READY=1` once it listens, and `STOPPING=1` on SIGTERM.
#[test]
fn systemd_is_told_when_the_server_is_ready_and_stopping() {
    if !memcore_only("systemd_is_told_when_the_server_is_ready_and_stopping") {
        return;
    }
    let sock_path = temp_path("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port_path = temp_path("port");
    let mut child = Command::new(memcore_bin())
        .args(["-p", "0", "-l", "127.0.0.1", "-u", "root", "-t", "1", "--port-file"])
        .arg(&port_path)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("no READY=1 within 10 s");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), format!("READY=1\nMAINPID={}", child.id()));
    // Ready means listening: the port file is there and the port answers.
    let port = read_port_file(&port_path, &mut child, Duration::from_secs(1)).expect("ready before listening");
    Conn::connect(&format!("127.0.0.1:{port}")).version_check();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("no STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_file(&sock_path);
}

/// contrib/systemd/memcore.service passes `systemd-analyze verify` without
/// a warning, waits for readiness, does not restart on a bad configuration
/// (exit 64) and keeps io_uring in its system call filter.
#[test]
fn the_systemd_unit_verifies_and_keeps_io_uring() {
    if !memcore_only("the_systemd_unit_verifies_and_keeps_io_uring") {
        return;
    }
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/systemd/memcore.service")).unwrap();
    for line in
        ["Type=notify", "RestartPreventExitStatus=64", "SystemCallFilter=@system-service", "NoNewPrivileges=yes"]
    {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    let filter = unit.lines().find(|l| l.starts_with("SystemCallFilter=io_uring")).expect("io_uring kept");
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(filter.contains(call), "{filter}");
    }
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("SKIP systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    // verify wants ExecStart's binary to exist: the one under test.
    let dir = temp_path("unit");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("memcore.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/memcore", memcore_bin())).unwrap();
    let o = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-s PATH -a MASK`: the socket has MASK's permissions, TCP is off, every
/// core accepts its connections, a stale socket file is replaced, a live
/// server's is refused, and the file is removed at exit.
#[test]
fn unix_socket_as_memcached_and_served_by_every_core() {
    use std::os::unix::fs::PermissionsExt;
    if !memcore_only("unix_socket_as_memcached_and_served_by_every_core") {
        return;
    }
    let path = temp_path("sock");
    // A stale socket file (its server gone) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let port_path = temp_path("port");
    let log_path = temp_path("log");
    let p = path.to_str().unwrap();
    let mut child = Command::new(memcore_bin())
        .args(["-s", p, "-a", "660", "-t", "2", "-u", "root", "-p", "0", "--port-file"])
        .arg(&port_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    assert!(poll_until(Duration::from_secs(10), || port_path.exists()), "not up");
    assert_eq!(std::fs::read_to_string(&port_path).unwrap(), "", "no TCP port with -s");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
    // One after another, as clients come: each core's accept waits on the
    // socket, and the kernel wakes them in turn.
    let conns: Vec<Conn> = (0..16)
        .map(|_| {
            let mut c = Conn::connect(&format!("unix:{p}"));
            c.version_check();
            c
        })
        .collect();
    let mut c = Conn::connect(&format!("unix:{p}"));
    assert!(
        poll_until(Duration::from_secs(3), || {
            let r = c.request(b"stats cores\r\n");
            let text = String::from_utf8_lossy(&r).into_owned();
            ["core0", "core1"]
                .iter()
                .all(|core| text.lines().any(|l| l.contains(&format!("{core}:curr_connections")) && !l.ends_with(" 0")))
        }),
        "both cores serve the socket: {}",
        String::from_utf8_lossy(&c.request(b"stats cores\r\n"))
    );
    assert_bytes!(c.request_n(b"set u 0 0 2\r\nok\r\nget u\r\n", 2), b"STORED\r\nVALUE u 0 2\r\nok\r\nEND\r\n");
    // A second server on the same socket is refused while this one lives.
    let o = run(&["-s", p, "-u", "root", "-t", "1"]);
    assert_eq!(o.code(), Some(71), "{}", o.stderr);
    assert!(o.stderr.contains("address already in use"), "{}", o.stderr);
    drop((conns, c));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(!path.exists(), "socket file left behind");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(log.contains(&format!("listening on UNIX socket {p}")), "{log}");
}
