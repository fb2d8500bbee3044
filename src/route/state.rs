//! One core's state and its mesh tasks: the shard it owns, its links to the
//! other cores, its connection budget and the registry of its connections;
//! `serve_frame` runs the work another core forwarded, and the sender and
//! receiver tasks move frames over the mesh. `Global` is what every core
//! shares.
//!
//! Must not import `server` (sockets and connections use this, not the
//! other way round).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use glommio::channels::channel_mesh::{Receivers, Senders};
use slab::Slab;

use crate::config::Config;
use crate::protocol::{Limits, Parsed, parse};
use crate::stats::Counters;
use crate::wake::Notify;

use super::budget::ConnBudget;
use super::mesh::{Cmd, Frame, Interruptible, Peer, Typed, get_keys};
use super::shard::Shard;

/// What every core shares: set once at start, atomics only off the request path.
pub struct Global {
    pub cfg: Config,
    /// Open client connections over all cores, for `-c`.
    pub conns: AtomicUsize,
    pub started: u64,
    pub pid: u32,
    pub shutdown: Shutdown,
    pub repl: Option<crate::repl::ReplShared>,
    /// Each core's connection budget, by core id.
    pub budgets: Vec<ConnBudget>,
    /// Each core's latency histograms (`stats latency`, `/metrics`).
    pub latency: crate::latency::PerCore,
    /// Each core's hot-key sketches and the switch (`stats hotkeys on|off`).
    pub hotkeys: crate::hotkeys::PerCore,
    /// Per-prefix counters (`stats detail`), which each core's shard holds too.
    pub detail: Arc<crate::detail::PerCore>,
    /// `watch` connections, which each core's shard feeds too.
    pub watch: Arc<crate::watch::Hub>,
}

/// A one-shot, cross-thread event: set once, awaited by many.
#[derive(Default)]
pub struct Shutdown {
    state: Mutex<(bool, Vec<Waker>)>,
}

impl Shutdown {
    pub fn trigger(&self) {
        let wakers = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.0 {
                return Poll::Ready(());
            }
            if !s.1.iter().any(|w| w.will_wake(cx.waker())) {
                s.1.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub last_cmd: Cell<u64>,
    /// Waker of the connection's pending read, so shutdown can interrupt it.
    pub waker: Rc<RefCell<Option<Waker>>>,
}

/// The wall clock in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a get whose reply outgrew `Core::get_reply_cap` answers.
pub const GET_TOO_LARGE: &[u8] = b"SERVER_ERROR out of memory writing get response\r\n";

pub struct Core {
    /// A get reply may not grow past this many bytes: memcore copies values
    /// into replies (memcached sends references), so a line repeating one
    /// large key must not make it copy gigabytes.
    pub get_reply_cap: usize,
    pub id: usize,
    pub ncores: usize,
    pub global: Arc<Global>,
    pub limits: Limits,
    pub shard: RefCell<Shard>,
    /// Link to each other core, indexed by core id (own slot unused).
    pub peers: Vec<Peer>,
    pub conns: RefCell<Slab<ConnInfo>>,
    /// Set at shutdown: stop accepting, stop reading new requests.
    pub stopping: Cell<bool>,
    /// This core's clock in Unix seconds, refreshed by its crawl task ten
    /// times a second (memcached keeps a timer-driven clock too): requests
    /// read it instead of asking the kernel for the time.
    pub clock: Cell<u64>,
    /// Wakers of the accept loops, so shutdown can interrupt them.
    pub accept_wakers: RefCell<Vec<Rc<RefCell<Option<Waker>>>>>,
    pub peer_done: Notify,
    /// This core's outgoing replication stream, when the node replicates.
    pub repl: Option<crate::repl::link::ReplCore>,
}

impl Core {
    pub fn new(id: usize, ncores: usize, global: Arc<Global>, shard: Shard) -> Self {
        let limits = Limits { item_size_max: global.cfg.item_size_max };
        Core {
            get_reply_cap: (64 << 20).max(2 * global.cfg.item_size_max),
            id,
            ncores,
            global,
            limits,
            shard: RefCell::new(shard),
            peers: (0..ncores).map(|_| Peer::default()).collect(),
            conns: RefCell::new(Slab::new()),
            stopping: Cell::new(false),
            clock: Cell::new(unix_now()),
            accept_wakers: RefCell::new(Vec::new()),
            peer_done: Notify::default(),
            repl: None,
        }
    }

    /// What this core's client connections may hold.
    pub fn budget(&self) -> &ConnBudget {
        &self.global.budgets[self.id]
    }

    pub fn cfg(&self) -> &Config {
        &self.global.cfg
    }

    /// Whether a write's reply waits for the replication peers (the `sync`
    /// and `majority` modes).
    pub fn waits_for_peers(&self) -> bool {
        self.global.repl.as_ref().is_some_and(|r| r.cfg.mode != crate::repl::Mode::Async)
    }

    pub fn remote_ids(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.ncores).filter(move |&i| i != self.id)
    }

    /// Execute a frame of work from core `from`, appending the replies to
    /// the frame going back to it.
    pub fn serve_frame(&self, from: usize, frame: &Frame, now: u64) {
        let mut back = self.peers[from].outbox.borrow_mut();
        let back = &mut *back;
        let mut shard = self.shard.borrow_mut();
        let waits_for_peers = self.waits_for_peers();
        for (id, cmd) in &frame.cmds {
            let first_segment = back.reply_ends.len();
            match *cmd {
                Cmd::Get { kind, exptime, start, end, cap, .. } => {
                    shard.counters.forwarded_in += 1;
                    // The asking core's budget, as it is now, caps the reply
                    // and carries its bytes until they are delivered there.
                    let budget = &self.global.budgets[from];
                    let cap = budget.get_cap(cap);
                    let reply_start = back.reply_arena.len();
                    let limit = reply_start.saturating_add(cap);
                    let mut over = false;
                    for key in get_keys(&frame.arena[start..end]) {
                        if !over && !shard.get_one(kind, exptime, key, now, &mut back.reply_arena, limit) {
                            over = true;
                            back.reply_arena.extend_from_slice(GET_TOO_LARGE);
                        }
                        back.reply_ends.push(back.reply_arena.len());
                    }
                    let built = back.reply_arena.len() - reply_start;
                    budget.charge(built);
                    back.charged += built;
                    back.end_reply(*id, first_segment);
                    continue;
                }
                Cmd::Request { start, end } => {
                    shard.counters.forwarded_in += 1;
                    match parse(&frame.arena[start..end], &self.limits) {
                        Parsed::Request { req, .. } if req.key().is_some() => {
                            let wrote = shard.execute(&req, now, &mut back.reply_arena);
                            // The asking connection waits for the peers
                            // when its write changed something.
                            if let Some(w) = wrote.filter(|_| waits_for_peers) {
                                back.typed.push((*id, Typed::Wrote { version: w.version }));
                            }
                        }
                        // The sender parsed these very bytes with the same
                        // limits; if that ever differs, no segment goes
                        // back and the sender closes only that connection.
                        other => {
                            log::error!("forwarded request did not parse as a keyed request: {other:?}");
                            shard.counters.forward_errors += 1;
                            back.end_reply(*id, first_segment);
                            continue;
                        }
                    }
                }
                Cmd::Flush { at } => shard.store.flush(at, now),
                Cmd::MemLimit { bytes } => shard.store.set_limit(bytes as usize, now),
                Cmd::Stats => back.typed.push((*id, Typed::Counters(Box::new(self.counters_of(&shard, now))))),
                Cmd::StatsReset => shard.reset_stats(),
                Cmd::Conns => self.render_conns(now, &mut back.reply_arena),
                Cmd::Apply { start, end } => {
                    let shard = &mut *shard;
                    if let Some(r) = shard.repl.as_mut() {
                        r.apply_ops(&mut shard.store, &frame.arena[start..end], now, crate::repl::unix_ms());
                    }
                }
                Cmd::ReplStats => back.typed.push((*id, Typed::Repl(shard.repl_figures()))),
                Cmd::Metadump { cursor } => {
                    let next = shard.metadump(cursor, now, &mut back.reply_arena);
                    back.typed.push((*id, Typed::Cursor(next)));
                }
            }
            back.reply_ends.push(back.reply_arena.len());
            back.end_reply(*id, first_segment);
        }
        drop(shard);
        crate::repl::link::kick(self);
    }

    /// `stats conns` lines for this core's connections.
    pub fn render_conns(&self, now: u64, out: &mut Vec<u8>) {
        use crate::protocol::encode::encode_stat;
        // With -s every connection is on the UNIX socket (TCP is off).
        let unix = self.global.cfg.unix_socket.as_deref().map(|p| format!("unix:{p}"));
        for (i, c) in self.conns.borrow().iter() {
            let id = format!("{}.{}", self.id, i);
            encode_stat(out, &format!("{id}:addr"), unix.clone().unwrap_or_else(|| format!("tcp:{}", c.peer)));
            encode_stat(out, &format!("{id}:listen_addr"), unix.clone().unwrap_or_else(|| format!("tcp:{}", c.local)));
            encode_stat(out, &format!("{id}:state"), "conn_parse_cmd");
            encode_stat(out, &format!("{id}:secs_since_last_cmd"), now.saturating_sub(c.last_cmd.get()));
        }
    }

    /// Begin shutdown: no more accepts, no more reads.
    pub fn stop(&self) {
        self.stopping.set(true);
        let wake = |slot: &Rc<RefCell<Option<Waker>>>| {
            if let Some(w) = slot.borrow_mut().take() {
                w.wake();
            }
        };
        self.accept_wakers.borrow().iter().for_each(wake);
        self.conns.borrow().iter().for_each(|(_, c)| wake(&c.waker));
    }

    /// Accept from `accept` until the core stops (then None). A failed
    /// accept (out of fds and the like) is logged as `what`'s and retried
    /// shortly: the listener keeps serving.
    pub async fn accept_until_stop<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
        &self,
        what: &str,
        mut accept: impl FnMut() -> F,
    ) -> Option<T> {
        let waker = Rc::new(RefCell::new(None));
        self.accept_wakers.borrow_mut().push(waker.clone());
        let accepted = loop {
            let fut = std::pin::pin!(accept());
            match (Interruptible { inner: fut, stop: &self.stopping, waker: &waker }).await {
                None => break None,
                Some(Ok(s)) => break Some(s),
                Some(Err(e)) => {
                    log::warn!("{what}accept failed: {e}");
                    glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        self.accept_wakers.borrow_mut().retain(|w| !Rc::ptr_eq(w, &waker));
        accepted
    }

    pub fn snapshot(&self) -> Counters {
        self.counters_of(&self.shard.borrow(), self.clock.get())
    }

    fn counters_of(&self, shard: &Shard, now: u64) -> Counters {
        let mut c = shard.snapshot(now);
        c.conn_memory_bytes = self.budget().used() as u64;
        c.conn_memory_limit = self.budget().limit() as u64;
        c
    }
}

/// Send whatever the outbox for `peer` holds, one frame at a time. The only
/// task on this core that awaits channel space.
pub async fn sender_task(core: Rc<Core>, senders: Rc<Senders<Frame>>, peer: usize) {
    loop {
        core.peers[peer].wake_sender.wait().await;
        while let Some(frame) = core.peers[peer].take_outbox() {
            if senders.send_to(peer, frame).await.is_err() {
                return;
            }
        }
    }
}

/// Receive frames from `peer`: deliver replies, execute requests. Never
/// awaits anything else, so it always drains its channel.
pub async fn receiver_task(core: Rc<Core>, receivers: Rc<Receivers<Frame>>, peer: usize) {
    loop {
        let frame = match receivers.recv_from(peer).await {
            Ok(Some(f)) => f,
            _ => return,
        };
        let p = &core.peers[peer];
        let errors = p.deliver_replies(&frame);
        // The connections hold these bytes now and charge them themselves.
        core.budget().uncharge(frame.charged);
        if errors > 0 {
            core.shard.borrow_mut().counters.forward_errors += errors;
        }
        if !frame.cmds.is_empty() {
            core.serve_frame(peer, &frame, core.clock.get());
            p.wake_sender.notify();
        }
        if frame.done {
            p.done_received.set(true);
            core.peer_done.notify();
        }
    }
}
