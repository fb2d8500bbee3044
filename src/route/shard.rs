//! Running a parsed request on the core that owns its key.
//!
//! `Shard` is one core's store plus its command counters. The same code
//! serves local requests and requests forwarded from other cores, so both
//! paths give the same replies and count the same way. Runtime-free: the
//! caller passes `now` (and, when the node replicates, a wall clock in ms
//! that versions the writes).
//!
//! With replication on, every write takes a version first (`begin_write`)
//! and its result (the item as stored, or the delete) is queued for the
//! peers afterwards, so a peer never re-evaluates a conditional command.
//!
//! Imports protocol, storage, stats and repl's per-core state
//! (`ReplShard`); must not import `server`, nor the rest of `route` (it
//! knows nothing of cores or the mesh).

use crate::protocol::encode::{self, encode_number_line, encode_value_head};
use crate::protocol::{GetKind, Request, StoreMode, absolute_expiry};
use crate::repl::apply::ReplShard;
use crate::stats::Counters;
use crate::storage::{self, ArithOutcome, ItemRef, Miss, Store, StoreOutcome};

pub struct Shard {
    pub store: Store,
    pub counters: Counters,
    /// Replication state, when the node has peers or listens for them.
    pub repl: Option<ReplShard>,
    /// Wall clock in ms for write versions (a fake one in tests).
    pub clock_ms: fn() -> u64,
}

/// One core's replication figures for `stats repl`.
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
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.digest,
            self.items,
            self.received,
            self.applied,
            self.conflicts,
            self.tombstones,
            self.shipped,
            self.refused,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    pub fn decode(b: &[u8]) -> Self {
        let mut v = [0u64; 8];
        for (x, c) in v.iter_mut().zip(b.chunks_exact(8)) {
            *x = u64::from_le_bytes(c.try_into().unwrap_or_default());
        }
        ReplFigures {
            digest: v[0],
            items: v[1],
            received: v[2],
            applied: v[3],
            conflicts: v[4],
            tombstones: v[5],
            shipped: v[6],
            refused: v[7],
        }
    }
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

/// The store's way of combining a write with the item already there, for
/// each storage command of the protocol.
impl From<StoreMode> for storage::StoreMode {
    fn from(m: StoreMode) -> Self {
        match m {
            StoreMode::Set => storage::StoreMode::Set,
            StoreMode::Add => storage::StoreMode::Add,
            StoreMode::Replace => storage::StoreMode::Replace,
            StoreMode::Append => storage::StoreMode::Append,
            StoreMode::Prepend => storage::StoreMode::Prepend,
            StoreMode::Cas => storage::StoreMode::Cas,
        }
    }
}

impl Shard {
    pub fn new(store: Store) -> Self {
        Shard { store, counters: Counters::default(), repl: None, clock_ms: crate::repl::unix_ms }
    }

    /// The version of the next write (0 when not replicating), passed to
    /// the store's write calls.
    fn begin_write(&mut self) -> u64 {
        let Some(r) = self.repl.as_mut() else { return 0 };
        let version = r.stamp((self.clock_ms)());
        // Tombstones past their TTL go as writes come by.
        r.collect((self.clock_ms)());
        version
    }

    fn ship_item(&mut self, key: &[u8], version: u64, now: u64) {
        if let Some(r) = self.repl.as_mut() {
            r.ship_item(&mut self.store, key, version, now);
        }
    }

    fn ship_delete(&mut self, key: &[u8], version: u64, now: u64) {
        if let Some(r) = self.repl.as_mut() {
            r.ship_delete(key, version, (self.clock_ms)());
            r.charge(&mut self.store, now);
        }
    }

    /// flush_all on this node: applied by the caller, shipped here.
    pub fn ship_flush(&mut self, at: u64) {
        let v = self.begin_write();
        if let Some(r) = self.repl.as_mut() {
            r.ship_flush(at, v);
        }
    }

    pub fn repl_figures(&self) -> ReplFigures {
        let mut f = ReplFigures { digest: self.store.digest(), items: self.store.curr_items(), ..Default::default() };
        if let Some(r) = &self.repl {
            f.received = r.stats.received;
            f.applied = r.stats.applied;
            f.conflicts = r.stats.conflicts;
            f.tombstones = r.tombstones() as u64;
            f.shipped = r.shipped;
            f.refused = r.stats.refused;
        }
        f
    }

    fn expiry(&self, exptime: i64, now: u64) -> u64 {
        absolute_expiry(exptime, now, self.store.config().started)
    }

    /// One key of a get/gets/gat/gats: its VALUE block on a hit, nothing on
    /// a miss. The caller writes the closing END. Returns false, leaving
    /// `out` as it was, when the VALUE block would take `out` past `limit`
    /// bytes: the caller answers `SERVER_ERROR out of memory writing get
    /// response` instead of copying a value it cannot send.
    pub fn get_one(
        &mut self,
        kind: GetKind,
        exptime: i64,
        key: &[u8],
        now: u64,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> bool {
        let touch = kind.touches().then(|| self.expiry(exptime, now));
        let version = if touch.is_some() { self.begin_write() } else { 0 };
        let c = &mut self.counters;
        if kind.touches() {
            c.cmd_touch += 1;
        } else {
            c.cmd_get += 1;
        }
        let use_cas = self.store.config().use_cas;
        let start = out.len();
        let mut fits = true;
        // False when the stored value is corrupt; `out` is left as it was.
        let mut encode = |item: &ItemRef<'_>| {
            // The VALUE line is at most the key and 64 bytes of numbers.
            if start.saturating_add(key.len() + 64).saturating_add(item.value_len()) > limit {
                fits = false;
                return true;
            }
            let cas = kind.with_cas().then_some(if use_cas { item.cas } else { 0 });
            encode_value_head(out, key, item.flags, item.value_len(), cas);
            let ok = item.copy_value(out);
            if ok {
                out.extend_from_slice(b"\r\n");
            } else {
                out.truncate(start);
            }
            ok
        };
        let found = match touch {
            Some(exp) => self.store.get_and_touch(key, now, exp, version, encode),
            None => self.store.get(key, now).map(|item| encode(&item)),
        };
        let found = match found {
            Ok(false) => {
                self.store.drop_corrupt(key);
                Err(Miss::Absent)
            }
            Ok(true) => Ok(()),
            Err(miss) => Err(miss),
        };
        match found {
            Ok(()) => {
                if kind.touches() {
                    self.ship_item(key, version, now);
                    self.counters.touch_hits += 1;
                } else {
                    self.counters.get_hits += 1;
                }
            }
            Err(miss) => {
                let c = &mut self.counters;
                if kind.touches() {
                    c.touch_misses += 1;
                } else {
                    c.get_misses += 1;
                }
                match miss {
                    Miss::Expired => c.get_expired += 1,
                    Miss::Flushed => c.get_flushed += 1,
                    Miss::Absent => {}
                }
            }
        }
        fits
    }

    /// Every keyed request but retrieval. Replies are suppressed for noreply.
    pub fn execute(&mut self, req: &Request<'_>, now: u64, out: &mut Vec<u8>) {
        let reply = |out: &mut Vec<u8>, noreply: bool, text: &[u8]| {
            if !noreply {
                out.extend_from_slice(text);
            }
        };
        match *req {
            Request::Get { kind, exptime, keys } => {
                for key in keys.iter() {
                    self.get_one(kind, exptime, key, now, out, usize::MAX);
                }
                out.extend_from_slice(encode::END);
            }
            Request::Store { mode, key, flags, exptime, data, cas, noreply } => {
                let exp = self.expiry(exptime, now);
                let version = self.begin_write();
                let outcome = self.store.store(mode.into(), key, flags, exp, data, cas, version, now);
                match outcome {
                    StoreOutcome::Stored => self.ship_item(key, version, now),
                    // A set that could not be stored removed the old item.
                    // A set that could not be stored removed the old item;
                    // peers drop theirs, but a refusal leaves no tombstone.
                    StoreOutcome::NoMemory if mode == StoreMode::Set => {
                        if let Some(r) = self.repl.as_mut() {
                            r.ship_delete_untombed(key, version);
                        }
                    }
                    _ => {}
                }
                let c = &mut self.counters;
                if outcome != StoreOutcome::NoMemory {
                    c.cmd_set += 1;
                }
                if mode == StoreMode::Cas {
                    match outcome {
                        StoreOutcome::Stored => c.cas_hits += 1,
                        StoreOutcome::Exists => c.cas_badval += 1,
                        StoreOutcome::NotFound => c.cas_misses += 1,
                        _ => {}
                    }
                }
                let text = match outcome {
                    StoreOutcome::Stored => encode::STORED,
                    StoreOutcome::NotStored => encode::NOT_STORED,
                    StoreOutcome::Exists => encode::EXISTS,
                    StoreOutcome::NotFound => encode::NOT_FOUND,
                    StoreOutcome::NoMemory => {
                        c.store_no_memory += 1;
                        encode::NO_MEMORY
                    }
                };
                reply(out, noreply, text);
            }
            Request::TooLarge { mode, key, noreply } => {
                self.counters.store_too_large += 1;
                // A failed set must not leave the old value readable.
                if mode == StoreMode::Set {
                    let version = self.begin_write();
                    if self.store.delete(key, now) {
                        self.ship_delete(key, version, now);
                    }
                }
                reply(out, noreply, encode::TOO_LARGE);
            }
            Request::Delete { key, noreply } => {
                let version = self.begin_write();
                if self.store.delete(key, now) {
                    self.ship_delete(key, version, now);
                    self.counters.delete_hits += 1;
                    reply(out, noreply, encode::DELETED);
                } else {
                    self.counters.delete_misses += 1;
                    reply(out, noreply, encode::NOT_FOUND);
                }
            }
            Request::Arith { incr, key, delta, noreply } => {
                let version = self.begin_write();
                let outcome = self.store.arith(key, incr, delta, version, now);
                if let ArithOutcome::Value(_) = outcome {
                    self.ship_item(key, version, now);
                }
                let c = &mut self.counters;
                match (outcome, incr) {
                    (ArithOutcome::NotFound, true) => c.incr_misses += 1,
                    (ArithOutcome::NotFound, false) => c.decr_misses += 1,
                    (ArithOutcome::Value(_), true) => c.incr_hits += 1,
                    (ArithOutcome::Value(_), false) => c.decr_hits += 1,
                    _ => {}
                }
                match outcome {
                    ArithOutcome::Value(v) if !noreply => encode_number_line(out, v),
                    ArithOutcome::Value(_) => {}
                    ArithOutcome::NotFound => reply(out, noreply, encode::NOT_FOUND),
                    ArithOutcome::NonNumeric => reply(out, noreply, encode::NON_NUMERIC),
                    ArithOutcome::NoMemory => reply(out, noreply, encode::ARITH_NO_MEMORY),
                }
            }
            Request::Touch { key, exptime, noreply } => {
                let exp = self.expiry(exptime, now);
                self.counters.cmd_touch += 1;
                let version = self.begin_write();
                if self.store.touch(key, exp, version, now) {
                    self.ship_item(key, version, now);
                    self.counters.touch_hits += 1;
                    reply(out, noreply, encode::TOUCHED);
                } else {
                    self.counters.touch_misses += 1;
                    reply(out, noreply, encode::NOT_FOUND);
                }
            }
            // Keyless requests are handled by the connection.
            _ => {}
        }
    }

    /// Counters of this core with the store's figures filled in.
    pub fn snapshot(&self, now: u64) -> Counters {
        let mut c = self.counters;
        let s = &self.store.stats;
        c.curr_items = self.store.curr_items();
        c.bytes = self.store.bytes();
        c.limit_maxbytes = self.store.limit() as u64;
        c.total_items = s.total_items;
        c.evictions = s.evictions;
        c.evicted_unfetched = s.evicted_unfetched;
        c.reclaimed = s.reclaimed;
        c.expired_unfetched = s.expired_unfetched;
        c.crawler_reclaimed = s.crawler_reclaimed;
        c.moved_items = s.moved;
        c.segments_evicted = s.segments_evicted;
        c.engine_compacted_segments = s.compacted_segments;
        c.engine_compacted_items = s.compacted_items;
        c.engine_compacted_dead_bytes = s.compacted_dead_bytes;
        c.engine_evicted_dead_bytes = s.evicted_dead_bytes;
        let e = self.store.engine_stats(now);
        c.engine_memory = e.memory;
        c.engine_segments = e.segments;
        c.engine_small_segments = e.small_segments;
        c.engine_small_items = e.small_items;
        c.engine_index_bytes = e.index_bytes;
        c.engine_large_bytes = e.large_bytes;
        c.engine_key_value_bytes = e.key_value_bytes;
        c.engine_dead_bytes = e.dead_bytes;
        c.compress_items = e.compressed_items;
        c.compress_bytes_in = e.compressed_bytes_in;
        c.compress_bytes_out = e.compressed_bytes_out;
        c.compress_dictionaries = e.dictionaries;
        let z = self.store.compress_stats();
        c.compress_skipped_incompressible = z.skipped_incompressible;
        c.compress_skipped_compressed = z.skipped_compressed;
        c.compress_dict_trainings = z.dict_trainings;
        c.compress_corrupt = z.corrupt;
        c.sizes.0 = *self.store.sizes();
        c
    }

    pub fn reset_stats(&mut self) {
        self.counters.reset();
        self.store.reset_stats();
    }
}
