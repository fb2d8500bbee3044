//! S3-FIFO eviction at segment granularity: walking a segment, moving its
//! read items forward or evicting them, compacting, and large values
//! evicted by age.
//!
//! Must not import protocol, route, repl or server.

use super::*;

/// Where `move_segment` sends a segment's live items.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    /// Eviction: the items read since they were written move to the main
    /// queue's head, the others are evicted.
    Evict,
    /// Every item moves to the head of its own queue (`-M`'s compaction of
    /// a full store: the room comes back at the head, where the write that
    /// needs it goes).
    ToHead,
    /// Every item moves to the survivor segment that takes the freed
    /// segment's place in its queue (compaction: see compact.rs).
    InPlace,
}

impl Store {
    /// The record at `off` in segment `id`, for walking a segment: its
    /// location, header, key hash, whether it is the live version of its
    /// key, and where the next record starts.
    pub(super) fn walk(&self, id: u32, off: usize) -> (u32, Header, u64, bool, usize) {
        let loc = self.loc(id, off);
        let h = self.header(loc);
        let hash = self.index_hash(&self.rec(loc)[h.key_at..h.key_at + h.key_len]);
        (loc, h, hash, self.is_live(loc, hash), off + self.align(h.len()))
    }

    /// Free one segment: the small queue's oldest while that queue holds
    /// more than its tenth, else the main queue's oldest. Its live items
    /// that were read since they were written move to the main queue's head
    /// (see MAIN_MOVE_CAP); the rest are evicted. With `evict` false
    /// (`-M`) only a segment without live unexpired items may go. Returns
    /// false when nothing could be freed.
    pub(super) fn evict_one(&mut self, now: u64, evict: bool) -> bool {
        let total = self.live_segments();
        let small_share = (total / 10).max(1);
        let from_small = !self.small.is_empty() && (self.small.len() > small_share || self.main.is_empty());
        let victim = if from_small { self.small.front() } else { self.main.front() };
        if !evict {
            return victim.is_some() && self.compact_one(now);
        }
        // The oldest large value goes first unless the segment that would
        // go holds only older items (its last write is older).
        while let Some(&(handle, id)) = self.large_fifo.front() {
            match self.large.get(handle as usize) {
                Some(v) if v.id == id => {
                    if victim.is_none_or(|&s| v.pos < self.segs[s as usize].seq + u64::from(self.segs[s as usize].used))
                    {
                        self.evict_large(handle, now);
                        return true;
                    }
                    break;
                }
                // Gone already (deleted, overwritten or evicted with its record).
                _ => {
                    self.large_fifo.pop_front();
                }
            }
        }
        let Some(&victim) = victim else {
            return false;
        };
        self.evict_segment(victim, now);
        true
    }

    pub(super) fn evict_large(&mut self, handle: u32, now: u64) {
        self.large_fifo.pop_front();
        let loc = self.large[handle as usize].head;
        let h = self.header(loc);
        let hash = self.index_hash(&self.rec(loc)[h.key_at..h.key_at + h.key_len]);
        debug_assert!(self.is_live(loc, hash), "a large value outlived its record");
        if self.dead(loc, &h, now).is_some() {
            self.reclaim(loc, &h, hash, false);
        } else {
            self.stats.evictions += 1;
            self.stats.evicted_unfetched += u64::from(!h.fetched());
            self.unlink(loc, &h, hash);
        }
    }

    /// Without eviction (`-M`), room comes only from dead items: free the
    /// segment with the most bytes of overwritten, deleted or expired items,
    /// moving its live items to its queue's head. False when no segment has
    /// any.
    pub(super) fn compact_one(&mut self, now: u64) -> bool {
        let heads = [self.small.back().copied(), self.main.back().copied()];
        let now_rel = self.now_rel(now);
        let mut best: Option<(u32, u32)> = None;
        for &id in self.small.iter().chain(self.main.iter()) {
            if heads.contains(&Some(id)) {
                continue;
            }
            let g = &self.segs[id as usize];
            let dead = g.used - g.live_bytes;
            let expiring = g.min_exp != 0 && g.min_exp <= now_rel;
            if (dead > 0 || expiring || g.seq < self.flush_seq) && best.is_none_or(|(_, d)| dead > d) {
                best = Some((id, dead));
            }
        }
        let Some((id, _)) = best else {
            return false;
        };
        // Moved items gain 8 bytes (their CAS position); compact only when
        // that leaves room to spare.
        let used = self.segs[id as usize].used as usize;
        let mut needed = 0;
        let mut off = 0;
        while off < used {
            let (loc, h, _, live, next) = self.walk(id, off);
            off = next;
            if live && self.dead(loc, &h, now).is_none() {
                let meta = Meta { cas_pos: Some(0), ..h.meta() };
                needed += self.align(record::record_len(&meta, h.key_len, h.value_len));
            }
        }
        if needed >= used {
            return false;
        }
        self.move_segment(id, now, Move::ToHead);
        true
    }

    pub(super) fn evict_segment(&mut self, id: u32, now: u64) {
        self.move_segment(id, now, Move::Evict);
    }

    /// Empty a segment and free it, its live items going where `how` says;
    /// returns the records walked. Dead items are reclaimed.
    pub(super) fn move_segment(&mut self, id: u32, now: u64, how: Move) -> usize {
        let evict = how == Move::Evict;
        let queue = self.segs[id as usize].queue;
        let from_small = queue == Queue::Small;
        let q = if from_small { &mut self.small } else { &mut self.main };
        let pos = q.iter().position(|&s| s == id).unwrap_or(q.len());
        q.remove(pos);
        self.forget_survivor(id);
        if evict {
            self.stats.segments_evicted += 1;
            let g = &self.segs[id as usize];
            self.stats.evicted_dead_bytes += u64::from(g.used - g.live_bytes);
        }
        // Freed at the end: it must not stay as memory nobody counts. Sized
        // once for what can move (the items, each with its CAS position),
        // which stays under a segment, so the allocator serves it from its
        // heap rather than mapping it anew (see main.rs).
        let g = &self.segs[id as usize];
        let mut buf = Vec::with_capacity((g.live_bytes as usize + 8 * g.live as usize).min(SEG_SIZE - 1));
        let mut list = std::mem::take(&mut self.move_list);
        list.clear();
        let used = self.segs[id as usize].used as usize;
        let mut off = 0;
        let mut walked = 0;
        // Past the last live record only dead ones are left: stop there.
        let mut live_left = self.segs[id as usize].live;
        while off < used && live_left > 0 {
            let (loc, h, hash, live, next) = self.walk(id, off);
            off = next;
            walked += 1;
            if !live {
                continue;
            }
            live_left -= 1;
            if self.dead(loc, &h, now).is_some() {
                self.reclaim(loc, &h, hash, false);
                continue;
            }
            let freq = match (evict, from_small) {
                (false, _) => h.freq(),
                (true, true) => 0,
                (true, false) => h.freq().saturating_sub(1),
            };
            let meta = Meta { cas_pos: Some(self.position(loc, &h)), freq, ..h.meta() };
            let new_len = record::record_len(&meta, h.key_len, h.value_len);
            let cap = if from_small || !evict { SEG_SIZE } else { MAIN_MOVE_CAP };
            if (h.freq() > 0 || !evict) && buf.len() + self.align(new_len) <= cap {
                let rec = self.rec(loc);
                let start = buf.len();
                buf.resize(start + new_len, 0);
                let at =
                    record::write_head(&mut buf[start..], &meta, &rec[h.key_at..h.key_at + h.key_len], h.value_len);
                let body = h.body_len();
                buf[start + at..start + at + body].copy_from_slice(&rec[h.body_at..h.body_at + body]);
                list.push((hash, loc, start, new_len));
                continue;
            }
            self.stats.evictions += 1;
            if !h.fetched() {
                self.stats.evicted_unfetched += 1;
            }
            self.unlink(loc, &h, hash);
        }
        // The moved items still count as live in the old segment until they
        // are written again; account for them there, then free it.
        for &(_, loc, _, _) in &list {
            let h = self.header(loc);
            self.account_gone(loc, &h, false);
        }
        // The id is reused only after the moves, so that no new location
        // equals an old one still in the index.
        let block = self.segs[id as usize].data.take();
        self.seg_used -= u64::from(self.segs[id as usize].used);
        if self.spare.is_none() {
            self.spare = block;
        } else {
            self.blocks -= 1;
        }
        for &(hash, old, start, len) in &list {
            let rec = &buf[start..start + len];
            let room = self.align(len);
            let to = match how {
                Move::Evict => self.reserve(Queue::Main, room, now, false),
                Move::ToHead => self.reserve(queue, room, now, false),
                Move::InPlace => self.reserve_survivor(queue, pos, room, now),
            };
            let Some(loc) = to else {
                // Cannot happen: the moves fit the head's room plus the
                // block just freed. Should it, drop the item.
                self.index.remove(hash, |&l| l == old);
                self.stats.evictions += 1;
                continue;
            };
            let (seg, off) = self.split(loc);
            self.segs[seg].data.as_mut().expect("head segment")[off..off + len].copy_from_slice(rec);
            if let Some(slot) = self.index.find_mut(hash, |&l| l == old) {
                *slot = loc;
            }
            let h = self.header(loc);
            if h.large {
                let handle = record::large_handle(self.rec(loc), &h);
                self.large[handle as usize].head = loc;
            }
            self.account_new(loc, len);
            if evict {
                self.stats.moved += 1;
            } else {
                self.stats.compacted_items += 1;
            }
        }
        self.free_ids.push(id);
        self.move_list = list;
        walked
    }
}
