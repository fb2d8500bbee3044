//! Segment space: reserving room for a record, opening and freeing
//! segments, the accounting of a record written or gone, and removing an
//! item (unlink, reclaim, a corrupt frame dropped).
//!
//! Must not import protocol, route, repl or server.

use super::*;

impl Store {
    /// Make sure the head of `queue` has `len` free bytes, opening a new
    /// segment (and evicting, when `may_evict`) if needed. Returns where the
    /// record goes and advances the head past it.
    pub(super) fn reserve(&mut self, queue: Queue, len: usize, now: u64, may_evict: bool) -> Option<u32> {
        debug_assert!(len <= SEG_SIZE);
        let mut compactions = 0;
        loop {
            let q = if queue == Queue::Small { &self.small } else { &self.main };
            if let Some(&id) = q.back() {
                let s = &mut self.segs[id as usize];
                if !s.sealed && SEG_SIZE - s.used as usize >= len {
                    let off = s.used as usize;
                    s.used += len as u32;
                    self.seg_used += len as u64;
                    return Some(self.loc(id, off));
                }
            }
            // Evicting or compacting may itself leave room at the head
            // (items moved there), so look again after each step. Dead
            // bytes over their share are won back before memory grows or
            // anything is evicted (compact.rs).
            if let Some(block) = self.spare.take() {
                self.open_segment(queue, block, now);
            } else if may_evict
                && compactions < compact::STEPS_PER_SEGMENT
                && self.compaction_due()
                && self.compact_step(now) > 0
            {
                compactions += 1;
            } else if self.memory_used() + SEG_SIZE <= self.cfg.limit {
                self.blocks += 1;
                self.open_segment(queue, vec![0u8; SEG_SIZE].into_boxed_slice(), now);
            } else if !may_evict || !self.evict_one(now, self.cfg.evict) {
                return None;
            }
        }
    }

    /// Open a segment at the head of `queue` (where writes go).
    pub(super) fn open_segment(&mut self, queue: Queue, block: Box<[u8]>, now: u64) {
        self.open_segment_at(queue, None, block, now);
    }

    /// Open a segment at `pos` in `queue` (None: at its head).
    pub(super) fn open_segment_at(&mut self, queue: Queue, pos: Option<usize>, block: Box<[u8]>, now: u64) -> u32 {
        let seg = Segment {
            data: Some(block),
            seq: self.next_seq,
            used: 0,
            sealed: false,
            live: 0,
            live_bytes: 0,
            min_exp: 0,
            opened: now,
            written: now,
            queue,
        };
        self.next_seq += SEG_SIZE as u64;
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.segs[id as usize] = seg;
                id
            }
            None => {
                self.segs.push(seg);
                (self.segs.len() - 1) as u32
            }
        };
        let q = if queue == Queue::Small { &mut self.small } else { &mut self.main };
        match pos {
            Some(at) => q.insert(at.min(q.len()), id),
            None => q.push_back(id),
        }
        id
    }

    /// Evict until `bytes` more fit under the limit.
    pub(super) fn make_room(&mut self, bytes: usize, now: u64) -> bool {
        if bytes > self.cfg.limit {
            return false;
        }
        if self.memory_used() + bytes > self.cfg.limit && self.spare.take().is_some() {
            self.blocks -= 1;
        }
        while self.memory_used() + bytes > self.cfg.limit {
            if !self.evict_one(now, self.cfg.evict) {
                return false;
            }
        }
        true
    }

    /// Count a record that the index is about to point at.
    pub(super) fn account_new(&mut self, loc: u32, rec_len: usize) {
        let h = self.header(loc);
        debug_assert_eq!(self.align(h.len()), self.align(rec_len));
        let (seg, _) = self.split(loc);
        let s = &mut self.segs[seg];
        s.live += 1;
        s.live_bytes += h.len() as u32;
        self.seg_live += h.len() as u64;
        if h.exp != 0 && (s.min_exp == 0 || h.exp < s.min_exp) {
            s.min_exp = h.exp;
        }
        let size = h.len() + if h.large { h.stored_len() } else { 0 };
        self.items += 1;
        self.item_bytes += size as u64;
        self.kv_bytes += (h.key_len + h.stored_len()) as u64;
        self.sizes[size_bucket(size)] += 1;
        if let Some(z) = h.compressed {
            self.compressed_items += 1;
            self.compressed_bytes_in += h.value_len as u64;
            self.compressed_bytes_out += z.stored_len as u64;
        }
        if self.cfg.digest {
            self.digest ^= self.item_digest(loc, &h);
        }
    }

    /// Undo `account_new` for a record that is no longer live (the index
    /// no longer points at it), freeing its large value unless told not to.
    pub(super) fn account_gone(&mut self, loc: u32, h: &Header, free_large: bool) {
        let (seg, _) = self.split(loc);
        if self.cfg.digest {
            self.digest ^= self.item_digest(loc, h);
        }
        let s = &mut self.segs[seg];
        s.live -= 1;
        s.live_bytes -= h.len() as u32;
        self.seg_live -= h.len() as u64;
        let size = h.len() + if h.large { h.stored_len() } else { 0 };
        self.items -= 1;
        self.item_bytes -= size as u64;
        self.kv_bytes -= (h.key_len + h.stored_len()) as u64;
        self.sizes[size_bucket(size)] -= 1;
        if let Some(z) = h.compressed {
            self.compressed_items -= 1;
            self.compressed_bytes_in -= h.value_len as u64;
            self.compressed_bytes_out -= z.stored_len as u64;
        }
        if h.large && free_large {
            let handle = record::large_handle(self.rec(loc), h);
            self.free_large(handle);
        }
    }

    /// A stored frame failed to decompress: log it, count it and drop the
    /// item, so that it reads as a miss from now on.
    pub fn drop_corrupt(&mut self, key: &[u8]) {
        log::error!(
            "stored value of key {:?} is corrupt (decompression failed); dropped",
            String::from_utf8_lossy(key)
        );
        self.codec.stats.corrupt += 1;
        if let Some(loc) = self.find(key) {
            let h = self.header(loc);
            self.unlink(loc, &h, self.index_hash(key));
        }
    }

    pub(super) fn free_large(&mut self, handle: u32) {
        let v = self.large.remove(handle as usize);
        self.large_bytes -= LargeValue::charge(v.len());
    }

    /// Account for items a growing index could not place (it no longer
    /// points at them): they are evicted.
    pub(super) fn evict_dropped(&mut self, dropped: &[u32]) {
        for &loc in dropped {
            let h = self.header(loc);
            self.stats.evictions += 1;
            self.stats.evicted_unfetched += u64::from(!h.fetched());
            self.account_gone(loc, &h, true);
        }
    }

    /// Drop an item found expired or flushed, counting it as memcached does.
    pub(super) fn reclaim(&mut self, loc: u32, h: &Header, hash: u64, by_crawler: bool) {
        if by_crawler {
            self.stats.crawler_reclaimed += 1;
        } else {
            self.stats.reclaimed += 1;
        }
        self.stats.expired_unfetched += u64::from(!h.fetched());
        self.unlink(loc, h, hash);
    }

    /// Remove a live item: index entry, accounting, large value.
    pub(super) fn unlink(&mut self, loc: u32, h: &Header, hash: u64) {
        self.index.remove(hash, |&l| l == loc);
        self.account_gone(loc, h, true);
    }

    /// Release a segment that holds no live items.
    pub(super) fn free_segment(&mut self, id: u32) {
        debug_assert_eq!(self.segs[id as usize].live, 0);
        match self.segs[id as usize].queue {
            Queue::Small => self.small.retain(|&s| s != id),
            Queue::Main => self.main.retain(|&s| s != id),
        }
        self.forget_survivor(id);
        self.segs[id as usize].data = None;
        self.seg_used -= u64::from(self.segs[id as usize].used);
        self.free_ids.push(id);
        self.blocks -= 1;
    }
}
