//! Upkeep the server drives from its timer: the expiry crawler (a budgeted
//! walk over the segments that reclaims expired and flushed items, resuming
//! where it stopped), and the compression dictionary's training handed out
//! and its result taken back (the server owns the thread that trains).
//!
//! Must not import protocol, route, repl or server.

use super::*;

impl Store {
    /// Sampled values to train a compression dictionary on, when the store
    /// has gathered enough: train them off the core (`TrainingJob::train`)
    /// and hand the result to `install_dictionary`.
    pub fn take_training(&mut self) -> Option<TrainingJob> {
        self.codec.take_training()
    }

    /// The dictionary trained on the job last taken (None when training
    /// failed): new items use it from now on.
    pub fn install_dictionary(&mut self, dict: Option<Vec<u8>>) {
        self.codec.trained(dict);
    }

    /// Reclaim expired and flushed items, walking at most `budget` records
    /// (and skipping segments with nothing to reclaim), so that memory comes
    /// back without waiting for a read or eviction. Segments left without
    /// live items are freed, and one compaction step is taken when dead
    /// bytes are over their share (compact.rs). Returns the items reclaimed.
    pub fn crawl(&mut self, now: u64, budget: usize) -> usize {
        self.apply_flush(now);
        let now_rel = self.now_rel(now);
        let mut work = 0;
        let mut reclaimed = 0;
        let mut visited = 0;
        while work < budget && visited <= self.segs.len() {
            if self.crawl_seg >= self.segs.len() {
                self.crawl_seg = 0;
                self.crawl_off = 0;
                if self.segs.is_empty() {
                    break;
                }
            }
            let id = self.crawl_seg as u32;
            let seg = &self.segs[self.crawl_seg];
            let is_head = self.small.back() == Some(&id) || self.main.back() == Some(&id);
            if seg.data.is_none() {
                self.next_crawl_seg(&mut visited, &mut work);
                continue;
            }
            if seg.live == 0 && !is_head {
                self.free_segment(id);
                self.next_crawl_seg(&mut visited, &mut work);
                continue;
            }
            let flushed = seg.seq < self.flush_seq;
            if !flushed && (seg.min_exp == 0 || seg.min_exp > now_rel) {
                self.next_crawl_seg(&mut visited, &mut work);
                continue;
            }
            if self.crawl_off == 0 {
                self.crawl_min_exp = 0;
            }
            let used = seg.used as usize;
            while self.crawl_off < used && work < budget {
                let (loc, h, hash, live, next) = self.walk(id, self.crawl_off);
                self.crawl_off = next;
                work += 1;
                if !live {
                    continue;
                }
                if self.dead(loc, &h, now).is_some() {
                    self.reclaim(loc, &h, hash, true);
                    reclaimed += 1;
                } else if h.exp != 0 && (self.crawl_min_exp == 0 || h.exp < self.crawl_min_exp) {
                    self.crawl_min_exp = h.exp;
                }
            }
            if self.crawl_off >= used {
                let seg = &mut self.segs[id as usize];
                // Records appended meanwhile were not walked; keep the old bound then.
                if seg.used as usize == used {
                    seg.min_exp = self.crawl_min_exp;
                }
                if seg.live == 0 && !is_head {
                    self.free_segment(id);
                }
                self.next_crawl_seg(&mut visited, &mut work);
            }
        }
        // Dead bytes that no write will come to reclaim (deletes, expiry):
        // one compaction step per slice (a step moves up to a segment's
        // items, so a slice stays well under a millisecond), and another
        // slice soon while more is due.
        let mut more = false;
        if work < budget && self.compaction_due() {
            let walked = self.compact_step(now);
            work += walked;
            more = walked > 0 && self.compaction_due();
        }
        self.crawl_busy = work >= budget || more;
        reclaimed
    }

    /// Did the last `crawl` stop at its budget? Then calling again soon
    /// pays off.
    pub fn crawl_busy(&self) -> bool {
        self.crawl_busy
    }

    pub(super) fn next_crawl_seg(&mut self, visited: &mut usize, work: &mut usize) {
        self.crawl_seg += 1;
        self.crawl_off = 0;
        *visited += 1;
        *work += 1;
    }
}
