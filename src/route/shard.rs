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

use crate::detail::Event;
use crate::protocol::encode::{self, encode_number_line, encode_value_head};
use crate::protocol::{GetKind, Request, StoreMode, absolute_expiry};
use crate::repl::ReplFigures;
use crate::repl::apply::ReplShard;
use crate::stats::{Counters, StoreFigures};
use crate::storage::{self, ArithOutcome, ItemRef, Miss, Store, StoreOutcome};

pub struct Shard {
    pub store: Store,
    pub counters: Counters,
    /// Replication state, when the node has peers or listens for them.
    pub repl: Option<ReplShard>,
    /// Wall clock in ms for write versions (a fake one in tests).
    pub clock_ms: fn() -> u64,
    /// `stats detail` counters and this core's id in them, when the server
    /// runs (None in tests).
    pub detail: Option<(std::sync::Arc<crate::detail::PerCore>, usize)>,
    /// `watch` connections to feed, when the server runs (None in tests).
    pub watch: Option<std::sync::Arc<crate::watch::Hub>>,
}

/// What a keyed request did when it changed the store (and so, when the
/// node replicates, went to the peers): the version it wrote with (0 when
/// the node does not replicate). A request that changed nothing, or failed
/// (even one that removed the old item, as a refused set does), is None.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wrote {
    pub version: u64,
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
        Shard {
            store,
            counters: Counters::default(),
            repl: None,
            clock_ms: crate::repl::unix_ms,
            detail: None,
            watch: None,
        }
    }

    /// `watch fetchers`: an `item_get` line, `size` the value's when found.
    fn watch_get(&self, key: &[u8], size: Option<usize>) {
        use std::io::Write;
        let Some(hub) = &self.watch else { return };
        hub.emit(crate::watch::FETCHERS, |l| {
            l.extend_from_slice(b"type=item_get key=");
            encode::encode_uri(l, key);
            let _ = match size {
                Some(n) => write!(l, " status=found clsid=1 cfd=0 size={n}"),
                None => write!(l, " status=not_found clsid=0 cfd=0 size=0"),
            };
        });
    }

    /// `watch fetchers` for a delete, incr, decr or touch: the lookup it
    /// does, before it changes the item.
    fn watch_lookup(&mut self, key: &[u8], now: u64) {
        if self.watch.as_ref().is_some_and(|h| h.wants(crate::watch::FETCHERS)) {
            let size = self.store.peek(key, now, |i| i.value_len());
            self.watch_get(key, size);
        }
    }

    /// `watch mutations`: an `item_store` line for a storage command, with
    /// the item's ttl and size as stored (the request's when not stored).
    fn watch_store(&mut self, key: &[u8], mode: StoreMode, status: &str, exp: u64, len: usize, now: u64) {
        use std::io::Write;
        if !self.watch.as_ref().is_some_and(|h| h.wants(crate::watch::MUTATIONS)) {
            return;
        }
        let stored = self.store.peek(key, now, |i| (i.exp, i.value_len()));
        let (exp, size) = if status == "stored" { stored.unwrap_or((exp, len)) } else { (exp, len) };
        let ttl = if exp == 0 { 0 } else { exp.saturating_sub(now) };
        let cmd = match mode {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
            StoreMode::Cas => "cas",
        };
        if let Some(hub) = &self.watch {
            hub.emit(crate::watch::MUTATIONS, |l| {
                l.extend_from_slice(b"type=item_store key=");
                encode::encode_uri(l, key);
                let _ = write!(l, " status={status} cmd={cmd} ttl={ttl} clsid=1 cfd=0 size={size}");
            });
        }
    }

    /// Count a key's event for `stats detail`, when it is on.
    fn detail(&self, key: &[u8], event: Event) {
        if let Some((d, core)) = &self.detail {
            d.record(*core, key, event);
        }
    }

    /// The version of the next write (0 when not replicating), passed to
    /// the store's write calls.
    pub(super) fn begin_write(&mut self) -> u64 {
        let Some(r) = self.repl.as_mut() else { return 0 };
        let version = r.stamp((self.clock_ms)());
        // Tombstones past their TTL go as writes come by.
        r.collect((self.clock_ms)());
        version
    }

    pub(super) fn ship_item(&mut self, key: &[u8], version: u64, now: u64) {
        if let Some(r) = self.repl.as_mut() {
            r.ship_item(&mut self.store, key, version, now);
        }
    }

    pub(super) fn ship_delete(&mut self, key: &[u8], version: u64, now: u64) {
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

    pub(super) fn expiry(&self, exptime: i64, now: u64) -> u64 {
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
        let mut size = 0;
        // False when the stored value is corrupt; `out` is left as it was.
        let mut encode = |item: &ItemRef<'_>| {
            size = item.value_len();
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
        self.detail(key, Event::Get { hit: found.is_ok() });
        self.watch_get(key, found.is_ok().then_some(size));
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

    /// cmd_set and, for a CAS write, its hit, miss or bad value.
    pub(super) fn count_store(&mut self, cas_mode: bool, outcome: StoreOutcome) {
        let c = &mut self.counters;
        if outcome != StoreOutcome::NoMemory {
            c.cmd_set += 1;
        }
        if cas_mode {
            match outcome {
                StoreOutcome::Stored => c.cas_hits += 1,
                StoreOutcome::Exists => c.cas_badval += 1,
                StoreOutcome::NotFound => c.cas_misses += 1,
                _ => {}
            }
        }
    }

    /// Every keyed request but retrieval. Replies are suppressed for
    /// noreply. Returns what it wrote, if it stored, deleted, touched or
    /// counted (see `Wrote`).
    pub fn execute(&mut self, req: &Request<'_>, now: u64, out: &mut Vec<u8>) -> Option<Wrote> {
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
                None
            }
            Request::Store { mode, key, flags, exptime, data, cas, noreply } => {
                self.detail(key, Event::Set);
                let exp = self.expiry(exptime, now);
                let version = self.begin_write();
                let outcome = self.store.store(mode.into(), key, flags, exp, data, cas, version, now);
                let status = match outcome {
                    StoreOutcome::Stored => "stored",
                    StoreOutcome::NotStored => "not_stored",
                    StoreOutcome::Exists => "exists",
                    StoreOutcome::NotFound => "not_found",
                    StoreOutcome::NoMemory => "no_memory",
                };
                self.watch_store(key, mode, status, exp, data.len(), now);
                match outcome {
                    StoreOutcome::Stored => self.ship_item(key, version, now),
                    // A set that could not be stored removed the old item;
                    // peers drop theirs, but a refusal leaves no tombstone.
                    StoreOutcome::NoMemory if mode == StoreMode::Set => {
                        if let Some(r) = self.repl.as_mut() {
                            r.ship_delete_untombed(key, version);
                        }
                    }
                    _ => {}
                }
                self.count_store(mode == StoreMode::Cas, outcome);
                let c = &mut self.counters;
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
                (outcome == StoreOutcome::Stored).then_some(Wrote { version })
            }
            Request::TooLarge { mode, key, noreply } => {
                self.detail(key, Event::Set);
                self.counters.store_too_large += 1;
                // A failed set must not leave the old value readable.
                if mode == StoreMode::Set {
                    let version = self.begin_write();
                    if self.store.delete(key, now) {
                        self.ship_delete(key, version, now);
                    }
                }
                reply(out, noreply, encode::TOO_LARGE);
                None
            }
            Request::Delete { key, noreply } => {
                self.detail(key, Event::Delete);
                self.watch_lookup(key, now);
                let version = self.begin_write();
                if self.store.delete(key, now) {
                    self.ship_delete(key, version, now);
                    self.counters.delete_hits += 1;
                    reply(out, noreply, encode::DELETED);
                    Some(Wrote { version })
                } else {
                    self.counters.delete_misses += 1;
                    reply(out, noreply, encode::NOT_FOUND);
                    None
                }
            }
            Request::Arith { incr, key, delta, noreply } => {
                self.watch_lookup(key, now);
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
                matches!(outcome, ArithOutcome::Value(_)).then_some(Wrote { version })
            }
            Request::Touch { key, exptime, noreply } => {
                self.watch_lookup(key, now);
                let exp = self.expiry(exptime, now);
                self.counters.cmd_touch += 1;
                let version = self.begin_write();
                if self.store.touch(key, exp, version, now) {
                    self.ship_item(key, version, now);
                    self.counters.touch_hits += 1;
                    reply(out, noreply, encode::TOUCHED);
                    Some(Wrote { version })
                } else {
                    self.counters.touch_misses += 1;
                    reply(out, noreply, encode::NOT_FOUND);
                    None
                }
            }
            Request::Meta(m) => self.execute_meta(&m, now, out),
            // Keyless requests are handled by the connection.
            _ => None,
        }
    }

    /// Counters of this core with the store's figures filled in.
    pub fn snapshot(&self, now: u64) -> Counters {
        let mut c = self.counters;
        c.read_store(&StoreFigures {
            store: self.store.stats,
            engine: self.store.engine_stats(now),
            compress: self.store.compress_stats(),
        });
        c.sizes.0 = *self.store.sizes();
        c
    }

    /// `lru_crawler metadump` lines (memcached's format) for the live items
    /// of one segment from `cursor` on; the cursor to pass next, None when
    /// every segment was seen. The whole engine is memcached's class 1;
    /// `la` is when the item's segment was opened (memcore keeps no
    /// per-item access time).
    pub fn metadump(&mut self, cursor: u64, now: u64, out: &mut Vec<u8>) -> Option<u64> {
        use std::io::Write;
        self.store.metadump(cursor, now, |r| {
            out.extend_from_slice(b"key=");
            encode::encode_uri(out, r.key);
            let exp = if r.exp == 0 { -1 } else { r.exp as i64 };
            let fetch = if r.fetched { "yes" } else { "no" };
            let _ = writeln!(out, " exp={exp} la={} cas={} fetch={fetch} cls=1 size={}", r.written, r.cas, r.size);
        })
    }

    pub fn reset_stats(&mut self) {
        self.counters.reset();
        self.store.reset_stats();
    }
}
