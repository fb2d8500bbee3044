//! One core's replication state beside its store: the clock that versions
//! its writes, the ops waiting to be shipped, the tombstones of deletes, and
//! applying what peers send. Runtime-free: the caller passes the time.
//!
//! Peers are not trusted with this core's memory or clock: an op whose
//! version is too far ahead of the local clock (hlc.rs) or whose value
//! claims more than `-I` unpacked is refused and counted, and tombstones
//! are charged to the store's limit (`Store::set_external`), at most
//! `1/TOMB_SHARE` of it and never more than is free without eviction;
//! past that the oldest are forgotten early (a late, older write of such
//! a key may then come back: the price of bounded memory).
//!
//! Imports storage (the store it applies to); must not import route,
//! server, stats or config.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::hlc::{Hlc, version_ms};
use super::wire::{self, Op, Reader};
use crate::storage::{ApplyOutcome, Store};

/// Counters of what this core applied from peers.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyStats {
    pub received: u64,
    pub applied: u64,
    /// Ops that lost to a newer version already here (or a tombstone).
    pub conflicts: u64,
    pub no_memory: u64,
    /// Ops refused: a version too far ahead, or a value over `-I`.
    pub refused: u64,
    /// Tombstones forgotten before their TTL to stay within their share.
    pub tombs_dropped: u64,
}

/// Tombstones may take at most this fraction (1/n) of the core's limit.
const TOMB_SHARE: usize = 4;
/// What one tombstone costs beside its key, twice over (the map and the
/// expiry queue each hold the key): boxes, the map's slot, the queue's.
const TOMB_OVERHEAD: usize = 96;
/// A refusal is logged at most this often per core.
const REFUSAL_LOG_MS: u64 = 10_000;

/// The flush_all history a node keeps over all its cores. A client's
/// flush_all is shipped by the one core that took it while every core
/// applies it, and a peer's is applied on every core; a full resync must
/// carry the newest one, or a peer that missed it (it fell out of the
/// backlog) keeps what it flushed.
#[derive(Debug, Default)]
pub struct FlushMark(Mutex<Marks>);

#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    /// Version of the newest flush_all a client sent to this node: every
    /// core applied it, whichever shipped it.
    local: u64,
    /// The newest flush this node took (a client's or a peer's): (version, at).
    seen: Option<(u64, u64)>,
}

impl FlushMark {
    fn with<R>(&self, f: impl FnOnce(&mut Marks) -> R) -> R {
        // A poisoned lock still holds consistent marks (two plain words).
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }

    fn local(&self) -> u64 {
        self.with(|m| m.local)
    }

    fn saw(&self, version: u64, at: u64, local: bool) {
        self.with(|m| {
            if local {
                m.local = m.local.max(version);
            }
            if m.seen.is_none_or(|(v, _)| v < version) {
                m.seen = Some((version, at));
            }
        })
    }

    /// The newest flush this node took, as a FLUSH op's (at, version).
    pub fn newest(&self) -> Option<(u64, u64)> {
        self.with(|m| m.seen.map(|(version, at)| (at, version)))
    }
}

pub struct ReplShard {
    pub hlc: Hlc,
    /// Encoded ops of local writes not yet sealed into a batch.
    pub pending: Vec<u8>,
    pub pending_ops: u32,
    /// Deleted keys and the version that deleted them, until their TTL.
    tombs: HashMap<Box<[u8]>, (u64, u64)>,
    tomb_order: VecDeque<(u64, Box<[u8]>)>,
    tomb_ttl_ms: u64,
    /// What the tombstones cost, as charged to the store.
    tomb_bytes: usize,
    /// Largest value a peer may send (`-I`), unpacked.
    value_max: usize,
    last_refusal_log_ms: u64,
    pub stats: ApplyStats,
    pub shipped: u64,
    /// The newest flush this core applied or shipped: a flush no newer is
    /// already in effect here (a resync repeats the newest one).
    flush_version: u64,
    flush_mark: Arc<FlushMark>,
}

impl ReplShard {
    /// `flush_mark` is shared by every core of the node.
    pub fn new(node: u8, tomb_ttl_ms: u64, value_max: usize, flush_mark: Arc<FlushMark>) -> Self {
        ReplShard {
            tomb_bytes: 0,
            value_max,
            last_refusal_log_ms: 0,
            flush_version: 0,
            flush_mark,
            hlc: Hlc::new(node),
            pending: Vec::new(),
            pending_ops: 0,
            tombs: HashMap::new(),
            tomb_order: VecDeque::new(),
            tomb_ttl_ms,
            stats: ApplyStats::default(),
            shipped: 0,
        }
    }

    /// The version for a local write now.
    pub fn stamp(&mut self, now_ms: u64) -> u64 {
        self.hlc.tick(now_ms)
    }

    /// Queue the item now stored under `key` for the peers, if it carries
    /// `version` (the write stored it). A local write also ends the key's
    /// tombstone.
    pub fn ship_item(&mut self, store: &mut Store, key: &[u8], version: u64, now: u64) {
        if !self.tombs.is_empty() && self.tombs.remove(key).is_some() {
            self.tomb_bytes -= key.len() + TOMB_OVERHEAD / 2;
        }
        let pending = &mut self.pending;
        let shipped = store.peek(key, now, |item| {
            if item.version != version {
                return false;
            }
            // As stored when that is portable (a frame without a
            // dictionary), else as clients see it.
            let Some((value, packed)) = item.replication_form() else {
                return false;
            };
            wire::encode_item(pending, key, version, item.flags, item.exp, &value, packed, item.state);
            true
        });
        match shipped {
            Some(true) => {
                self.pending_ops += 1;
                self.shipped += 1;
            }
            // The write left nothing (an expiry in the past): peers drop it too.
            None => self.ship_delete(key, version, version_ms(version)),
            Some(false) => {}
        }
    }

    /// Queue a delete of `key` at `version` and keep its tombstone.
    pub fn ship_delete(&mut self, key: &[u8], version: u64, now_ms: u64) {
        self.ship_delete_untombed(key, version);
        self.tomb(key, version, now_ms);
    }

    /// Queue a delete without keeping a tombstone here: for a write this
    /// node refused (a set under `-M` that did not fit), which must not
    /// turn into memory held outside the limit.
    pub fn ship_delete_untombed(&mut self, key: &[u8], version: u64) {
        wire::encode_op(&mut self.pending, &Op::Del { key, version });
        self.pending_ops += 1;
        self.shipped += 1;
    }

    pub fn ship_flush(&mut self, at: u64, version: u64) {
        self.flush_version = self.flush_version.max(version);
        self.flush_mark.saw(version, at, true);
        wire::encode_op(&mut self.pending, &Op::Flush { at, version });
        self.pending_ops += 1;
        self.shipped += 1;
    }

    fn tomb(&mut self, key: &[u8], version: u64, now_ms: u64) {
        let deadline = now_ms.saturating_add(self.tomb_ttl_ms);
        match self.tombs.get_mut(key) {
            Some(t) if t.0 >= version => return,
            Some(t) => *t = (version, deadline),
            None => {
                self.tombs.insert(key.into(), (version, deadline));
                self.tomb_bytes += key.len() + TOMB_OVERHEAD / 2;
            }
        }
        self.tomb_order.push_back((deadline, key.into()));
        self.tomb_bytes += key.len() + TOMB_OVERHEAD / 2;
    }

    /// What the tombstones cost now.
    pub fn tomb_bytes(&self) -> usize {
        self.tomb_bytes
    }

    /// Forget the oldest entry of the expiry queue (and its tombstone,
    /// unless a newer delete renewed it).
    fn pop_oldest(&mut self) -> Option<u64> {
        let (deadline, key) = self.tomb_order.pop_front()?;
        self.tomb_bytes -= key.len() + TOMB_OVERHEAD / 2;
        if self.tombs.get(&key).is_some_and(|t| t.1 == deadline) {
            self.tombs.remove(&key);
            self.tomb_bytes -= key.len() + TOMB_OVERHEAD / 2;
        }
        Some(deadline)
    }

    /// Keep the tombstones within their share of the store's limit and
    /// charge what they cost to it.
    pub fn charge(&mut self, store: &mut Store, now: u64) {
        let budget = store.limit() / TOMB_SHARE;
        while self.tomb_bytes > budget && self.pop_oldest().is_some() {
            self.stats.tombs_dropped += 1;
        }
        store.set_external(self.tomb_bytes, now);
        // Without eviction (-M) items cannot make room: tombstones get
        // only what is free.
        while store.memory_used() > store.limit() && self.pop_oldest().is_some() {
            self.stats.tombs_dropped += 1;
            store.set_external(self.tomb_bytes, now);
        }
    }

    /// The version that deleted `key`, while its tombstone lasts.
    pub fn tombstone(&self, key: &[u8]) -> Option<u64> {
        self.tombs.get(key).map(|t| t.0)
    }

    pub fn tombstones(&self) -> usize {
        self.tombs.len()
    }

    /// Drop tombstones older than the TTL.
    pub fn collect(&mut self, now_ms: u64) {
        while self.tomb_order.front().is_some_and(|(deadline, _)| *deadline <= now_ms) {
            self.pop_oldest();
        }
    }

    /// Every tombstone as a DEL op (for a snapshot).
    pub fn encode_tombstones(&self, out: &mut Vec<u8>) -> usize {
        for (key, (version, _)) in &self.tombs {
            wire::encode_op(out, &Op::Del { key, version: *version });
        }
        self.tombs.len()
    }

    /// Apply ops from a peer (already validated) in order: each takes
    /// effect only if its version is newer than what this core holds.
    pub fn apply_ops(&mut self, store: &mut Store, ops: &[u8], now: u64, now_ms: u64) {
        let mut r = Reader(ops);
        while !r.is_empty() {
            let Ok(op) = wire::next_op(&mut r) else {
                log::error!("replicated ops did not parse");
                break;
            };
            self.apply(store, &op, now, now_ms);
        }
        self.charge(store, now);
    }

    /// Why a peer's op is refused, if it is.
    fn refusal(&self, op: &Op<'_>, now_ms: u64) -> Option<String> {
        let version = match *op {
            Op::Set { version, .. }
            | Op::SetBegin { version, .. }
            | Op::Del { version, .. }
            | Op::State { version, .. }
            | Op::Flush { version, .. } => version,
            // Parts are rebuilt into one SET (checked then) before ops apply.
            Op::Part { .. } => return None,
        };
        if super::hlc::version_ms(version) > now_ms.saturating_add(super::hlc::MAX_DRIFT_MS) {
            return Some(format!(
                "version {version:#x} is {} ms ahead of this node's clock (at most {} allowed)",
                super::hlc::version_ms(version) - now_ms,
                super::hlc::MAX_DRIFT_MS
            ));
        }
        if let Op::Set { value, packed, .. } = *op {
            let len = packed.map_or(value.len(), |n| n as usize);
            if len > self.value_max || value.len() > self.value_max {
                return Some(format!("a value of {len} bytes is over -I ({} bytes)", self.value_max));
            }
        }
        None
    }

    pub fn apply(&mut self, store: &mut Store, op: &Op<'_>, now: u64, now_ms: u64) {
        self.stats.received += 1;
        if let Some(why) = self.refusal(op, now_ms) {
            self.stats.refused += 1;
            if now_ms.saturating_sub(self.last_refusal_log_ms) >= REFUSAL_LOG_MS || self.last_refusal_log_ms == 0 {
                self.last_refusal_log_ms = now_ms;
                log::warn!("refused an op from a peer: {why} ({} refused so far on this core)", self.stats.refused);
            }
            return;
        }
        match *op {
            Op::Set { key, version, flags, exp, value, packed } => {
                let _ = self.hlc.observe(version, now_ms);
                if self.tombstone(key).is_some_and(|t| t >= version) {
                    self.stats.conflicts += 1;
                    return;
                }
                match store.apply(key, flags, exp, value, packed.map(|n| n as usize), version, now) {
                    ApplyOutcome::Applied => self.stats.applied += 1,
                    ApplyOutcome::Older => self.stats.conflicts += 1,
                    ApplyOutcome::NoMemory => self.stats.no_memory += 1,
                }
            }
            Op::Del { key, version } => {
                let _ = self.hlc.observe(version, now_ms);
                if store.delete_older(key, version, now) {
                    self.stats.applied += 1;
                } else if store.version_of(key, now).is_some() {
                    self.stats.conflicts += 1;
                }
                self.tomb(key, version, now_ms);
            }
            Op::Flush { at, version } => {
                let _ = self.hlc.observe(version, now_ms);
                // A flush no newer than one in effect here is one this node
                // already took (again in a resync, or from another core's
                // snapshot): taking it again would drop newer items.
                if version <= self.flush_version.max(self.flush_mark.local()) {
                    self.stats.conflicts += 1;
                    return;
                }
                self.flush_version = version;
                self.flush_mark.saw(version, at, false);
                // Only what is older than the flush: writes after it that
                // came first, by another core's stream, stay. A delayed
                // flush keeps memcached's meaning (all stored before `at`).
                if at == 0 || at <= now {
                    store.flush_older(version, now);
                } else {
                    store.flush(at, now);
                }
                self.stats.applied += 1;
            }
            // The SET of this version just applied (or lost to a newer one).
            Op::State { key, version, state } => {
                if store.apply_state(key, version, state, now) {
                    self.stats.applied += 1;
                }
            }
            // Reassembled before they reach a core (`Reassembly`).
            Op::SetBegin { .. } | Op::Part { .. } => {
                log::error!("a chunked value reached apply without reassembly; dropped");
            }
        }
    }
}

/// What `Reassembly::feed` made of a batch's ops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Whole items handed on (ops, and values whose last PART came).
    pub items: usize,
    /// Values longer than this node's `-I`, dropped as their PARTs came.
    pub skipped: usize,
}

/// A value arriving in PARTs on one inbound stream, rebuilt as one SET op
/// before it is routed to its core. Holds at most one value, of at most
/// `limit` bytes (this node's `-I`), grown only as its bytes arrive: a
/// BEGIN that announces a gigabyte allocates nothing. A longer value is
/// read through and dropped, so one item this node cannot store does not
/// stall the stream.
pub struct Reassembly {
    limit: usize,
    state: Option<Building>,
}

enum Building {
    /// A SET op's head and the value bytes so far; `left` bytes to come.
    Keep {
        op: Vec<u8>,
        left: u64,
    },
    Skip {
        left: u64,
    },
}

impl Reassembly {
    pub fn new(limit: usize) -> Self {
        Reassembly { limit, state: None }
    }

    /// Bytes held for a value being received.
    pub fn held(&self) -> usize {
        match &self.state {
            Some(Building::Keep { op, .. }) => op.capacity(),
            _ => 0,
        }
    }

    /// No value half-received: a batch that ends here is a safe point to
    /// acknowledge and to resume after.
    pub fn is_idle(&self) -> bool {
        self.state.is_none()
    }

    /// Check a batch's ops from a peer and append the whole ones to `out`
    /// (a completed value as one SET op). Malformed: ops that do not
    /// parse, a PART without a BEGIN or past its total, anything else
    /// inside a value.
    pub fn feed(&mut self, ops: &[u8], out: &mut Vec<u8>) -> Result<Fed, wire::WireError> {
        let mut fed = Fed::default();
        let mut r = Reader(ops);
        while !r.is_empty() {
            let before = r.0;
            let op = wire::next_op(&mut r)?;
            let raw = &before[..before.len() - r.0.len()];
            match (op, &mut self.state) {
                (Op::Part { bytes }, Some(Building::Keep { op, left })) => {
                    let full = op.len() + *left as usize;
                    *left = left.checked_sub(bytes.len() as u64).ok_or(wire::WireError::Malformed)?;
                    if op.len() + bytes.len() > op.capacity() {
                        // Doubling, but never past the whole op: the buffer
                        // stays within `limit` plus a SET's fields.
                        let cap = (2 * op.capacity()).max(op.len() + bytes.len()).min(full);
                        op.reserve_exact(cap - op.len());
                    }
                    op.extend_from_slice(bytes);
                    if *left == 0 {
                        if out.is_empty() {
                            std::mem::swap(out, op);
                        } else {
                            out.extend_from_slice(op);
                        }
                        self.state = None;
                        fed.items += 1;
                    }
                }
                (Op::Part { bytes }, Some(Building::Skip { left })) => {
                    *left = left.checked_sub(bytes.len() as u64).ok_or(wire::WireError::Malformed)?;
                    if *left == 0 {
                        self.state = None;
                        fed.skipped += 1;
                    }
                }
                (Op::SetBegin { key, version, flags, exp, packed, total }, None) => {
                    self.state = Some(match u32::try_from(total) {
                        Ok(vlen) if total <= self.limit as u64 => {
                            let mut op = Vec::with_capacity(300 + (total as usize).min(2 * wire::CHUNK));
                            wire::encode_set(&mut op, key, version, flags, exp, vlen, packed);
                            Building::Keep { op, left: total }
                        }
                        _ => Building::Skip { left: total },
                    });
                }
                (_, Some(_)) | (Op::Part { .. }, None) => return Err(wire::WireError::Malformed),
                (_, None) => {
                    out.extend_from_slice(raw);
                    fed.items += usize::from(op.is_item());
                }
            }
        }
        Ok(fed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{StoreConfig, StoreMode};

    const NOW: u64 = 1_700_000_000;

    fn store() -> Store {
        Store::new(StoreConfig { started: NOW - 10, digest: true, ..Default::default() })
    }

    fn set(s: &mut Store, r: &mut ReplShard, key: &[u8], v: &[u8], ms: u64) -> u64 {
        let version = r.stamp(ms);
        assert_eq!(s.store(StoreMode::Set, key, 0, 0, v, 0, version, NOW), crate::storage::StoreOutcome::Stored);
        r.ship_item(s, key, version, NOW);
        version
    }

    fn value(s: &mut Store, key: &[u8]) -> Option<Vec<u8>> {
        s.get(key, NOW).ok().map(|i| i.value_vec())
    }

    #[test]
    fn conflicting_writes_converge_whatever_the_order_of_arrival() {
        let (mut a, mut b) = (store(), store());
        let (mut ra, mut rb) = (
            ReplShard::new(1, 60_000, 1 << 20, Default::default()),
            ReplShard::new(2, 60_000, 1 << 20, Default::default()),
        );
        set(&mut a, &mut ra, b"k", b"from-a", 5_000);
        set(&mut b, &mut rb, b"k", b"from-b", 5_000);
        set(&mut b, &mut rb, b"other", b"x", 5_001);
        let (ops_a, ops_b) = (std::mem::take(&mut ra.pending), std::mem::take(&mut rb.pending));
        ra.apply_ops(&mut a, &ops_b, NOW, 5_002);
        rb.apply_ops(&mut b, &ops_a, NOW, 5_002);
        assert_eq!(value(&mut a, b"k").as_deref(), Some(&b"from-b"[..]), "node 2 wins the tie");
        assert_eq!(value(&mut b, b"k").as_deref(), Some(&b"from-b"[..]));
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), 0);
        assert_eq!((rb.stats.conflicts, ra.stats.applied), (1, 2));
        // Applying everything again changes nothing.
        ra.apply_ops(&mut a, &ops_b, NOW, 5_003);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn a_delete_beats_an_older_set_that_arrives_after_it() {
        let (mut a, mut b) = (store(), store());
        let (mut ra, mut rb) = (
            ReplShard::new(1, 1_000, 1 << 20, Default::default()),
            ReplShard::new(2, 1_000, 1 << 20, Default::default()),
        );
        set(&mut a, &mut ra, b"k", b"old", 1_000);
        let old_set = std::mem::take(&mut ra.pending);
        let v = ra.stamp(2_000);
        assert!(a.delete(b"k", NOW));
        ra.ship_delete(b"k", v, 2_000);
        let del = std::mem::take(&mut ra.pending);
        rb.apply_ops(&mut b, &del, NOW, 2_000);
        rb.apply_ops(&mut b, &old_set, NOW, 2_001);
        assert_eq!(value(&mut b, b"k"), None);
        assert_eq!(b.digest(), 0);
        assert_eq!(b.digest(), a.digest());
        assert_eq!(rb.tombstones(), 1);
        rb.collect(2_000 + 999);
        assert_eq!(rb.tombstones(), 1);
        rb.collect(2_000 + 1_000);
        assert_eq!(rb.tombstones(), 0, "collected after the TTL");
        // A newer set after the delete wins.
        let mut rc = ReplShard::new(3, 1_000, 1 << 20, Default::default());
        let mut c = store();
        set(&mut c, &mut rc, b"k", b"new", 3_000);
        rb.apply_ops(&mut b, &rc.pending, NOW, 3_000);
        assert_eq!(value(&mut b, b"k").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn touch_and_incr_ship_new_versions_and_digests_follow() {
        let (mut a, mut b) = (store(), store());
        let (mut ra, mut rb) = (
            ReplShard::new(1, 1_000, 1 << 20, Default::default()),
            ReplShard::new(2, 1_000, 1 << 20, Default::default()),
        );
        set(&mut a, &mut ra, b"n", b"41", 1_000);
        let v = ra.stamp(1_001);
        assert_eq!(a.arith(b"n", true, 1, v, NOW), crate::storage::ArithOutcome::Value(42));
        ra.ship_item(&mut a, b"n", v, NOW);
        let v = ra.stamp(1_002);
        assert!(a.touch(b"n", NOW + 500, v, NOW));
        ra.ship_item(&mut a, b"n", v, NOW);
        assert_eq!(ra.pending_ops, 3);
        let ops = std::mem::take(&mut ra.pending);
        rb.apply_ops(&mut b, &ops, NOW, 1_003);
        assert_eq!(value(&mut b, b"n").as_deref(), Some(&b"42"[..]));
        assert_eq!(a.digest(), b.digest());
        assert_eq!(b.peek(b"n", NOW, |i| i.exp), Some(NOW + 500));
    }

    #[test]
    fn tombstones_are_charged_to_the_store_and_kept_within_their_share() {
        let mut s = Store::new(StoreConfig { started: NOW - 10, limit: 8 << 20, ..Default::default() });
        let mut r = ReplShard::new(1, 1_000, 1 << 20, Default::default());
        let empty = s.memory_used();
        let keys: Vec<Vec<u8>> = (0..40_000u32).map(|i| format!("{i:0>200}").into_bytes()).collect();
        for k in &keys {
            r.apply(&mut s, &Op::Del { key: k, version: 5 }, NOW, 2_000);
        }
        r.charge(&mut s, NOW);
        assert!(r.tomb_bytes() <= s.limit() / TOMB_SHARE, "{} of {}", r.tomb_bytes(), s.limit());
        assert!(r.tombstones() > 1_000 && r.stats.tombs_dropped > 30_000, "{} kept", r.tombstones());
        assert_eq!(s.memory_used(), empty + r.tomb_bytes(), "charged to the store");
        assert_eq!(r.tombstone(&keys[0]), None, "the oldest were forgotten first");
        assert_eq!(r.tombstone(&keys[39_999]), Some(5));
        r.collect(3_000);
        r.charge(&mut s, NOW);
        assert_eq!((r.tombstones(), r.tomb_bytes(), s.memory_used()), (0, 0, empty), "collected after the TTL");
    }

    fn chunked(key: &[u8], value: &[u8], version: u64) -> Vec<u8> {
        let mut b = Vec::new();
        wire::encode_value(&mut b, key, version, 3, 0, value, None);
        b
    }

    #[test]
    fn a_value_in_parts_is_rebuilt_across_batches_and_acked_only_between_values() {
        let value: Vec<u8> = (0..2 * wire::CHUNK + 77).map(|i| (i % 251) as u8).collect();
        let mut ops = Vec::new();
        wire::encode_op(&mut ops, &Op::Del { key: b"gone", version: 1 });
        ops.extend_from_slice(&chunked(b"big", &value, 2));
        let pieces = wire::split_ops(&ops, wire::CHUNK + 100);
        assert!(pieces.len() >= 2);
        let mut re = Reassembly::new(4 * wire::CHUNK);
        let mut whole = Vec::new();
        let mut idle = Vec::new();
        for (range, _) in pieces {
            re.feed(&ops[range], &mut whole).unwrap();
            idle.push(re.is_idle());
        }
        assert_eq!(idle.last(), Some(&true));
        assert!(idle[..idle.len() - 1].iter().any(|i| !i), "idle inside the value");
        let (mut s, mut r) = (store(), ReplShard::new(1, 60_000, 4 * wire::CHUNK, Default::default()));
        r.apply_ops(&mut s, &whole, NOW, 5_000);
        assert_eq!(value_of(&mut s, b"big"), Some(value));
        assert_eq!(r.tombstone(b"gone"), Some(1));
    }

    fn value_of(s: &mut Store, key: &[u8]) -> Option<Vec<u8>> {
        value(s, key)
    }

    #[test]
    fn parts_out_of_place_are_malformed_and_a_value_over_the_limit_is_read_through() {
        let big = chunked(b"big", &vec![1; 2 * wire::CHUNK], 2);
        let mut part = Vec::new();
        wire::encode_op(&mut part, &Op::Part { bytes: b"stray" });
        let mut whole = Vec::new();
        assert!(Reassembly::new(1 << 30).feed(&part, &mut whole).is_err(), "a part without a begin");
        let begin_only = &big[..big.len() - 2 * (5 + wire::CHUNK)];
        let mut re = Reassembly::new(1 << 30);
        re.feed(begin_only, &mut whole).unwrap();
        let mut del = Vec::new();
        wire::encode_op(&mut del, &Op::Del { key: b"x", version: 1 });
        assert!(re.feed(&del, &mut whole).is_err(), "another op inside a value");
        let mut re = Reassembly::new(1 << 30);
        let mut too_long = big.clone();
        too_long.extend_from_slice(&part);
        assert!(re.feed(&too_long, &mut whole).is_err(), "a part past the total");
        let mut re = Reassembly::new(wire::CHUNK);
        let mut then = big.clone();
        then.extend_from_slice(&del);
        whole.clear();
        assert_eq!(re.feed(&then, &mut whole), Ok(Fed { items: 1, skipped: 1 }));
        assert_eq!(whole, del, "the long value dropped, the stream goes on");
        assert!(re.is_idle());
    }

    #[test]
    fn a_flush_repeated_by_a_resync_is_taken_once_and_spares_newer_items() {
        let mark = Arc::new(FlushMark::default());
        let (mut a, mut b) = (store(), store());
        let mut ra = ReplShard::new(1, 60_000, 1 << 20, mark.clone());
        let mut rb = ReplShard::new(2, 60_000, 1 << 20, Default::default());
        set(&mut b, &mut rb, b"old", b"x", 1_000);
        let v = ra.stamp(2_000);
        ra.ship_flush(0, v);
        assert!(mark.newest().is_some());
        let flush = std::mem::take(&mut ra.pending);
        rb.apply_ops(&mut b, &flush, NOW, 2_001);
        assert_eq!(value(&mut b, b"old"), None);
        set(&mut a, &mut ra, b"new", b"y", 3_000);
        let new = std::mem::take(&mut ra.pending);
        rb.apply_ops(&mut b, &new, NOW, 3_001);
        rb.apply_ops(&mut b, &flush, NOW, 3_002);
        assert_eq!(value(&mut b, b"new").as_deref(), Some(&b"y"[..]), "the repeated flush is ignored");
        // A write made after the flush that reaches a node before it (by
        // another core's stream) stays; older ones go.
        let mut rc = ReplShard::new(3, 60_000, 1 << 20, Default::default());
        let mut c = store();
        set(&mut c, &mut rc, b"stale", b"s", 1_500);
        let later = ReplShard::new(1, 60_000, 1 << 20, Default::default()).stamp(2_500);
        assert_eq!(c.store(StoreMode::Set, b"fresh", 0, 0, b"f", 0, later, NOW), crate::storage::StoreOutcome::Stored);
        rc.apply_ops(&mut c, &flush, NOW, 2_600);
        assert_eq!(value(&mut c, b"stale"), None);
        assert_eq!(value(&mut c, b"fresh").as_deref(), Some(&b"f"[..]));
        // Another core of the flushing node took the flush from its client,
        // not from the wire: the flush coming back from a peer is ignored.
        let mut ra2 = ReplShard::new(1, 60_000, 1 << 20, mark.clone());
        let mut a2 = store();
        set(&mut a2, &mut ra2, b"after", b"z", 4_000);
        ra2.apply_ops(&mut a2, &flush, NOW, 4_001);
        assert_eq!(value(&mut a2, b"after").as_deref(), Some(&b"z"[..]));
    }

    /// Peer input is hostile: valid streams cut, spliced and flipped at
    /// random never panic, and a value being rebuilt never holds more than
    /// the limit plus a SET's fields.
    #[test]
    fn mangled_op_streams_are_refused_or_applied_within_the_limit() {
        let limit = 3 * wire::CHUNK;
        let mut ops = Vec::new();
        wire::encode_op(&mut ops, &Op::Del { key: b"d", version: 1 });
        ops.extend_from_slice(&chunked(b"big", &vec![5; 2 * wire::CHUNK + 3], 2));
        ops.extend_from_slice(&chunked(b"huge", &vec![6; 4 * wire::CHUNK], 3));
        wire::encode_op(&mut ops, &Op::Flush { at: 0, version: 4 });
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..300 {
            let mut m = ops.clone();
            for _ in 0..1 + rand(4) {
                match rand(3) {
                    0 => {
                        let at = rand(m.len());
                        m[at] ^= 1 << rand(8);
                    }
                    1 => m.truncate(rand(m.len())),
                    _ => {
                        let (a, b) = (rand(m.len()), rand(m.len()));
                        let piece = m[a.min(b)..a.max(b)].to_vec();
                        let at = rand(m.len());
                        m.splice(at..at, piece);
                    }
                }
            }
            let mut re = Reassembly::new(limit);
            let mut whole = Vec::new();
            for piece in m.chunks(1 + rand(wire::CHUNK + 100)) {
                whole.clear();
                if re.feed(piece, &mut whole).is_err() {
                    break;
                }
                assert!(re.held() <= limit + 300, "{} held", re.held());
                let (mut s, mut r) = (store(), ReplShard::new(1, 1_000, 1 << 20, Default::default()));
                r.apply_ops(&mut s, &whole, NOW, 1_000);
            }
        }
    }
}
