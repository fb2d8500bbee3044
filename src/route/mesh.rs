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
//! requests, control commands, and replies to the peer's earlier requests.
//! A keyed write travels as the exact bytes that parsed on the sending core
//! (same parser, same limits, so it parses the same); a retrieval travels
//! typed (its kind and its keys), never rebuilt as a line the owner would
//! have to parse again. Every request carries an id, and every reply names
//! the id it answers and how many segments it has: replies come back in
//! request order, and a reply whose id or segment count does not match the
//! waiter at the head of the FIFO breaks only the connections involved
//! (logged and counted as `forward_errors`), never shifts replies onto
//! other connections.
//!
//! Deadlock freedom: receiver tasks never await anything but the next frame
//! (they execute and append replies to the outbox), and only the sender task
//! awaits channel space. Backpressure comes from the connections: a
//! connection reads no more input until its forwarded requests are answered,
//! so outboxes are bounded by the connections' input buffers.
//!
//! Replies are bytes (what the client will read) with, for the gathering
//! commands, a typed part (`Typed`: a core's counters or replication
//! figures), handed over as values: the cores share one process, so
//! nothing that stays inside it is encoded.
//!
//! Plumbing only: imports protocol's `GetKind`, storage's `HashKey`, the
//! figure types of stats and repl, and the leaf `wake`; must not import
//! `server`, the rest of `route`, or the store.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use crate::protocol::GetKind;
use crate::repl::ReplFigures;
use crate::stats::Counters;
use crate::storage::HashKey;
use crate::wake::Notify;

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
    /// A keyed write in the protocol bytes that parsed on the sending core
    /// (`arena[start..end]`); replies one segment.
    Request {
        start: usize,
        end: usize,
    },
    /// get/gets/gat/gats of `count` keys, each stored in `arena[start..end]`
    /// as one length byte and the key; replies one segment per key (a VALUE
    /// block or nothing), without END. Past `cap` bytes of reply, the rest
    /// of the keys answer `GET_TOO_LARGE` once.
    Get {
        kind: GetKind,
        exptime: i64,
        start: usize,
        end: usize,
        count: u32,
        cap: usize,
    },
    /// flush_all at an absolute Unix time (0 = now); replies one empty segment.
    Flush {
        at: u64,
    },
    /// New per-core memory limit in bytes; replies one empty segment.
    MemLimit {
        bytes: u64,
    },
    /// The core's counters; replies one empty segment and
    /// `Typed::Counters`.
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
    /// The core's replication figures; replies one empty segment and
    /// `Typed::Repl`.
    ReplStats,
    /// `lru_crawler metadump` lines of one segment from `cursor` on; the
    /// cursor to ask next comes back as `Typed::Cursor` (see
    /// `Shard::metadump`).
    Metadump {
        cursor: u64,
    },
}

impl Cmd {
    fn segments(&self) -> u32 {
        match self {
            Cmd::Get { count, .. } => *count,
            _ => 1,
        }
    }
}

/// The keys of a `Cmd::Get` as stored in a frame's arena.
pub fn get_keys(packed: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = packed;
    std::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let key = tail.get(..len as usize)?;
        rest = &tail[len as usize..];
        Some(key)
    })
}

/// A reply: the request it answers and how many segments it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHead {
    pub id: u64,
    pub segments: u32,
}

/// The typed part of a reply: figures one core hands another as values
/// (the cores share one process, so nothing is encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Typed {
    /// `Cmd::Stats`: the core's counters with its store's figures.
    Counters(Box<Counters>),
    /// `Cmd::ReplStats`: the core's replication figures.
    Repl(ReplFigures),
    /// A keyed write (`Cmd::Request`) that changed the store, run for a
    /// connection in the `sync` or `majority` mode, which waits for the
    /// peers to apply it: the version it wrote with.
    Wrote { version: u64 },
    /// `Cmd::Metadump`: the cursor to ask for next, None when every
    /// segment was listed.
    Cursor(Option<u64>),
}

/// One message on the mesh.
#[derive(Debug, Default)]
pub struct Frame {
    pub arena: Vec<u8>,
    /// Requests with their ids, in the order they must run.
    pub cmds: Vec<(u64, Cmd)>,
    pub reply_arena: Vec<u8>,
    /// End offset in `reply_arena` of each reply segment.
    pub reply_ends: Vec<usize>,
    /// One head per reply, in order; its segments are the next ones in
    /// `reply_ends`.
    pub reply_heads: Vec<ReplyHead>,
    /// Typed parts of replies, by the id of the request they answer, in
    /// reply order (most replies have none).
    pub typed: Vec<(u64, Typed)>,
    /// Bytes of get replies in `reply_arena` that the replying core charged
    /// to the asking core's connection budget (route/budget.rs).
    pub charged: usize,
    /// The sending core has drained its connections and sends no more work.
    pub done: bool,
}

impl Frame {
    fn is_empty(&self) -> bool {
        self.cmds.is_empty() && self.reply_heads.is_empty() && !self.done
    }

    /// Close the reply to request `id`, whose segments were pushed since
    /// `reply_ends` had `first_segment` entries.
    pub fn end_reply(&mut self, id: u64, first_segment: usize) {
        let segments = (self.reply_ends.len() - first_segment) as u32;
        self.reply_heads.push(ReplyHead { id, segments });
    }
}

/// Where a connection collects the replies its forwarded requests get.
#[derive(Default)]
pub struct ConnWait {
    data: RefCell<Vec<u8>>,
    slots: RefCell<Vec<(usize, usize)>>,
    /// Typed parts of replies, by slot.
    typed: RefCell<Vec<(usize, Typed)>>,
    outstanding: Cell<usize>,
    waker: RefCell<Option<Waker>>,
    /// A reply did not match its request: the connection must close.
    broken: Cell<bool>,
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

    /// True once a reply for this connection did not match its request.
    pub fn is_broken(&self) -> bool {
        self.broken.get()
    }

    /// Bytes of replies held.
    pub fn held_bytes(&self) -> usize {
        self.data.borrow().capacity()
    }

    fn fill(&self, slot: usize, bytes: &[u8]) {
        let mut data = self.data.borrow_mut();
        let start = data.len();
        data.extend_from_slice(bytes);
        self.slots.borrow_mut()[slot] = (start, data.len());
        self.filled_one();
    }

    /// The typed part of the reply in `slot`, if it had one (taken out).
    pub fn take_typed(&self, slot: usize) -> Option<Typed> {
        let mut typed = self.typed.borrow_mut();
        let i = typed.iter().position(|(s, _)| *s == slot)?;
        Some(typed.swap_remove(i).1)
    }

    /// Give up on `count` slots from `first`: the connection is closed once
    /// its batch ends, and these slots stay empty.
    fn fail(&self, first: usize, count: u32) {
        self.broken.set(true);
        let data = self.data.borrow().len();
        let mut slots = self.slots.borrow_mut();
        for slot in first..first + count as usize {
            if let Some(s) = slots.get_mut(slot) {
                *s = (data, data);
            }
        }
        drop(slots);
        for _ in 0..count {
            self.filled_one();
        }
    }

    fn filled_one(&self) {
        let left = self.outstanding.get().saturating_sub(1);
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
        if data.capacity() > 64 << 10 {
            *data = Vec::new();
        }
        self.slots.borrow_mut().clear();
        self.typed.borrow_mut().clear();
    }
}

struct Waiter {
    id: u64,
    conn: Rc<ConnWait>,
    first_slot: usize,
    count: u32,
}

/// This core's side of its link with one other core.
#[derive(Default)]
pub struct Peer {
    pub outbox: RefCell<Frame>,
    waiters: RefCell<VecDeque<Waiter>>,
    next_id: Cell<u64>,
    pub wake_sender: Notify,
    pub done_received: Cell<bool>,
}

impl Peer {
    fn push(&self, conn: &Rc<ConnWait>, first_slot: usize, cmd: Cmd) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let count = cmd.segments();
        self.outbox.borrow_mut().cmds.push((id, cmd));
        self.waiters.borrow_mut().push_back(Waiter { id, conn: conn.clone(), first_slot, count });
    }

    /// Queue a keyed write (the bytes that parsed); its reply lands in
    /// `conn`'s `slot`.
    pub fn forward(&self, conn: &Rc<ConnWait>, slot: usize, raw: &[u8]) {
        let mut f = self.outbox.borrow_mut();
        let start = f.arena.len();
        f.arena.extend_from_slice(raw);
        let end = f.arena.len();
        drop(f);
        self.push(conn, slot, Cmd::Request { start, end });
    }

    /// Queue a retrieval of `keys` (at most 255 bytes each, as the parser
    /// allows); their replies land in `conn`'s slots from `first_slot` on.
    pub fn forward_get<'k>(
        &self,
        conn: &Rc<ConnWait>,
        first_slot: usize,
        kind: GetKind,
        exptime: i64,
        cap: usize,
        keys: impl Iterator<Item = &'k [u8]>,
    ) {
        let mut f = self.outbox.borrow_mut();
        let start = f.arena.len();
        let mut count = 0u32;
        for key in keys {
            // The parser refuses keys over 250 bytes, so nothing is cut.
            let key = &key[..key.len().min(u8::MAX as usize)];
            f.arena.push(key.len() as u8);
            f.arena.extend_from_slice(key);
            count += 1;
        }
        let end = f.arena.len();
        drop(f);
        self.push(conn, first_slot, Cmd::Get { kind, exptime, start, end, count, cap });
    }

    /// Queue a control command; its reply lands in `conn`'s `slot`.
    pub fn control(&self, conn: &Rc<ConnWait>, slot: usize, cmd: Cmd) {
        self.push(conn, slot, cmd);
        self.wake_sender.notify();
    }

    /// Take what is queued for the peer, if anything.
    pub fn take_outbox(&self) -> Option<Frame> {
        let mut f = self.outbox.borrow_mut();
        if f.is_empty() { None } else { Some(std::mem::take(&mut *f)) }
    }

    /// Hand replies from the peer to the connections waiting for them.
    /// Returns how many replies did not match their request: each breaks the
    /// connections it concerns (the waiter, and a waiter whose reply never
    /// came), and no other.
    pub fn deliver_replies(&self, frame: &Frame) -> u64 {
        let mut waiters = self.waiters.borrow_mut();
        let mut errors = 0;
        let mut seg = 0usize;
        let mut start = 0usize;
        let mut typed = frame.typed.iter().peekable();
        for head in &frame.reply_heads {
            let ends = frame.reply_ends.get(seg..seg + head.segments as usize).unwrap_or(&[]);
            seg += head.segments as usize;
            let end_of = |ends: &[usize], start: usize| ends.last().copied().unwrap_or(start);
            // Waiters older than this reply lost theirs.
            while waiters.front().is_some_and(|w| w.id < head.id) {
                let w = waiters.pop_front().expect("front exists");
                log::error!("core mesh: no reply to forwarded request {}; closing its connection", w.id);
                w.conn.fail(w.first_slot, w.count);
                errors += 1;
            }
            let matches = waiters.front().is_some_and(|w| w.id == head.id);
            if !matches {
                log::error!("core mesh: a reply to request {} that nobody waits for; dropped", head.id);
                errors += 1;
                start = end_of(ends, start);
                continue;
            }
            let w = waiters.pop_front().expect("front exists");
            if w.count != head.segments || ends.len() != head.segments as usize {
                log::error!(
                    "core mesh: request {} expected {} reply segments, got {}; closing its connection",
                    w.id,
                    w.count,
                    head.segments
                );
                w.conn.fail(w.first_slot, w.count);
                errors += 1;
                start = end_of(ends, start);
                continue;
            }
            while typed.next_if(|(id, _)| *id < head.id).is_some() {}
            if let Some((_, t)) = typed.next_if(|(id, _)| *id == head.id) {
                w.conn.typed.borrow_mut().push((w.first_slot, t.clone()));
            }
            for (i, &end) in ends.iter().enumerate() {
                match frame.reply_arena.get(start..end) {
                    Some(bytes) => w.conn.fill(w.first_slot + i, bytes),
                    None => {
                        w.conn.fail(w.first_slot + i, 1);
                        errors += 1;
                    }
                }
                start = end;
            }
        }
        errors
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

    fn reply(heads: &[(u64, &[&[u8]])]) -> Frame {
        let mut fr = Frame::default();
        for (id, segs) in heads {
            let first = fr.reply_ends.len();
            for s in *segs {
                fr.reply_arena.extend_from_slice(s);
                fr.reply_ends.push(fr.reply_arena.len());
            }
            fr.end_reply(*id, first);
        }
        fr
    }

    #[test]
    fn replies_reach_waiters_in_order_across_frames() {
        let peer = Peer::default();
        let a = Rc::new(ConnWait::default());
        let b = Rc::new(ConnWait::default());
        let sa = a.reserve(2);
        peer.forward_get(&a, sa, GetKind::Get, 0, usize::MAX, [&b"x"[..], b"y"].into_iter());
        let sb = b.reserve(1);
        peer.forward(&b, sb, b"delete z\r\n");
        let f = peer.take_outbox().unwrap();
        assert_eq!(f.cmds.len(), 2);
        let Cmd::Get { start, end, count: 2, .. } = f.cmds[0].1 else { panic!("{:?}", f.cmds[0]) };
        assert_eq!(get_keys(&f.arena[start..end]).collect::<Vec<_>>(), [b"x", b"y"]);
        assert_eq!(peer.deliver_replies(&reply(&[(0, &[b"VALUE x 0 1\r\n1\r\n", b""])])), 0);
        assert_eq!(a.outstanding.get(), 0);
        assert_eq!(peer.deliver_replies(&reply(&[(1, &[b"DELETED\r\n"])])), 0);
        assert_eq!((a.outstanding.get(), b.outstanding.get()), (0, 0));
        a.with_slot(0, |s| assert_eq!(s, b"VALUE x 0 1\r\n1\r\n"));
        a.with_slot(1, |s| assert!(s.is_empty()));
        b.with_slot(0, |s| assert_eq!(s, b"DELETED\r\n"));
        assert!(!a.is_broken() && !b.is_broken());
    }

    #[test]
    fn typed_parts_reach_the_slot_of_the_reply_they_belong_to() {
        let peer = Peer::default();
        let (a, b) = (Rc::new(ConnWait::default()), Rc::new(ConnWait::default()));
        let sa = a.reserve(1);
        peer.control(&a, sa, Cmd::Stats);
        let sb = b.reserve(1);
        peer.control(&b, sb, Cmd::ReplStats);
        let mut fr = reply(&[(0, &[b""]), (1, &[b""])]);
        let counters = Counters { cmd_get: 3, ..Default::default() };
        let figures = ReplFigures { items: 5, ..Default::default() };
        fr.typed = vec![(0, Typed::Counters(Box::new(counters))), (1, Typed::Repl(figures))];
        assert_eq!(peer.deliver_replies(&fr), 0);
        assert_eq!(a.take_typed(sa), Some(Typed::Counters(Box::new(counters))));
        assert_eq!(b.take_typed(sb), Some(Typed::Repl(figures)));
        assert_eq!(a.take_typed(sa), None, "taken once");
    }

    #[test]
    fn a_short_reply_breaks_only_its_own_connection() {
        let peer = Peer::default();
        let conns: Vec<Rc<ConnWait>> = (0..3).map(|_| Rc::new(ConnWait::default())).collect();
        let slot0 = conns[0].reserve(3);
        peer.forward_get(&conns[0], slot0, GetKind::Get, 0, usize::MAX, [&b"a"[..], b"b", b"c"].into_iter());
        for c in &conns[1..] {
            let s = c.reserve(1);
            peer.forward(c, s, b"delete k\r\n");
        }
        // The owner answered the get with one segment instead of three.
        let errors = peer.deliver_replies(&reply(&[(0, &[b"x"]), (1, &[b"DELETED\r\n"]), (2, &[b"NOT_FOUND\r\n"])]));
        assert_eq!(errors, 1);
        assert!(conns[0].is_broken());
        assert_eq!(conns[0].outstanding.get(), 0, "the broken connection's wait ends");
        conns[1].with_slot(0, |s| assert_eq!(s, b"DELETED\r\n"));
        conns[2].with_slot(0, |s| assert_eq!(s, b"NOT_FOUND\r\n"));
        assert!(!conns[1].is_broken() && !conns[2].is_broken());
    }

    #[test]
    fn a_missing_reply_breaks_its_waiter_and_the_next_replies_still_match() {
        let peer = Peer::default();
        let (a, b) = (Rc::new(ConnWait::default()), Rc::new(ConnWait::default()));
        let sa = a.reserve(1);
        peer.forward(&a, sa, b"delete x\r\n");
        let sb = b.reserve(1);
        peer.forward(&b, sb, b"delete y\r\n");
        assert_eq!(peer.deliver_replies(&reply(&[(1, &[b"DELETED\r\n"]), (7, &[b"stray"])])), 2);
        assert!(a.is_broken() && !b.is_broken());
        b.with_slot(0, |s| assert_eq!(s, b"DELETED\r\n"));
    }
}
