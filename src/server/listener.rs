//! Listening sockets: one per address per core, all on the same port with
//! SO_REUSEPORT, so the kernel spreads connections over the cores.
//!
//! Plain sockets (socket2): imports nothing of memcore's; nothing below
//! imports it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

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
            let probe = new_socket(addr, false).map_err(|e| format!("cannot create socket for {addr}: {e}"))?;
            probe.bind(&addr.into()).map_err(|e| bind_error(addr, e))?;
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
    fn port_file_reads_as_memcacheds() {
        let addrs = ["127.0.0.1:40935".parse().unwrap(), "[::1]:40935".parse().unwrap()];
        assert_eq!(port_file_text(&addrs), "TCP INET: 40935\nTCP INET6: 40935\n");
    }
}
