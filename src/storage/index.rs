//! The key index: for each live key, the u32 location of its record.
//!
//! A bucketized cuckoo hash table (as in MemC3): buckets of 8 slots, each
//! slot an 8-bit tag (from the key's hash) and a location; a key lives in
//! one of two buckets, the second derived from the first and the tag, so
//! entries can be moved without reading their keys. Deletion just clears a
//! slot. The table fills to 95% before it grows by a quarter, so it costs
//! 5 bytes per slot at 76-95% load: about 6 bytes per key. (hashbrown,
//! tried first, doubles whenever deletions leave it half full: 10 bytes per
//! key under a cache's constant churn.) Growing rehashes every key, which
//! means reading it from its segment; the index is split into `PARTS`
//! tables that grow separately, so each pause is a fraction as long.
//!
//! Keys are compared by the caller (`eq`), in the segment.

const PARTS: usize = 8;
const WAYS: usize = 8;
/// Cuckoo moves tried before a table grows instead.
const MAX_KICKS: usize = 256;
const MIN_BUCKETS: usize = 8;

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Bucket {
    /// 0 marks a free slot.
    tags: [u8; WAYS],
    locs: [u32; WAYS],
}

#[derive(Default)]
struct Table {
    buckets: Vec<Bucket>,
    len: usize,
}

pub struct Index {
    parts: [Table; PARTS],
    rng: u64,
}

impl Default for Index {
    fn default() -> Self {
        Index { parts: Default::default(), rng: 0x2545_F491_4F6C_DD1D }
    }
}

/// The part, the slot tag and the primary bucket's selector, from disjoint
/// bits of the hash.
fn split(hash: u64) -> (usize, u8, u32) {
    let part = (hash >> 61) as usize % PARTS;
    let tag = ((hash >> 48) as u8).max(1);
    (part, tag, hash as u32)
}

impl Table {
    fn n(&self) -> usize {
        self.buckets.len()
    }
    fn primary(&self, sel: u32) -> usize {
        ((sel as u64 * self.n() as u64) >> 32) as usize
    }
    /// The other bucket of an entry with this tag in bucket `b`; an
    /// involution, so either bucket leads to the other.
    fn alt(&self, b: usize, tag: u8) -> usize {
        let n = self.n();
        let h = (tag as usize).wrapping_mul(0x9E37_79B9) % n;
        (h + n - b) % n
    }

    fn find(&self, tag: u8, sel: u32, mut eq: impl FnMut(&u32) -> bool) -> Option<(usize, usize)> {
        if self.buckets.is_empty() {
            return None;
        }
        let b1 = self.primary(sel);
        let b2 = self.alt(b1, tag);
        for b in [b1, b2] {
            let bucket = &self.buckets[b];
            for i in 0..WAYS {
                if bucket.tags[i] == tag && eq(&bucket.locs[i]) {
                    return Some((b, i));
                }
            }
        }
        None
    }

    fn free_slot(&self, b: usize) -> Option<usize> {
        self.buckets[b].tags.iter().position(|&t| t == 0)
    }

    /// Place an entry whose primary bucket is `b1`; false when the cuckoo
    /// walk gives up (the entry then displaced is handed back in `spill`).
    fn place(&mut self, tag: u8, sel: u32, loc: u32, rng: &mut u64, spill: &mut Option<(u8, usize, u32)>) -> bool {
        let b1 = self.primary(sel);
        let b2 = self.alt(b1, tag);
        for b in [b1, b2] {
            if let Some(i) = self.free_slot(b) {
                self.buckets[b].tags[i] = tag;
                self.buckets[b].locs[i] = loc;
                return true;
            }
        }
        // Random walk: evict a slot's entry to its other bucket.
        let (mut tag, mut loc, mut b) = (tag, loc, b1);
        for _ in 0..MAX_KICKS {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let i = (*rng % WAYS as u64) as usize;
            let slot = &mut self.buckets[b];
            std::mem::swap(&mut slot.tags[i], &mut tag);
            std::mem::swap(&mut slot.locs[i], &mut loc);
            b = self.alt(b, tag);
            if let Some(j) = self.free_slot(b) {
                self.buckets[b].tags[j] = tag;
                self.buckets[b].locs[j] = loc;
                return true;
            }
        }
        *spill = Some((tag, b, loc));
        false
    }

    fn entries(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len + 1);
        for bucket in &self.buckets {
            out.extend((0..WAYS).filter(|&i| bucket.tags[i] != 0).map(|i| bucket.locs[i]));
        }
        out
    }

    /// Rebuild with at least `n` buckets holding `locs`; `rehash` gives an
    /// entry's hash (from its key). Grows further if a walk gives up.
    fn rebuild(&mut self, locs: &[u32], mut n: usize, rng: &mut u64, rehash: &impl Fn(&u32) -> u64) {
        'grow: loop {
            self.buckets = vec![Bucket::default(); n.max(MIN_BUCKETS)];
            for &loc in locs {
                let (_, tag, sel) = split(rehash(&loc));
                if !self.place(tag, sel, loc, rng, &mut None) {
                    n += n / 4;
                    continue 'grow;
                }
            }
            return;
        }
    }
}

impl Index {
    pub fn find(&self, hash: u64, eq: impl FnMut(&u32) -> bool) -> Option<&u32> {
        let (p, tag, sel) = split(hash);
        let t = &self.parts[p];
        t.find(tag, sel, eq).map(|(b, i)| &t.buckets[b].locs[i])
    }

    pub fn find_mut(&mut self, hash: u64, eq: impl FnMut(&u32) -> bool) -> Option<&mut u32> {
        let (p, tag, sel) = split(hash);
        let t = &mut self.parts[p];
        t.find(tag, sel, eq).map(|(b, i)| &mut t.buckets[b].locs[i])
    }

    /// Bytes the table would add to insert a key with this hash (when that
    /// insert makes its part grow).
    pub fn growth_on_insert(&self, hash: u64) -> usize {
        let t = &self.parts[split(hash).0];
        if (t.len + 1) * 20 > t.n() * WAYS * 19 {
            let grown = (t.n() + t.n() / 4).max(MIN_BUCKETS);
            (grown - t.n()) * std::mem::size_of::<Bucket>()
        } else {
            0
        }
    }

    /// Add a location for a key that has none; `rehash` gives the hash of
    /// any stored location's key when the table grows.
    pub fn insert_unique(&mut self, hash: u64, loc: u32, rehash: impl Fn(&u32) -> u64) {
        let (p, tag, sel) = split(hash);
        let rng = &mut self.rng;
        let t = &mut self.parts[p];
        let grown = (t.n() + t.n() / 4).max(MIN_BUCKETS);
        if (t.len + 1) * 20 > t.n() * WAYS * 19 {
            let locs = t.entries();
            t.rebuild(&locs, grown, rng, &rehash);
        }
        let mut spill = None;
        if !t.place(tag, sel, loc, rng, &mut spill) {
            // The walk left some entry homeless: rebuild larger with it.
            let mut locs = t.entries();
            locs.extend(spill.map(|(_, _, l)| l));
            t.rebuild(&locs, grown, rng, &rehash);
        }
        t.len += 1;
    }

    /// Remove the entry `eq` picks; false when there is none.
    pub fn remove(&mut self, hash: u64, eq: impl FnMut(&u32) -> bool) -> bool {
        let (p, tag, sel) = split(hash);
        let t = &mut self.parts[p];
        match t.find(tag, sel, eq) {
            Some((b, i)) => {
                t.buckets[b].tags[i] = 0;
                t.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Bytes allocated (counted against the memory limit).
    pub fn allocation_size(&self) -> usize {
        self.parts.iter().map(|t| t.buckets.capacity() * std::mem::size_of::<Bucket>()).sum()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.parts.iter().map(|t| t.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(v: u32) -> u64 {
        let mut h = (v as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }

    #[test]
    fn finds_what_was_inserted_and_forgets_what_was_removed() {
        let mut idx = Index::default();
        for i in 0..200_000u32 {
            idx.insert_unique(hash(i), i, |&l| hash(l));
        }
        assert_eq!(idx.len(), 200_000);
        for i in 0..200_000u32 {
            assert_eq!(idx.find(hash(i), |&l| l == i), Some(&i), "{i}");
        }
        for i in (0..200_000u32).step_by(2) {
            assert!(idx.remove(hash(i), |&l| l == i));
        }
        assert!(!idx.remove(hash(0), |&l| l == 0));
        for i in 0..200_000u32 {
            assert_eq!(idx.find(hash(i), |&l| l == i).is_some(), i % 2 == 1);
        }
        *idx.find_mut(hash(1), |&l| l == 1).unwrap() = 7;
        assert_eq!(idx.find(hash(1), |&l| l == 7), Some(&7));
    }

    #[test]
    fn about_six_bytes_per_key_at_any_size_and_under_churn() {
        let mut idx = Index::default();
        let mut worst: f64 = 0.0;
        for i in 0..600_000u32 {
            idx.insert_unique(hash(i), i, |&l| hash(l));
            if i >= 20_000 && i % 5_000 == 0 {
                worst = worst.max(idx.allocation_size() as f64 / i as f64);
            }
        }
        assert!(worst < 7.5, "worst {worst} bytes per key while growing");
        // A cache at its limit: every insert comes with a removal.
        let size = idx.allocation_size();
        for i in 600_000..2_000_000u32 {
            let old = i - 600_000;
            assert!(idx.remove(hash(old), |&l| l == old));
            idx.insert_unique(hash(i), i, |&l| hash(l));
        }
        assert_eq!(idx.allocation_size(), size, "churn at a constant size does not grow the table");
    }
}
