//! Compaction: winning back the bytes of dead records (overwritten, deleted,
//! expired) from segments that are not yet at the end of their queue.
//!
//! Every overwrite, delete or rewrite leaves the old record dead where it
//! is. Without compaction those bytes come back only when their segment
//! reaches the tail of its queue; under an overwrite-heavy Zipf mix that
//! left three quarters of memory dead (issue 12). Here dead bytes are
//! reclaimed as they arise: whenever the dead bytes pass `DEAD_TARGET` of
//! the segments' memory, the segment with the most room to win back has
//! its live items moved (keeping their CAS) and is freed. Each step moves
//! at most one segment's live items, as one eviction does; the write path
//! takes at most `STEPS_PER_SEGMENT` steps per segment it opens, and the
//! crawler's tick takes the rest (deletes and expiry make dead bytes
//! without writes).
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
pub(super) const STEPS_PER_SEGMENT: usize = 2;
/// Segments the choice of a victim looks at, from a cursor that goes round:
/// with more segments than this the choice is among the ones looked at.
const SCAN_MAX: usize = 1024;

impl Store {
    /// Bytes of dead records in the segments (overwritten, deleted,
    /// expired but not yet reclaimed, and alignment).
    pub(super) fn dead_bytes(&self) -> u64 {
        self.seg_used - self.seg_live
    }

    /// Have dead bytes passed their share?
    pub(super) fn compaction_due(&self) -> bool {
        let dead = self.dead_bytes();
        dead > DEAD_FLOOR && dead * DEAD_TARGET_DIV > (self.blocks * SEG_SIZE) as u64
    }

    /// The segment whose live items, moved elsewhere, free the most room:
    /// not a queue's head (still being written), and only when the gain
    /// passes MIN_GAIN. Moved items may gain their 8-byte CAS position.
    fn compaction_victim(&mut self) -> Option<u32> {
        let heads = [self.small.back().copied(), self.main.back().copied(), self.survivors[0], self.survivors[1]];
        let n = self.segs.len();
        let mut best: Option<(u32, usize)> = None;
        for i in 0..n.min(SCAN_MAX) {
            let id = (self.compact_cursor + i) % n;
            let g = &self.segs[id];
            if g.data.is_none() || heads.contains(&Some(id as u32)) {
                continue;
            }
            let keep = g.live_bytes as usize + 8 * g.live as usize;
            let gain = SEG_SIZE.saturating_sub(keep);
            if gain >= MIN_GAIN && best.is_none_or(|(_, b)| gain > b) {
                best = Some((id as u32, gain));
            }
        }
        if n > SCAN_MAX {
            self.compact_cursor = (self.compact_cursor + SCAN_MAX) % n;
        }
        best.map(|(id, _)| id)
    }

    /// One compaction step: move the live items of the best victim to the
    /// head of its queue and free it. Returns the records walked (0 when
    /// no segment was worth it).
    pub(super) fn compact_step(&mut self, now: u64) -> usize {
        let Some(id) = self.compaction_victim() else {
            return 0;
        };
        let g = &self.segs[id as usize];
        self.stats.compacted_segments += 1;
        self.stats.compacted_dead_bytes += u64::from(g.used - g.live_bytes);
        self.move_segment(id, now, false).max(1)
    }

    /// Compact while dead bytes are over their share, walking at most about
    /// `budget` records (the crawler's tick). Returns the records walked.
    pub(super) fn compact(&mut self, now: u64, budget: usize) -> usize {
        let mut work = 0;
        while work < budget && self.compaction_due() {
            let w = self.compact_step(now);
            if w == 0 {
                break;
            }
            work += w;
        }
        work
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
