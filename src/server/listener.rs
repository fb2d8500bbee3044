//! Listening sockets: one per address per core, all on the same port with
//! SO_REUSEPORT, so the kernel spreads connections over the cores.

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

/// Bind `per_core` listeners on each address. Fails with a clear message if
/// any address is taken, including by another process using SO_REUSEPORT
/// (a probe bind without it detects that, so two servers never silently
/// share a port). Returns raw fds: `[core][address]`.
pub fn bind_all(addrs: &[SocketAddr], per_core: usize, backlog: i32) -> Result<Vec<Vec<RawFd>>, String> {
    let mut fds: Vec<Vec<RawFd>> = vec![Vec::new(); per_core];
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
    }
    Ok(fds)
}

fn bind_error(addr: SocketAddr, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!("failed to listen on {addr}: address already in use"),
        io::ErrorKind::PermissionDenied => format!("failed to listen on {addr}: permission denied"),
        io::ErrorKind::AddrNotAvailable => format!("failed to listen on {addr}: address not available on this host"),
        _ => format!("failed to listen on {addr}: {e}"),
    }
}
