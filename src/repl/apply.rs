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

use std::collections::{HashMap, VecDeque};

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
}

impl ReplShard {
    pub fn new(node: u8, tomb_ttl_ms: u64, value_max: usize) -> Self {
        ReplShard {
            tomb_bytes: 0,
            value_max,
            last_refusal_log_ms: 0,
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
            wire::encode_set(pending, key, version, item.flags, item.exp, value.len(), packed);
            pending.extend_from_slice(&value);
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
            Op::Set { version, .. } | Op::Del { version, .. } | Op::Flush { version, .. } => version,
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
                store.flush(at, now);
                self.stats.applied += 1;
            }
        }
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
        s.stamp = r.stamp(ms);
        assert_eq!(s.store(StoreMode::Set, key, 0, 0, v, 0, NOW), crate::storage::StoreOutcome::Stored);
        let version = s.stamp;
        r.ship_item(s, key, version, NOW);
        version
    }

    fn value(s: &mut Store, key: &[u8]) -> Option<Vec<u8>> {
        s.get(key, NOW).ok().map(|i| i.value_vec())
    }

    #[test]
    fn conflicting_writes_converge_whatever_the_order_of_arrival() {
        let (mut a, mut b) = (store(), store());
        let (mut ra, mut rb) = (ReplShard::new(1, 60_000, 1 << 20), ReplShard::new(2, 60_000, 1 << 20));
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
        let (mut ra, mut rb) = (ReplShard::new(1, 1_000, 1 << 20), ReplShard::new(2, 1_000, 1 << 20));
        set(&mut a, &mut ra, b"k", b"old", 1_000);
        let old_set = std::mem::take(&mut ra.pending);
        a.stamp = ra.stamp(2_000);
        assert!(a.delete(b"k", NOW));
        ra.ship_delete(b"k", a.stamp, 2_000);
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
        let mut rc = ReplShard::new(3, 1_000, 1 << 20);
        let mut c = store();
        set(&mut c, &mut rc, b"k", b"new", 3_000);
        rb.apply_ops(&mut b, &rc.pending, NOW, 3_000);
        assert_eq!(value(&mut b, b"k").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn touch_and_incr_ship_new_versions_and_digests_follow() {
        let (mut a, mut b) = (store(), store());
        let (mut ra, mut rb) = (ReplShard::new(1, 1_000, 1 << 20), ReplShard::new(2, 1_000, 1 << 20));
        set(&mut a, &mut ra, b"n", b"41", 1_000);
        a.stamp = ra.stamp(1_001);
        assert_eq!(a.arith(b"n", true, 1, NOW), crate::storage::ArithOutcome::Value(42));
        let v = a.stamp;
        ra.ship_item(&mut a, b"n", v, NOW);
        a.stamp = ra.stamp(1_002);
        assert!(a.touch(b"n", NOW + 500, NOW));
        let v = a.stamp;
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
        let mut r = ReplShard::new(1, 1_000, 1 << 20);
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
}
