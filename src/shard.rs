//! Which core owns a key, and forwarding requests to it over glommio's
//! channel mesh.
//!
//! ```text
//!  core A (connection's core)                          core B (key owner)
//!  conn task ──push──▶ Peer[B].outbox ──sender task──▶ mesh A→B ──▶ receiver task
//!     ▲               (requests+replies, one Frame)                 │ Shard::execute
//!     │                                                              ▼
//!  ConnWait slots ◀── receiver task ◀── mesh B→A ◀── sender task ◀── Peer[A].outbox
//! ```
//!
//! A `Frame` carries everything one core has for another at that moment:
//! requests (as the protocol bytes that were parsed, re-parsed on arrival),
//! control commands, and replies to the peer's earlier requests. Replies come
//! back in request order, so no ids travel: each core keeps a FIFO of who
//! waits for the next replies from each peer.
//!
//! Deadlock freedom: receiver tasks never await anything but the next frame
//! (they execute and append replies to the outbox), and only the sender task
//! awaits channel space. Backpressure comes from the connections: a
//! connection reads no more input until its forwarded requests are answered,
//! so outboxes are bounded by the connections' input buffers.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use crate::storage::HashKey;

/// Key of the key-to-core hash: one per process, so that every core agrees
/// on a key's owner, and secret, so that no client can pick keys that all
/// land on one core.
static OWNER_KEY: OnceLock<HashKey> = OnceLock::new();

/// Choose the key-to-core hash's key; the server does it before any core
/// starts. False when a key was already in use.
pub fn set_owner_key(key: HashKey) -> bool {
    OWNER_KEY.set(key).is_ok()
}

/// Without a key from the server (unit tests, benchmarks), std's random
/// SipHash keys, drawn from the OS once per process.
fn os_random_key() -> HashKey {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    HashKey::new(s.hash_one(1u64), s.hash_one(2u64))
}

/// The core that owns `key`, by a keyed hash (see `OWNER_KEY`) of its own:
/// the choice is independent of the index's hash and of the ketama or
/// crc32 hashing that clients use to pick a server (which would otherwise
/// put all of a server's keys on few cores).
pub fn owner(key: &[u8], ncores: usize) -> usize {
    if ncores <= 1 {
        return 0;
    }
    let k = OWNER_KEY.get_or_init(os_random_key);
    (((k.hash(key) >> 32) * ncores as u64) >> 32) as usize
}

/// Work one core asks of another, in the order it must happen.
#[derive(Debug)]
pub enum Cmd {
    /// A request in protocol bytes (`arena[start..end]`). A retrieval gives
    /// one reply segment per key, without END; anything else one segment.
    Request {
        start: usize,
        end: usize,
        segments: u32,
    },
    /// flush_all at an absolute Unix time (0 = now); replies one empty segment.
    Flush {
        at: u64,
    },
    /// New per-core memory limit in bytes; replies one empty segment.
    MemLimit {
        bytes: u64,
    },
    /// Counters of the core, encoded (see `Counters::encode`).
    Stats,
    StatsReset,
    /// `stats conns` lines of the core.
    Conns,
    /// Replicated ops (`repl::wire` encoding) in `arena[start..end]`, to
    /// apply in order; replies one empty segment.
    Apply {
        start: usize,
        end: usize,
    },
    /// The core's replication figures (see `exec::ReplFigures`).
    ReplStats,
}

impl Cmd {
    fn segments(&self) -> u32 {
        match self {
            Cmd::Request { segments, .. } => *segments,
            _ => 1,
        }
    }
}

/// One message on the mesh.
#[derive(Debug, Default)]
pub struct Frame {
    pub arena: Vec<u8>,
    pub cmds: Vec<Cmd>,
    pub reply_arena: Vec<u8>,
    /// End offset in `reply_arena` of each reply segment.
    pub reply_ends: Vec<usize>,
    /// The sending core has drained its connections and sends no more work.
    pub done: bool,
}

impl Frame {
    fn is_empty(&self) -> bool {
        self.cmds.is_empty() && self.reply_ends.is_empty() && !self.done
    }
}

/// Where a connection collects the replies its forwarded requests get.
#[derive(Default)]
pub struct ConnWait {
    data: RefCell<Vec<u8>>,
    slots: RefCell<Vec<(usize, usize)>>,
    outstanding: Cell<usize>,
    waker: RefCell<Option<Waker>>,
}

impl ConnWait {
    /// Reserve `n` reply slots; returns the first one's number.
    pub fn reserve(&self, n: usize) -> usize {
        let mut slots = self.slots.borrow_mut();
        let first = slots.len();
        slots.resize(first + n, (0, 0));
        self.outstanding.set(self.outstanding.get() + n);
        first
    }

    pub fn has_pending(&self) -> bool {
        !self.slots.borrow().is_empty()
    }

    fn fill(&self, slot: usize, bytes: &[u8]) {
        let mut data = self.data.borrow_mut();
        let start = data.len();
        data.extend_from_slice(bytes);
        self.slots.borrow_mut()[slot] = (start, data.len());
        let left = self.outstanding.get() - 1;
        self.outstanding.set(left);
        if left == 0
            && let Some(w) = self.waker.borrow_mut().take()
        {
            w.wake();
        }
    }

    /// Resolves when every reserved slot has its reply.
    pub fn all_filled(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.outstanding.get() == 0 {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// The reply in `slot` (valid after `all_filled`).
    pub fn with_slot<R>(&self, slot: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let (s, e) = self.slots.borrow()[slot];
        f(&self.data.borrow()[s..e])
    }

    /// Forget the replies of the finished batch, keeping modest buffers.
    pub fn clear(&self) {
        let mut data = self.data.borrow_mut();
        data.clear();
        if data.capacity() > 1 << 20 {
            *data = Vec::new();
        }
        self.slots.borrow_mut().clear();
    }
}

struct Waiter {
    conn: Rc<ConnWait>,
    first_slot: usize,
    count: u32,
}

/// A one-task wake-up flag.
#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// This core's side of its link with one other core.
#[derive(Default)]
pub struct Peer {
    pub outbox: RefCell<Frame>,
    waiters: RefCell<VecDeque<Waiter>>,
    pub wake_sender: Notify,
    pub done_received: Cell<bool>,
}

impl Peer {
    /// Queue a request whose protocol bytes `write` appends to the arena.
    /// Its `segments` replies land in `conn`'s slots from `first_slot` on.
    pub fn forward(&self, conn: &Rc<ConnWait>, first_slot: usize, segments: u32, write: impl FnOnce(&mut Vec<u8>)) {
        let mut f = self.outbox.borrow_mut();
        let start = f.arena.len();
        write(&mut f.arena);
        let end = f.arena.len();
        f.cmds.push(Cmd::Request { start, end, segments });
        drop(f);
        self.waiters.borrow_mut().push_back(Waiter { conn: conn.clone(), first_slot, count: segments });
    }

    /// Queue a control command; its reply lands in `conn`'s `slot`.
    pub fn control(&self, conn: &Rc<ConnWait>, slot: usize, cmd: Cmd) {
        let count = cmd.segments();
        self.outbox.borrow_mut().cmds.push(cmd);
        self.waiters.borrow_mut().push_back(Waiter { conn: conn.clone(), first_slot: slot, count });
        self.wake_sender.notify();
    }

    /// Take what is queued for the peer, if anything.
    pub fn take_outbox(&self) -> Option<Frame> {
        let mut f = self.outbox.borrow_mut();
        if f.is_empty() { None } else { Some(std::mem::take(&mut *f)) }
    }

    /// Hand replies from the peer to the connections waiting for them.
    pub fn deliver_replies(&self, frame: &Frame) {
        let mut waiters = self.waiters.borrow_mut();
        let mut start = 0usize;
        for &end in &frame.reply_ends {
            let Some(w) = waiters.front_mut() else {
                log::error!("a peer sent more replies than were asked for; dropping the rest");
                return;
            };
            let slot = w.first_slot;
            w.first_slot += 1;
            w.count -= 1;
            let conn = w.conn.clone();
            if w.count == 0 {
                waiters.pop_front();
            }
            conn.fill(slot, &frame.reply_arena[start..end]);
            start = end;
        }
    }
}

/// Make a future interruptible by a per-core flag, recording its waker so
/// that shutdown can wake it.
pub struct Interruptible<'a, F> {
    pub inner: Pin<&'a mut F>,
    pub stop: &'a Cell<bool>,
    pub waker: &'a RefCell<Option<Waker>>,
}

impl<F: Future> Future for Interruptible<'_, F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if self.stop.get() {
            return Poll::Ready(None);
        }
        let mut w = self.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_evenly_over_cores() {
        for n in [2usize, 3, 4, 8] {
            let mut counts = vec![0usize; n];
            for i in 0..100_000 {
                counts[owner(format!("key:{i}").as_bytes(), n)] += 1;
            }
            let expect = 100_000 / n;
            for c in counts {
                assert!(c > expect * 9 / 10 && c < expect * 11 / 10, "{n} cores: {c} vs {expect}");
            }
        }
    }

    #[test]
    fn core_choice_is_independent_of_crc32_node_choice() {
        // python-memcached picks a node by crc32 % nodes; the keys one node
        // gets must still spread over both cores.
        fn crc32(b: &[u8]) -> u32 {
            let mut c = !0u32;
            for &x in b {
                c ^= x as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
                }
            }
            !c
        }
        let mut counts = [0usize; 2];
        for i in 0..20_000 {
            let k = format!("user:{i}");
            if crc32(k.as_bytes()).is_multiple_of(2) {
                counts[owner(k.as_bytes(), 2)] += 1;
            }
        }
        let total = counts[0] + counts[1];
        assert!(counts[0] > total * 4 / 10 && counts[1] > total * 4 / 10, "{counts:?}");
    }

    #[test]
    fn replies_reach_waiters_in_order_across_frames() {
        let peer = Peer::default();
        let a = Rc::new(ConnWait::default());
        let b = Rc::new(ConnWait::default());
        let sa = a.reserve(2);
        peer.forward(&a, sa, 2, |arena| arena.extend_from_slice(b"get x y\r\n"));
        let sb = b.reserve(1);
        peer.forward(&b, sb, 1, |arena| arena.extend_from_slice(b"delete z\r\n"));
        let f = peer.take_outbox().unwrap();
        assert_eq!(f.cmds.len(), 2);
        let reply = |segs: &[&[u8]]| {
            let mut fr = Frame::default();
            for s in segs {
                fr.reply_arena.extend_from_slice(s);
                fr.reply_ends.push(fr.reply_arena.len());
            }
            fr
        };
        peer.deliver_replies(&reply(&[b"VALUE x 0 1\r\n1\r\n"]));
        assert_eq!(a.outstanding.get(), 1);
        peer.deliver_replies(&reply(&[b"", b"DELETED\r\n"]));
        assert_eq!((a.outstanding.get(), b.outstanding.get()), (0, 0));
        a.with_slot(0, |s| assert_eq!(s, b"VALUE x 0 1\r\n1\r\n"));
        a.with_slot(1, |s| assert!(s.is_empty()));
        b.with_slot(0, |s| assert_eq!(s, b"DELETED\r\n"));
    }
}
