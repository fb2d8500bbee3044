//! The replication links' tasks (glommio): one outgoing link per (core,
//! peer), the inbound accept loop on every core, and routing received ops
//! to their owner cores over the mesh.
//!
//! Outgoing link life: resolve the peer's name (on a helper thread: DNS
//! may block) and connect (exponential backoff with jitter between tries)
//! → HELLO / CHALLENGE / AUTH both ways, within `HANDSHAKE_TIMEOUT` → the
//! session tags every frame from here on (wire.rs) → the peer's RESUME
//! point → either
//! the backlog after it, or a full resync (SNAP_BEGIN, the store a segment
//! at a time, tombstones, SNAP_END) → the live stream. A second task reads
//! the ACKs. Any error drops the link and starts over.
//!
//! Heartbeats: each side of a link writes a HEARTBEAT frame whenever it
//! wrote nothing for `--repl-heartbeat` (the accepting side also while it
//! is busy applying a snapshot, which it does not acknowledge), and each
//! side drops the link when it received no bytes for
//! `ReplConfig::silence_limit` (4 intervals). So a peer that vanishes
//! without a reset (a network split, a stopped process) is noticed within
//! about a second: its link goes down, `sync` writes stop waiting for it,
//! and the link task reconnects with backoff once the peer answers again.
//!
//! Inbound connections are capped (`--repl-max-links`, over all cores,
//! apart from the clients' `-c`) and each must finish its handshake within
//! `HANDSHAKE_TIMEOUT`, so strangers at the replication port can hold
//! only a bounded number of descriptors, briefly. An ACK for a batch this
//! side never sent is a protocol error that drops the link.
//!
//! The tasks take a `Host` (host.rs), never a core's whole state: they
//! must not import `route` or `server`.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::backlog::{Backlog, Resume};
use super::host::Host;
use super::wire::{self, Hello, NONCE_LEN, Reader};
use super::{LINK_CONNECTING, LINK_DOWN, LINK_LIVE, LINK_SYNCING, ReplShared, random_bytes, unix_ms};
use crate::wake::Notify;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// The whole handshake, from accept (or connect) to the session's start.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(2000);
/// How long a peer's name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_millis(2000);
const BACKOFF_MIN_MS: u64 = 50;
const BACKOFF_MAX_MS: u64 = 2000;
/// Pending ops are sealed into a batch at once past this size, even with
/// no link running to seal them.
const SEAL_AT: usize = 256 * 1024;
/// Bytes written to a link per write call, at most (a batch more).
const WRITE_CHUNK: usize = 1 << 20;
/// In `async` mode a link writes at most once per this interval while
/// writes keep coming (the first write after a quiet spell goes at once):
/// each write to a peer costs syscalls and a wake-up on both nodes, so
/// under load the ops of this interval share one. It adds at most this
/// much to the replication lag. `sync` and `majority` writes go at once.
const LINGER: Duration = Duration::from_micros(500);
/// ... unless this many bytes are pending already.
const LINGER_MAX_PENDING: usize = 64 * 1024;

/// One core's replication state that only this core touches.
pub struct ReplCore {
    pub backlog: RefCell<Backlog>,
    /// Wakes each outgoing link task (new ops, or its ack reader died).
    pub wake: Vec<Notify>,
}

impl ReplCore {
    pub fn new(npeers: usize, backlog_bytes: usize) -> Self {
        ReplCore {
            backlog: RefCell::new(Backlog::new(super::random_u64(), backlog_bytes)),
            wake: (0..npeers).map(|_| Notify::default()).collect(),
        }
    }
}

fn shared<H: Host>(core: &H) -> &ReplShared {
    core.shared().expect("replication configured")
}

fn local<H: Host>(core: &H) -> &ReplCore {
    core.local().expect("replication configured")
}

/// Seal this core's pending ops into the backlog.
pub fn seal<H: Host>(core: &H) {
    let (Some(sh), Some(rc)) = (core.shared(), core.local()) else { return };
    core.with_store(|_, r| {
        if r.pending.is_empty() {
            return;
        }
        let mut b = rc.backlog.borrow_mut();
        r.pending_ops = 0;
        b.seal(&mut r.pending, unix_ms());
        sh.pending_seq[core.core_id()].store(b.last_seq() + 1, Ordering::Release);
    });
}

/// Bytes of this core's ops not yet sealed into a batch.
fn pending_bytes<H: Host>(core: &H) -> usize {
    core.with_store(|_, r| r.pending.len()).unwrap_or(0)
}

/// After local writes: wake the links (and seal when much is pending).
/// In the `sync` and `majority` modes every write is sealed at once, so
/// that a connection waiting for it knows a seq that covers it: the last
/// sealed one when its reply arrived.
pub fn kick<H: Host>(core: &H) {
    let Some(rc) = core.local() else { return };
    let len = pending_bytes(core);
    if len == 0 {
        return;
    }
    if len >= SEAL_AT || shared(core).cfg.mode != super::Mode::Async {
        seal(core);
    }
    rc.wake.iter().for_each(Notify::notify);
}

/// For the `sync` and `majority` modes: wait until a write that core
/// `core` sealed in batch `target` or before reached enough peers (`live`:
/// those connected when it was made), or `--repl-timeout` passed; then
/// how many peers had it and how many it needed. The core's ACK readers
/// wake the wait (`AckWaiters`); nothing polls.
pub async fn wait_acked(sh: &ReplShared, core: usize, target: u64, live: &[usize]) -> Result<(), (usize, usize)> {
    let acked = std::future::poll_fn(|cx| {
        if sh.acked_enough(core, target, live).is_ok() {
            return std::task::Poll::Ready(());
        }
        sh.ack_waiters[core].register(cx.waker());
        // An ACK that came between the check and the registration woke
        // nobody: look again.
        if sh.acked_enough(core, target, live).is_ok() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    });
    match with_timeout(sh.cfg.timeout, acked).await {
        Some(()) => Ok(()),
        None => sh.acked_enough(core, target, live),
    }
}

async fn with_timeout<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Write all of `buf`, or fail when the peer takes none of it for `limit`
/// (a peer that stopped reading must not hold a task forever).
async fn write_within(wr: &mut Sealed<impl AsyncWrite + Unpin>, buf: &[u8], limit: Duration) -> io::Result<()> {
    with_timeout(limit, wr.write_all(buf))
        .await
        .unwrap_or_else(|| Err(err(format!("peer took no bytes for {} ms", limit.as_millis()))))
}

/// Why an outgoing link ended, set by whichever of its two tasks (the
/// writer and the ACK reader) saw it first; wakes the other.
#[derive(Default)]
struct LinkEnd {
    reason: RefCell<Option<String>>,
    notify: Notify,
}

impl LinkEnd {
    fn end(&self, why: impl Into<String>) {
        let mut r = self.reason.borrow_mut();
        if r.is_none() {
            *r = Some(why.into());
        }
        drop(r);
        self.notify.notify();
    }

    fn is_over(&self) -> bool {
        self.reason.borrow().is_some()
    }

    fn error(&self) -> io::Error {
        err(self.reason.borrow().clone().unwrap_or_else(|| "link closed".into()))
    }

    /// Run `f` unless the link ends first (then its reason is the error).
    async fn guard<T>(&self, f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
        if self.is_over() {
            return Err(self.error());
        }
        let r = futures_lite::future::or(async { Some(f.await) }, async {
            loop {
                self.notify.wait().await;
                if self.is_over() {
                    return None;
                }
            }
        })
        .await;
        match r {
            Some(Err(e)) => {
                self.end(e.to_string());
                Err(e)
            }
            Some(Ok(v)) => Ok(v),
            None => Err(self.error()),
        }
    }
}

/// Reads whole frames off a stream, and opens each one (checks its tag,
/// then decrypts it) once the session is keyed: nothing of a frame is
/// read before its tag passed. `next` is cancel-safe (bytes are kept in
/// the reader between calls), so it can be raced with a timer.
struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    /// The receiving direction of the session (plain until the handshake).
    open: wire::Session,
    /// When bytes last arrived (or the reader was made).
    progress: Instant,
    /// A frame failed to open: the link ends, and `repl_frames_rejected`
    /// counts it (`count_rejected`).
    rejected: bool,
}

impl FrameReader {
    fn new(max: usize) -> Self {
        FrameReader {
            buf: vec![0; 4 * 1024],
            start: 0,
            end: 0,
            max,
            open: wire::Session::plain(),
            progress: Instant::now(),
            rejected: false,
        }
    }

    /// The whole next frame with its tag, when buffered. Only its length
    /// is looked at (sealed, the rest is not readable yet).
    fn split(&self) -> io::Result<Option<Buffered>> {
        let avail = &self.buf[self.start..self.end];
        match wire::split_frame(avail, self.max) {
            Err(e) => Err(err(format!("bad frame: {e:?}"))),
            Ok(Some((_, range, used))) if avail.len() >= used + self.open.tag_len() => {
                Ok(Some((range, used, used + self.open.tag_len())))
            }
            Ok(_) => Ok(None),
        }
    }

    /// The next frame: (type, payload). None at a clean end of stream.
    async fn next(&mut self, s: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<(u8, Vec<u8>)>> {
        if self.rejected {
            return Err(err("the link already rejected a frame"));
        }
        loop {
            if let Some((range, len, used)) = self.split()? {
                let (frame, tag) = self.buf[self.start..self.start + used].split_at_mut(len);
                if !self.open.open(frame, tag) {
                    self.rejected = true;
                    return Err(err(
                        "a frame failed its tag check (changed, replayed, reordered or foreign); dropping the link",
                    ));
                }
                let kind = frame[4];
                let p = self.buf[self.start + range.start..self.start + range.end].to_vec();
                self.start += used;
                return Ok(Some((kind, p)));
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let want = (self.buf.len() * 2).min(self.max + 8 + wire::TAG_LEN).max(self.end + 1);
                self.buf.resize(want, 0);
            }
            let n = s.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return if self.end == 0 { Ok(None) } else { Err(err("stream ended inside a frame")) };
            }
            self.end += n;
            self.progress = Instant::now();
        }
    }

    /// The next frame, or None when nothing complete arrived within `wait`
    /// (the stream is untouched then; call again).
    async fn next_within(
        &mut self,
        s: &mut (impl AsyncRead + Unpin),
        wait: Duration,
    ) -> Option<io::Result<Option<(u8, Vec<u8>)>>> {
        with_timeout(wait, self.next(s)).await
    }

    /// Is a whole frame already buffered?
    fn has_frame(&self) -> bool {
        matches!(self.split(), Ok(Some(_)))
    }
}

/// A whole frame in the reader's buffer: (payload range, the frame's
/// length, the bytes it takes with its tag).
type Buffered = (std::ops::Range<usize>, usize, usize);

/// Count a link's end by a frame that failed to open (`repl_frames_rejected`).
fn count_rejected(sh: &ReplShared, frames: &FrameReader) {
    if frames.rejected {
        sh.frames_rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// The sending side of a link: seals each frame for the session (once it
/// is keyed) and remembers the last batch seq handed to the socket, which
/// bounds the ACKs the peer may send.
struct Sealed<W> {
    inner: W,
    seal: wire::Session,
    buf: Vec<u8>,
    sent: Rc<Cell<u64>>,
}

impl<W: AsyncWrite + Unpin> Sealed<W> {
    fn new(inner: W) -> Self {
        Sealed { inner, seal: wire::Session::plain(), buf: Vec::new(), sent: Rc::default() }
    }

    /// Write `frames`: whole frames, one after another.
    async fn write_all(&mut self, frames: &[u8]) -> io::Result<()> {
        let sealed = self.seal.tag_len() > 0;
        self.buf.clear();
        let mut rest = frames;
        while !rest.is_empty() {
            let Ok(Some((kind, range, used))) = wire::split_frame(rest, usize::MAX) else {
                return Err(err("internal: a write that is not whole frames"));
            };
            if kind == wire::BATCH || kind == wire::SNAP_END {
                let seq = wire::Reader(&rest[range]).u64().unwrap_or(0);
                self.sent.set(self.sent.get().max(seq));
            }
            if sealed && !self.seal.seal(&rest[..used], &mut self.buf) {
                return Err(err("the session used up its nonces; starting a new one"));
            }
            rest = &rest[used..];
        }
        if sealed { self.inner.write_all(&self.buf).await } else { self.inner.write_all(frames).await }
    }

    async fn close(&mut self) -> io::Result<()> {
        self.inner.close().await
    }
}

/// The peer's address: a literal at once, a name on a helper thread
/// (getaddrinfo blocks, and a core must not), given up after
/// `RESOLVE_TIMEOUT` (the thread then ends on its own).
async fn resolve(spec: &str) -> io::Result<std::net::SocketAddr> {
    if let Ok(a) = spec.parse() {
        return Ok(a);
    }
    let slot: std::sync::Arc<std::sync::Mutex<Option<io::Result<std::net::SocketAddr>>>> = Default::default();
    let (out, name) = (slot.clone(), spec.to_string());
    std::thread::Builder::new()
        .name("memcore-resolve".into())
        .spawn(move || {
            let r = std::net::ToSocketAddrs::to_socket_addrs(name.as_str())
                .and_then(|mut a| a.next().ok_or_else(|| err(format!("no address for {name}"))));
            if let Ok(mut s) = out.lock() {
                *s = Some(r);
            }
        })
        .map_err(|e| err(format!("cannot start a resolver thread: {e}")))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(r) = slot.lock().ok().and_then(|mut s| s.take()) {
            return r.map_err(|e| err(format!("cannot resolve {spec}: {e}")));
        }
        if started.elapsed() >= RESOLVE_TIMEOUT {
            return Err(err(format!("resolving {spec} took over {} ms", RESOLVE_TIMEOUT.as_millis())));
        }
        glommio::timer::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

async fn expect_frame(
    r: &mut FrameReader,
    s: &mut (impl AsyncRead + Unpin),
    kind: u8,
    what: &str,
) -> io::Result<Vec<u8>> {
    match r.next(s).await {
        Ok(Some((k, p))) if k == kind => Ok(p),
        Ok(Some((wire::REFUSE, p))) => Err(err(format!("refused: {}", String::from_utf8_lossy(&p)))),
        Ok(Some((k, _))) => Err(err(format!("expected {what}, got frame type {k}"))),
        Ok(None) => Err(err(format!("closed before {what}"))),
        Err(e) => Err(e),
    }
}

// ---- outgoing ---------------------------------------------------------------

/// Keep this core's link to `peer` up, forever (the executor's end stops it).
pub async fn link_task<H: Host>(core: Rc<H>, peer: usize) {
    let sh = shared(&*core);
    let mut attempt = 0u32;
    let mut last_error = String::new();
    loop {
        if core.stopping() {
            return;
        }
        sh.link(core.core_id(), peer).state.store(LINK_CONNECTING, Ordering::Release);
        let started = unix_ms();
        let r = run_link(&core, peer).await;
        sh.link(core.core_id(), peer).state.store(LINK_DOWN, Ordering::Release);
        if let Err(e) = r {
            let e = e.to_string();
            // One line per distinct failure, not one per retry.
            if e != last_error && core.core_id() == 0 {
                log::warn!("replication link to {}: {e}", sh.cfg.peers[peer]);
            }
            last_error = e;
        }
        if unix_ms().saturating_sub(started) > 2 * BACKOFF_MAX_MS {
            attempt = 0;
        }
        let ceiling = (BACKOFF_MIN_MS << attempt.min(6)).min(BACKOFF_MAX_MS);
        let jitter = u64::from_le_bytes(random_bytes::<8>()) % (ceiling / 2 + 1);
        attempt += 1;
        glommio::timer::sleep(Duration::from_millis(ceiling / 2 + jitter)).await;
    }
}

async fn run_link<H: Host>(core: &Rc<H>, peer: usize) -> io::Result<()> {
    let sh = shared(&**core);
    let cfg = &sh.cfg;
    let spec = &cfg.peers[peer];
    let addr = resolve(spec).await?;
    let stream = with_timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok_or_else(|| err("connect timed out"))?
        .map_err(|e| err(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = futures_lite::io::split(stream);
    let mut wr = Sealed::new(wr);
    // Until the handshake passes, accept nothing bigger than its frames.
    let mut frames = FrameReader::new(wire::HELLO_LEN + 1);
    let (their_epoch, their_seq) =
        with_timeout(HANDSHAKE_TIMEOUT, handshake_out(&**core, peer, &mut frames, &mut rd, &mut wr))
            .await
            .unwrap_or_else(|| Err(err(format!("no handshake within {} ms", HANDSHAKE_TIMEOUT.as_millis()))))
            .inspect_err(|_| count_rejected(sh, &frames))?;

    // ACKs and heartbeats arrive on their own task; it ends the link (and
    // wakes the writer) when the peer closes. A ticker (no timer per frame
    // or per wait on the hot path) ends it when the peer says nothing for
    // too long, and wakes the writer when a heartbeat is due.
    let end = Rc::new(LinkEnd::default());
    let heard = Rc::new(Cell::new(Instant::now()));
    let wrote = Rc::new(Cell::new(Instant::now()));
    let ticker = {
        let (core, end, heard, wrote) = (core.clone(), end.clone(), heard.clone(), wrote.clone());
        glommio::spawn_local(async move {
            let sh = shared(&*core);
            let (heartbeat, limit) = (sh.cfg.heartbeat, sh.cfg.silence_limit());
            let wake = &local(&*core).wake[peer];
            loop {
                glommio::timer::sleep(heartbeat / 2).await;
                if heard.get().elapsed() >= limit {
                    end.end(format!("no traffic from the peer for {} ms; dropping the link", limit.as_millis()));
                    wake.notify();
                    return;
                }
                if wrote.get().elapsed() >= heartbeat {
                    wake.notify();
                }
            }
        })
    };
    let reader = {
        let (core, end, heard, sent) = (core.clone(), end.clone(), heard.clone(), wr.sent.clone());
        glommio::spawn_local(async move {
            let sh = shared(&*core);
            let link = sh.link(core.core_id(), peer);
            let why = loop {
                let f = frames.next(&mut rd).await;
                heard.set(frames.progress);
                match f {
                    Ok(Some((wire::ACK, p))) if p.len() == 8 => {
                        let seq = Reader(&p).u64().unwrap_or(0);
                        // Acknowledging what was never sent would let sync
                        // and majority writes return before any peer has them.
                        if seq > sent.get() {
                            break format!(
                                "the peer acknowledged seq {seq}, past the {} sent; protocol error",
                                sent.get()
                            );
                        }
                        link.acked.fetch_max(seq, Ordering::AcqRel);
                        sh.ack_waiters[core.core_id()].wake_all();
                        let b = local(&*core).backlog.borrow();
                        if let Some(ms) = b.sealed_ms(seq) {
                            link.lag_ms.store(unix_ms().saturating_sub(ms), Ordering::Relaxed);
                        }
                        link.backlog_bytes.store(b.bytes_after(seq) as u64, Ordering::Relaxed);
                    }
                    Ok(Some((wire::HEARTBEAT, _))) => {}
                    Ok(Some((k, _))) => break format!("unexpected frame type {k} from the peer"),
                    Ok(None) => break "the peer closed the link".into(),
                    Err(e) => break e.to_string(),
                }
            };
            count_rejected(sh, &frames);
            end.end(why);
            local(&*core).wake[peer].notify();
        })
    };
    let r = stream_to_peer(&**core, peer, &mut wr, (their_epoch, their_seq), &end, &wrote).await;
    // The reader owns the read half; ending the write side makes the peer
    // close, which ends the reader. A vanished peer takes no FIN either.
    let _ = with_timeout(sh.cfg.heartbeat, wr.close()).await;
    drop(reader);
    drop(ticker);
    r
}

/// The linking side's handshake: HELLO, the peer's CHALLENGE, our proof,
/// then the peer's; the session starts keyed; the peer's RESUME point.
async fn handshake_out<H: Host>(
    core: &H,
    peer: usize,
    frames: &mut FrameReader,
    rd: &mut (impl AsyncRead + Unpin),
    wr: &mut Sealed<impl AsyncWrite + Unpin>,
) -> io::Result<(u64, u64)> {
    let sh = shared(core);
    let cfg = &sh.cfg;
    let me = u16::from(cfg.node_id);
    let epoch = local(core).backlog.borrow().epoch;
    let nonce_l = random_bytes::<NONCE_LEN>();
    let mut out = Vec::new();
    wire::encode_hello(&mut out, &Hello { node: me, core: core.core_id() as u16, epoch, nonce: nonce_l });
    wr.write_all(&out).await?;
    let p = expect_frame(frames, rd, wire::CHALLENGE, "challenge").await.map_err(|e| {
        if e.to_string().starts_with("closed before") {
            err(format!("{e} (a node of an older replication protocol, or one at its --repl-max-links, closes so)"))
        } else {
            e
        }
    })?;
    let mut r = Reader(&p);
    let (their, nonce_a) = (|| Ok::<_, wire::WireError>((r.u16()?, r.bytes(NONCE_LEN)?)))()
        .ok()
        .filter(|_| r.is_empty())
        .ok_or_else(|| err("malformed challenge"))?;
    if their == me {
        return Err(err(format!("peer claims our node id {me}; not linking")));
    }
    let nodes = (me, their);
    out.clear();
    wire::frame(&mut out, wire::AUTH, &wire::proof(cfg.secret(), wire::ROLE_LINKER, nonce_a, &nonce_l, nodes));
    wr.write_all(&out).await?;
    let p = expect_frame(frames, rd, wire::AUTH, "the peer's proof").await?;
    if !wire::proof_ok(cfg.secret(), wire::ROLE_ACCEPTOR, &nonce_l, nonce_a, nodes, &p) {
        return Err(err("peer failed the secret check"));
    }
    let (to_acceptor, to_linker) = wire::session_keys(cfg.secret(), &nonce_l, nonce_a, nodes);
    wr.seal = wire::Session::for_secret(cfg.secret(), &to_acceptor);
    frames.open = wire::Session::for_secret(cfg.secret(), &to_linker);
    frames.max = wire::FRAME_SLACK;
    let p = expect_frame(frames, rd, wire::RESUME, "resume point").await?;
    sh.link(core.core_id(), peer).peer_node.store(u64::from(their) + 1, Ordering::Release);
    let mut r = Reader(&p);
    Ok((r.u64().unwrap_or(0), r.u64().unwrap_or(0)))
}

async fn stream_to_peer<H: Host>(
    core: &H,
    peer: usize,
    wr: &mut Sealed<impl AsyncWrite + Unpin>,
    (their_epoch, their_seq): (u64, u64),
    end: &LinkEnd,
    wrote: &Cell<Instant>,
) -> io::Result<()> {
    let sh = shared(core);
    let link = sh.link(core.core_id(), peer);
    let rc = local(core);
    seal(core);
    let resume = rc.backlog.borrow().resume(their_epoch, their_seq);
    let mut cursor = match resume {
        Resume::From(seq) => seq,
        Resume::Resync => {
            link.state.store(LINK_SYNCING, Ordering::Release);
            link.resyncs.fetch_add(1, Ordering::Relaxed);
            let cursor = rc.backlog.borrow().last_seq();
            send_snapshot(core, link, wr, end).await?;
            let mut out = Vec::new();
            wire::frame(&mut out, wire::SNAP_END, &cursor.to_le_bytes());
            end.guard(wr.write_all(&out)).await?;
            cursor
        }
    };
    link.acked.fetch_max(0, Ordering::Relaxed);
    link.state.store(LINK_LIVE, Ordering::Release);
    let mut out = Vec::new();
    let heartbeat = sh.cfg.heartbeat;
    let linger = if sh.cfg.mode == super::Mode::Async { LINGER } else { Duration::ZERO };
    loop {
        if end.is_over() {
            return Err(end.error());
        }
        if core.stopping() {
            return Err(err("shutting down"));
        }
        // Let the connections that are ready run first: their writes then
        // go out in this batch instead of one small batch each.
        futures_lite::future::yield_now().await;
        let since = wrote.get().elapsed();
        if since < linger && pending_bytes(core) < LINGER_MAX_PENDING {
            end.guard(async {
                glommio::timer::sleep(linger - since).await;
                Ok(())
            })
            .await?;
        }
        seal(core);
        out.clear();
        let mut items = 0u64;
        {
            let b = rc.backlog.borrow();
            while out.len() < WRITE_CHUNK {
                let Some(batch) = b.after(cursor) else { break };
                if batch.seq != cursor + 1 {
                    return Err(err("peer fell behind the backlog; resyncing"));
                }
                out.extend_from_slice(&batch.frame);
                items += u64::from(batch.ops);
                cursor = batch.seq;
            }
        }
        if out.is_empty() {
            if wrote.get().elapsed() >= heartbeat {
                wire::heartbeat(&mut out, unix_ms());
                end.guard(wr.write_all(&out)).await?;
                wrote.set(Instant::now());
            } else {
                // New ops, the ticker (a heartbeat is due), or the link's end.
                rc.wake[peer].wait().await;
            }
            continue;
        }
        end.guard(wr.write_all(&out)).await?;
        wrote.set(Instant::now());
        link.items_sent.fetch_add(items, Ordering::Relaxed);
    }
}

/// Stream every live item and tombstone of this core, one segment per
/// slice, so the core's clients wait at most one slice. Every frame is at
/// most `wire::MAX_FRAME`: a slice's ops are cut into batches, a value
/// longer than a `CHUNK` goes in PARTs, and the long values a segment
/// refers to are sent one at a time after it, so the memory a resync holds
/// is one segment's items (decompressed) plus one value.
async fn send_snapshot<H: Host>(
    core: &H,
    link: &super::LinkShared,
    wr: &mut Sealed<impl AsyncWrite + Unpin>,
    end: &LinkEnd,
) -> io::Result<()> {
    let mut out = Vec::new();
    wire::frame(&mut out, wire::SNAP_BEGIN, &[]);
    end.guard(wr.write_all(&out)).await?;
    let mut ops = Vec::new();
    // The newest flush_all first: a peer that missed it (it fell out of
    // the backlog) drops what it flushed before taking the items, which
    // are all newer; one that took it already ignores it.
    if let Some((at, version)) = shared(core).flush_mark.newest() {
        wire::encode_op(&mut ops, &wire::Op::Flush { at, version });
    }
    let mut long_keys: Vec<Box<[u8]>> = Vec::new();
    let mut cursor = Some(0u64);
    let mut last_tombs = false;
    while !last_tombs {
        if end.is_over() {
            return Err(err(format!("{} (during a resync)", end.error())));
        }
        {
            let now = core.now();
            core.with_store(|store, r| match cursor {
                Some(c) => {
                    cursor = store.scan(c, now, |key, item| {
                        if item.value_len() > wire::CHUNK {
                            long_keys.push(key.into());
                        } else if let Some((value, packed)) = item.replication_form() {
                            // A corrupt value is not sent (its next read drops it).
                            wire::encode_item(
                                &mut ops,
                                key,
                                item.version,
                                item.flags,
                                item.exp,
                                &value,
                                packed,
                                item.state,
                            );
                        }
                    });
                }
                None => {
                    r.encode_tombstones(&mut ops);
                    last_tombs = true;
                }
            })
            .ok_or_else(|| err("replication is off on this core"))?;
        }
        send_snapshot_ops(link, wr, end, &mut ops, &mut out).await?;
        // Each long value on its own, read again now: a newer version
        // written meanwhile is as good (the live stream has it too), a
        // deleted one is skipped (its tombstone follows).
        for key in long_keys.drain(..) {
            {
                let now = core.now();
                core.with_store(|store, _| {
                    store.peek(&key, now, |item| {
                        if let Some((value, packed)) = item.replication_form() {
                            let (version, flags, exp, state) = (item.version, item.flags, item.exp, item.state);
                            wire::encode_item(&mut ops, &key, version, flags, exp, &value, packed, state);
                        }
                    })
                });
            }
            send_snapshot_ops(link, wr, end, &mut ops, &mut out).await?;
        }
        glommio::yield_if_needed().await;
    }
    Ok(())
}

/// Send `ops` as snapshot batches (seq 0) of at most `BATCH_MAX` bytes of
/// ops each, and empty it.
async fn send_snapshot_ops(
    link: &super::LinkShared,
    wr: &mut Sealed<impl AsyncWrite + Unpin>,
    end: &LinkEnd,
    ops: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut items = 0u64;
    for (range, n) in wire::split_ops(ops, wire::BATCH_MAX) {
        out.clear();
        let at = wire::begin_frame(out, wire::BATCH);
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&ops[range]);
        wire::try_end_frame(out, at).map_err(|e| err(format!("snapshot batch not framed: {e:?}")))?;
        end.guard(wr.write_all(out)).await?;
        items += u64::from(n);
    }
    link.items_sent.fetch_add(items, Ordering::Relaxed);
    ops.clear();
    if ops.capacity() > 4 * wire::BATCH_MAX {
        *ops = Vec::new();
    }
    Ok(())
}

// ---- inbound ----------------------------------------------------------------

/// Gives back an inbound link's place under `--repl-max-links`.
struct InboundSlot<'a>(&'a ReplShared);

impl Drop for InboundSlot<'_> {
    fn drop(&mut self) {
        self.0.inbound_links.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn accept_loop<H: Host>(core: Rc<H>, listener: TcpListener) {
    let mut last_cap_log: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("replication accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let sh = shared(&*core);
        if sh.inbound_links.fetch_add(1, Ordering::AcqRel) >= sh.cfg.max_links {
            sh.inbound_links.fetch_sub(1, Ordering::AcqRel);
            sh.links_refused.fetch_add(1, Ordering::Relaxed);
            if last_cap_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_cap_log = Some(Instant::now());
                log::warn!("replication connection refused: {} open already (--repl-max-links)", sh.cfg.max_links);
            }
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let c = core.clone();
        glommio::spawn_local(async move {
            let _slot = InboundSlot(shared(&*c));
            let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
            if let Err(e) = serve_inbound(&*c, stream).await {
                log::warn!("replication link from {peer} refused or closed: {e}");
            }
        })
        .detach();
    }
}

/// The accepting side's handshake: the peer's HELLO, our CHALLENGE, the
/// peer's proof (checked before we prove anything), ours; the session
/// starts keyed. On a bad proof the peer gets REFUSE and the link ends.
async fn handshake_in<H: Host>(
    core: &H,
    frames: &mut FrameReader,
    rd: &mut (impl AsyncRead + Unpin),
    wr: &mut Sealed<impl AsyncWrite + Unpin>,
) -> io::Result<Hello> {
    let sh = shared(core);
    let cfg = &sh.cfg;
    let me = u16::from(cfg.node_id);
    let first = frames.next(rd).await;
    let mut out = Vec::new();
    if let Ok(Some((wire::HELLO, p))) = &first
        && let Some(theirs) = wire::other_version(p)
    {
        let (theirs, ours) = (String::from_utf8_lossy(theirs), String::from_utf8_lossy(wire::MAGIC));
        let why = format!("replication protocol {theirs} is not spoken here (this node speaks {ours})");
        wire::frame(&mut out, wire::REFUSE, why.as_bytes());
        let _ = wr.write_all(&out).await;
        return Err(err(format!("{why}: upgrade every node of the group")));
    }
    let hello = match first {
        Ok(Some((kind, p))) => wire::parse_hello(kind, &p).ok(),
        _ => None,
    }
    .ok_or_else(|| err("not a memcore replication link (no valid HELLO)"))?;
    if hello.node == me {
        wire::frame(&mut out, wire::REFUSE, format!("node id {me} is taken by this node").as_bytes());
        let _ = wr.write_all(&out).await;
        return Err(err(format!("peer claims our node id {me}")));
    }
    let nodes = (hello.node, me);
    let nonce_a = random_bytes::<NONCE_LEN>();
    let at = wire::begin_frame(&mut out, wire::CHALLENGE);
    out.extend_from_slice(&me.to_le_bytes());
    out.extend_from_slice(&nonce_a);
    wire::end_frame(&mut out, at);
    wr.write_all(&out).await?;
    let p = expect_frame(frames, rd, wire::AUTH, "auth").await?;
    if !wire::proof_ok(cfg.secret(), wire::ROLE_LINKER, &nonce_a, &hello.nonce, nodes, &p) {
        out.clear();
        wire::frame(&mut out, wire::REFUSE, b"wrong secret");
        let _ = wr.write_all(&out).await;
        return Err(err(format!("node {} failed the secret check", hello.node)));
    }
    out.clear();
    wire::frame(&mut out, wire::AUTH, &wire::proof(cfg.secret(), wire::ROLE_ACCEPTOR, &hello.nonce, &nonce_a, nodes));
    wr.write_all(&out).await?;
    let (to_acceptor, to_linker) = wire::session_keys(cfg.secret(), &hello.nonce, &nonce_a, nodes);
    wr.seal = wire::Session::for_secret(cfg.secret(), &to_linker);
    frames.open = wire::Session::for_secret(cfg.secret(), &to_acceptor);
    Ok(hello)
}

async fn serve_inbound<H: Host>(core: &H, stream: TcpStream) -> io::Result<()> {
    let sh = shared(core);
    let (mut rd, wr) = futures_lite::io::split(stream);
    let mut wr = Sealed::new(wr);
    // Until the handshake passes, accept nothing bigger than a HELLO.
    let mut frames = FrameReader::new(wire::HELLO_LEN + 1);
    let hello = with_timeout(HANDSHAKE_TIMEOUT, handshake_in(core, &mut frames, &mut rd, &mut wr))
        .await
        .unwrap_or_else(|| Err(err(format!("no handshake within {} ms", HANDSHAKE_TIMEOUT.as_millis()))))
        .inspect_err(|_| {
            sh.links_refused.fetch_add(1, Ordering::Relaxed);
        })?;
    let r = serve_session(core, &hello, &mut frames, &mut rd, &mut wr).await;
    count_rejected(sh, &frames);
    r
}

/// An accepted link after its handshake: the resume point, then apply
/// the peer's batches and acknowledge them.
async fn serve_session<H: Host>(
    core: &H,
    hello: &Hello,
    frames: &mut FrameReader,
    rd: &mut (impl AsyncRead + Unpin),
    wr: &mut Sealed<impl AsyncWrite + Unpin>,
) -> io::Result<()> {
    let sh = shared(core);
    let cfg = &sh.cfg;
    frames.max = wire::MAX_FRAME;
    let stream_id = (hello.node, hello.core);
    let (epoch, seq) = sh.streams.lock().ok().and_then(|m| m.get(&stream_id).copied()).unwrap_or((0, 0));
    let mut out = Vec::new();
    let at = wire::begin_frame(&mut out, wire::RESUME);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    wire::end_frame(&mut out, at);
    wr.write_all(&out).await?;
    log::info!("replication link from node {} core {} accepted (resume at {seq})", hello.node, hello.core);

    let mut syncing = false;
    let mut values = super::apply::Reassembly::new(core.item_size_max());
    let mut whole = Vec::new();
    let (heartbeat, limit) = (cfg.heartbeat, cfg.silence_limit());
    let mut last_write = Instant::now();
    let r: io::Result<()> = async {
        loop {
            // Wait for a frame; while none comes, send heartbeats, and give
            // up on a peer that sent no bytes for the silence limit.
            let first = loop {
                if last_write.elapsed() >= heartbeat {
                    out.clear();
                    wire::heartbeat(&mut out, unix_ms());
                    write_within(wr, &out, limit).await?;
                    last_write = Instant::now();
                }
                match frames.next_within(rd, heartbeat.saturating_sub(last_write.elapsed())).await {
                    Some(f) => break f?,
                    None if frames.progress.elapsed() >= limit => {
                        return Err(err(format!(
                            "no traffic from node {} for {} ms; dropping the link",
                            hello.node,
                            limit.as_millis()
                        )));
                    }
                    None => {}
                }
            };
            let Some(mut frame) = first else {
                return Ok(());
            };
            let mut ack = None;
            // Apply every frame already buffered, then acknowledge once.
            loop {
                let (kind, p) = frame;
                // A value's parts come in consecutive batches.
                if matches!(kind, wire::SNAP_BEGIN | wire::SNAP_END) && !values.is_idle() {
                    return Err(err("a snapshot began or ended inside a value"));
                }
                match kind {
                    wire::BATCH => {
                        let mut r = Reader(&p);
                        let seq = r.u64().map_err(|_| err("short batch"))?;
                        whole.clear();
                        let fed = values.feed(r.0, &mut whole).map_err(|_| err("malformed ops"))?;
                        if fed.skipped > 0 {
                            log::warn!(
                                "node {} sent {} value(s) longer than this node's item size limit; not stored",
                                hello.node,
                                fed.skipped
                            );
                        }
                        if !whole.is_empty() {
                            core.apply(&whole).await;
                        }
                        if whole.capacity() > 4 * wire::BATCH_MAX {
                            whole = Vec::new();
                        }
                        sh.inbound_update(hello.node, |i| i.items_received += fed.items as u64);
                        // Only between values: a stream resumed after this
                        // batch must not start inside one.
                        if seq != 0 && values.is_idle() {
                            ack = Some(seq);
                        }
                    }
                    wire::SNAP_BEGIN => {
                        if syncing {
                            return Err(err("a snapshot began inside a snapshot"));
                        }
                        syncing = true;
                        sh.inbound_update(hello.node, |i| {
                            i.syncing += 1;
                            i.resyncs += 1;
                        });
                        log::info!("full resync from node {} core {} started", hello.node, hello.core);
                    }
                    wire::SNAP_END => {
                        let seq = Reader(&p).u64().map_err(|_| err("short snapshot end"))?;
                        if !syncing {
                            return Err(err("a snapshot end without its beginning"));
                        }
                        syncing = false;
                        sh.inbound_update(hello.node, |i| i.syncing -= 1);
                        log::info!("full resync from node {} core {} done", hello.node, hello.core);
                        ack = Some(seq);
                    }
                    wire::HEARTBEAT => {}
                    k => return Err(err(format!("unexpected frame type {k}"))),
                }
                if let Some(seq) = ack
                    && let Ok(mut m) = sh.streams.lock()
                {
                    m.insert(stream_id, (hello.epoch, seq));
                }
                if !frames.has_frame() {
                    break;
                }
                match frames.next(rd).await? {
                    Some(f) => frame = f,
                    None => return Ok(()),
                }
            }
            if let Some(seq) = ack {
                out.clear();
                wire::frame(&mut out, wire::ACK, &seq.to_le_bytes());
                write_within(wr, &out, limit).await?;
                last_write = Instant::now();
            }
        }
    }
    .await;
    if syncing {
        sh.inbound_update(hello.node, |i| i.syncing -= 1);
    }
    r
}
