//! Replication between memcore nodes (docs/replication.md).
//!
//! Every node of a replica group links to every other. Each core ships the
//! results of its own writes (items as stored, deletes, flushes), stamped
//! with hybrid-logical-clock versions, to each peer over its own TCP link,
//! in numbered batches kept in a bounded backlog. The accepting node hands
//! each item to the core that owns its key, which keeps it only if its
//! version is newer than what it holds, so all nodes converge whatever the
//! order of arrival.
//!
//! ```text
//!  node A core i                                        node B (any core accepts)
//!  writes ─▶ ReplShard.pending ─seal─▶ Backlog ─link task─▶ TCP ─▶ inbound task
//!                                         ▲                         │ ops by owner core
//!                           ACK(seq) ◀────┴──── ack reader ◀── TCP ◀┘ (mesh Cmd::Apply)
//! ```
//!
//! `hlc`, `wire`, `backlog` and `apply` are pure (no I/O, no clock);
//! `link` holds the glommio tasks, which see their core only through the
//! narrow handle of `host` (its store and replication state, backlog,
//! clock, and applying a peer's ops on the owner cores), which `route`
//! implements. What is shared between cores is here: atomics only, read by
//! `stats repl` and by connections waiting in the `sync` and `majority`
//! modes.
//!
//! Imports storage; must not import `route`, `server`, `stats`, `config`
//! or `protocol` (config and route import this; `stats repl` is encoded by
//! the caller of `report`).

pub mod apply;
pub mod backlog;
pub mod hlc;
pub mod host;
pub mod link;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_BACKLOG_MB: usize = 64;
pub const DEFAULT_TOMBSTONE_TTL_S: u64 = 60;
pub const DEFAULT_HEARTBEAT_MS: u64 = 250;
/// A link that brought nothing for this many heartbeat intervals is dead.
pub const SILENT_INTERVALS: u32 = 4;
/// Inbound replication connections at once, over all cores: a group of
/// 16 nodes of 16 cores each, with room for reconnects.
pub const DEFAULT_MAX_LINKS: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Async,
    Sync,
    Majority,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
            Mode::Majority => "majority",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ReplConfig {
    pub listen: Option<SocketAddr>,
    /// Peer replication addresses as given; resolved at each connect, so a
    /// bad one only keeps its link down.
    pub peers: Vec<String>,
    pub node_id: u8,
    pub secret: Option<Vec<u8>>,
    pub mode: Mode,
    pub timeout: Duration,
    /// Backlog bytes per core (the flag's total split over the cores).
    pub backlog_bytes: usize,
    pub tombstone_ttl: Duration,
    /// Each side of a link sends a HEARTBEAT after this long without
    /// writing anything on it.
    pub heartbeat: Duration,
    /// Inbound replication connections at once (handshakes included).
    pub max_links: usize,
}

impl ReplConfig {
    /// File descriptors replication may hold: inbound links (capped) and
    /// one outgoing link per core and peer. Kept apart from `-c`.
    pub fn fd_budget(&self, cores: usize) -> usize {
        self.max_links + cores * self.peers.len()
    }
    pub fn secret(&self) -> &[u8] {
        self.secret.as_deref().unwrap_or(b"")
    }
    /// Peers (besides this node) whose acknowledgement a majority needs.
    pub fn majority_peers(&self) -> usize {
        self.peers.len().div_ceil(2)
    }
    /// How long a link may bring no bytes before it is dropped: a peer cut
    /// off without a reset (a network split, a stopped process) is noticed
    /// in this time instead of when TCP gives up.
    pub fn silence_limit(&self) -> Duration {
        self.heartbeat * SILENT_INTERVALS
    }
}

pub const LINK_DOWN: u8 = 0;
pub const LINK_CONNECTING: u8 = 1;
pub const LINK_SYNCING: u8 = 2;
pub const LINK_LIVE: u8 = 3;

pub fn link_state_name(s: u8) -> &'static str {
    match s {
        LINK_CONNECTING => "connecting",
        LINK_SYNCING => "syncing",
        LINK_LIVE => "connected",
        _ => "down",
    }
}

/// One core's outgoing link to one peer, as seen from other threads.
#[derive(Default)]
pub struct LinkShared {
    pub state: AtomicU8,
    /// Every batch up to this seq is applied on the peer.
    pub acked: AtomicU64,
    pub items_sent: AtomicU64,
    pub lag_ms: AtomicU64,
    pub backlog_bytes: AtomicU64,
    pub resyncs: AtomicU64,
    /// The peer's node id once a handshake told it (+1; 0 = unknown).
    pub peer_node: AtomicU64,
}

/// What one peer node sent us, over all its cores' links.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inbound {
    pub items_received: u64,
    /// Its links in the middle of a full resync.
    pub syncing: u64,
    pub resyncs: u64,
}

pub struct ReplShared {
    pub cfg: ReplConfig,
    pub ncores: usize,
    links: Vec<LinkShared>,
    /// Per core: the seq its pending (unsealed) ops will get.
    pub pending_seq: Vec<AtomicU64>,
    /// Inbound streams: (node, core) → (epoch, last seq applied).
    pub streams: Mutex<HashMap<(u16, u16), (u64, u64)>>,
    pub inbound: Mutex<HashMap<u16, Inbound>>,
    /// sync/majority writes that got SERVER_ERROR.
    pub timeouts: AtomicU64,
    /// Inbound replication connections open now, over all cores
    /// (handshakes included), against `cfg.max_links`.
    pub inbound_links: AtomicUsize,
    /// Inbound connections closed at once: over the cap, or the handshake
    /// failed or took too long.
    pub links_refused: AtomicU64,
    /// Links ended by a frame that failed to open: changed, replayed,
    /// reordered, or from another session.
    pub frames_rejected: AtomicU64,
    /// The newest flush_all this node took, shared by its cores' `ReplShard`s.
    pub flush_mark: Arc<apply::FlushMark>,
    /// Per core: the connections waiting for its links' ACKs (`sync` and
    /// `majority` writes), woken by its ACK readers.
    pub ack_waiters: Vec<AckWaiters>,
}

/// Tasks waiting for the ACKs of one core's links: each registers its
/// waker, and the core's ACK readers wake them all when an ACK moves a
/// link forward. A waiting connection may run on another core, so this is
/// a lock (taken once per ACK and per wait, never on the request path of
/// the `async` mode), not a cell; glommio takes wakes from other threads.
/// A task is listed once however often it waits, so the list is bounded
/// by the tasks that ever waited since the last ACK.
#[derive(Default)]
pub struct AckWaiters(Mutex<Vec<Waker>>);

impl AckWaiters {
    pub fn register(&self, waker: &Waker) {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !w.iter().any(|x| x.will_wake(waker)) {
            w.push(waker.clone());
        }
    }

    pub fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl ReplShared {
    pub fn new(cfg: ReplConfig, ncores: usize) -> Self {
        let n = ncores * cfg.peers.len();
        ReplShared {
            ncores,
            links: (0..n).map(|_| LinkShared::default()).collect(),
            pending_seq: (0..ncores).map(|_| AtomicU64::new(1)).collect(),
            streams: Mutex::new(HashMap::new()),
            inbound: Mutex::new(HashMap::new()),
            timeouts: AtomicU64::new(0),
            inbound_links: AtomicUsize::new(0),
            links_refused: AtomicU64::new(0),
            frames_rejected: AtomicU64::new(0),
            flush_mark: Arc::default(),
            ack_waiters: (0..ncores).map(|_| AckWaiters::default()).collect(),
            cfg,
        }
    }

    pub fn link(&self, core: usize, peer: usize) -> &LinkShared {
        &self.links[core * self.cfg.peers.len() + peer]
    }

    pub fn inbound_update(&self, node: u16, f: impl FnOnce(&mut Inbound)) {
        if let Ok(mut m) = self.inbound.lock() {
            f(m.entry(node).or_default());
        }
    }

    /// For the `sync` and `majority` modes: has a write that core `core`
    /// queued before `target` (its `pending_seq` then) reached enough
    /// peers? `live` are the peers that were connected when it was made.
    pub fn acked_enough(&self, core: usize, target: u64, live: &[usize]) -> Result<(), (usize, usize)> {
        let acked = (0..self.cfg.peers.len()).filter(|&p| self.link(core, p).acked.load(Ordering::Acquire) >= target);
        let (have, need) = match self.cfg.mode {
            Mode::Async => return Ok(()),
            Mode::Sync => (acked.filter(|p| live.contains(p)).count(), live.len()),
            Mode::Majority => (acked.count(), self.cfg.majority_peers()),
        };
        if have >= need { Ok(()) } else { Err((have, need)) }
    }

    pub fn live_peers(&self, core: usize) -> Vec<usize> {
        (0..self.cfg.peers.len()).filter(|&p| self.link(core, p).state.load(Ordering::Acquire) == LINK_LIVE).collect()
    }
}

/// One core's replication figures for `stats repl`, gathered from every
/// core (as a typed value, in-process) and summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplFigures {
    pub digest: u64,
    pub items: u64,
    pub received: u64,
    pub applied: u64,
    pub conflicts: u64,
    pub tombstones: u64,
    pub shipped: u64,
    /// Peer ops refused (a version too far ahead, a value over -I).
    pub refused: u64,
}

impl ReplFigures {
    /// Digests combine by XOR (order-free), counts by sum.
    pub fn add(&mut self, o: &ReplFigures) {
        self.digest ^= o.digest;
        self.items += o.items;
        self.received += o.received;
        self.applied += o.applied;
        self.conflicts += o.conflicts;
        self.tombstones += o.tombstones;
        self.shipped += o.shipped;
        self.refused += o.refused;
    }
}

/// The lines of `stats repl`, each handed to `stat` as a name and a value
/// (the caller encodes them): this node, then each peer (`peer<i>_*`, in
/// `--peers` order), summed over the cores' links. `sh` is None when the
/// node does not replicate.
pub fn report(sh: Option<&ReplShared>, f: &ReplFigures, stat: &mut dyn FnMut(&str, &dyn std::fmt::Display)) {
    let Some(sh) = sh else {
        stat("repl_enabled", &"no");
        return;
    };
    let inbound = sh.inbound.lock().map(|m| m.clone()).unwrap_or_default();
    let syncing = inbound.values().any(|i| i.syncing > 0);
    stat("repl_enabled", &"yes");
    stat("repl_node_id", &sh.cfg.node_id);
    stat("repl_mode", &sh.cfg.mode.name());
    stat("repl_state", &if syncing { "syncing" } else { "ok" });
    stat("repl_digest", &format!("{:016x}", f.digest));
    stat("repl_items", &f.items);
    stat("repl_items_shipped", &f.shipped);
    stat("repl_items_received", &f.received);
    stat("repl_items_applied", &f.applied);
    stat("repl_conflicts_resolved", &f.conflicts);
    stat("repl_tombstones", &f.tombstones);
    stat("repl_ops_refused", &f.refused);
    stat("repl_links_refused", &sh.links_refused.load(Ordering::Relaxed));
    stat("repl_frames_rejected", &sh.frames_rejected.load(Ordering::Relaxed));
    stat("repl_encrypted", &if sh.cfg.secret().is_empty() { "no" } else { "yes" });
    stat("repl_write_timeouts", &sh.timeouts.load(Ordering::Relaxed));
    for (p, addr) in sh.cfg.peers.iter().enumerate() {
        let links: Vec<&LinkShared> = (0..sh.ncores).map(|c| sh.link(c, p)).collect();
        let state = links.iter().map(|l| l.state.load(Ordering::Relaxed)).min().unwrap_or(LINK_DOWN);
        let node = links.iter().map(|l| l.peer_node.load(Ordering::Relaxed)).max().unwrap_or(0);
        let sum = |f: &dyn Fn(&LinkShared) -> u64| links.iter().map(|l| f(l)).sum::<u64>();
        let name = format!("peer{p}");
        stat(&format!("{name}_addr"), &addr);
        stat(&format!("{name}_node_id"), &if node == 0 { "unknown".into() } else { (node - 1).to_string() });
        let recv =
            if node > 0 { inbound.get(&((node - 1) as u16)).copied().unwrap_or_default() } else { Default::default() };
        let st = if recv.syncing > 0 { "syncing" } else { link_state_name(state) };
        stat(&format!("{name}_state"), &st);
        let lag = links.iter().map(|l| l.lag_ms.load(Ordering::Relaxed)).max().unwrap_or(0);
        stat(&format!("{name}_lag_ms"), &lag);
        stat(&format!("{name}_backlog_bytes"), &sum(&|l| l.backlog_bytes.load(Ordering::Relaxed)));
        stat(&format!("{name}_items_sent"), &sum(&|l| l.items_sent.load(Ordering::Relaxed)));
        stat(&format!("{name}_items_received"), &recv.items_received);
        stat(&format!("{name}_resyncs_sent"), &sum(&|l| l.resyncs.load(Ordering::Relaxed)));
        stat(&format!("{name}_resyncs_received"), &recv.resyncs);
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Bytes from the kernel's random source. Nonces and session keys rest
/// on them, so there is no weaker fallback: a kernel that cannot give
/// random bytes (before Linux 3.17, or a seccomp filter) stops the process.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: getrandom writes at most the given length into our buffer.
        let r = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), N - got, 0) };
        if r < 0 && io_interrupted() {
            continue;
        }
        if r <= 0 {
            log::error!("getrandom failed ({}); cannot make nonces, aborting", std::io::Error::last_os_error());
            std::process::abort();
        }
        got += r as usize;
    }
    b
}

fn io_interrupted() -> bool {
    std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
}

pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}
