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
//! Growth is bounded by the keys held, whatever keys are sent: a failed
//! walk grows the table only while it has at most `MAX_SLOTS_PER_KEY`
//! slots per key; past that the key is refused (keys whose hashes are
//! equal share both buckets at every size, so growing cannot help). The
//! hash is keyed and secret (`HashKey`), so such keys cannot be chosen;
//! this bound is what holds if they are.
//!
//! Keys are compared by the caller (`eq`), in the segment.
//!
//! Must not import protocol, route, repl or server.

const PARTS: usize = 8;
const WAYS: usize = 8;
/// Cuckoo moves tried before an insert gives up.
const MAX_KICKS: usize = 256;
const MIN_BUCKETS: usize = 8;
/// A table grows for a failed walk only while it has at most this many
/// slots per key (5 bytes each) ...
const MAX_SLOTS_PER_KEY: usize = 4;
/// ... or is this small (2.3 KiB).
const FLOOR_BUCKETS: usize = 64;

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

    /// Place an entry whose primary bucket is `b1`; false, with the table
    /// as it was, when the cuckoo walk finds no free slot.
    fn place(&mut self, tag: u8, sel: u32, loc: u32, rng: &mut u64) -> bool {
        let b1 = self.primary(sel);
        let b2 = self.alt(b1, tag);
        for b in [b1, b2] {
            if let Some(i) = self.free_slot(b) {
                self.buckets[b].tags[i] = tag;
                self.buckets[b].locs[i] = loc;
                return true;
            }
        }
        // Random walk: evict a slot's entry to its other bucket, remembering
        // each slot so that a walk that gives up can be undone.
        let mut path = [(0usize, 0u8); MAX_KICKS];
        let (mut tag, mut loc, mut b) = (tag, loc, b1);
        for step in path.iter_mut() {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let i = (*rng % WAYS as u64) as usize;
            *step = (b, i as u8);
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
        // Swapping back in reverse order restores every slot and leaves the
        // new entry in hand, unplaced.
        for &(b, i) in path.iter().rev() {
            let slot = &mut self.buckets[b];
            std::mem::swap(&mut slot.tags[i as usize], &mut tag);
            std::mem::swap(&mut slot.locs[i as usize], &mut loc);
        }
        false
    }

    fn entries(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len);
        for bucket in &self.buckets {
            out.extend((0..WAYS).filter(|&i| bucket.tags[i] != 0).map(|i| bucket.locs[i]));
        }
        out
    }

    /// Load at which a table grows before an insert: 95%.
    fn full(&self, len: usize) -> bool {
        len * 20 > self.n() * WAYS * 19
    }

    /// The next size up: a quarter larger.
    fn grown(&self) -> usize {
        (self.n() + self.n() / 4).max(MIN_BUCKETS)
    }

    /// May the table grow a step while holding `len` keys? Up to
    /// `FLOOR_BUCKETS` always (small tables fail walks by chance), beyond
    /// only to `MAX_SLOTS_PER_KEY` slots per key: the bound that ties the
    /// index to the items stored, and so to the memory limit, whatever keys
    /// are sent. (Growing never separates keys whose hashes are equal.)
    fn may_grow(&self, len: usize) -> bool {
        let n = self.grown();
        n <= FLOOR_BUCKETS || n * WAYS <= MAX_SLOTS_PER_KEY * len
    }

    /// Rebuild larger, a quarter at a time, until every entry has a place
    /// or `may_grow` says stop; entries still homeless then are appended to
    /// `dropped` (the caller evicts them). It used to grow until every
    /// entry fitted: keys with one hash never fit, and it grew until the
    /// process ran out of memory.
    fn grow(&mut self, rng: &mut u64, rehash: &impl Fn(&u32) -> u64, dropped: &mut Vec<u32>) {
        let locs = self.entries();
        let mut homeless = Vec::new();
        loop {
            let n = self.grown();
            // The old table goes first: the peak is the new one plus `locs`.
            self.buckets = Vec::new();
            self.buckets = vec![Bucket::default(); n];
            homeless.clear();
            for &loc in &locs {
                let (_, tag, sel) = split(rehash(&loc));
                if !self.place(tag, sel, loc, rng) {
                    homeless.push(loc);
                }
            }
            if homeless.is_empty() || !self.may_grow(self.len) {
                break;
            }
        }
        self.len -= homeless.len();
        dropped.extend_from_slice(&homeless);
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
        if t.full(t.len + 1) {
            let grown = (t.n() + t.n() / 4).max(MIN_BUCKETS);
            (grown - t.n()) * std::mem::size_of::<Bucket>()
        } else {
            0
        }
    }

    /// Add a location for a key that has none; `rehash` gives the hash of
    /// any stored location's key when the table grows. False when the key
    /// cannot be placed: its buckets are full of keys whose hashes collide
    /// with its own, and growing would not separate them. A growth may
    /// leave entries homeless; their locations are appended to `dropped`.
    pub fn insert_unique(&mut self, hash: u64, loc: u32, rehash: impl Fn(&u32) -> u64, dropped: &mut Vec<u32>) -> bool {
        let (p, tag, sel) = split(hash);
        let rng = &mut self.rng;
        let t = &mut self.parts[p];
        if t.full(t.len + 1) {
            t.grow(rng, &rehash, dropped);
        }
        // A walk fails now and then in a small or well filled table, and
        // growing is the cure; when the key's buckets are full of keys that
        // collide with it, growing does not help and `may_grow` stops it.
        while !t.place(tag, sel, loc, rng) {
            if !t.may_grow(t.len + 1) {
                return false;
            }
            t.grow(rng, &rehash, dropped);
        }
        t.len += 1;
        true
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
            assert!(idx.insert_unique(hash(i), i, |&l| hash(l), &mut Vec::new()));
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
            assert!(idx.insert_unique(hash(i), i, |&l| hash(l), &mut Vec::new()));
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
            assert!(idx.insert_unique(hash(i), i, |&l| hash(l), &mut Vec::new()));
        }
        assert_eq!(idx.allocation_size(), size, "churn at a constant size does not grow the table");
    }

    #[test]
    fn keys_with_one_hash_are_refused_once_their_buckets_are_full_and_the_table_stays_small() {
        // What an attacker who can predict the hash sends: every key with
        // the same 64 bits. Two buckets of 8 slots hold 16 of them.
        let mut idx = Index::default();
        let same = 0xDEAD_BEEF_0BAD_F00D;
        let mut dropped = Vec::new();
        let placed = (0..10_000u32).filter(|&i| idx.insert_unique(same, i, |_| same, &mut dropped)).count();
        assert_eq!(placed, 2 * WAYS);
        assert!(dropped.is_empty());
        assert_eq!(idx.len(), 2 * WAYS);
        let floor = FLOOR_BUCKETS * std::mem::size_of::<Bucket>();
        assert!(idx.allocation_size() <= floor, "{} bytes for 16 keys", idx.allocation_size());
    }

    #[test]
    fn colliding_keys_in_a_loaded_table_never_grow_it_past_what_its_keys_fill() {
        let mut idx = Index::default();
        let mut dropped = Vec::new();
        for i in 0..100_000u32 {
            assert!(idx.insert_unique(hash(i), i, |&l| hash(l), &mut dropped));
        }
        let size = idx.allocation_size();
        // Colliding keys among ordinary ones: a flood keyed to one hash, each
        // refused once its buckets are full.
        let same = hash(7) ^ 0x5555;
        let rehash = |&l: &u32| if l >= 1 << 30 { same } else { hash(l) };
        let mut refused = 0;
        for i in 0..100_000u32 {
            if !idx.insert_unique(same, (1 << 30) + i, rehash, &mut dropped) {
                refused += 1;
            }
        }
        assert!(refused >= 100_000 - 2 * WAYS, "{refused} refused");
        assert!(dropped.is_empty());
        // Ordinary keys still go in; the table grows only as they fill it.
        for i in 100_000..200_000u32 {
            assert!(idx.insert_unique(hash(i), i, rehash, &mut dropped));
        }
        let slots = idx.allocation_size() / std::mem::size_of::<Bucket>() * WAYS;
        assert!(slots <= MAX_SLOTS_PER_KEY * (idx.len() + dropped.len()), "{slots} slots for {} keys", idx.len());
        assert!(idx.allocation_size() < size * 3, "grew from {size} to {}", idx.allocation_size());
        for &l in &dropped {
            assert!(idx.find(rehash(&l), |&x| x == l).is_none());
        }
    }

    #[test]
    fn a_walk_that_gives_up_leaves_every_entry_where_it_was() {
        let mut idx = Index::default();
        let mut dropped = Vec::new();
        let same = 0x0123_4567_89AB_CDEF;
        // Fill one pair of buckets with colliding keys, surround them with
        // ordinary ones, then fail an insert: nothing already in moves out.
        for i in 0..2 * WAYS as u32 {
            assert!(idx.insert_unique(same, 1_000_000 + i, |_| same, &mut dropped));
        }
        let rehash = |&l: &u32| if l >= 1_000_000 { same } else { hash(l) };
        for i in 0..50u32 {
            assert!(idx.insert_unique(hash(i), i, rehash, &mut dropped));
        }
        assert!(!idx.insert_unique(same, 2_000_000, rehash, &mut dropped));
        for i in 0..2 * WAYS as u32 {
            assert!(idx.find(same, |&l| l == 1_000_000 + i).is_some());
        }
        for i in 0..50u32 {
            assert!(idx.find(hash(i), |&l| l == i).is_some());
        }
        assert!(idx.find(same, |&l| l == 2_000_000).is_none());
        assert_eq!(idx.len(), 2 * WAYS + 50 - dropped.len());
    }
}
