//! Hot keys: per core, the most read and the most written keys, counted by
//! a Space-Saving sketch of `CAPACITY` entries each (Metwally et al.,
//! 2005): a key already tracked counts up; a new key takes the place of
//! the least counted one and inherits its count as its possible error. Any
//! key requested more than 1/`CAPACITY` of the time is sure to be tracked,
//! and a count overstates the truth by at most its `error`. Memory is
//! bounded: `CAPACITY` keys of at most `MAX_KEY` bytes per direction.
//!
//! Off by default; `stats hotkeys on` starts counting afresh, `off` stops.
//! A core counts the keys its own connections ask for (under one
//! uncontended lock per batch); `stats hotkeys` merges the cores' sketches.
//!
//! Imports protocol (the keys of a request); must not import `server`,
//! `route`, `repl` or `storage`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::protocol::Request;

/// Entries per sketch (per direction, per core).
pub const CAPACITY: usize = 64;
/// Keys shown per direction by `stats hotkeys`.
pub const SHOWN: usize = 10;
/// memcached's longest key; a longer one (the protocol refuses it) is cut.
const MAX_KEY: usize = 250;

#[derive(Clone, Debug, Default)]
struct Entry {
    key: Vec<u8>,
    count: u64,
    error: u64,
}

/// A counted key: (key, count, error).
pub type Counted = (Vec<u8>, u64, u64);

/// One Space-Saving sketch.
#[derive(Clone, Debug, Default)]
pub struct Sketch {
    entries: Vec<Entry>,
    /// Key to its place in `entries`.
    at: HashMap<Vec<u8>, usize>,
}

impl Sketch {
    pub fn count(&mut self, key: &[u8]) {
        let key = &key[..key.len().min(MAX_KEY)];
        if let Some(&i) = self.at.get(key) {
            self.entries[i].count += 1;
            return;
        }
        if self.entries.len() < CAPACITY {
            self.at.insert(key.to_vec(), self.entries.len());
            self.entries.push(Entry { key: key.to_vec(), count: 1, error: 0 });
            return;
        }
        // The least counted entry gives its place to the new key.
        let Some((i, _)) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.count) else { return };
        let e = &mut self.entries[i];
        // The map's old key buffer is reused: no allocation per new key.
        let (mut k, _) = self.at.remove_entry(e.key.as_slice()).unwrap_or_default();
        k.clear();
        k.extend_from_slice(key);
        self.at.insert(k, i);
        e.error = e.count;
        e.count += 1;
        e.key.clear();
        e.key.extend_from_slice(key);
    }

    /// (key, count, error), most counted first, at most `n`.
    pub fn top(&self, n: usize) -> Vec<Counted> {
        let mut v: Vec<_> = self.entries.iter().map(|e| (e.key.clone(), e.count, e.error)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.at.clear();
    }
}

/// One core's reads and writes.
#[derive(Clone, Debug, Default)]
pub struct Sketches {
    pub reads: Sketch,
    pub writes: Sketch,
}

impl Sketches {
    /// Count a request's keys: a retrieval's as reads, a write's as a write.
    pub fn count(&mut self, req: &Request<'_>) {
        match *req {
            Request::Get { keys, .. } => keys.iter().for_each(|k| self.reads.count(k)),
            _ => {
                if let Some(k) = req.key() {
                    self.writes.count(k);
                }
            }
        }
    }
}

/// Every core's sketches and the switch.
pub struct PerCore {
    on: AtomicBool,
    cores: Vec<Mutex<Sketches>>,
}

impl PerCore {
    pub fn new(cores: usize) -> PerCore {
        PerCore { on: AtomicBool::new(false), cores: (0..cores).map(|_| Mutex::new(Sketches::default())).collect() }
    }

    pub fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Turn counting on (afresh: the old counts go) or off (they stay).
    pub fn set(&self, on: bool) {
        if on && !self.on() {
            for c in &self.cores {
                let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                c.reads.clear();
                c.writes.clear();
            }
        }
        self.on.store(on, Ordering::Relaxed);
    }

    pub fn with<R>(&self, core: usize, f: impl FnOnce(&mut Sketches) -> R) -> Option<R> {
        let mut s = self.cores.get(core)?.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut s))
    }

    /// Reads and writes over all cores: counts and errors of a key summed.
    pub fn merged(&self) -> (Vec<Counted>, Vec<Counted>) {
        let mut reads: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
        let mut writes: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
        for c in &self.cores {
            let c = c.lock().unwrap_or_else(|e| e.into_inner());
            for (into, from) in [(&mut reads, &c.reads), (&mut writes, &c.writes)] {
                for (k, n, err) in from.top(CAPACITY) {
                    let e = into.entry(k).or_default();
                    e.0 += n;
                    e.1 += err;
                }
            }
        }
        let top = |m: HashMap<Vec<u8>, (u64, u64)>| {
            let mut v: Vec<_> = m.into_iter().map(|(k, (n, e))| (k, n, e)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(SHOWN);
            v
        };
        (top(reads), top(writes))
    }
}

/// `stats hotkeys`: whether counting is on, then per direction the
/// `SHOWN` most counted keys, `read:N:key`, `read:N:count`, `read:N:error`
/// (how much the count may overstate).
pub fn render(out: &mut Vec<u8>, all: &PerCore) {
    use std::io::Write;
    let _ = write!(out, "STAT hotkeys {}\r\n", if all.on() { "on" } else { "off" });
    let (reads, writes) = all.merged();
    for (dir, list) in [("read", reads), ("write", writes)] {
        for (i, (key, n, err)) in list.iter().enumerate() {
            out.extend_from_slice(format!("STAT {dir}:{i}:key ").as_bytes());
            out.extend_from_slice(key);
            let _ = write!(out, "\r\nSTAT {dir}:{i}:count {n}\r\nSTAT {dir}:{i}:error {err}\r\n");
        }
    }
    out.extend_from_slice(b"END\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frequent_key_is_found_among_many_rare_ones() {
        let mut s = Sketch::default();
        for i in 0..100_000u32 {
            if i % 10 == 0 {
                s.count(b"hot");
            } else {
                s.count(format!("cold:{i}").as_bytes());
            }
        }
        let top = s.top(1);
        assert_eq!(top[0].0, b"hot");
        // Its count is at least the truth and overstates it by at most error.
        assert!(top[0].1 >= 10_000 && top[0].1 - top[0].2 <= 10_000, "{:?}", top[0]);
        assert_eq!(s.entries.len(), CAPACITY, "bounded");
        assert_eq!(s.at.len(), CAPACITY);
    }

    #[test]
    fn cores_merge_and_on_starts_afresh() {
        let all = PerCore::new(2);
        all.set(true);
        all.with(0, |s| (0..5).for_each(|_| s.reads.count(b"a")));
        all.with(1, |s| (0..3).for_each(|_| s.reads.count(b"a")));
        all.with(1, |s| s.writes.count(b"w"));
        let (r, w) = all.merged();
        assert_eq!(r[0], (b"a".to_vec(), 8, 0));
        assert_eq!(w[0], (b"w".to_vec(), 1, 0));
        let mut out = Vec::new();
        render(&mut out, &all);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "STAT hotkeys on\r\nSTAT read:0:key a\r\nSTAT read:0:count 8\r\nSTAT read:0:error 0\r\n\
             STAT write:0:key w\r\nSTAT write:0:count 1\r\nSTAT write:0:error 0\r\nEND\r\n"
        );
        all.set(false);
        assert_eq!(all.merged().0.len(), 1, "off keeps the counts");
        all.set(true);
        assert!(all.merged().0.is_empty(), "on starts afresh");
    }

    #[test]
    fn long_keys_are_cut() {
        let mut s = Sketch::default();
        s.count(&[b'k'; 10_000]);
        assert_eq!(s.top(1)[0].0.len(), MAX_KEY);
    }
}
