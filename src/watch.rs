//! `watch`: memcached's log streams, for the two memcore can feed.
//! `fetchers` has one `item_get` line per key a get, gets, gat, gats,
//! touch, delete, incr or decr looked up; `mutations` one `item_store`
//! line per storage command, with its outcome. Lines are memcached's
//! (`ts=<secs>.<usecs> gid=<n> type=item_get key=<uri-encoded> status=found
//! clsid=1 cfd=0 size=<bytes>`); `cfd` is 0, as the core that owns a key
//! does not know which connection asked. memcached's other streams
//! (evictions, rawcmds, ...) are refused.
//!
//! Each watcher has a buffer of `BUFFER` bytes that the cores append to
//! and its connection drains every few milliseconds; a watcher that reads
//! too slowly loses lines, told by a `skipped=<n>` line, and never holds
//! more. With no watcher, the request path pays one relaxed load.
//!
//! A leaf: imports nothing of the crate.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const FETCHERS: u8 = 1;
pub const MUTATIONS: u8 = 2;
/// Bytes a watcher may have waiting (memcached's watcher_logbuf_size).
pub const BUFFER: usize = 256 * 1024;

#[derive(Default)]
pub struct Watcher {
    streams: u8,
    /// Lines waiting, and lines dropped since the last drain.
    buf: Mutex<(Vec<u8>, u64)>,
}

impl Watcher {
    /// What waits, with a `skipped=<n>` line first when lines were lost.
    pub fn take(&self) -> Vec<u8> {
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let (lines, skipped) = std::mem::take(&mut *b);
        if skipped == 0 {
            return lines;
        }
        let mut out = format!("skipped={skipped}\n").into_bytes();
        out.extend_from_slice(&lines);
        out
    }

    fn push(&self, line: &[u8]) {
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if b.0.len() + line.len() > BUFFER {
            b.1 += 1;
        } else {
            b.0.extend_from_slice(line);
        }
    }
}

/// The watchers of the process.
#[derive(Default)]
pub struct Hub {
    /// The streams some watcher wants.
    active: AtomicU8,
    gid: AtomicU64,
    watchers: Mutex<Vec<Arc<Watcher>>>,
}

impl Hub {
    pub fn wants(&self, stream: u8) -> bool {
        self.active.load(Ordering::Relaxed) & stream != 0
    }

    pub fn add(&self, streams: u8) -> Arc<Watcher> {
        let w = Arc::new(Watcher { streams, ..Default::default() });
        let mut all = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        all.push(w.clone());
        self.active.fetch_or(streams, Ordering::Relaxed);
        w
    }

    pub fn remove(&self, w: &Arc<Watcher>) {
        let mut all = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|x| !Arc::ptr_eq(x, w));
        self.active.store(all.iter().fold(0, |a, w| a | w.streams), Ordering::Relaxed);
    }

    /// Hand one line to every watcher of `stream`: `ts` and `gid` are
    /// written here, `rest` writes the line's fields after them (no newline).
    pub fn emit(&self, stream: u8, rest: impl FnOnce(&mut Vec<u8>)) {
        if !self.wants(stream) {
            return;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let gid = self.gid.fetch_add(1, Ordering::Relaxed) + 1;
        let mut line = format!("ts={}.{:06} gid={gid} ", now.as_secs(), now.subsec_micros()).into_bytes();
        rest(&mut line);
        line.push(b'\n');
        for w in self.watchers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if w.streams & stream != 0 {
                w.push(&line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_watchers_of_their_stream() {
        let hub = Hub::default();
        hub.emit(FETCHERS, |l| l.extend_from_slice(b"lost"));
        let f = hub.add(FETCHERS);
        let m = hub.add(MUTATIONS);
        hub.emit(FETCHERS, |l| l.extend_from_slice(b"type=item_get"));
        let got = String::from_utf8(f.take()).unwrap();
        assert!(got.starts_with("ts=") && got.ends_with(" gid=1 type=item_get\n"), "{got}");
        assert!(m.take().is_empty());
        hub.remove(&f);
        assert!(!hub.wants(FETCHERS) && hub.wants(MUTATIONS));
    }

    #[test]
    fn a_slow_watcher_loses_lines_not_memory() {
        let hub = Hub::default();
        let w = hub.add(MUTATIONS);
        for _ in 0..100_000 {
            hub.emit(MUTATIONS, |l| l.extend_from_slice(b"type=item_store key=k"));
        }
        let got = w.take();
        assert!(got.len() <= BUFFER + 32);
        assert!(got.starts_with(b"skipped="), "{:?}", &got[..20]);
        assert!(w.take().is_empty());
    }
}
