//! What replication needs from one store: applying a peer's item by version
//! (`apply`, `delete_older`, `flush_older`), reading versions and items
//! (`version_of`, `peek`), the resumable `scan` for a full sync, and the
//! order-free `digest` two nodes compare.
//!
//! Versions are plain numbers here; the clock that makes them (repl::hlc)
//! and the wire stay in repl. Must not import protocol, route, repl or
//! server.

use super::*;

/// Outcome of applying a replicated item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The store holds this version or a newer one: nothing changed.
    Older,
    NoMemory,
}

impl Store {
    /// Hash of what a node must agree on for one item: key, value, flags
    /// and absolute expiry (not the CAS, which is per node, nor where or
    /// how the value is kept).
    pub(super) fn item_digest(&self, loc: u32, h: &Header) -> u64 {
        use std::hash::Hasher;
        let item = self.item_ref(loc, h);
        let rec = self.rec(loc);
        // SipHash with fixed keys: the same on every node running this build.
        let mut s = std::hash::DefaultHasher::new();
        s.write(&rec[h.key_at..h.key_at + h.key_len]);
        s.write_u64(item.value_len() as u64);
        // The value as clients see it: nodes may store it differently.
        match item.compressed {
            None => item.stored_pieces().for_each(|p| s.write(p)),
            Some(_) => s.write(&item.read_value().unwrap_or_default()),
        }
        s.write_u32(item.flags);
        s.write_u64(item.exp);
        s.finish()
    }

    /// XOR of a hash of every live item (see `item_digest`); the same on
    /// two stores that hold the same items, whatever order they came in.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Read a live item without counting it as an access (for shipping it
    /// to peers).
    pub fn peek<R>(&mut self, key: &[u8], now: u64, f: impl FnOnce(&ItemRef<'_>) -> R) -> Option<R> {
        let (loc, h) = self.find_live(key, now).ok()?;
        Some(f(&self.item_ref(loc, &h)))
    }

    /// The version of a live item (0 for an item written without one).
    pub fn version_of(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.find_live(key, now).ok().map(|(_, h)| h.version)
    }

    /// Store a replicated item unless the store holds the same or a newer
    /// version of the key. `exp` is absolute (0 = never). With `packed`,
    /// `value` is a compressed frame (no dictionary) of that many bytes
    /// unpacked, stored as it is.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        key: &[u8],
        flags: u32,
        exp: u64,
        value: &[u8],
        packed: Option<usize>,
        version: u64,
        now: u64,
    ) -> ApplyOutcome {
        if let Ok((_, h)) = self.find_live(key, now)
            && h.version >= version
        {
            return ApplyOutcome::Older;
        }
        let mut meta = Meta { flags, exp: self.rel_exp(exp), version, ..Default::default() };
        let body = match packed {
            Some(len) => {
                meta.compressed = Some(Compressed { stored_len: value.len(), dict: 0 });
                Body::Stored(value, len)
            }
            None => Body::Value(&[value]),
        };
        if self.insert(key, meta, body, now) {
            self.stats.total_items += 1;
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::NoMemory
        }
    }

    /// Remove a key for a replicated delete of `version`, unless the item
    /// is newer. True when an item was removed.
    pub fn delete_older(&mut self, key: &[u8], version: u64, now: u64) -> bool {
        match self.find_live(key, now) {
            Ok((loc, h)) if h.version < version => {
                self.unlink(loc, &h, self.index_hash(key));
                true
            }
            _ => false,
        }
    }

    /// Remove every item older than `version`: a flush_all from a peer.
    /// Items written after it, here or on any node, survive whatever order
    /// the flush and they arrive in (a resync repeats a flush after newer
    /// items from other streams). O(items). How many were removed.
    pub fn flush_older(&mut self, version: u64, now: u64) -> u64 {
        self.apply_flush(now);
        let mut old = Vec::new();
        for &id in self.small.iter().chain(self.main.iter()) {
            let mut off = 0;
            while off < self.segs[id as usize].used as usize {
                let (loc, h, hash, live, next) = self.walk(id, off);
                if live && h.version < version {
                    old.push((loc, hash));
                }
                off = next;
            }
        }
        for &(loc, hash) in &old {
            let h = self.header(loc);
            self.unlink(loc, &h, hash);
        }
        old.len() as u64
    }

    /// Walk the live items of one segment, for a snapshot taken a slice at
    /// a time: visits the first segment written at or after `cursor` and
    /// returns the cursor to pass next, or None when every segment has
    /// been seen. Items moved while a snapshot runs go to newer segments,
    /// so each item present throughout is visited at least once.
    pub fn scan(&mut self, cursor: u64, now: u64, mut f: impl FnMut(&[u8], &ItemRef<'_>)) -> Option<u64> {
        self.scan_records(cursor, now, |store, loc, h, _| {
            let rec = store.rec(loc);
            f(&rec[h.key_at..h.key_at + h.key_len], &store.item_ref(loc, h));
        })
    }

    /// Every live key, oldest segment first. O(items): for tests and the
    /// fuzz crate.
    pub fn live_keys(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &id in self.small.iter().chain(self.main.iter()) {
            let mut off = 0;
            while off < self.segs[id as usize].used as usize {
                let (loc, h, _, live, next) = self.walk(id, off);
                if live {
                    out.push(self.rec(loc)[h.key_at..h.key_at + h.key_len].to_vec());
                }
                off = next;
            }
        }
        out
    }
}
