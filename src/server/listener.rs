//! Listening sockets: one per address per core, all on the same port with
//! SO_REUSEPORT, so the kernel spreads connections over the cores.
//!
//! Two servers must never share a port: a probe bind without SO_REUSEPORT
//! comes first and fails on any listener already there. One exception is
//! waited out rather than refused: the listeners of a process that just
//! died (SIGKILL, a crash, the OOM killer) outlive it for a few ms, held by
//! its io_uring instance until the kernel tears that down. A probe that
//! finds the port taken looks for the owner in /proc; while no process
//! holds the listening socket (or none that this user may see), it tries
//! again, for up to `ORPHAN_WAIT`. A listener held by a live process is
//! refused at once.
//!
//! Plain sockets (socket2): imports nothing of memcore's; nothing below
//! imports it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_tcp_nodelay(true)?;
    Ok(s)
}

/// Listening sockets bound by `bind_all`.
pub struct Bound {
    /// Raw fds: `[core][address]`.
    pub fds: Vec<Vec<RawFd>>,
    /// The addresses as bound: a port 0 replaced by the one the kernel chose.
    pub addrs: Vec<SocketAddr>,
}

/// Bind `per_core` listeners on each address. Fails with a clear message if
/// any address is taken, including by another process using SO_REUSEPORT
/// (a probe bind without it detects that, so two servers never silently
/// share a port). Port 0 takes a free port, the same one on every core.
pub fn bind_all(addrs: &[SocketAddr], per_core: usize, backlog: i32) -> Result<Bound, String> {
    let mut fds: Vec<Vec<RawFd>> = vec![Vec::new(); per_core];
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let mut addr = addr;
        {
            let probe = probe_bind(addr)?;
            if addr.port() == 0 {
                // Port 0: pick one now so that every core shares it.
                addr = probe.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(addr);
            }
        }
        for core in fds.iter_mut() {
            let s = new_socket(addr, true).map_err(|e| format!("cannot create socket for {addr}: {e}"))?;
            s.bind(&addr.into()).map_err(|e| bind_error(addr, e))?;
            s.listen(backlog).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            s.set_nonblocking(true).map_err(|e| format!("cannot configure {addr}: {e}"))?;
            core.push(s.into_raw_fd());
        }
        bound.push(addr);
    }
    Ok(Bound { fds, addrs: bound })
}

/// How long a start waits for the listeners of a dead process to go.
/// Measured: they are gone 5 to 15 ms after the process (the kernel's
/// io_uring teardown); a second covers a loaded host.
const ORPHAN_WAIT: Duration = Duration::from_secs(1);

/// Bind `addr` without SO_REUSEPORT: fails if anything listens there, but
/// waits out the listeners of a process that is already gone.
fn probe_bind(addr: SocketAddr) -> Result<socket2::Socket, String> {
    let deadline = Instant::now() + ORPHAN_WAIT;
    let mut told = false;
    loop {
        let probe = new_socket(addr, false).map_err(|e| format!("cannot create socket for {addr}: {e}"))?;
        match probe.bind(&addr.into()) {
            Ok(()) => return Ok(probe),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 && Instant::now() < deadline => {
                if listener_owner(addr.port()) == Owner::Live {
                    return Err(bind_error(addr, e));
                }
                if !told {
                    log::info!("{addr}: the listener of an exited process is still closing; waiting for it");
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(bind_error(addr, e)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Owner {
    /// A process has the listening socket open.
    Live,
    /// None that this user can see: an exited process's, or one of another
    /// user's that /proc does not show (the wait then ends in a refusal).
    NoneVisible,
}

/// Who holds the TCP sockets listening on `port` (any address).
fn listener_owner(port: u16) -> Owner {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| listening_inodes(&t, port))
        .collect();
    if inodes.is_empty() {
        return Owner::NoneVisible;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Owner::NoneVisible };
    for p in procs.flatten() {
        if !p.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| target.as_os_str() == w.as_str())
            {
                return Owner::Live;
            }
        }
    }
    Owner::NoneVisible
}

/// Inodes of the sockets in LISTEN state (`0A`) on `port` in a
/// /proc/net/tcp{,6} table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1].ends_with(&port) && f[3] == "0A" && f[9] != "0").then(|| f[9].to_string())
        })
        .collect()
}

/// `-s PATH -a MASK`: one UNIX socket, listening, with the permissions
/// `mask`, and a dup of it for each of `per_core` cores (each core accepts
/// on its own descriptor; the kernel hands each connection to one). A
/// socket file left by a server that is gone is replaced, as memcached
/// does; one a live server answers on is refused.
pub fn bind_unix(path: &str, mask: u32, backlog: i32, per_core: usize) -> Result<Vec<RawFd>, String> {
    use std::os::unix::fs::FileTypeExt;
    let fail = |e: io::Error| format!("failed to listen on UNIX socket {path}: {e}");
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!("failed to listen on UNIX socket {path}: a file that is not a socket is there"));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("failed to listen on UNIX socket {path}: address already in use"));
        }
        std::fs::remove_file(path).map_err(fail)?;
    }
    let s = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
    let addr = socket2::SockAddr::unix(path).map_err(fail)?;
    // As memcached: the umask gives the socket file `mask`'s permissions.
    // SAFETY: umask only; no other thread runs yet.
    let old = unsafe { libc::umask(!mask & 0o777) };
    let bound = s.bind(&addr);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    bound.map_err(fail)?;
    s.listen(backlog).map_err(fail)?;
    s.set_nonblocking(true).map_err(fail)?;
    let mut fds = Vec::with_capacity(per_core);
    for _ in 1..per_core {
        fds.push(s.try_clone().map_err(fail)?.into_raw_fd());
    }
    fds.push(s.into_raw_fd());
    Ok(fds)
}

/// The port file (`--port-file`): one line per client address, in the form
/// memcached writes to `MEMCACHED_PORT_FILENAME` (`TCP INET: 11211`,
/// `TCP INET6: 11211`), so that one harness reads both servers' files.
pub fn port_file_text(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| format!("TCP {}: {}\n", if a.is_ipv6() { "INET6" } else { "INET" }, a.port())).collect()
}

fn bind_error(addr: SocketAddr, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!("failed to listen on {addr}: address already in use"),
        io::ErrorKind::PermissionDenied => format!("failed to listen on {addr}: permission denied"),
        io::ErrorKind::AddrNotAvailable => format!("failed to listen on {addr}: address not available on this host"),
        _ => format!("failed to listen on {addr}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_takes_one_free_port_for_every_core() {
        let addrs = ["127.0.0.1:0".parse().unwrap()];
        let bound = bind_all(&addrs, 3, 16).unwrap();
        let port = bound.addrs[0].port();
        assert_ne!(port, 0);
        for core in &bound.fds {
            // SAFETY: bind_all handed over these fds; the Socket closes each once.
            let s = unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(core[0]) };
            assert_eq!(s.local_addr().unwrap().as_socket().unwrap().port(), port);
        }
    }

    #[test]
    fn a_live_listener_is_refused_at_once() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(listener_owner(addr.port()), Owner::Live);
        let t0 = Instant::now();
        let e = bind_all(&[addr], 1, 16).err().unwrap();
        assert!(e.contains("address already in use"), "{e}");
        assert!(t0.elapsed() < ORPHAN_WAIT / 2, "took {:?}", t0.elapsed());
    }

    #[test]
    fn listening_inodes_are_read_from_the_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2BCB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123 1 0
   1: 0100007F:2BCB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 456 1 0
   2: 0100007F:2BCC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 789 1 0";
        assert_eq!(listening_inodes(table, 11211), vec!["123".to_string()]);
    }

    #[test]
    fn port_file_reads_as_memcacheds() {
        let addrs = ["127.0.0.1:40935".parse().unwrap(), "[::1]:40935".parse().unwrap()];
        assert_eq!(port_file_text(&addrs), "TCP INET: 40935\nTCP INET6: 40935\n");
    }
}
