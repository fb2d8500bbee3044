//! Compaction: winning back the bytes of dead records (overwritten, deleted,
//! expired) from segments that are not yet at the end of their queue.
//!
//! Every overwrite, delete or rewrite leaves the old record dead where it
//! is. Without compaction those bytes come back only when their segment
//! reaches the tail of its queue; under an overwrite-heavy Zipf mix that
//! left three quarters of memory dead (issue 12). Here dead bytes are
//! reclaimed as they arise: whenever the dead bytes pass a tenth of the
//! segments' memory, the segment most worth it (room won per byte moved,
//! weighted by its distance from eviction) has its live items moved
//! (keeping their CAS) into a survivor segment in its place, and is freed.
//! Each step moves at most one segment's live items, as one eviction does.
//! Steps are taken by an overwrite that finds dead bytes over their share
//! (at most one per write, so reclaiming keeps pace with overwrites of any
//! size), by the write path before it opens a new segment (at most
//! `STEPS_PER_SEGMENT`, so memory does not grow while dead bytes could
//! make room), and by the crawler's tick, one per slice (deletes and
//! expiry make dead bytes without writes).
//!
//! Must not import protocol, route, repl or server.

use super::*;

/// Compaction starts when dead bytes pass this share of the segments'
/// memory (a tenth; 1/DEAD_TARGET_DIV).
const DEAD_TARGET_DIV: u64 = 10;
/// ... and at least this many bytes, so that a nearly empty store does not
/// churn over a few records.
const DEAD_FLOOR: u64 = SEG_SIZE as u64 / 4;
/// A segment is worth compacting only when its items, moved, leave at least
/// this much of it free: below that, the move costs more than it wins.
const MIN_GAIN: usize = SEG_SIZE / 8;
/// Steps the write path may take each time it needs a new segment.
pub(super) const STEPS_PER_SEGMENT: usize = 1;
/// Segments the choice of a victim looks at (about): with more, it looks
/// at a spread of this many.
const SCAN_MAX: usize = 1024;

impl Store {
    /// Bytes of dead records in the segments (overwritten, deleted,
    /// expired but not yet reclaimed, and alignment).
    pub(super) fn dead_bytes(&self) -> u64 {
        self.seg_used - self.seg_live
    }

    /// Have dead bytes passed their share? A full store without eviction
    /// (`-M`) compacts only when a write needs the room (`compact_one`, into
    /// the head, where that write goes): a survivor segment would take the
    /// last free block and leave its room where no write can use it.
    pub(super) fn compaction_due(&self) -> bool {
        if !self.cfg.evict && self.memory_used() + SEG_SIZE > self.cfg.limit {
            return false;
        }
        let dead = self.dead_bytes();
        dead > DEAD_FLOOR && dead * DEAD_TARGET_DIV > (self.blocks * SEG_SIZE) as u64
    }

    /// The segment most worth compacting: the room its live items leave
    /// when moved (its size less its live bytes and 8 bytes per item for the
    /// CAS position a moved record keeps), per byte moved, weighted by how
    /// far it is from its queue's tail (a segment about to be evicted frees
    /// its dead bytes soon anyway; the cost-benefit choice of log-structured
    /// file systems, with age as distance to eviction). Never a queue's head
    /// or a survivor segment (still being written), and only when the room
    /// won passes MIN_GAIN. With more than SCAN_MAX segments, a spread of
    /// SCAN_MAX of them is looked at, from an offset that goes round.
    fn compaction_victim(&mut self) -> Option<u32> {
        let skip = [self.small.back().copied(), self.main.back().copied(), self.survivors[0], self.survivors[1]];
        let total = self.live_segments();
        let stride = total.div_ceil(SCAN_MAX).max(1);
        let first = self.compact_cursor % stride;
        self.compact_cursor = self.compact_cursor.wrapping_add(1);
        let mut best: Option<(u32, u64)> = None;
        for q in [&self.small, &self.main] {
            let len = q.len() as u64;
            for (pos, &id) in q.iter().enumerate().skip(first).step_by(stride) {
                if skip.contains(&Some(id)) {
                    continue;
                }
                let g = &self.segs[id as usize];
                let keep = g.live_bytes as u64 + 8 * u64::from(g.live);
                let gain = (SEG_SIZE as u64).saturating_sub(keep);
                if gain < MIN_GAIN as u64 {
                    continue;
                }
                let score = gain * 1024 * (pos as u64 + 1) / len / (keep + 1024);
                if best.is_none_or(|(_, b)| score > b) {
                    best = Some((id, score));
                }
            }
        }
        best.map(|(id, _)| id)
    }

    /// One compaction step: move the live items of the best victim to the
    /// survivor segment of its queue and free it. Returns the records walked (0 when
    /// no segment was worth it).
    pub(super) fn compact_step(&mut self, now: u64) -> usize {
        let Some(id) = self.compaction_victim() else {
            return 0;
        };
        let g = &self.segs[id as usize];
        self.stats.compacted_segments += 1;
        self.stats.compacted_dead_bytes += u64::from(g.used - g.live_bytes);
        self.move_segment(id, now, eviction::Move::InPlace).max(1)
    }

    /// Room for a moved item in the survivor segment of `queue`, opening a
    /// new one at `pos` in the queue when it is full: moved items keep
    /// (about) their place in the queue's order, so compaction changes
    /// neither what eviction takes next nor what it keeps, and survivors,
    /// which die slowly, do not share segments with new writes, which die
    /// fast (the hot keys are overwritten most). The block comes from the
    /// segment just emptied (the spare), so compaction needs no memory
    /// beyond the limit.
    pub(super) fn reserve_survivor(&mut self, queue: Queue, pos: usize, len: usize, now: u64) -> Option<u32> {
        let qi = usize::from(queue == Queue::Main);
        if let Some(id) = self.survivors[qi] {
            let s = &mut self.segs[id as usize];
            if SEG_SIZE - s.used as usize >= len {
                let off = s.used as usize;
                s.used += len as u32;
                self.seg_used += len as u64;
                return Some(self.loc(id, off));
            }
        }
        let block = match self.spare.take() {
            Some(b) => b,
            None if self.memory_used() + SEG_SIZE <= self.cfg.limit => {
                self.blocks += 1;
                vec![0u8; SEG_SIZE].into_boxed_slice()
            }
            None => return None,
        };
        // Never behind the head: writes go to the head.
        let q = if queue == Queue::Small { &self.small } else { &self.main };
        let at = pos.min(q.len().saturating_sub(1));
        let id = self.open_segment_at(queue, Some(at), block, now);
        self.survivors[qi] = Some(id);
        let s = &mut self.segs[id as usize];
        s.used = len as u32;
        self.seg_used += len as u64;
        Some(self.loc(id, 0))
    }

    /// A segment that is freed stops being a survivor segment.
    pub(super) fn forget_survivor(&mut self, id: u32) {
        for s in &mut self.survivors {
            if *s == Some(id) {
                *s = None;
            }
        }
    }
}
