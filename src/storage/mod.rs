//! One core's items: index, values, LRU, memory limit, expiry and flush.
//!
//! Runtime-free: every call takes `now` (Unix seconds) so tests can drive
//! the clock. Nothing here is shared between cores; the server gives each
//! core its own `Store` and routes keys to it. The interface is kept narrow
//! (get, store, delete, arith, touch, flush, crawl) so that a more compact
//! engine can replace this one without touching the server.

mod item;

use hashbrown::HashTable;
use slab::Slab;

pub use item::{ITEM_OVERHEAD, Item};

use crate::protocol::REALTIME_MAXDELTA;
use crate::protocol::StoreMode;

const NIL: u32 = u32::MAX;

/// Outcome of a storage command, in memcached's reply words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    NoMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    Value(u64),
    NotFound,
    NonNumeric,
    NoMemory,
}

/// Why a lookup found nothing usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    Absent,
    Expired,
    Flushed,
}

/// Counters kept by the store itself (command counters live in the server).
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    pub total_items: u64,
    pub evictions: u64,
    pub evicted_unfetched: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub crawler_reclaimed: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct StoreConfig {
    /// Bytes this core may hold (keys, values and per-item overhead).
    pub limit: usize,
    /// `-M` turns eviction off: a full store refuses writes instead.
    pub evict: bool,
    /// `-C` turns CAS off: gets shows 0 and cas never sees a mismatch.
    pub use_cas: bool,
    /// CAS values are `seq * cas_stride + cas_offset`, so that every core
    /// hands out distinct values without sharing a counter.
    pub cas_stride: u64,
    pub cas_offset: u64,
    /// Process start (Unix seconds); absolute expiry times before it are
    /// already expired, as in memcached.
    pub started: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { limit: 64 << 20, evict: true, use_cas: true, cas_stride: 1, cas_offset: 1, started: 0 }
    }
}

/// memcached's flush marks: items updated at or before `oldest_live`, or
/// (for an immediate flush) with a CAS below `oldest_cas`, are gone once
/// `oldest_live` has been reached.
#[derive(Clone, Copy, Debug, Default)]
struct FlushMark {
    oldest_live: u64,
    oldest_cas: u64,
}

pub struct Store {
    cfg: StoreConfig,
    index: HashTable<u32>,
    items: Slab<Item>,
    /// Most recently used end of the LRU list.
    head: u32,
    tail: u32,
    used: usize,
    next_seq: u64,
    flush: FlushMark,
    crawl_cursor: usize,
    pub stats: StoreStats,
}

/// Seeded 64-bit hash of a key. The seed keeps the index's hash independent
/// of the one that picks the core (else every key on a core would share the
/// low bits the table uses) and of the clients' ketama/crc32 node choice.
pub fn hash_key(key: &[u8], seed: u64) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ v).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    // murmur3's finalizer spreads every input bit over the output.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const INDEX_SEED: u64 = 0x5851_F42D_4C95_7F2D;

/// Turn a protocol exptime into an absolute Unix time (0 = never):
/// up to 30 days is relative, more is absolute, negative is already past.
pub fn absolute_expiry(exptime: i64, now: u64, started: u64) -> u64 {
    if exptime == 0 {
        0
    } else if exptime < 0 {
        1
    } else if exptime > REALTIME_MAXDELTA {
        if (exptime as u64) <= started { 1 } else { exptime as u64 }
    } else {
        now + exptime as u64
    }
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Self {
        Store {
            cfg,
            index: HashTable::new(),
            items: Slab::new(),
            head: NIL,
            tail: NIL,
            used: 0,
            next_seq: 0,
            flush: FlushMark::default(),
            crawl_cursor: 0,
            stats: StoreStats::default(),
        }
    }

    pub fn curr_items(&self) -> u64 {
        self.items.len() as u64
    }
    /// Bytes charged for live items (keys, values, per-item overhead).
    pub fn bytes(&self) -> u64 {
        self.used as u64
    }
    pub fn limit(&self) -> usize {
        self.cfg.limit
    }
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Change the memory limit; shrinking evicts down to it at once.
    pub fn set_limit(&mut self, limit: usize, now: u64) {
        self.cfg.limit = limit;
        while self.used > self.cfg.limit && self.tail != NIL {
            self.evict_tail(now);
        }
    }

    /// Look a key up for reading: bumps it in the LRU and marks it fetched.
    /// With `touch`, also sets a new expiry (gat).
    pub fn get(&mut self, key: &[u8], now: u64, touch: Option<u64>) -> Result<&Item, Miss> {
        let idx = self.find_live(key, now)?;
        self.bump(idx);
        let item = &mut self.items[idx as usize];
        item.fetched = true;
        if let Some(exp) = touch {
            item.exptime = exp;
        }
        Ok(&self.items[idx as usize])
    }

    pub fn touch(&mut self, key: &[u8], exptime: u64, now: u64) -> bool {
        match self.find_live(key, now) {
            Ok(idx) => {
                self.bump(idx);
                let item = &mut self.items[idx as usize];
                item.exptime = exptime;
                item.fetched = true;
                true
            }
            Err(_) => false,
        }
    }

    pub fn delete(&mut self, key: &[u8], now: u64) -> bool {
        match self.find_live(key, now) {
            Ok(idx) => {
                self.unlink(idx);
                true
            }
            Err(_) => false,
        }
    }

    /// The arguments are the fields of memcached's storage line, in its order.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: u64,
        data: &[u8],
        cas: u64,
        now: u64,
    ) -> StoreOutcome {
        let old = self.find_live(key, now).ok();
        match (mode, old) {
            (StoreMode::Add, Some(idx)) => {
                // memcached bumps the existing item on a failed add.
                self.bump(idx);
                return StoreOutcome::NotStored;
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => return StoreOutcome::NotStored,
            (StoreMode::Cas, None) => return StoreOutcome::NotFound,
            // Without CAS (-C) no unique ever matches, as in memcached.
            (StoreMode::Cas, Some(idx)) if !self.cfg.use_cas || self.items[idx as usize].cas != cas => {
                return StoreOutcome::Exists;
            }
            _ => {}
        }
        let new = match (mode, old) {
            (StoreMode::Append, Some(idx)) => {
                let o = &self.items[idx as usize];
                Item::new(key, &[o.value(), data], o.flags, o.exptime)
            }
            (StoreMode::Prepend, Some(idx)) => {
                let o = &self.items[idx as usize];
                Item::new(key, &[data, o.value()], o.flags, o.exptime)
            }
            _ => Item::new(key, &[data], flags, exptime),
        };
        self.put(new, old, mode == StoreMode::Set, now)
    }

    pub fn arith(&mut self, key: &[u8], incr: bool, delta: u64, now: u64) -> ArithOutcome {
        let Ok(idx) = self.find_live(key, now) else {
            return ArithOutcome::NotFound;
        };
        let old = &self.items[idx as usize];
        let Some(cur) = crate::protocol::parse::parse_stored_number(old.value()).filter(|_| !old.value().is_empty())
        else {
            return ArithOutcome::NonNumeric;
        };
        let v = if incr { cur.wrapping_add(delta) } else { cur.saturating_sub(delta) };
        let mut digits = Vec::with_capacity(20);
        crate::protocol::encode::encode_u64(&mut digits, v);
        let old_len = old.value().len();
        if digits.len() <= old_len {
            // Like memcached: rewrite in place, padding with spaces.
            let cas = self.next_cas();
            self.bump(idx);
            let item = &mut self.items[idx as usize];
            let value = item.value_mut();
            value[..digits.len()].copy_from_slice(&digits);
            value[digits.len()..].fill(b' ');
            item.cas = cas;
            item.time = now;
            return ArithOutcome::Value(v);
        }
        let new = Item::new(key, &[&digits], old.flags, old.exptime);
        match self.put(new, Some(idx), false, now) {
            StoreOutcome::Stored => ArithOutcome::Value(v),
            _ => ArithOutcome::NoMemory,
        }
    }

    /// Invalidate everything written before now (`at == 0`) or, from the
    /// absolute second `at` on, everything written before `at`. O(1): items
    /// are dropped when next seen or by `crawl`.
    pub fn flush(&mut self, at: u64, now: u64) {
        if at == 0 || at <= now {
            self.flush = FlushMark { oldest_live: now.saturating_sub(1).max(1), oldest_cas: self.next_seq_cas() };
        } else {
            self.flush = FlushMark { oldest_live: at - 1, oldest_cas: 0 };
        }
    }

    /// Reclaim expired and flushed items among the next `budget` slots, so
    /// that memory comes back without waiting for a read or eviction.
    pub fn crawl(&mut self, now: u64, budget: usize) -> usize {
        let cap = self.items.capacity();
        if cap == 0 {
            return 0;
        }
        let mut reclaimed = 0;
        for _ in 0..budget.min(cap) {
            let i = self.crawl_cursor % cap;
            self.crawl_cursor = (i + 1) % cap;
            if let Some(item) = self.items.get(i)
                && self.dead(item, now).is_some()
            {
                self.stats.crawler_reclaimed += 1;
                if !item.fetched {
                    self.stats.expired_unfetched += 1;
                }
                self.unlink(i as u32);
                reclaimed += 1;
            }
        }
        reclaimed
    }

    fn dead(&self, item: &Item, now: u64) -> Option<Miss> {
        if item.exptime != 0 && item.exptime <= now {
            return Some(Miss::Expired);
        }
        let f = self.flush;
        if f.oldest_live != 0
            && f.oldest_live <= now
            && (item.time <= f.oldest_live || (f.oldest_cas != 0 && item.cas < f.oldest_cas))
        {
            return Some(Miss::Flushed);
        }
        None
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let h = hash_key(key, INDEX_SEED);
        self.index.find(h, |&i| self.items[i as usize].key() == key).copied()
    }

    /// Find a key, dropping it on the way if it has expired or been flushed.
    fn find_live(&mut self, key: &[u8], now: u64) -> Result<u32, Miss> {
        let idx = self.find(key).ok_or(Miss::Absent)?;
        let item = &self.items[idx as usize];
        if let Some(miss) = self.dead(item, now) {
            self.stats.reclaimed += 1;
            if !item.fetched {
                self.stats.expired_unfetched += 1;
            }
            self.unlink(idx);
            return Err(miss);
        }
        Ok(idx)
    }

    fn next_cas(&mut self) -> u64 {
        let c = self.next_seq_cas();
        self.next_seq += 1;
        c
    }

    fn next_seq_cas(&self) -> u64 {
        self.next_seq * self.cfg.cas_stride + self.cfg.cas_offset
    }

    /// Insert `new`, replacing `old`, evicting from the LRU tail to make room.
    /// When room cannot be made, `drop_old` says whether the old item goes
    /// anyway (memcached does that for `set`).
    fn put(&mut self, mut new: Item, old: Option<u32>, drop_old: bool, now: u64) -> StoreOutcome {
        let charge = new.charge();
        let freed = old.map_or(0, |i| self.items[i as usize].charge());
        if charge > self.cfg.limit {
            if drop_old && let Some(i) = old {
                self.unlink(i);
            }
            return StoreOutcome::NoMemory;
        }
        while self.used - freed + charge > self.cfg.limit {
            let victim = if self.tail == old.unwrap_or(NIL) { self.items[self.tail as usize].prev } else { self.tail };
            if victim == NIL || !self.cfg.evict && self.dead(&self.items[victim as usize], now).is_none() {
                if drop_old && let Some(i) = old {
                    self.unlink(i);
                }
                return StoreOutcome::NoMemory;
            }
            self.evict(victim, now);
        }
        if let Some(i) = old {
            self.unlink(i);
        }
        new.cas = self.next_cas();
        new.time = now;
        let h = hash_key(new.key(), INDEX_SEED);
        self.used += charge;
        let idx = self.items.insert(new) as u32;
        let items = &self.items;
        self.index.insert_unique(h, idx, |&i| hash_key(items[i as usize].key(), INDEX_SEED));
        self.link_head(idx);
        self.stats.total_items += 1;
        StoreOutcome::Stored
    }

    fn evict_tail(&mut self, now: u64) {
        let t = self.tail;
        self.evict(t, now);
    }

    fn evict(&mut self, idx: u32, now: u64) {
        let item = &self.items[idx as usize];
        if self.dead(item, now).is_some() {
            self.stats.reclaimed += 1;
            if !item.fetched {
                self.stats.expired_unfetched += 1;
            }
        } else {
            self.stats.evictions += 1;
            if !item.fetched {
                self.stats.evicted_unfetched += 1;
            }
        }
        self.unlink(idx);
    }

    /// Remove an item from index, LRU and accounting.
    fn unlink(&mut self, idx: u32) {
        let h = hash_key(self.items[idx as usize].key(), INDEX_SEED);
        if let Ok(e) = self.index.find_entry(h, |&i| i == idx) {
            e.remove();
        }
        self.lru_detach(idx);
        let item = self.items.remove(idx as usize);
        self.used -= item.charge();
    }

    fn bump(&mut self, idx: u32) {
        if self.head != idx {
            self.lru_detach(idx);
            self.link_head(idx);
        }
    }

    fn link_head(&mut self, idx: u32) {
        let old_head = self.head;
        {
            let it = &mut self.items[idx as usize];
            it.prev = NIL;
            it.next = old_head;
        }
        if old_head != NIL {
            self.items[old_head as usize].prev = idx;
        } else {
            self.tail = idx;
        }
        self.head = idx;
    }

    fn lru_detach(&mut self, idx: u32) {
        let (prev, next) = {
            let it = &self.items[idx as usize];
            (it.prev, it.next)
        };
        if prev != NIL {
            self.items[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.items[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
    }

    /// Walk the LRU from the oldest item (tests and `stats` use it).
    pub fn lru_keys_oldest_first(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = self.tail;
        while i != NIL {
            out.push(self.items[i as usize].key().to_vec());
            i = self.items[i as usize].prev;
        }
        out
    }
}

#[cfg(test)]
mod tests;
