//! The store's commands: get, touch, delete, store (`StoreMode`), incr and
//! decr, flush_all; and `insert`/`retime`, where every write ends up.
//!
//! Takes absolute times; a write takes its replication version as an
//! argument (0 when the store does not replicate).
//! Must not import protocol, route, repl or server.

use super::*;

/// How a store combines with the item already under its key (memcached's
/// set, add, replace, append, prepend and cas). The store's own type: the
/// caller maps the protocol's command onto it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// memcached's `safe_strtoull` applied to a stored value for incr/decr
/// (`crate::item::c_strtoull`): the value read as a C string (up to a NUL),
/// leading whitespace, a sign, digits, then the end or whitespace.
pub fn parse_stored_number(value: &[u8]) -> Option<u64> {
    crate::item::c_strtoull(value)
}

impl Store {
    /// Look a key up for reading: counts the access and marks it fetched.
    pub fn get(&mut self, key: &[u8], now: u64) -> Result<ItemRef<'_>, Miss> {
        let (loc, h) = self.find_live(key, now)?;
        self.note_access(loc, &h, now);
        Ok(self.item_ref(loc, &h))
    }

    /// gat: read a key and give it a new expiry (absolute, 0 = never). The
    /// item is handed to `f` while it is valid; an expiry already past
    /// still returns it once, as memcached does.
    pub fn get_and_touch<R>(
        &mut self,
        key: &[u8],
        now: u64,
        exptime: u64,
        version: u64,
        f: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Result<R, Miss> {
        let (loc, h) = self.find_live(key, now)?;
        record::mark_fetched(self.info_byte(loc));
        let exp = self.rel_exp(exptime);
        if exp != 0 && exp <= self.now_rel(now) {
            let r = f(&self.item_ref(loc, &h));
            self.unlink(loc, &h, self.index_hash(key));
            return Ok(r);
        }
        // Writing it again may have moved or (in a tiny cache) evicted it.
        if !self.retime(key, loc, exptime, version, now) {
            return Err(Miss::Absent);
        }
        let loc = self.find(key).ok_or(Miss::Absent)?;
        let h = self.header(loc);
        Ok(f(&self.item_ref(loc, &h)))
    }

    pub fn touch(&mut self, key: &[u8], exptime: u64, version: u64, now: u64) -> bool {
        match self.find_live(key, now) {
            Ok((loc, _)) => {
                record::mark_fetched(self.info_byte(loc));
                self.retime(key, loc, exptime, version, now)
            }
            Err(_) => false,
        }
    }

    pub fn delete(&mut self, key: &[u8], now: u64) -> bool {
        match self.find_live(key, now) {
            Ok((loc, h)) => {
                self.unlink(loc, &h, self.index_hash(key));
                true
            }
            Err(_) => false,
        }
    }

    /// The arguments are the fields of memcached's storage line, in its
    /// order, then the write's replication version (0: none) and the time.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: u64,
        data: &[u8],
        cas: u64,
        version: u64,
        now: u64,
    ) -> StoreOutcome {
        self.store_with_state(mode, key, flags, exptime, data, cas, 0, version, now)
    }

    /// `store`, the new item carrying meta protocol `state` (record::STATE_*).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_with_state(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: u64,
        data: &[u8],
        cas: u64,
        state: u8,
        version: u64,
        now: u64,
    ) -> StoreOutcome {
        let old = self.find_live(key, now).ok();
        match (mode, old) {
            (StoreMode::Add, Some((loc, _))) => {
                // memcached bumps the existing item on a failed add.
                let info = self.info_byte(loc);
                let fetched = *info & record::FETCHED;
                record::mark_fetched(info);
                *info = (*info & !record::FETCHED) | fetched;
                return StoreOutcome::NotStored;
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => return StoreOutcome::NotStored,
            (StoreMode::Cas, None) => return StoreOutcome::NotFound,
            // Without CAS (-C) no unique ever matches, as in memcached.
            (StoreMode::Cas, Some((loc, h))) if !self.cfg.use_cas || self.item_cas(loc, &h) != cas => {
                return StoreOutcome::Exists;
            }
            _ => {}
        }
        let stored = match (mode, old) {
            (StoreMode::Append | StoreMode::Prepend, Some((loc, h))) => {
                // -I bounds the item that results, not only the chunk sent:
                // else a chain of appends builds a value of any size (with
                // compression, for a few bytes of -m each). memcached 1.6.18
                // answers NOT_STORED and keeps the item as it was.
                let total = h.value_len.saturating_add(data.len());
                if crate::item::item_total_size(key.len(), h.flags, total) > self.cfg.item_size_max {
                    return StoreOutcome::NotStored;
                }
                let Some(old_value) = self.item_ref(loc, &h).read_value() else {
                    self.drop_corrupt(key);
                    return StoreOutcome::NotStored;
                };
                let parts: [&[u8]; 2] = if mode == StoreMode::Append { [&old_value, data] } else { [data, &old_value] };
                let meta = Meta { flags: h.flags, exp: h.exp, version, ..Default::default() };
                self.insert(key, meta, Body::Value(&parts), now)
            }
            _ => {
                let atime = if state != 0 { self.now_rel(now) } else { 0 };
                let meta = Meta { flags, exp: self.rel_exp(exptime), version, state, atime, ..Default::default() };
                self.insert(key, meta, Body::Value(&[data]), now)
            }
        };
        if stored {
            self.stats.total_items += 1;
            return StoreOutcome::Stored;
        }
        // memcached drops the old value when a set cannot be stored.
        if mode == StoreMode::Set
            && let Some(loc) = self.find(key)
        {
            let h = self.header(loc);
            self.unlink(loc, &h, self.index_hash(key));
        }
        StoreOutcome::NoMemory
    }

    pub fn arith(&mut self, key: &[u8], incr: bool, delta: u64, version: u64, now: u64) -> ArithOutcome {
        let Ok((loc, h)) = self.find_live(key, now) else {
            return ArithOutcome::NotFound;
        };
        let item = self.item_ref(loc, &h);
        // Like memcached's strtoull, only the leading digits and the byte
        // after them matter, so a large value's first chunk is enough.
        let unpacked;
        let head = match (item.value, item.compressed) {
            (Value::Inline(v), None) => v,
            (Value::Large(l), None) => l.chunks().first().map_or(&[][..], |c| &c[..]),
            (_, Some(_)) => match item.read_value() {
                Some(v) => {
                    unpacked = v;
                    &unpacked[..]
                }
                None => {
                    self.drop_corrupt(key);
                    return ArithOutcome::NotFound;
                }
            },
        };
        let number = if head.is_empty() { None } else { parse_stored_number(head) };
        let Some(cur) = number else {
            return ArithOutcome::NonNumeric;
        };
        let v = if incr { cur.wrapping_add(delta) } else { cur.saturating_sub(delta) };
        let mut digits = Vec::with_capacity(20);
        {
            use std::io::Write;
            let _ = write!(digits, "{v}");
        }
        // Like memcached, a shorter number keeps the old length, padded with
        // spaces (memcached rewrites it in place).
        if digits.len() < h.value_len {
            digits.resize(h.value_len, b' ');
        }
        let meta = Meta {
            flags: h.flags,
            exp: h.exp,
            version,
            fetched: h.fetched(),
            freq: h.freq(),
            state: h.state,
            atime: h.atime,
            ..Default::default()
        };
        if self.insert(key, meta, Body::Value(&[&digits]), now) {
            ArithOutcome::Value(v)
        } else {
            ArithOutcome::NoMemory
        }
    }

    /// Invalidate everything written before now (`at == 0`) or, from the
    /// absolute second `at` on, everything written before `at`. O(1): the
    /// segments written before it are dead from then on; their items are
    /// dropped when next seen or by `crawl`.
    pub fn flush(&mut self, at: u64, now: u64) {
        if at == 0 || at <= now {
            self.flush_at = 0;
            self.flush_now();
        } else {
            self.flush_at = at;
        }
    }

    pub(super) fn flush_now(&mut self) {
        self.flush_seq = self.next_seq;
        // Items moved from now on must not land in a segment older than
        // the flush.
        self.survivors = [None, None];
        for id in self.small.back().into_iter().chain(self.main.back()) {
            self.segs[*id as usize].sealed = true;
        }
    }

    /// A delayed flush takes effect before anything else happens at or
    /// after its deadline, so items written from then on survive it.
    pub(super) fn apply_flush(&mut self, now: u64) {
        if self.flush_at != 0 && now >= self.flush_at {
            self.flush_at = 0;
            self.flush_now();
        }
    }

    /// Write a new version of `key` and point the index at it, replacing
    /// whatever version was there. False when no room could be made.
    pub(super) fn insert(&mut self, key: &[u8], mut meta: Meta, body: Body<'_>, now: u64) -> bool {
        // What goes into storage: the value, or its compressed frame.
        let mut frame = None;
        let value_len = match body {
            Body::Stored(_, len) => len,
            Body::Value(parts) => {
                meta.compressed = None;
                let joined;
                let value: &[u8] = match parts {
                    [one] => one,
                    _ if self.codec.enabled() => {
                        joined = parts.concat();
                        &joined
                    }
                    _ => &[],
                };
                if let Some(dict) = self.codec.compress(value) {
                    let f = self.codec.take_frame();
                    meta.compressed = Some(Compressed { stored_len: f.len(), dict });
                    frame = Some(f);
                }
                parts.iter().map(|p| p.len()).sum()
            }
        };
        let one;
        let stored: &[&[u8]] = match (&frame, body) {
            (Some(f), _) => {
                one = [&f[..]];
                &one
            }
            (None, Body::Stored(b, _)) => {
                one = [b];
                &one
            }
            (None, Body::Value(parts)) => parts,
        };
        let stored_len: usize = stored.iter().map(|p| p.len()).sum();
        meta.large = false;
        let mut len = record::record_len(&meta, key.len(), value_len);
        let mut handle = None;
        if len > INLINE_MAX {
            if !self.make_room(LargeValue::charge(stored_len), now) {
                return false;
            }
            self.large_bytes += LargeValue::charge(stored_len);
            handle = Some(self.large.insert(LargeValue::from_parts(stored)) as u32);
            meta.large = true;
            len = record::record_len(&meta, key.len(), value_len);
        }
        let Some(loc) = self.reserve(Queue::Small, self.align(len), now, true) else {
            if let Some(h) = handle {
                self.free_large(h);
            }
            return false;
        };
        if let Some(h) = handle {
            let (seg, off) = self.split(loc);
            let id = self.large_next_id;
            self.large_next_id += 1;
            let v = &mut self.large[h as usize];
            (v.head, v.pos, v.id) = (loc, self.segs[seg].seq + off as u64, id);
            self.large_fifo.push_back((h, id));
        }
        {
            let (seg, off) = self.split(loc);
            self.segs[seg].written = now;
            let dst = &mut self.segs[seg].data.as_mut().expect("head segment")[off..off + len];
            let mut at = record::write_head(dst, &meta, key, value_len);
            match handle {
                Some(h) => dst[at..at + 4].copy_from_slice(&h.to_le_bytes()),
                None => {
                    for p in stored {
                        dst[at..at + p.len()].copy_from_slice(p);
                        at += p.len();
                    }
                }
            }
        }
        if let Some(f) = frame {
            self.codec.give_back_frame(f);
        }
        let hash = self.index_hash(key);
        // Without eviction, a new key must leave room for the index to grow
        // (the record just written stays behind as dead bytes).
        if !self.cfg.evict
            && self.find(key).is_none()
            && self.memory_used() + self.index.growth_on_insert(hash) > self.cfg.limit
        {
            if let Some(h) = handle {
                self.free_large(h);
            }
            return false;
        }
        let (segs, bits, shift, ik) = (&self.segs, self.seg_bits(), self.unit_shift, self.cfg.index_key);
        let mut dropped = Vec::new();
        let replaced = match self.index.find_mut(hash, |&l| key_of(record_at(segs, bits, shift, l)) == key) {
            Some(slot) => Some(std::mem::replace(slot, loc)),
            None => {
                let placed = self.index.insert_unique(
                    hash,
                    loc,
                    |&l| ik.hash(key_of(record_at(segs, bits, shift, l))),
                    &mut dropped,
                );
                if !placed {
                    // Its buckets are full of keys that collide with it: the
                    // write is refused rather than the table grown for them
                    // (the record stays behind as dead bytes).
                    self.evict_dropped(&dropped);
                    if let Some(h) = handle {
                        self.free_large(h);
                    }
                    return false;
                }
                None
            }
        };
        self.evict_dropped(&dropped);
        self.account_new(loc, len);
        if let Some(old) = replaced {
            let h = self.header(old);
            self.account_gone(old, &h, true);
        }
        // The index or the compressor may have grown past the limit.
        if self.memory_used() <= self.cfg.limit {
            // Dead bytes over their share: one bounded compaction step per
            // write, so that reclaiming keeps pace with overwrites however
            // large the items (the new record is at its queue's head, which
            // compaction never moves).
            if replaced.is_some() && self.compaction_due() {
                self.compact_step(now);
            }
            return true;
        }
        while self.memory_used() > self.cfg.limit && self.evict_one(now, self.cfg.evict) {}
        let present = self.find(key);
        if self.memory_used() > self.cfg.limit {
            // Nothing else left to evict: the new item itself does not fit.
            if let Some(loc) = present {
                let h = self.header(loc);
                self.unlink(loc, &h, hash);
            }
            return false;
        }
        // In a cache of a few segments, making room can evict the new item.
        present.is_some()
    }

    /// Give an item a new expiry, in place when its record has the field,
    /// else by writing it again (keeping its CAS value). False when it
    /// could not be written again. A replicating store (`version` not 0)
    /// gives the item that version.
    pub(super) fn retime(&mut self, key: &[u8], loc: u32, abs: u64, version: u64, now: u64) -> bool {
        let exp = self.rel_exp(abs);
        let h = self.header(loc);
        let (seg, off) = self.split(loc);
        // A replicating store gives the touched item a new version, in place
        // when the record has the field.
        let stamp = version;
        if let Some(at) = h.exp_at
            && (stamp == 0 || h.ver_at.is_some())
        {
            let before = if self.cfg.digest { self.item_digest(loc, &h) } else { 0 };
            let data = self.segs[seg].data.as_mut().expect("live segment");
            data[off + at..off + at + 4].copy_from_slice(&exp.to_le_bytes());
            if let Some(v) = h.ver_at.filter(|_| stamp != 0) {
                data[off + v..off + v + 8].copy_from_slice(&stamp.to_le_bytes());
            }
            if self.cfg.digest {
                let after = self.item_digest(loc, &self.header(loc));
                self.digest ^= before ^ after;
            }
            let s = &mut self.segs[seg];
            if exp != 0 && (s.min_exp == 0 || exp < s.min_exp) {
                s.min_exp = exp;
            }
            return true;
        }
        if exp == 0 && stamp == 0 {
            return true;
        }
        if exp != 0 && exp <= self.now_rel(now) {
            // Already past: gone, as memcached would find it next time.
            self.unlink(loc, &h, self.index_hash(key));
            return true;
        }
        // Only inline records lack the field (see record::has_exp). Writing
        // it again needs room: with -M and a full store this can fail.
        let version = if stamp != 0 { stamp } else { h.version };
        let meta = Meta { exp, cas_pos: Some(self.position(loc, &h)), version, ..h.meta() };
        let body = self.rec(loc)[h.body_at..h.body_at + h.body_len()].to_vec();
        self.insert(key, meta, Body::Stored(&body, h.value_len), now)
    }
}
