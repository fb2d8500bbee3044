//! Per-item state for the meta protocol's stampede control, as memcached
//! 1.6 keeps it in `it_flags` and `it->time`: stale (marked by an
//! invalidating delete, or stored by a stale CAS), won (one client was
//! told to recache), a binary key (`k` returns it base64), and the last
//! access time.
//!
//! The state lives in an optional record field (`record::STATE_*`, five
//! bytes with its last-access time) written only while some of it is set,
//! so an item no meta client marked costs nothing more; its fetched bit is
//! the record's own. An item without the field reports the last write
//! into its segment as its last access (at or after its own write: the
//! figure can only be lower than memcached's).
//!
//! The protocol's order of flags is the caller's (route::shard walks the
//! tokens as memcached does); here are the item operations it needs, all
//! taking absolute times. Must not import protocol, route, repl or server.

use super::*;
use record::{STATE_BINARY_KEY, STATE_STALE, STATE_WON};

/// A live item as the meta commands see it, before they change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaView {
    pub flags: u32,
    pub cas: u64,
    /// Absolute expiry (Unix seconds), 0 = never.
    pub exp: u64,
    pub value_len: usize,
    /// Read before (memcached's ITEM_FETCHED).
    pub fetched: bool,
    /// Last access, Unix seconds.
    pub last_access: u64,
    pub stale: bool,
    pub won: bool,
    pub binary_key: bool,
}

/// What a rewrite does to an item's CAS value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CasChange {
    Keep,
    /// A new one from the record's new position.
    Fresh,
    /// This one (a client's, meta `E`).
    Set(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaDeleteOutcome {
    Deleted,
    /// Marked stale (md I): kept, with a new CAS.
    Invalidated,
    NotFound,
    /// The CAS given did not match.
    Exists,
}

impl Store {
    /// Record a read: the fetched bit and frequency, and the last-access
    /// time when the record has the field.
    pub(super) fn note_access(&mut self, loc: u32, h: &Header, now: u64) {
        let t = self.now_rel(now);
        let (seg, off) = self.split(loc);
        let data = self.segs[seg].data.as_mut().expect("live segment");
        record::mark_fetched(&mut data[off]);
        if let Some(at) = h.state_at {
            data[off + at + 1..off + at + 5].copy_from_slice(&t.to_le_bytes());
        }
    }

    /// Look a key up without counting an access.
    pub fn meta_view(&mut self, key: &[u8], now: u64) -> Result<MetaView, Miss> {
        let (loc, h) = self.find_live(key, now)?;
        let last_access = match h.state_at {
            Some(_) => self.abs_exp(h.atime),
            None => self.segs[self.split(loc).0].written,
        };
        Ok(MetaView {
            flags: h.flags,
            cas: self.item_cas(loc, &h),
            exp: self.abs_exp(h.exp),
            value_len: h.value_len,
            fetched: h.fetched(),
            last_access: last_access.min(now),
            stale: h.state & STATE_STALE != 0,
            won: h.state & STATE_WON != 0,
            binary_key: h.state & STATE_BINARY_KEY != 0,
        })
    }

    /// Rewrite a live item with new state bits, its CAS as `cas` says, and
    /// its expiry unless `exp` (absolute). False when it could not be
    /// written again (a full store under -M).
    fn restate(&mut self, key: &[u8], state: u8, exp: Option<u64>, cas: CasChange, version: u64, now: u64) -> bool {
        let Ok((loc, h)) = self.find_live(key, now) else { return false };
        let (cas_pos, xcas) = match cas {
            CasChange::Keep => (Some(self.position(loc, &h)), h.xcas),
            CasChange::Fresh => (None, 0),
            CasChange::Set(v) => (None, v),
        };
        let atime = if h.state_at.is_some() { h.atime } else { self.now_rel(now) };
        let exp = match exp {
            Some(abs) => self.rel_exp(abs),
            None => h.exp,
        };
        let version = if version != 0 { version } else { h.version };
        let meta = Meta { exp, cas_pos, version, state, atime, xcas, ..h.meta() };
        let item = self.item_ref(loc, &h);
        let stored: Vec<u8> = match item.value {
            Value::Inline(v) => v.to_vec(),
            Value::Large(l) => l.chunks().iter().flat_map(|c| c.iter().copied()).collect(),
        };
        self.insert(key, meta, Body::Stored(&stored, h.value_len), now)
    }

    /// After a meta get: count the access (unless `no_update`), mark the
    /// win (`win`), and set a new expiry (`exp`, absolute). The version
    /// stamps the item when something replicable changed.
    pub fn meta_update(
        &mut self,
        key: &[u8],
        exp: Option<u64>,
        win: bool,
        access: bool,
        version: u64,
        now: u64,
    ) -> bool {
        let Ok((loc, h)) = self.find_live(key, now) else { return false };
        if access {
            self.note_access(loc, &h, now);
        }
        if win && h.state & STATE_WON == 0 {
            match h.state_at {
                Some(at) => {
                    let (seg, off) = self.split(loc);
                    self.segs[seg].data.as_mut().expect("live segment")[off + at] |= STATE_WON;
                }
                None => {
                    if !self.restate(key, h.state | STATE_WON, None, CasChange::Keep, 0, now) {
                        return false;
                    }
                }
            }
        }
        match exp {
            Some(abs) => match self.find(key) {
                Some(loc) => self.retime(key, loc, abs, version, now),
                None => false,
            },
            None => true,
        }
    }

    /// mg N on a miss: an empty item with client flags 0 and expiry `exp`,
    /// already won by the asking client.
    pub fn meta_vivify(&mut self, key: &[u8], exp: u64, version: u64, now: u64) -> bool {
        let outcome = self.store_with_state(StoreMode::Add, key, 0, exp, &[], 0, STATE_WON, version, now);
        outcome == StoreOutcome::Stored
    }

    /// ms: memcached's do_store_item with the meta extras. `cas` 0 means
    /// none given; with `invalidate`, a CAS mode write whose CAS is lower
    /// than the item's stores the value stale, keeping the item's expiry
    /// and its won mark. Returns the outcome and the new CAS (0 unless
    /// stored).
    #[allow(clippy::too_many_arguments)]
    pub fn meta_store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: u64,
        data: &[u8],
        cas: u64,
        invalidate: bool,
        binary_key: bool,
        version: u64,
        now: u64,
    ) -> (StoreOutcome, u64) {
        let binary = if binary_key { STATE_BINARY_KEY } else { 0 };
        let old = self.find_live(key, now).ok();
        let outcome = match (mode, old) {
            (StoreMode::Append | StoreMode::Prepend, Some((loc, h))) if cas != 0 && cas != self.item_cas(loc, &h) => {
                StoreOutcome::Exists
            }
            (StoreMode::Cas, Some((loc, h)))
                if invalidate && self.cfg.use_cas && cas != 0 && cas < self.item_cas(loc, &h) =>
            {
                let state = STATE_STALE | (h.state & STATE_WON) | binary;
                let meta = Meta { flags, exp: h.exp, version, state, atime: self.now_rel(now), ..Default::default() };
                if self.insert(key, meta, Body::Value(&[data]), now) {
                    self.stats.total_items += 1;
                    StoreOutcome::Stored
                } else {
                    StoreOutcome::NoMemory
                }
            }
            // With a CAS and no item, every mode but add misses.
            (StoreMode::Set | StoreMode::Replace, None) if cas != 0 => StoreOutcome::NotFound,
            _ => self.store_with_state(mode, key, flags, exptime, data, cas, binary, version, now),
        };
        let new_cas = match outcome {
            StoreOutcome::Stored => self.meta_view(key, now).map_or(0, |v| v.cas),
            _ => 0,
        };
        (outcome, new_cas)
    }

    /// A peer's meta state for the item it just replicated at `version`:
    /// applied when that version is the one stored here. True when applied.
    pub fn apply_state(&mut self, key: &[u8], version: u64, state: u8, now: u64) -> bool {
        match self.find_live(key, now) {
            Ok((_, h)) if h.version == version && h.state != state => {
                self.restate(key, state, None, CasChange::Keep, 0, now)
            }
            _ => false,
        }
    }

    /// Give a live item the CAS value a client chose (meta `E`) after the
    /// command changed it. False when it could not be written again.
    pub fn meta_set_cas(&mut self, key: &[u8], cas: u64, now: u64) -> bool {
        match self.find_live(key, now) {
            Ok((_, h)) => self.restate(key, h.state, None, CasChange::Set(cas), 0, now),
            Err(_) => false,
        }
    }

    /// md: remove the item, or with `invalidate` mark it stale, clear its
    /// won mark, give it a new CAS (`new_cas`, else a fresh one) and (with
    /// `exp`, absolute) a new expiry. With `remove_value` (`x`: client
    /// flags and absolute expiry) the item stays, emptied, with those flags
    /// and expiry and its CAS (or `new_cas`), as later memcached does.
    #[allow(clippy::too_many_arguments)]
    pub fn meta_delete(
        &mut self,
        key: &[u8],
        cas: Option<u64>,
        invalidate: bool,
        exp: Option<u64>,
        remove_value: Option<(u32, u64)>,
        new_cas: Option<u64>,
        version: u64,
        now: u64,
    ) -> MetaDeleteOutcome {
        let Ok((loc, h)) = self.find_live(key, now) else { return MetaDeleteOutcome::NotFound };
        if cas.is_some_and(|c| c != self.item_cas(loc, &h)) {
            return MetaDeleteOutcome::Exists;
        }
        let mut state = h.state;
        if let Some((flags, abs)) = remove_value {
            let (cas_pos, xcas) = match new_cas {
                Some(v) => (None, v),
                None => (Some(self.position(loc, &h)), h.xcas),
            };
            let meta = Meta { flags, exp: self.rel_exp(abs), cas_pos, xcas, version, ..Default::default() };
            if !self.insert(key, meta, Body::Value(&[]), now) {
                return MetaDeleteOutcome::NotFound;
            }
            state = 0;
            if !invalidate {
                return MetaDeleteOutcome::Deleted;
            }
        }
        if invalidate {
            let state = (state | STATE_STALE) & !STATE_WON;
            let cas = new_cas.map_or(CasChange::Fresh, CasChange::Set);
            self.restate(key, state, exp, cas, version, now);
            return MetaDeleteOutcome::Invalidated;
        }
        self.unlink(loc, &h, self.index_hash(key));
        MetaDeleteOutcome::Deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn store() -> Store {
        Store::new(StoreConfig { started: NOW - 1000, ..Default::default() })
    }

    #[test]
    fn plain_items_carry_no_state_and_stale_ones_do() {
        let mut s = store();
        s.store(StoreMode::Set, b"k", 0, 0, b"v", 0, 0, NOW);
        let v = s.meta_view(b"k", NOW).unwrap();
        assert!(!v.stale && !v.won && !v.fetched);
        let before = s.engine_stats(NOW).key_value_bytes;
        let cas = v.cas;
        assert_eq!(s.meta_delete(b"k", Some(cas + 1), true, None, None, None, 0, NOW), MetaDeleteOutcome::Exists);
        assert_eq!(
            s.meta_delete(b"k", Some(cas), true, Some(NOW + 30), None, None, 0, NOW),
            MetaDeleteOutcome::Invalidated
        );
        let v = s.meta_view(b"k", NOW).unwrap();
        assert!(v.stale && !v.won);
        assert_ne!(v.cas, cas, "invalidation bumps the CAS");
        assert_eq!(v.exp, NOW + 30);
        assert_eq!(s.engine_stats(NOW).key_value_bytes, before, "key and value bytes unchanged");
        let mut out = Vec::new();
        assert_eq!(s.peek(b"k", NOW, |i| i.copy_value(&mut out)), Some(true));
        assert_eq!(out, b"v");
    }

    #[test]
    fn one_win_until_invalidated_again() {
        let mut s = store();
        assert!(s.meta_vivify(b"k", NOW + 30, 0, NOW));
        let v = s.meta_view(b"k", NOW).unwrap();
        assert!(v.won && v.value_len == 0 && v.exp == NOW + 30);
        s.store(StoreMode::Set, b"k", 0, 0, b"new", 0, 0, NOW);
        assert!(!s.meta_view(b"k", NOW).unwrap().won, "a plain set clears the state");
        let cas = s.meta_view(b"k", NOW).unwrap().cas;
        assert!(s.meta_update(b"k", None, true, true, 0, NOW));
        let v = s.meta_view(b"k", NOW).unwrap();
        assert!(v.won && v.fetched);
        assert_eq!(v.cas, cas, "a win keeps the CAS");
        s.meta_delete(b"k", None, true, None, None, None, 0, NOW);
        assert!(!s.meta_view(b"k", NOW).unwrap().won, "invalidation opens a new win");
    }

    #[test]
    fn stale_cas_stores_stale_and_keeps_ttl_and_win() {
        let mut s = store();
        s.store(StoreMode::Set, b"k", 0, NOW + 100, b"old", 0, 0, NOW);
        s.meta_delete(b"k", None, true, Some(NOW + 30), None, None, 0, NOW);
        s.meta_update(b"k", None, true, true, 0, NOW);
        let cur = s.meta_view(b"k", NOW).unwrap().cas;
        let (o, _) = s.meta_store(StoreMode::Cas, b"k", 0, NOW + 90, b"f", cur - 1, false, false, 0, NOW);
        assert_eq!(o, StoreOutcome::Exists, "lower CAS without I");
        let (o, c) = s.meta_store(StoreMode::Cas, b"k", 0, NOW + 90, b"f", cur - 1, true, false, 0, NOW);
        assert_eq!(o, StoreOutcome::Stored);
        let v = s.meta_view(b"k", NOW).unwrap();
        assert!(v.stale && v.won);
        assert_eq!((v.exp, v.cas), (NOW + 30, c));
        let (o, _) = s.meta_store(StoreMode::Cas, b"k", 0, NOW + 90, b"g", c, true, false, 0, NOW);
        assert_eq!(o, StoreOutcome::Stored);
        let v = s.meta_view(b"k", NOW).unwrap();
        assert!(!v.stale && !v.won);
        assert_eq!(v.exp, NOW + 90);
    }

    #[test]
    fn cas_modes_follow_memcached() {
        let mut s = store();
        let (o, _) = s.meta_store(StoreMode::Cas, b"k", 0, 0, b"x", 5, false, false, 0, NOW);
        assert_eq!(o, StoreOutcome::NotFound);
        let (o, _) = s.meta_store(StoreMode::Add, b"k", 0, 0, b"x", 5, false, false, 0, NOW);
        assert_eq!(o, StoreOutcome::Stored, "add with a CAS and no item stores");
        let cas = s.meta_view(b"k", NOW).unwrap().cas;
        let (o, _) = s.meta_store(StoreMode::Append, b"k", 0, 0, b"y", cas + 1, false, false, 0, NOW);
        assert_eq!(o, StoreOutcome::Exists);
        let (o, _) = s.meta_store(StoreMode::Append, b"k", 0, 0, b"y", cas, false, true, 0, NOW);
        assert_eq!(o, StoreOutcome::Stored);
        let (o, c) = s.meta_store(StoreMode::Set, b"b", 0, 0, b"z", 0, false, true, 0, NOW);
        assert_eq!(o, StoreOutcome::Stored);
        assert!(c != 0 && s.meta_view(b"b", NOW).unwrap().binary_key);
    }

    #[test]
    fn a_client_chosen_cas_sticks_until_the_item_changes() {
        let mut s = store();
        s.store(StoreMode::Set, b"k", 0, 0, b"v", 0, 0, NOW);
        assert!(s.meta_set_cas(b"k", 12345, NOW));
        assert_eq!(s.meta_view(b"k", NOW).unwrap().cas, 12345);
        assert!(s.touch(b"k", NOW + 100, 0, NOW));
        assert_eq!(s.meta_view(b"k", NOW).unwrap().cas, 12345, "touch keeps it");
        let (o, _) = s.meta_store(StoreMode::Cas, b"k", 0, 0, b"w", 12345, false, false, 0, NOW);
        assert_eq!(o, StoreOutcome::Stored, "cas compares with it");
        assert_ne!(s.meta_view(b"k", NOW).unwrap().cas, 12345, "a new write gets a fresh one");
        // md x: emptied, flags and expiry given, CAS kept.
        let cas = s.meta_view(b"k", NOW).unwrap().cas;
        let o = s.meta_delete(b"k", None, false, None, Some((7, NOW + 50)), None, 0, NOW);
        assert_eq!(o, MetaDeleteOutcome::Deleted);
        let v = s.meta_view(b"k", NOW).unwrap();
        assert_eq!((v.value_len, v.flags, v.exp, v.cas), (0, 7, NOW + 50, cas));
        let o = s.meta_delete(b"k", None, true, None, Some((0, 0)), Some(99), 0, NOW);
        assert_eq!(o, MetaDeleteOutcome::Invalidated);
        let v = s.meta_view(b"k", NOW).unwrap();
        assert!(v.stale && v.cas == 99 && v.exp == 0);
    }

    #[test]
    fn last_access_moves_with_reads_once_the_item_has_state() {
        let mut s = store();
        assert!(s.meta_vivify(b"k", 0, 0, NOW));
        assert_eq!(s.meta_view(b"k", NOW + 5).unwrap().last_access, NOW);
        assert!(s.meta_update(b"k", None, false, false, 0, NOW + 5));
        assert_eq!(s.meta_view(b"k", NOW + 5).unwrap().last_access, NOW, "no_update leaves it");
        assert!(s.meta_update(b"k", None, false, true, 0, NOW + 5));
        assert_eq!(s.meta_view(b"k", NOW + 9).unwrap().last_access, NOW + 5);
        let _ = s.get(b"k", NOW + 7);
        assert_eq!(s.meta_view(b"k", NOW + 9).unwrap().last_access, NOW + 7);
    }
}
