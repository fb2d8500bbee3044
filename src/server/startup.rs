//! What the server asks of the system before it starts, for `config` to
//! stay pure: the CPUs this process may use (its affinity mask), the
//! addresses of the names in `-l` and `--repl-listen`, and the files
//! `--repl-secret` and `--compress-dict`. `main` runs this between
//! `config::parse_args` and `server::run`; its errors are one line, as
//! config's are, and end the process the same way (exit status 64).
//!
//! Imports `config` and storage's `DictMode`; nothing imports this but
//! `main`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::config::Config;
use crate::storage::DictMode;

/// Read and resolve what `cfg.unresolved` names into `cfg`.
pub fn prepare(cfg: &mut Config) -> Result<(), String> {
    let u = cfg.unresolved.clone();
    // -s turns TCP off, as memcached does.
    if cfg.unix_socket.is_none() {
        (cfg.listen, cfg.listen_plain) = parse_listen_tls(&u.listen, u.port)?;
    }
    // Read now so that a bad file stops the start like a bad flag; the
    // server reads them again to use them (and on SIGHUP).
    if let Some(path) = &cfg.auth_file {
        super::auth::Credentials::load(path)?;
    }
    if let Some(t) = &cfg.tls {
        super::tls::server_config(t)?;
    }
    if let Some(path) = &u.compress_dict {
        let raw = std::fs::read(path).map_err(|e| format!("cannot read --compress-dict {path}: {e}"))?;
        if zstd::dict::DecoderDictionary::try_copy(&raw).is_err() || raw.len() < 8 {
            return Err(format!("--compress-dict {path} is not a zstd dictionary"));
        }
        cfg.compress.dict = DictMode::Loaded(std::sync::Arc::new(raw));
    }
    if let Some(r) = cfg.repl.as_mut() {
        if let Some(s) = &u.repl_listen {
            let addr = parse_listen(s, 0)?.into_iter().next().filter(|a| a.port() != 0);
            r.listen = Some(addr.ok_or("--repl-listen needs ADDR:PORT")?);
        }
        if let Some(path) = &u.repl_secret {
            let s = std::fs::read(path).map_err(|e| format!("cannot read --repl-secret {path}: {e}"))?;
            let s = s.trim_ascii().to_vec();
            if s.is_empty() {
                return Err(format!("--repl-secret {path} is empty"));
            }
            r.secret = Some(s);
        }
    }
    Ok(())
}

/// memcached's -l: comma-separated addresses, each optionally with a port
/// (`127.0.0.1`, `::1`, `[::1]:11212`, `localhost`).
pub fn parse_listen(spec: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let addrs: Vec<SocketAddr> = if let Ok(ip) = part.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else if let Ok(sa) = part.parse::<SocketAddr>() {
            vec![sa]
        } else if let Some(ip) =
            part.strip_prefix('[').and_then(|p| p.strip_suffix(']')).and_then(|p| p.parse::<IpAddr>().ok())
        {
            vec![SocketAddr::new(ip, port)]
        } else {
            let with_port = if part.contains(':') { part.to_string() } else { format!("{part}:{port}") };
            with_port
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve listen address {part:?}: {e}"))?
                .take(1)
                .collect()
        };
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no listen address in {spec:?}"));
    }
    Ok(out)
}

/// glommio's floor (its README): the io_uring operations it probes for.
pub const MIN_KERNEL: &str = "5.8";

/// Whether this process may use io_uring, which every core runs on. Err is
/// one line naming the cause and the fix: a seccomp filter (Docker's and
/// containerd's default profiles block io_uring), the
/// `kernel.io_uring_disabled` sysctl, an old kernel, or the memlock limit.
pub fn check_io_uring() -> Result<(), String> {
    // SAFETY: io_uring_setup with one entry and zeroed parameters; the fd
    // it returns is closed at once.
    let (fd, err) = unsafe {
        let mut params = [0u8; 120]; // struct io_uring_params
        let fd = libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr());
        (fd, std::io::Error::last_os_error())
    };
    if fd >= 0 {
        // SAFETY: the ring we just created.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    let sysctl = sysctl.as_deref().map(str::trim);
    Err(match (err.raw_os_error(), sysctl) {
        (Some(libc::EPERM), Some("2")) => {
            "io_uring is disabled on this host (sysctl kernel.io_uring_disabled=2): set it to 0 (sysctl -w kernel.io_uring_disabled=0)".into()
        }
        (Some(libc::EPERM), Some("1")) => {
            "io_uring is limited to the group in sysctl kernel.io_uring_group (kernel.io_uring_disabled=1): add memcore's user to that group, or set kernel.io_uring_disabled=0".into()
        }
        (Some(libc::EPERM), _) => {
            "io_uring_setup is not permitted: a seccomp filter blocks io_uring (Docker's and containerd's default profiles do): allow io_uring_setup, io_uring_enter and io_uring_register (docs/operations.md#containers)".into()
        }
        (Some(libc::ENOSYS), _) => format!(
            "io_uring is not available (io_uring_setup: function not implemented): memcore needs Linux {MIN_KERNEL} or newer built with io_uring, and no seccomp filter hiding it (docs/operations.md#containers)"
        ),
        (Some(libc::ENOMEM), _) => {
            "io_uring_setup failed: out of lockable memory: raise the memlock limit (ulimit -l, LimitMEMLOCK=)".into()
        }
        _ => format!("io_uring_setup failed: {err}: memcore needs io_uring (Linux {MIN_KERNEL} or newer)"),
    })
}

/// systemd's readiness protocol (sd_notify) without libsystemd: one
/// datagram to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
/// namespace), such as `READY=1` once the server listens and its cores
/// run, `STOPPING=1` at shutdown. Nothing happens without the variable.
pub fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr?));
    if let Err(e) = sent {
        log::warn!("cannot notify systemd at NOTIFY_SOCKET={path}: {e}");
    }
}

/// A config file is small: refuse one larger than this (a wrong path, such
/// as a device, must not be read forever).
const CONFIG_FILE_MAX: u64 = 1 << 20;

/// `--config-file PATH`, read whole.
pub fn read_config_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(CONFIG_FILE_MAX + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read --config-file {path}: {e}"))?;
    if text.len() as u64 > CONFIG_FILE_MAX {
        return Err(format!("--config-file {path} is larger than {CONFIG_FILE_MAX} bytes"));
    }
    Ok(text)
}

/// `--log-file`: opened for appending (created 0644 if missing).
pub fn open_log_file(path: &str) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map(Into::into)
        .map_err(|e| format!("cannot open --log-file {path}: {e}"))
}

/// Started as root with `-u`: hand the log file to that user, as a log
/// rotated and reopened on SIGHUP is then created by it. Does nothing for
/// other users (they cannot give files away).
pub fn give_to_user(fd: &std::os::fd::OwnedFd, user: &str) {
    use std::os::fd::AsRawFd;
    let Ok(name) = std::ffi::CString::new(user) else { return };
    // SAFETY: geteuid has no preconditions; getpwnam's result is copied
    // before any other call; fchown on a descriptor we own.
    unsafe {
        if libc::geteuid() != 0 {
            return;
        }
        let pw = libc::getpwnam(name.as_ptr());
        if !pw.is_null() {
            libc::fchown(fd.as_raw_fd(), (*pw).pw_uid, (*pw).pw_gid);
        }
    }
}

/// Send stdout and stderr to `fd`.
pub fn redirect_output(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto the standard descriptors, from one we own.
    unsafe {
        libc::dup2(fd.as_raw_fd(), 1);
        libc::dup2(fd.as_raw_fd(), 2);
    }
}

/// `-l` with memcached's `notls:` prefix on an address that stays plain
/// under `-Z` (`notls:127.0.0.1:11212`). Returns the addresses and, beside
/// each, whether it is plain. Port 0 entries are never merged: each takes
/// its own free port.
pub fn parse_listen_tls(spec: &str, port: u16) -> Result<(Vec<SocketAddr>, Vec<bool>), String> {
    let (mut addrs, mut plain) = (Vec::new(), Vec::new());
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (part, notls) = match part.strip_prefix("notls:") {
            Some(rest) => (rest, true),
            None => (part, false),
        };
        for a in parse_listen(part, port)? {
            if a.port() == 0 || !addrs.contains(&a) {
                addrs.push(a);
                plain.push(notls);
            }
        }
    }
    if addrs.is_empty() {
        return Err(format!("no listen address in {spec:?}"));
    }
    Ok((addrs, plain))
}

/// CPUs this process may run on (honours taskset and cgroup cpusets).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect();
            if !cpus.is_empty() {
                return cpus;
            }
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// `-d`: the first process waits until the server listens and serves, then
/// exits 0 (so a SysV init script that runs `memcore -d` sees a started
/// server), or copies the server's error to its stderr and exits with the
/// server's status. The server runs on in a child, in a session of its
/// own, with stdin and stdout on /dev/null and stderr on a pipe to the
/// first process until it is ready.
///
/// Called before any thread is started (fork copies only the caller).
pub struct Daemon {
    /// The pipe to the waiting first process.
    pipe: std::os::fd::OwnedFd,
    /// Where stderr goes once ready: the original one with `-v` (memcached
    /// keeps its output when verbose), /dev/null otherwise.
    keep_stderr: bool,
    original_stderr: std::os::fd::OwnedFd,
}

/// What the child writes when it serves: the first process exits 0 on it.
const DAEMON_READY: &[u8] = b"\0memcore: ready\n";

pub fn daemonize(keep_stderr: bool, keep_cwd: bool) -> Result<Daemon, String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: plain system calls on descriptors this function owns; the
    // parent branch ends in _exit without returning into Rust code that
    // would run the child's destructors twice.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(format!("cannot daemonize (-d): pipe: {}", std::io::Error::last_os_error()));
        }
        let (read, write) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        let original = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
        if original < 0 {
            return Err(format!("cannot daemonize (-d): {}", std::io::Error::last_os_error()));
        }
        let original = OwnedFd::from_raw_fd(original);
        match libc::fork() {
            -1 => Err(format!("cannot daemonize (-d): fork: {}", std::io::Error::last_os_error())),
            0 => {
                drop(read);
                libc::setsid();
                // As memcached: -r keeps the working directory, where the
                // core file would go.
                if !keep_cwd {
                    libc::chdir(c"/".as_ptr());
                }
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::close(null);
                }
                libc::dup2(write.as_raw_fd(), 2);
                Ok(Daemon { pipe: write, keep_stderr, original_stderr: original })
            }
            child => {
                drop(write);
                libc::_exit(wait_for_daemon(read, child));
            }
        }
    }
}

/// The first process: copy what the child writes to stderr until it is
/// ready (exit 0) or gone (its exit status).
fn wait_for_daemon(pipe: std::os::fd::OwnedFd, child: libc::pid_t) -> i32 {
    use std::io::{Read, Write};
    let mut pipe = std::fs::File::from(pipe);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if let Some(at) = seen.windows(DAEMON_READY.len()).position(|w| w == DAEMON_READY) {
                    let _ = std::io::stderr().write_all(&seen[..at]);
                    return 0;
                }
                // Keep what could be the start of the marker.
                let keep = seen.len().saturating_sub(DAEMON_READY.len());
                let _ = std::io::stderr().write_all(&seen[..keep]);
                seen.drain(..keep);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = std::io::stderr().write_all(&seen);
    let mut status = 0;
    // SAFETY: waits for our own child.
    while unsafe { libc::waitpid(child, &mut status, 0) } < 0
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
    if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 71 }
}

impl Daemon {
    /// The server listens and its cores run: let the first process go, and
    /// send stderr where it stays (the `--log-file` when there is one).
    pub fn ready(self, log_file: Option<&std::os::fd::OwnedFd>) {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut pipe = std::fs::File::from(self.pipe);
        let _ = pipe.write_all(DAEMON_READY);
        if let Some(fd) = log_file {
            return redirect_output(fd);
        }
        // SAFETY: replaces fd 2 with a descriptor we own (or /dev/null).
        unsafe {
            if self.keep_stderr {
                libc::dup2(self.original_stderr.as_raw_fd(), 2);
            } else {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                if null >= 0 {
                    libc::dup2(null, 2);
                    libc::close(null);
                }
            }
        }
    }
}

/// `-r`: the core file limit raised to unlimited, or at least to its hard
/// limit, as memcached does (and, like it, refuse to run without one).
pub fn enable_coredumps() -> Result<(), String> {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_CORE, &mut lim);
        let max = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        if libc::setrlimit(libc::RLIMIT_CORE, &max) != 0 {
            let hard = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            libc::setrlimit(libc::RLIMIT_CORE, &hard);
        }
        if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) != 0 || lim.rlim_cur == 0 {
            return Err("failed to ensure corefile creation (-r): the core file limit is 0".into());
        }
    }
    Ok(())
}

/// After switching user, the kernel makes the process undumpable; `-r`
/// asks for core files, so make it dumpable again.
pub fn keep_dumpable() {
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
}

/// `-k`: lock all present and future memory. The memlock limit is raised to
/// its hard limit first; if that is still below what the server will use
/// (`need` bytes), memory is left unlocked with a warning (locking it would
/// make later allocations fail); if mlockall fails, memcached's warning.
pub fn lock_memory(need: usize) {
    // SAFETY: getrlimit/setrlimit/mlockall with arguments we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim);
        // Unlimited if allowed (root with CAP_SYS_RESOURCE), else the hard limit.
        for raised in [libc::RLIM_INFINITY, lim.rlim_max] {
            let raised = libc::rlimit { rlim_cur: raised, rlim_max: raised.max(lim.rlim_max) };
            if lim.rlim_cur != libc::RLIM_INFINITY && libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                lim = raised;
            }
        }
        if lim.rlim_cur != libc::RLIM_INFINITY && (lim.rlim_cur as u128) < need as u128 {
            log::warn!(
                "-k: the memlock limit ({} MiB) is below the {} MiB the server will use; memory not locked (raise LimitMEMLOCK or ulimit -l)",
                lim.rlim_cur >> 20,
                need >> 20
            );
            return;
        }
        if libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) != 0 {
            log::warn!("warning: -k invalid, mlockall() failed: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Command, parse_args};

    fn prepared(args: &[&str]) -> Result<Config, String> {
        let Command::Run(c) = parse_args(std::iter::once("memcore").chain(args.iter().copied()), &[0])? else {
            return Err("printed".into());
        };
        let mut c = *c;
        prepare(&mut c)?;
        Ok(c)
    }

    #[test]
    fn listen_addresses_keep_their_order_and_ports() {
        let c = prepared(&[]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:11211".parse().unwrap()]);
        let c = prepared(&["-p", "22122", "-l", "127.0.0.1,::1,[::1]:5000,127.0.0.1"]).unwrap();
        let want: Vec<SocketAddr> =
            ["127.0.0.1:22122", "[::1]:22122", "[::1]:5000"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(c.listen, want);
        assert_eq!(c.tcp_port(), 22122);
        assert!(prepared(&["-l", " , "]).unwrap_err().contains("no listen address"));
        let c = prepared(&["-p", "0", "-l", "127.0.0.1,notls:127.0.0.1,notls:127.0.0.1:5000"]).unwrap();
        assert_eq!(c.listen.len(), 3);
        assert_eq!(c.listen_plain, vec![false, true, true]);
    }

    #[test]
    fn replication_secret_and_listen_are_read_at_startup() {
        let dir = std::env::temp_dir().join(format!("memcore-startup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (secret, empty) = (dir.join("secret"), dir.join("empty"));
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::write(&empty, "\n").unwrap();
        let with = |path: &std::path::Path| {
            let path = path.to_str().unwrap().to_string();
            prepared(&[
                "--repl-listen",
                "127.0.0.1:7000",
                "--peers",
                "127.0.0.1:7001",
                "--node-id",
                "1",
                "--repl-secret",
                &path,
            ])
        };
        let r = with(&secret).unwrap().repl.unwrap();
        assert_eq!((r.listen, r.secret.as_deref()), (Some("127.0.0.1:7000".parse().unwrap()), Some(&b"s3cret"[..])));
        assert!(with(&empty).unwrap_err().contains("is empty"));
        assert!(with(&dir.join("missing")).unwrap_err().starts_with("cannot read --repl-secret"));
        let e = prepared(&["--compress-dict", secret.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("is not a zstd dictionary"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
