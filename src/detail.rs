//! `stats detail on|off|dump`: memcached's per-prefix counters. A key's
//! prefix is what comes before the first delimiter (`-D`, ':' by
//! default); keys without one are not counted, as in memcached. Counted on
//! the core that owns the key: gets (get, gets, gat, gats; per key, with
//! hits), storage commands (every outcome, as memcached records them before
//! trying) and deletes.
//!
//! memcached keeps every prefix it meets; memcore keeps at most
//! `MAX_PREFIXES` per core, so a client inventing prefixes cannot grow it
//! without bound: past that, new prefixes go uncounted (`dump` says how
//! many were turned away).
//!
//! A leaf: imports nothing of the crate.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Prefixes kept per core.
pub const MAX_PREFIXES: usize = 4096;

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Get { hit: bool },
    Set,
    Delete,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub get: u64,
    pub hit: u64,
    pub set: u64,
    pub del: u64,
}

pub struct PerCore {
    on: AtomicBool,
    delimiter: u8,
    cores: Vec<Mutex<HashMap<Vec<u8>, Counts>>>,
    /// Events of prefixes not kept for want of room.
    dropped: AtomicU64,
}

impl PerCore {
    pub fn new(cores: usize, delimiter: u8) -> PerCore {
        PerCore {
            on: AtomicBool::new(false),
            delimiter,
            cores: (0..cores).map(|_| Mutex::new(HashMap::new())).collect(),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// `stats detail on|off`: off stops counting and keeps the counts.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// Count `event` for `key` on `core`, when counting is on.
    pub fn record(&self, core: usize, key: &[u8], event: Event) {
        if !self.on() {
            return;
        }
        let Some(end) = key.iter().position(|&b| b == self.delimiter) else { return };
        let Some(map) = self.cores.get(core) else { return };
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = &key[..end];
        if !map.contains_key(prefix) {
            if map.len() >= MAX_PREFIXES {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            map.insert(prefix.to_vec(), Counts::default());
        }
        let Some(counts) = map.get_mut(prefix) else { return };
        match event {
            Event::Get { hit } => {
                counts.get += 1;
                counts.hit += u64::from(hit);
            }
            Event::Set => counts.set += 1,
            Event::Delete => counts.del += 1,
        }
    }

    /// `stats reset` clears the prefixes, as memcached's does.
    pub fn reset(&self) {
        for m in &self.cores {
            m.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.dropped.store(0, Ordering::Relaxed);
    }

    /// Every core's counts added up, by prefix.
    pub fn merged(&self) -> Vec<(Vec<u8>, Counts)> {
        let mut all: HashMap<Vec<u8>, Counts> = HashMap::new();
        for m in &self.cores {
            for (p, c) in m.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let t = all.entry(p.clone()).or_default();
                t.get += c.get;
                t.hit += c.hit;
                t.set += c.set;
                t.del += c.del;
            }
        }
        let mut v: Vec<_> = all.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// `stats detail dump`: memcached's `PREFIX <p> get <n> hit <n> set <n>
/// del <n>` lines, by prefix, then END (with a line for prefixes turned
/// away, if any).
pub fn render(out: &mut Vec<u8>, all: &PerCore) {
    for (prefix, c) in all.merged() {
        out.extend_from_slice(b"PREFIX ");
        out.extend_from_slice(&prefix);
        let _ = write!(out, " get {} hit {} set {} del {}\r\n", c.get, c.hit, c.set, c.del);
    }
    let dropped = all.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        let _ = write!(out, "PREFIX_OVERFLOW events {dropped} (over {MAX_PREFIXES} prefixes per core)\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_count_as_memcached_counts_them() {
        let d = PerCore::new(2, b':');
        d.record(0, b"a:1", Event::Set);
        assert!(d.merged().is_empty(), "off by default");
        d.set(true);
        d.record(0, b"a:1", Event::Get { hit: true });
        d.record(1, b"a:2:x", Event::Get { hit: false });
        d.record(1, b"a:2", Event::Delete);
        d.record(0, b":x", Event::Set);
        d.record(0, b"nodelimiter", Event::Set);
        let mut out = Vec::new();
        render(&mut out, &d);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PREFIX  get 0 hit 0 set 1 del 0\r\nPREFIX a get 2 hit 1 set 0 del 1\r\nEND\r\n"
        );
        d.set(false);
        d.record(0, b"a:1", Event::Set);
        assert_eq!(d.merged()[1].1.set, 0, "off stops counting and keeps the counts");
        d.reset();
        assert!(d.merged().is_empty());
    }

    #[test]
    fn prefixes_are_bounded() {
        let d = PerCore::new(1, b'/');
        d.set(true);
        for i in 0..MAX_PREFIXES + 10 {
            d.record(0, format!("p{i}/k").as_bytes(), Event::Set);
        }
        assert_eq!(d.merged().len(), MAX_PREFIXES);
        let mut out = Vec::new();
        render(&mut out, &d);
        assert!(String::from_utf8(out).unwrap().contains("PREFIX_OVERFLOW events 10 "));
    }
}
