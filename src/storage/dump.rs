//! What `lru_crawler metadump` lists: each live item's key, expiry, write
//! time, CAS, whether it was read, and its size in the store, one segment
//! at a time (the caller bounds a dump's memory by taking one segment per
//! call). Shares the segment walk with replication's snapshot (`scan`).
//!
//! Must not import protocol, route, repl or server.

use super::*;

/// One live item as `metadump` shows it.
pub struct DumpRecord<'a> {
    pub key: &'a [u8],
    /// Absolute expiry in Unix seconds, 0 = never.
    pub exp: u64,
    /// When the item's segment was opened (Unix seconds): memcore keeps no
    /// per-item access time, so this stands for memcached's last access.
    pub written: u64,
    pub cas: u64,
    /// Read since it was written.
    pub fetched: bool,
    /// Bytes the record takes in its segment (header, key, stored value).
    pub size: usize,
}

impl Store {
    /// Visit the live records of the first segment written at or after
    /// `cursor`; the cursor to pass next, or None when every segment has
    /// been seen (see `scan`).
    pub(super) fn scan_records(
        &mut self,
        cursor: u64,
        now: u64,
        mut f: impl FnMut(&Store, u32, &Header, &Segment),
    ) -> Option<u64> {
        self.apply_flush(now);
        let id = self
            .small
            .iter()
            .chain(self.main.iter())
            .copied()
            .filter(|&id| self.segs[id as usize].seq >= cursor)
            .min_by_key(|&id| self.segs[id as usize].seq)?;
        let seg = &self.segs[id as usize];
        let mut off = 0;
        while off < seg.used as usize {
            let (loc, h, _, live, next) = self.walk(id, off);
            off = next;
            if live && self.dead(loc, &h, now).is_none() {
                f(self, loc, &h, seg);
            }
        }
        Some(seg.seq + SEG_SIZE as u64)
    }

    /// `lru_crawler metadump`: the live items of one segment (see
    /// `scan_records`).
    pub fn metadump(&mut self, cursor: u64, now: u64, mut f: impl FnMut(&DumpRecord<'_>)) -> Option<u64> {
        self.scan_records(cursor, now, |store, loc, h, seg| {
            let rec = store.rec(loc);
            f(&DumpRecord {
                key: &rec[h.key_at..h.key_at + h.key_len],
                exp: store.abs_exp(h.exp),
                written: seg.opened,
                cas: store.cas_value(store.position(loc, h)),
                fetched: h.fetched(),
                size: h.len(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_lists_every_live_item_once_with_its_metadata() {
        let mut s = Store::new(StoreConfig { limit: 4 << 20, item_size_max: 1 << 20, ..StoreConfig::default() });
        let now = s.config().started + 5;
        for i in 0..2000u32 {
            let exp = if i == 7 { now + 100 } else { 0 };
            s.store(StoreMode::Set, format!("k{i}").as_bytes(), 0, exp, &[b'v'; 300], 0, 0, now);
        }
        s.delete(b"k3", now);
        let _ = s.get(b"k5", now).map(|_| ());
        let mut seen = Vec::new();
        let mut cursor = 0;
        let mut calls = 0;
        while let Some(next) = s.metadump(cursor, now, |r| {
            seen.push((String::from_utf8_lossy(r.key).into_owned(), r.exp, r.fetched, r.size, r.written))
        }) {
            cursor = next;
            calls += 1;
        }
        assert!(calls > 1, "one segment per call");
        assert_eq!(seen.len(), 1999);
        assert!(!seen.iter().any(|s| s.0 == "k3"));
        let k7 = seen.iter().find(|s| s.0 == "k7").unwrap();
        assert_eq!(k7.1, now + 100);
        assert!(seen.iter().find(|s| s.0 == "k5").unwrap().2, "k5 was read");
        assert!(!k7.2);
        assert!(seen.iter().all(|s| s.3 > 2 && s.4 == now));
    }
}
