//! Run here or forward: every request a connection parsed comes through
//! `dispatch` (or `get` for retrievals), which runs it on this core when
//! the core owns its key and queues it for the owner otherwise; keyless
//! commands (flush_all, cache_memlimit) reach every core. A `Batch` holds
//! the replies of one batch of requests in request order: local replies in
//! `out`, forwarded ones spliced in at `inserts` once they arrive.
//!
//! A multi-get is split by owner: keys owned here are answered at once, the
//! others go to their cores as one typed request per core, and their
//! replies are spliced back in key order, under one cap for the whole reply
//! (the connection budget's share).
//!
//! Must not import `server`: the connection hands requests in and takes
//! bytes out.

use std::rc::Rc;

use crate::protocol::encode;
use crate::protocol::parse::{GetKind, Keys};
use crate::protocol::{KEY_MAX_LENGTH, Request, absolute_expiry};

use super::mesh::{Cmd, ConnWait, Typed, owner};
use super::shard::Wrote;
use super::state::{Core, GET_TOO_LARGE};

/// Replies of one batch of requests: local replies in `out`, forwarded ones
/// spliced in at `inserts` once they arrive.
pub struct Batch {
    pub out: Vec<u8>,
    /// (offset in `out`, reply slot in `wait`), in request order.
    inserts: Vec<(usize, usize)>,
    /// Gets with forwarded keys, checked against the reply cap when spliced.
    spans: Vec<GetSpan>,
    pub wait: Rc<ConnWait>,
    /// Scratch: owning core of each key of a multi-get.
    owners: Vec<usize>,
    /// The lone write of a `sync`/`majority` batch (`dispatch_sync_write`):
    /// where its outcome is, until `take_written`.
    sync_write: Option<WriteAt>,
}

/// A write's outcome: known (it ran here, or its forwarded reply came),
/// or to come as the typed part of the reply in `slot` from `owner`.
#[derive(Clone, Copy, Debug)]
enum WriteAt {
    Done(Option<Written>),
    Forwarded { owner: usize, slot: usize },
}

/// A write that changed the store of core `owner` (and so went to the
/// peers in that core's replication stream) with `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub owner: usize,
    pub version: u64,
}

/// A get whose keys are partly on other cores: its local bytes are
/// `out[out_start..out_end]` and its forwarded replies `inserts[ins_start..ins_end]`;
/// together they may not exceed `cap` bytes.
#[derive(Clone, Copy)]
struct GetSpan {
    out_start: usize,
    out_end: usize,
    ins_start: usize,
    ins_end: usize,
    cap: usize,
}

/// Run one request here, or queue it for the core that owns its key.
/// Returns false, having done nothing, only for a get that `may_wait` for
/// room in the connection budget (see `get`).
pub fn dispatch(core: &Core, req: &Request<'_>, raw: &[u8], now: u64, batch: &mut Batch, may_wait: bool) -> bool {
    match *req {
        Request::Get { kind, exptime, keys } => return get(core, kind, exptime, keys, true, now, batch, may_wait),
        Request::GetPart { kind, exptime, keys } => {
            return get(core, kind, exptime, keys, false, now, batch, may_wait);
        }
        _ => {}
    }
    // Writes, and the meta commands that only read, run on their key's owner.
    if req.key().is_some() {
        write(core, req, raw, now, batch);
        return true;
    }
    let Batch { out, inserts, wait, .. } = batch;
    match *req {
        Request::MetaNoop => out.extend_from_slice(crate::protocol::meta::MN),
        Request::Refused { msg } => encode::encode_line(out, msg),
        Request::FlushAll { delay, noreply } => {
            if !core.cfg().flush_enabled {
                if !noreply {
                    out.extend_from_slice(encode::FLUSH_DISABLED);
                }
                return true;
            }
            let at = if delay > 0 { absolute_expiry(delay, now, core.global.started) } else { 0 };
            {
                let mut shard = core.shard.borrow_mut();
                shard.counters.cmd_flush += 1;
                shard.store.flush(at, now);
                shard.ship_flush(at);
            }
            // Every core applies the same absolute deadline; OK goes out
            // only after all of them have.
            for id in core.remote_ids() {
                let slot = wait.reserve(1);
                inserts.push((out.len(), slot));
                core.peers[id].control(wait, slot, Cmd::Flush { at });
            }
            if !noreply {
                out.extend_from_slice(encode::OK);
            }
        }
        Request::CacheMemlimit { megabytes, noreply } => {
            let per_core = (megabytes as usize).saturating_mul(1 << 20) / core.ncores;
            core.shard.borrow_mut().store.set_limit(per_core, now);
            for id in core.remote_ids() {
                let slot = wait.reserve(1);
                inserts.push((out.len(), slot));
                core.peers[id].control(wait, slot, Cmd::MemLimit { bytes: per_core as u64 });
            }
            if !noreply {
                out.extend_from_slice(encode::OK);
            }
        }
        Request::Verbosity { level, noreply } => {
            set_verbosity(level.min(2) as u8);
            if !noreply {
                out.extend_from_slice(encode::OK);
            }
        }
        Request::Version => {
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(version().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Request::Shutdown => out.extend_from_slice(encode::SHUTDOWN_DISABLED),
        // Gets and writes are above; quit and stats are the connection's.
        _ => {}
    }
    true
}

/// A keyed write runs on the core that owns its key: here at once, or
/// forwarded, its reply spliced in later.
fn write(core: &Core, req: &Request<'_>, raw: &[u8], now: u64, batch: &mut Batch) -> WriteAt {
    let Batch { out, inserts, wait, .. } = batch;
    // A meta command's base64 key decoded: the key as stored decides.
    let mut scratch = [0u8; KEY_MAX_LENGTH];
    let o = owner(req.route_key(&mut scratch).unwrap_or_default(), core.ncores);
    if o == core.id {
        let wrote = core.shard.borrow_mut().execute(req, now, out);
        return WriteAt::Done(wrote.map(|Wrote { version }| Written { owner: o, version }));
    }
    let slot = wait.reserve(1);
    inserts.push((out.len(), slot));
    let peer = &core.peers[o];
    peer.forward(wait, slot, raw);
    peer.wake_sender.notify();
    core.shard.borrow_mut().counters.forwarded_out += 1;
    WriteAt::Forwarded { owner: o, slot }
}

/// A write whose reply waits for the replication peers (see `sync_write`),
/// alone in its batch: run as `dispatch` runs it, its outcome kept for
/// `Batch::take_written`.
pub fn dispatch_sync_write(core: &Core, req: &Request<'_>, raw: &[u8], now: u64, batch: &mut Batch) {
    batch.sync_write = Some(write(core, req, raw, now, batch));
}

/// get/gets/gat/gats: keys owned here are answered at once; the others go
/// to their cores as one request per core, and their replies are spliced
/// back in key order. Returns false, having changed nothing, when
/// `may_wait` and the reply outgrew what the connection budget leaves now
/// (the caller makes room and runs it again); otherwise a reply past its
/// cap is memcached's out-of-memory error.
/// `end`: the line ends here (END follows its keys); false for the keys
/// so far of a long line (`Request::GetPart`).
#[allow(clippy::too_many_arguments)]
fn get(
    core: &Core,
    kind: GetKind,
    exptime: i64,
    keys: Keys<'_>,
    end: bool,
    now: u64,
    batch: &mut Batch,
    may_wait: bool,
) -> bool {
    let Batch { out, inserts, spans, wait, owners, .. } = batch;
    let n = core.ncores;
    let out_start = out.len();
    // What this reply may grow to: what the connection budget leaves (the
    // caller settled this connection's charge, what the batch owes included).
    let cap = core.budget().get_cap(core.get_reply_cap);
    let may_wait = may_wait && cap < core.get_reply_cap;
    let limit = out_start.saturating_add(cap);
    owners.clear();
    let mut remote = 0;
    for key in keys.iter() {
        let o = owner(key, n);
        remote += (o != core.id) as usize;
        owners.push(o);
    }
    // Replies from other cores are only known once they arrive, and what
    // does not fit then is an error: wait for room for one large item first.
    if remote > 0 && may_wait && core.budget().available() < core.budget().admit() {
        return false;
    }
    // Local keys first, leaving an insert point (its slot comes later) at
    // each remote key's place; nothing leaves this core until the local
    // part is known to fit.
    let ins_start = inserts.len();
    let mut over = false;
    {
        let mut shard = core.shard.borrow_mut();
        for (key, &o) in keys.iter().zip(owners.iter()) {
            if o != core.id {
                inserts.push((out.len(), usize::MAX));
            } else if !shard.get_one(kind, exptime, key, now, out, limit) {
                over = true;
                break;
            }
        }
    }
    if over {
        out.truncate(out_start);
        inserts.truncate(ins_start);
        if may_wait {
            return false;
        }
        out.extend_from_slice(GET_TOO_LARGE);
        return true;
    }
    if end {
        out.extend_from_slice(encode::END);
    }
    if remote == 0 {
        return true;
    }
    // Contiguous reply slots per remote core, in key order within each.
    let remote_cap = cap.saturating_sub(out.len() - out_start);
    let mut next_slot = vec![usize::MAX; n];
    for id in core.remote_ids() {
        let count = owners.iter().filter(|&&o| o == id).count();
        if count > 0 {
            let first = wait.reserve(count);
            next_slot[id] = first;
            let theirs = keys.iter().zip(owners.iter()).filter(|(_, o)| **o == id).map(|(k, _)| k);
            core.peers[id].forward_get(wait, first, kind, exptime, remote_cap, theirs);
            core.peers[id].wake_sender.notify();
            core.shard.borrow_mut().counters.forwarded_out += 1;
        }
    }
    let remote_owners = owners.iter().filter(|&&o| o != core.id);
    for (insert, &o) in inserts[ins_start..].iter_mut().zip(remote_owners) {
        insert.1 = next_slot[o];
        next_slot[o] += 1;
    }
    spans.push(GetSpan { out_start, out_end: out.len(), ins_start, ins_end: inserts.len(), cap });
    true
}

impl Batch {
    pub fn new(ncores: usize, capacity: usize) -> Self {
        Batch {
            out: Vec::with_capacity(capacity),
            inserts: Vec::new(),
            spans: Vec::new(),
            wait: Rc::new(ConnWait::default()),
            owners: Vec::with_capacity(ncores),
            sync_write: None,
        }
    }

    /// What the batch's sync write (`dispatch_sync_write`) wrote, once its
    /// reply is in (after `splice_into` when it was forwarded); None when
    /// it changed nothing.
    pub fn take_written(&mut self) -> Option<Written> {
        match self.sync_write.take() {
            Some(WriteAt::Done(w)) => w,
            _ => None,
        }
    }

    /// True while the batch has replies to write or still to receive.
    pub fn owes(&self) -> bool {
        !self.out.is_empty() || self.wait.has_pending()
    }

    /// Build the batch's output in request order from local bytes and
    /// forwarded replies; a get whose reply outgrew `cap` becomes memcached's
    /// out-of-memory error.
    pub fn splice_into(&mut self, dst: &mut Vec<u8>) {
        // The typed outcome of a forwarded sync write goes with the slots.
        if let Some(WriteAt::Forwarded { owner, slot }) = self.sync_write {
            let written = match self.wait.take_typed(slot) {
                Some(Typed::Wrote { version }) => Some(Written { owner, version }),
                _ => None,
            };
            self.sync_write = Some(WriteAt::Done(written));
        }
        dst.clear();
        let mut prev = 0;
        let mut ins = 0;
        let copy_inserts = |dst: &mut Vec<u8>, prev: &mut usize, ins: &mut usize, upto_ins: usize| {
            while *ins < upto_ins {
                let (pos, slot) = self.inserts[*ins];
                dst.extend_from_slice(&self.out[*prev..pos]);
                self.wait.with_slot(slot, |b| dst.extend_from_slice(b));
                *prev = pos;
                *ins += 1;
            }
        };
        for span in &self.spans {
            copy_inserts(dst, &mut prev, &mut ins, span.ins_start);
            dst.extend_from_slice(&self.out[prev..span.out_start]);
            let remote: usize =
                (span.ins_start..span.ins_end).map(|i| self.wait.with_slot(self.inserts[i].1, |b| b.len())).sum();
            let overflow =
                (span.ins_start..span.ins_end).any(|i| self.wait.with_slot(self.inserts[i].1, |b| b == GET_TOO_LARGE));
            if overflow || span.out_end - span.out_start + remote > span.cap {
                dst.extend_from_slice(GET_TOO_LARGE);
                prev = span.out_end;
                ins = span.ins_end;
            } else {
                prev = span.out_start;
                copy_inserts(dst, &mut prev, &mut ins, span.ins_end);
            }
        }
        copy_inserts(dst, &mut prev, &mut ins, self.inserts.len());
        dst.extend_from_slice(&self.out[prev..]);
        self.inserts.clear();
        self.spans.clear();
        self.wait.clear();
    }
}

/// `<memcached protocol version>-memcore-<crate version>`, as `version` and
/// `stats` report it.
pub fn version() -> &'static str {
    static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{}-memcore-{}", crate::config::PROTOCOL_VERSION, env!("CARGO_PKG_VERSION"))
    });
    &VERSION
}

/// memcached's `verbosity`: 0 and 1 log warnings and the startup line,
/// 2 adds per-connection events, 3 everything.
pub fn set_verbosity(level: u8) {
    log::set_max_level(match level {
        0 | 1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
}

/// A write whose reply waits for the replication peers (`sync`/`majority`).
#[derive(Clone, Copy, Debug)]
pub struct SyncWrite {
    pub noreply: bool,
}

/// Whether `req` is a write whose reply must wait for the replication
/// peers: it then goes alone in its batch (`dispatch_sync_write`).
pub fn sync_write(core: &Core, req: &Request<'_>) -> Option<SyncWrite> {
    (req.is_write() && core.waits_for_peers()).then(|| SyncWrite { noreply: req.noreply() })
}

/// Send a control command to every other core and wait for the replies;
/// returns their slots in `wait`, in core order. The caller clears `wait`.
pub async fn broadcast(core: &Core, wait: &Rc<ConnWait>, cmd: impl Fn() -> Cmd) -> Vec<usize> {
    let mut slots = Vec::new();
    for id in core.remote_ids() {
        let slot = wait.reserve(1);
        core.peers[id].control(wait, slot, cmd());
        slots.push(slot);
    }
    wait.all_filled().await;
    slots
}
