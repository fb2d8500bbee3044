//! raw_loop: a single-threaded, minimal memcached text-protocol server used
//! only as a measuring stick (issue 5): how far can one core go on this
//! kernel with a raw epoll loop or a raw io_uring loop, next to memcached and
//! memcore?  Not part of the server; built as an example:
//!
//! ```text
//! cargo build --release --example raw_loop
//! target/release/examples/raw_loop --mode epoll --port 11311
//! ```
//!
//! It understands just enough of the text protocol for memtier_benchmark:
//! `get`/`gets` with one or more keys, `set <key> <flags> <exptime> <bytes>
//! [noreply]` (exptime is ignored), `stats` (cmd_get, cmd_set, get_hits,
//! curr_items), `version` and `quit`.  Items live in a std
//! `HashMap<Vec<u8>, (u32, Vec<u8>)>`, with no memory limit and no eviction.
//! Everything complete in the input buffer is parsed, and the replies of one
//! read go out with one send.
//!
//! Modes (`--mode`):
//! * `epoll`: non-blocking sockets, level-triggered epoll as in memcached
//!   (epoll_wait for up to 64 events, read(2) until a short read, one
//!   write(2) per batch of replies; EPOLLOUT only while a reply is
//!   unsent).
//! * `uring-poll`: io_uring one-shot POLL_ADD for readiness, plain
//!   recv(2)/send(2) syscalls for the data (what glommio 0.9 does for its
//!   sockets).
//! * `uring`: completion-based: IORING_OP_RECV into the connection's buffer,
//!   IORING_OP_SEND of its reply buffer, IORING_OP_ACCEPT for the listener;
//!   one io_uring_enter (submit and wait) per loop iteration for all
//!   connections.  `--poll-first` sets IORING_RECVSEND_POLL_FIRST on the
//!   receives (skip the first, usually empty, receive attempt).
//! * `uring-multishot`: one multishot IORING_OP_RECV per connection, with
//!   buffers from a provided buffer ring (IORING_REGISTER_PBUF_RING), sends
//!   as in `uring`, multishot accept.
//!
//! `--setup none|coop|defer` picks the ring's task-run flags for the io_uring
//! modes: none, IORING_SETUP_COOP_TASKRUN, or IORING_SETUP_SINGLE_ISSUER +
//! IORING_SETUP_DEFER_TASKRUN.
//!
//! Listens on 127.0.0.1:`--port` (default 11311).  Stop it with SIGTERM or
//! SIGINT.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;

/// Free space wanted in a connection's input buffer before each read.
const READ_MIN: usize = 4096;
/// Initial input / output buffer size of a connection.
const BUF_INIT: usize = 16 * 1024;
/// A command line longer than this without a newline is an error.
const MAX_LINE: usize = 8192;

// ---------------------------------------------------------------------------
// The store and the protocol.

#[derive(Default)]
struct Store {
    items: HashMap<Vec<u8>, (u32, Vec<u8>)>,
    cmd_get: u64,
    cmd_set: u64,
    get_hits: u64,
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

impl Store {
    /// Handle every complete request in `buf`, appending replies to `out`.
    /// Returns the bytes consumed and whether the connection should close.
    fn process(&mut self, buf: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > MAX_LINE {
                    out.extend_from_slice(b"CLIENT_ERROR line too long\r\n");
                    return (buf.len(), true);
                }
                break;
            };
            let line_len = nl + 1;
            let line = match rest[..nl].last() {
                Some(b'\r') => &rest[..nl - 1],
                _ => &rest[..nl],
            };
            let mut toks = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
            match toks.next() {
                Some(b"get") | Some(b"gets") => {
                    for key in toks {
                        self.cmd_get += 1;
                        if let Some((flags, data)) = self.items.get(key) {
                            self.get_hits += 1;
                            out.extend_from_slice(b"VALUE ");
                            out.extend_from_slice(key);
                            out.push(b' ');
                            put_u64(out, u64::from(*flags));
                            out.push(b' ');
                            put_u64(out, data.len() as u64);
                            out.extend_from_slice(b"\r\n");
                            out.extend_from_slice(data);
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    out.extend_from_slice(b"END\r\n");
                    pos += line_len;
                }
                Some(b"set") => {
                    let key = toks.next();
                    let flags = toks.next().and_then(parse_u64);
                    let exptime = toks.next().and_then(parse_u64);
                    let bytes = toks.next().and_then(parse_u64);
                    let noreply = toks.next() == Some(b"noreply");
                    let (Some(key), Some(flags), Some(_), Some(bytes)) = (key, flags, exptime, bytes) else {
                        out.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                        return (buf.len(), true);
                    };
                    if key.len() > 250 || flags > u64::from(u32::MAX) || bytes > 1 << 30 {
                        out.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                        return (buf.len(), true);
                    }
                    let bytes = bytes as usize;
                    let need = line_len + bytes + 2;
                    if rest.len() < need {
                        break; // wait for the rest of the data block
                    }
                    if &rest[line_len + bytes..need] != b"\r\n" {
                        out.extend_from_slice(b"CLIENT_ERROR bad data chunk\r\n");
                        return (buf.len(), true);
                    }
                    let data = &rest[line_len..line_len + bytes];
                    self.cmd_set += 1;
                    match self.items.get_mut(key) {
                        Some(item) => {
                            item.0 = flags as u32;
                            item.1.clear();
                            item.1.extend_from_slice(data);
                        }
                        None => {
                            self.items.insert(key.to_vec(), (flags as u32, data.to_vec()));
                        }
                    }
                    if !noreply {
                        out.extend_from_slice(b"STORED\r\n");
                    }
                    pos += need;
                }
                Some(b"stats") => {
                    for (name, v) in [
                        (&b"cmd_get"[..], self.cmd_get),
                        (b"cmd_set", self.cmd_set),
                        (b"get_hits", self.get_hits),
                        (b"curr_items", self.items.len() as u64),
                    ] {
                        out.extend_from_slice(b"STAT ");
                        out.extend_from_slice(name);
                        out.push(b' ');
                        put_u64(out, v);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"END\r\n");
                    pos += line_len;
                }
                Some(b"version") => {
                    out.extend_from_slice(b"VERSION raw_loop\r\n");
                    pos += line_len;
                }
                Some(b"quit") => return (buf.len(), true),
                _ => {
                    out.extend_from_slice(b"ERROR\r\n");
                    pos += line_len;
                }
            }
        }
        (pos, false)
    }
}

// ---------------------------------------------------------------------------
// Connections.

struct Conn {
    fd: RawFd,
    /// Received bytes not yet consumed (len = filled).
    inbuf: Vec<u8>,
    /// Replies; `out[sent..]` is still to be sent.
    out: Vec<u8>,
    sent: usize,
    /// io_uring modes: operations in flight for this connection.
    inflight: u32,
    /// A send is in flight (uring modes).
    sending: bool,
    /// Close once nothing is in flight.
    closing: bool,
    /// Close once the pending replies are sent (after quit or an error).
    close_after_send: bool,
}

impl Conn {
    fn new(fd: RawFd) -> Conn {
        Conn {
            fd,
            inbuf: Vec::with_capacity(BUF_INIT),
            out: Vec::with_capacity(BUF_INIT),
            sent: 0,
            inflight: 0,
            sending: false,
            closing: false,
            close_after_send: false,
        }
    }

    /// Room to receive into: pointer and length of the input buffer's spare
    /// capacity (at least READ_MIN bytes).
    fn spare(&mut self) -> (*mut u8, usize) {
        if self.inbuf.capacity() - self.inbuf.len() < READ_MIN {
            self.inbuf.reserve(BUF_INIT);
        }
        let len = self.inbuf.len();
        // SAFETY: len <= capacity, so the pointer stays inside the allocation.
        let p = unsafe { self.inbuf.as_mut_ptr().add(len) };
        (p, self.inbuf.capacity() - len)
    }

    /// `n` bytes were written into the spare capacity returned by `spare`.
    fn filled(&mut self, n: usize) {
        let len = self.inbuf.len() + n;
        assert!(len <= self.inbuf.capacity());
        // SAFETY: the kernel initialized these n bytes of spare capacity.
        unsafe { self.inbuf.set_len(len) };
    }

    /// Parse and answer everything complete in the input buffer.  Returns
    /// true if the connection should close.
    fn handle_input(&mut self, store: &mut Store) -> bool {
        let (used, close) = store.process(&self.inbuf, &mut self.out);
        self.inbuf.drain(..used);
        close
    }

    fn unsent(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// `n` more reply bytes went out; true once all of them have.
    fn advance(&mut self, n: usize) -> bool {
        self.sent += n;
        if self.sent >= self.out.len() {
            self.out.clear();
            self.sent = 0;
            true
        } else {
            false
        }
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(r: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if r < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(r)
    }
}

fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: plain setsockopt on a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn listen_on(port: u16, nonblocking: bool) -> io::Result<RawFd> {
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket calls with valid arguments.
    unsafe {
        let fd = check(libc::socket(libc::AF_INET, ty, 0), "socket")?;
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        check(
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            "bind",
        )?;
        check(libc::listen(fd, 1024), "listen")?;
        Ok(fd)
    }
}

// ---------------------------------------------------------------------------
// Mode epoll.

const LISTENER: u64 = u64::MAX;

fn epoll_set(ep: RawFd, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: valid epoll fd and event.
    check(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }, "epoll_ctl").map(drop)
}

fn run_epoll(listener: RawFd, store: &mut Store) -> io::Result<()> {
    // SAFETY: plain syscall.
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }, "epoll_create1")?;
    epoll_set(ep, libc::EPOLL_CTL_ADD, listener, libc::EPOLLIN as u32, LISTENER)?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        // SAFETY: events has room for 64 entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 64, -1) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(io::Error::last_os_error());
        }
        for ev in &events[..n as usize] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                loop {
                    // SAFETY: accept4 on our listener; null address is allowed.
                    let fd = unsafe {
                        libc::accept4(
                            listener,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        break; // EAGAIN (or a transient error): wait for the next event
                    }
                    set_nodelay(fd);
                    let key = conns.insert(Conn::new(fd));
                    epoll_set(ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, key as u64)?;
                }
                continue;
            }
            let key = token as usize;
            if !conns.contains(key) {
                continue;
            }
            if !epoll_conn(ep, key as u64, &mut conns[key], flags, store)? {
                let c = conns.remove(key);
                // SAFETY: closing a socket we own (also drops it from the epoll set).
                unsafe { libc::close(c.fd) };
            }
        }
    }
}

/// One epoll event for a connection; false = close it.
fn epoll_conn(ep: RawFd, token: u64, c: &mut Conn, flags: u32, store: &mut Store) -> io::Result<bool> {
    if !c.unsent().is_empty() {
        // Waiting for EPOLLOUT: flush, then go back to reading.
        if flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
            return Ok(true);
        }
        return epoll_flush(ep, token, c, true);
    }
    // Read until a short read (as memcached does).
    loop {
        let (p, room) = c.spare();
        // SAFETY: p points to `room` writable bytes of the input buffer.
        let n = unsafe { libc::read(c.fd, p.cast(), room) };
        if n > 0 {
            c.filled(n as usize);
            if (n as usize) < room {
                break;
            }
        } else if n == 0 {
            return Ok(false);
        } else {
            match errno() {
                libc::EAGAIN | libc::EINTR => break,
                _ => return Ok(false),
            }
        }
    }
    let close = c.handle_input(store);
    if c.unsent().is_empty() {
        return Ok(!close);
    }
    let keep = epoll_flush(ep, token, c, false)?;
    Ok(keep && !close)
}

/// One write of the pending replies; switch interest to EPOLLOUT while some
/// remain, back to EPOLLIN when done (if `was_out`).
fn epoll_flush(ep: RawFd, token: u64, c: &mut Conn, was_out: bool) -> io::Result<bool> {
    let buf = c.unsent();
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::write(c.fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 && !matches!(errno(), libc::EAGAIN | libc::EINTR) {
        return Ok(false);
    }
    let done = c.advance(n.max(0) as usize);
    if done && was_out {
        epoll_set(ep, libc::EPOLL_CTL_MOD, c.fd, libc::EPOLLIN as u32, token)?;
    } else if !done && !was_out {
        epoll_set(ep, libc::EPOLL_CTL_MOD, c.fd, libc::EPOLLOUT as u32, token)?;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------
// io_uring modes.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Epoll,
    UringPoll,
    Uring,
    UringMultishot,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    None,
    Coop,
    Defer,
}

// user_data = key << 3 | kind
const K_ACCEPT: u64 = 1; // listener: POLL_ADD (uring-poll) or ACCEPT
const K_POLL_IN: u64 = 2;
const K_POLL_OUT: u64 = 3;
const K_RECV: u64 = 4;
const K_SEND: u64 = 5;
const K_RECV_MULTI: u64 = 6;

const IORING_RECVSEND_POLL_FIRST: u16 = 1;
const BGID: u16 = 0;

/// A provided-buffer ring (IORING_REGISTER_PBUF_RING) for multishot recv.
struct BufRing {
    ring: *mut types::BufRingEntry,
    ring_bytes: usize,
    entries: u16,
    tail: u16,
    buf_size: usize,
    bufs: Vec<u8>,
}

impl BufRing {
    fn new(ring: &IoUring, entries: u16, buf_size: usize) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let ring_bytes = usize::from(entries) * size_of::<types::BufRingEntry>();
        // SAFETY: anonymous mapping; page aligned, as the kernel wants.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut br = BufRing {
            ring: p.cast(),
            ring_bytes,
            entries,
            tail: 0,
            buf_size,
            bufs: vec![0u8; usize::from(entries) * buf_size],
        };
        // SAFETY: the mapping lives as long as the BufRing, which outlives
        // every receive that uses it (the process exits with it).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(p as u64, entries, BGID, 0)?;
        }
        for bid in 0..entries {
            br.give_back(bid);
        }
        br.publish();
        Ok(br)
    }

    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let off = usize::from(bid) * self.buf_size;
        &self.bufs[off..off + len]
    }

    /// Queue buffer `bid` for the kernel again (visible after `publish`).
    fn give_back(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries, inside the mapping.
        let e = unsafe { &mut *self.ring.add(idx) };
        let off = usize::from(bid) * self.buf_size;
        e.set_addr(self.bufs[off..].as_ptr() as u64);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the ring head, written with release
        // ordering as liburing does.
        unsafe {
            let t = types::BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*t).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.ring.cast(), self.ring_bytes) };
    }
}

struct Uring {
    mode: Mode,
    poll_first: bool,
    listener: RawFd,
    conns: Slab<Conn>,
    pending: Vec<squeue::Entry>,
    bufring: Option<BufRing>,
}

fn ud(key: usize, kind: u64) -> u64 {
    (key as u64) << 3 | kind
}

impl Uring {
    fn arm_accept(&mut self) {
        let fd = types::Fd(self.listener);
        let e = match self.mode {
            Mode::UringPoll => opcode::PollAdd::new(fd, libc::POLLIN as u32).build(),
            Mode::UringMultishot => opcode::AcceptMulti::new(fd).flags(libc::SOCK_CLOEXEC).build(),
            _ => opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut()).flags(libc::SOCK_CLOEXEC).build(),
        };
        self.pending.push(e.user_data(K_ACCEPT));
    }

    fn push(&mut self, key: usize, e: squeue::Entry, kind: u64) {
        self.conns[key].inflight += 1;
        self.pending.push(e.user_data(ud(key, kind)));
    }

    fn arm_poll(&mut self, key: usize, events: i16, kind: u64) {
        let fd = self.conns[key].fd;
        let e = opcode::PollAdd::new(types::Fd(fd), events as u32).build();
        self.push(key, e, kind);
    }

    fn arm_recv(&mut self, key: usize) {
        let c = &mut self.conns[key];
        let fd = c.fd;
        let (p, room) = c.spare();
        let mut op = opcode::Recv::new(types::Fd(fd), p, room as u32);
        if self.poll_first {
            op = op.ioprio(IORING_RECVSEND_POLL_FIRST);
        }
        self.push(key, op.build(), K_RECV);
    }

    fn arm_recv_multi(&mut self, key: usize) {
        let fd = self.conns[key].fd;
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID).build();
        self.push(key, e, K_RECV_MULTI);
    }

    fn arm_send(&mut self, key: usize) {
        let c = &mut self.conns[key];
        c.sending = true;
        let buf = c.unsent();
        let e = opcode::Send::new(types::Fd(c.fd), buf.as_ptr(), buf.len() as u32).flags(libc::MSG_NOSIGNAL).build();
        self.push(key, e, K_SEND);
    }

    fn new_conn(&mut self, fd: RawFd) {
        set_nodelay(fd);
        let key = self.conns.insert(Conn::new(fd));
        match self.mode {
            Mode::UringPoll => self.arm_poll(key, libc::POLLIN, K_POLL_IN),
            Mode::Uring => self.arm_recv(key),
            Mode::UringMultishot => self.arm_recv_multi(key),
            Mode::Epoll => unreachable!(),
        }
    }

    /// Ask for the connection to close: shut it down so that an armed
    /// multishot receive completes; the fd is closed once nothing is in
    /// flight.
    fn close(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if !c.closing {
            c.closing = true;
            // SAFETY: our socket.
            unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
        }
    }

    /// Close after a protocol error or quit: send the pending replies
    /// (an error message) first.
    fn close_after_send(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if c.unsent().is_empty() {
            return self.close(key);
        }
        c.close_after_send = true;
        match self.mode {
            Mode::UringPoll => {
                let buf = c.unsent();
                // SAFETY: buf is valid for its length; best effort.
                unsafe { libc::send(c.fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
                self.close(key);
            }
            _ if c.sending => {}
            _ => self.arm_send(key),
        }
    }

    fn reap(&mut self, key: usize) {
        let c = &self.conns[key];
        if c.closing && c.inflight == 0 {
            let c = self.conns.remove(key);
            // SAFETY: our socket, nothing in flight on it.
            unsafe { libc::close(c.fd) };
        }
    }

    fn complete(&mut self, user_data: u64, res: i32, flags: u32, store: &mut Store) {
        let kind = user_data & 7;
        if kind == K_ACCEPT {
            self.on_accept(res, flags);
            return;
        }
        let key = (user_data >> 3) as usize;
        let more = cqueue::more(flags);
        if !more {
            self.conns[key].inflight -= 1;
        }
        if self.conns[key].closing {
            if let Some(bid) = cqueue::buffer_select(flags) {
                self.bufring.as_mut().unwrap().give_back(bid);
            }
            self.reap(key);
            return;
        }
        match kind {
            K_POLL_IN => self.on_poll_in(key, store),
            K_POLL_OUT => self.on_poll_out(key),
            K_RECV => self.on_recv(key, res, store),
            K_SEND => self.on_send(key, res, store),
            K_RECV_MULTI => self.on_recv_multi(key, res, flags, more, store),
            _ => unreachable!("kind {kind}"),
        }
        self.reap(key);
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        match self.mode {
            Mode::UringPoll => {
                loop {
                    // SAFETY: accept4 on our non-blocking listener.
                    let fd = unsafe {
                        libc::accept4(
                            self.listener,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        break;
                    }
                    self.new_conn(fd);
                }
                self.arm_accept();
            }
            _ => {
                if res >= 0 {
                    self.new_conn(res);
                }
                if !cqueue::more(flags) {
                    self.arm_accept();
                }
            }
        }
    }

    // uring-poll: readable.
    fn on_poll_in(&mut self, key: usize, store: &mut Store) {
        let c = &mut self.conns[key];
        let mut got = false;
        loop {
            let (p, room) = c.spare();
            // SAFETY: p points to `room` writable bytes.
            let n = unsafe { libc::recv(c.fd, p.cast(), room, 0) };
            if n > 0 {
                c.filled(n as usize);
                got = true;
                if (n as usize) < room {
                    break;
                }
            } else if n == 0 {
                return self.close(key);
            } else {
                match errno() {
                    libc::EAGAIN | libc::EINTR => break,
                    _ => return self.close(key),
                }
            }
        }
        if got && c.handle_input(store) {
            return self.close_after_send(key);
        }
        if c.unsent().is_empty() {
            return self.arm_poll(key, libc::POLLIN, K_POLL_IN);
        }
        self.poll_flush(key);
    }

    // uring-poll: one send(2); re-arm for POLLOUT while some is left.
    fn poll_flush(&mut self, key: usize) {
        let c = &mut self.conns[key];
        let buf = c.unsent();
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::send(c.fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 && !matches!(errno(), libc::EAGAIN | libc::EINTR) {
            return self.close(key);
        }
        if c.advance(n.max(0) as usize) {
            self.arm_poll(key, libc::POLLIN, K_POLL_IN);
        } else {
            self.arm_poll(key, libc::POLLOUT, K_POLL_OUT);
        }
    }

    fn on_poll_out(&mut self, key: usize) {
        self.poll_flush(key);
    }

    // uring: a receive completed.
    fn on_recv(&mut self, key: usize, res: i32, store: &mut Store) {
        if res == -libc::EAGAIN || res == -libc::EINTR {
            return self.arm_recv(key);
        }
        if res <= 0 {
            return self.close(key);
        }
        let c = &mut self.conns[key];
        c.filled(res as usize);
        if c.handle_input(store) {
            return self.close_after_send(key);
        }
        if c.unsent().is_empty() {
            self.arm_recv(key); // incomplete request: read more
        } else {
            self.arm_send(key);
        }
    }

    // uring / uring-multishot: a send completed.
    fn on_send(&mut self, key: usize, res: i32, store: &mut Store) {
        if res < 0 && res != -libc::EAGAIN && res != -libc::EINTR {
            return self.close(key);
        }
        let c = &mut self.conns[key];
        c.sending = false;
        if !c.advance(res.max(0) as usize) {
            return self.arm_send(key);
        }
        if c.close_after_send {
            return self.close(key);
        }
        match self.mode {
            Mode::Uring => self.arm_recv(key),
            _ => {
                // Input that arrived while the send was in flight.
                if !c.inbuf.is_empty() {
                    if c.handle_input(store) {
                        return self.close_after_send(key);
                    }
                    if !c.unsent().is_empty() {
                        self.arm_send(key);
                    }
                }
            }
        }
    }

    // uring-multishot: data in a provided buffer (or the end of the shot).
    fn on_recv_multi(&mut self, key: usize, res: i32, flags: u32, more: bool, store: &mut Store) {
        if res > 0 {
            let bid = cqueue::buffer_select(flags).expect("multishot recv without a buffer");
            let br = self.bufring.as_mut().unwrap();
            let data = br.buf(bid, res as usize);
            let c = &mut self.conns[key];
            if c.close_after_send {
                br.give_back(bid);
                return;
            }
            let mut close = false;
            if c.sending || !c.inbuf.is_empty() {
                c.inbuf.extend_from_slice(data);
                if !c.sending {
                    close = c.handle_input(store);
                }
            } else {
                // The common case: parse straight from the provided buffer.
                let (used, cl) = store.process(data, &mut c.out);
                close = cl;
                if used < data.len() {
                    c.inbuf.extend_from_slice(&data[used..]);
                }
            }
            br.give_back(bid);
            if close {
                return self.close_after_send(key);
            }
            if !c.sending && !c.unsent().is_empty() {
                self.arm_send(key);
            }
            if !more {
                self.arm_recv_multi(key);
            }
            return;
        }
        if res == -libc::ENOBUFS || res == -libc::EAGAIN || res == -libc::EINTR {
            if !more {
                self.arm_recv_multi(key);
            }
            return;
        }
        self.close(key);
    }
}

fn run_uring(listener: RawFd, mode: Mode, setup: Setup, poll_first: bool, store: &mut Store) -> io::Result<()> {
    let mut b = IoUring::builder();
    match setup {
        Setup::None => {}
        Setup::Coop => {
            b.setup_coop_taskrun();
        }
        Setup::Defer => {
            b.setup_single_issuer().setup_defer_taskrun();
        }
    }
    b.setup_cqsize(16384);
    let mut ring: IoUring = b.build(4096)?;
    let bufring = if mode == Mode::UringMultishot { Some(BufRing::new(&ring, 4096, 4096)?) } else { None };
    let mut u = Uring { mode, poll_first, listener, conns: Slab::new(), pending: Vec::with_capacity(1024), bufring };
    u.arm_accept();
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
    loop {
        // Queue this iteration's new operations, then one io_uring_enter
        // that submits them and waits for at least one completion.
        let mut i = 0;
        while i < u.pending.len() {
            let mut sq = ring.submission();
            while i < u.pending.len() {
                // SAFETY: every buffer an entry points to lives in a Conn
                // (or the BufRing) until its completion is reaped.
                if unsafe { sq.push(&u.pending[i]) }.is_err() {
                    break;
                }
                i += 1;
            }
            drop(sq);
            if i < u.pending.len() {
                ring.submit()?;
            }
        }
        u.pending.clear();
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        cqes.clear();
        cqes.extend(ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for &(user_data, res, flags) in &cqes {
            u.complete(user_data, res, flags, store);
        }
        if let Some(br) = &u.bufring {
            br.publish();
        }
    }
}

// ---------------------------------------------------------------------------

fn usage() -> ! {
    eprintln!(
        "usage: raw_loop [--mode epoll|uring-poll|uring|uring-multishot] [--port N] \
         [--setup none|coop|defer] [--poll-first]"
    );
    std::process::exit(2);
}

fn main() -> io::Result<()> {
    let mut mode = Mode::Epoll;
    let mut setup = Setup::None;
    let mut port: u16 = 11311;
    let mut poll_first = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).unwrap_or_else(|| usage());
        match name.as_str() {
            "--mode" => {
                mode = match value().as_str() {
                    "epoll" => Mode::Epoll,
                    "uring-poll" => Mode::UringPoll,
                    "uring" => Mode::Uring,
                    "uring-multishot" => Mode::UringMultishot,
                    _ => usage(),
                }
            }
            "--setup" => {
                setup = match value().as_str() {
                    "none" => Setup::None,
                    "coop" => Setup::Coop,
                    "defer" => Setup::Defer,
                    _ => usage(),
                }
            }
            "--port" | "-p" => port = value().parse().unwrap_or_else(|_| usage()),
            "--poll-first" => poll_first = true,
            // `cargo bench`-style invocations pass --bench; ignore it.
            "--bench" => {}
            _ => usage(),
        }
    }
    // SAFETY: ignoring SIGPIPE (writes to closed sockets return EPIPE).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let nonblocking = matches!(mode, Mode::Epoll | Mode::UringPoll);
    let listener = listen_on(port, nonblocking)?;
    eprintln!(
        "raw_loop: mode {mode:?}, setup {setup:?}{}, listening on 127.0.0.1:{port}",
        if poll_first { ", poll-first" } else { "" }
    );
    let mut store = Store::default();
    store.items.reserve(200_000);
    match mode {
        Mode::Epoll => run_epoll(listener, &mut store),
        _ => run_uring(listener, mode, setup, poll_first, &mut store),
    }
}
