//! Invariant checkers shared by the cargo-fuzz targets (`fuzz_targets/*.rs`)
//! and the stable-Rust property test `tests/fuzz_short.rs`, which includes
//! this file with `#[path]`. Only `memcore` and `std` are used here, and no
//! `crate::` paths, so the file compiles in both places.
//!
//! * [`check_parse`]: drive `memcore::protocol::parse` over a byte stream the
//!   way a connection does (consume, then swallow; stop on Incomplete or
//!   Close), check every result, and check that feeding the same stream in
//!   pieces gives the same results as feeding it whole.
//! * [`check_store`]: run a byte-coded sequence of operations on a small
//!   `memcore::storage::Store` next to a model of the last value written per
//!   key, and check memory accounting, LRU and replies against the model.
//! * [`check_repl`]: a peer's byte stream (replication frames) cut into
//!   frames whole and a byte at a time, each frame's ops decoded,
//!   re-encoded and applied to a small store: no panic, the same frames
//!   either way, nothing from further ahead than the allowed drift or over
//!   the size limit applied, memory (tombstones included) within the
//!   limit, the local clock never dragged past the drift, and a session
//!   tag that fails on any changed byte.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

use memcore::protocol::{
    KEY_MAX_LENGTH, Limits, MAX_LINE_WITHOUT_NEWLINE, MetaCmd, Parsed, Request, absolute_expiry, parse, parse_get_rest,
};
use memcore::storage::{
    ArithOutcome, CompressConfig, MIN_LIMIT, Store, StoreConfig, StoreMode, StoreOutcome, parse_stored_number,
};

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// One result of the parser, owned, for comparing runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Request { req: String, consumed: usize, swallow: usize },
    Error { msg: &'static str, consumed: usize, noreply: bool },
    Close { msg: Option<&'static str> },
}

/// How a stream run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub events: Vec<Event>,
    /// Closed by a line that had no newline yet and was already too long;
    /// that depends on how the input was cut, so runs may differ there.
    pub closed_on_long_partial_line: bool,
    /// Bytes left unparsed (an incomplete request) when input ran out.
    pub pending: usize,
    /// Bytes of a refused data block still to be swallowed.
    pub skip: usize,
}

/// Check one parser result against `avail` (the unconsumed input it saw).
pub fn check_result(avail: &[u8], r: &Parsed<'_>) {
    let len = avail.len();
    match *r {
        Parsed::Incomplete { need } => {
            assert!(need == 0 || need > len, "Incomplete need {need} with {len} bytes buffered");
        }
        Parsed::Error { consumed, .. } => {
            assert!(consumed > 0 && consumed <= len, "Error consumed {consumed} of {len}");
        }
        Parsed::Close { .. } => {}
        Parsed::Request { req, consumed, swallow } => {
            assert!(consumed > 0 && consumed <= len, "Request consumed {consumed} of {len}");
            let check_key = |k: &[u8]| {
                assert!(!k.is_empty(), "empty key in {req:?}");
                assert!(k.len() <= KEY_MAX_LENGTH, "key of {} bytes in {req:?}", k.len());
                assert!(!k.contains(&b' ') && !k.contains(&b'\n'), "key with space/LF in {req:?}");
            };
            if let Some(k) = req.key() {
                check_key(k);
            }
            match req {
                Request::Get { keys, .. } => keys.iter().for_each(check_key),
                Request::GetPart { keys, .. } => {
                    keys.iter().for_each(check_key);
                    assert_eq!(swallow, 0);
                    assert_eq!(avail[consumed - 1], b' ', "a get part ends after a key's space");
                }
                Request::Store { data, .. } => {
                    assert_eq!(swallow, 0);
                    // The data block sits right before the closing CRLF.
                    assert!(consumed >= data.len() + 2);
                    assert_eq!(&avail[consumed - 2..consumed], b"\r\n", "store not ended by CRLF");
                    let start = consumed - 2 - data.len();
                    assert_eq!(data.as_ptr(), avail[start..].as_ptr(), "data not where the block is");
                }
                Request::Meta(m) if m.cmd == MetaCmd::Set && !m.too_large => {
                    assert_eq!(swallow, 0);
                    assert!(consumed >= m.data.len() + 2);
                    assert_eq!(&avail[consumed - 2..consumed], b"\r\n", "ms not ended by CRLF");
                    let start = consumed - 2 - m.data.len();
                    assert_eq!(m.data.as_ptr(), avail[start..].as_ptr(), "ms data not where the block is");
                }
                Request::TooLarge { .. } | Request::Refused { .. } | Request::Meta(_) if swallow > 0 => {
                    assert!(swallow >= 2, "a refused data block swallows data + CRLF, got {swallow}");
                    assert_eq!(avail[consumed - 1], b'\n');
                }
                Request::TooLarge { .. } => {
                    assert!(swallow >= 2, "TooLarge swallows data + CRLF, got {swallow}");
                    assert_eq!(avail[consumed - 1], b'\n');
                }
                _ => {
                    assert_eq!(swallow, 0, "{req:?} swallows");
                    assert_eq!(avail[consumed - 1], b'\n', "{req:?} does not end at a newline");
                }
            }
        }
    }
}

/// A retrieval as events: one per key, then its END; so a long get line
/// answered in parts (`GetPart`) reads the same as the whole line.
fn get_events(r: &Parsed<'_>, events: &mut Vec<Event>) -> bool {
    let (keys, end) = match *r {
        Parsed::Request { req: Request::Get { keys, kind, exptime }, .. } => (keys, Some((kind, exptime))),
        Parsed::Request { req: Request::GetPart { keys, .. }, .. } => (keys, None),
        _ => return false,
    };
    for k in keys.iter() {
        events.push(Event::Request { req: format!("key {k:?}"), consumed: 0, swallow: 0 });
    }
    if let Some((kind, exptime)) = end {
        events.push(Event::Request { req: format!("end {kind:?} {exptime}"), consumed: 0, swallow: 0 });
    }
    true
}

fn is_key_event(e: &Event) -> bool {
    matches!(e, Event::Request { req, .. } if req.starts_with("key ") || req.starts_with("end "))
}

fn event_of(r: &Parsed<'_>) -> Event {
    match *r {
        Parsed::Request { req, consumed, swallow } => Event::Request { req: format!("{req:?}"), consumed, swallow },
        Parsed::Error { msg, consumed, noreply } => Event::Error { msg, consumed, noreply },
        Parsed::Close { msg } => Event::Close { msg },
        Parsed::Incomplete { .. } => unreachable!(),
    }
}

/// Feed `chunks` one after the other to a connection-like loop.
pub fn run_stream(chunks: &[&[u8]], limits: &Limits) -> Run {
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut skip = 0usize;
    let mut events = Vec::new();
    // The `need` of the last Incomplete: once that many bytes are buffered
    // the request must not be incomplete any more.
    let mut need = 0usize;
    // Inside a long get line answered in parts (see `parse_get_rest`).
    let mut rest = None;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let n = skip.min(buf.len() - pos);
            pos += n;
            skip -= n;
            if skip > 0 || pos == buf.len() {
                break;
            }
            let avail = &buf[pos..];
            let parse_here = |avail| match rest {
                Some((kind, exptime)) => parse_get_rest(avail, kind, exptime),
                None => parse(avail, limits),
            };
            let r = parse_here(avail);
            check_result(avail, &r);
            // Pure: the same input gives the same answer.
            assert_eq!(r, parse_here(avail), "parse is not deterministic");
            match r {
                Parsed::Incomplete { need: n } => {
                    assert!(need == 0 || avail.len() < need, "still Incomplete with the {need} bytes it asked for");
                    need = n;
                    break;
                }
                Parsed::Close { .. } => {
                    let long_partial =
                        rest.is_some() || (!avail.contains(&b'\n') && avail.len() > MAX_LINE_WITHOUT_NEWLINE);
                    events.push(event_of(&r));
                    // What else had arrived by then depends on the cuts.
                    return Run { events, closed_on_long_partial_line: long_partial, pending: 0, skip: 0 };
                }
                Parsed::Error { consumed, .. } => {
                    events.push(event_of(&r));
                    pos += consumed;
                    need = 0;
                }
                Parsed::Request { consumed, swallow, req } => {
                    if !get_events(&r, &mut events) {
                        events.push(event_of(&r));
                    }
                    rest = match req {
                        Request::GetPart { kind, exptime, .. } => Some((kind, exptime)),
                        _ => None,
                    };
                    pos += consumed;
                    skip = swallow;
                    need = 0;
                }
            }
        }
        // Keep the buffer small, as a connection does.
        if pos > 0 {
            buf.drain(..pos);
            pos = 0;
        }
    }
    Run { events, closed_on_long_partial_line: false, pending: buf.len() - pos, skip }
}

/// `whole` and a run of the same bytes cut into pieces must agree, except
/// that a cut may close the connection early on a long line without newline.
pub fn assert_same_run(whole: &Run, split: &Run, what: &str) {
    if whole == split {
        return;
    }
    if split.closed_on_long_partial_line {
        // A long get line may have been answered in part before the close:
        // the other events must agree up to there.
        let others = |ev: &[Event]| ev.iter().filter(|e| !is_key_event(e)).cloned().collect::<Vec<_>>();
        let before = others(&split.events[..split.events.len() - 1]);
        assert!(
            others(&whole.events).starts_with(&before),
            "{what}: events before the early close differ\nwhole: {:?}\nsplit: {:?}",
            whole.events,
            split.events
        );
        return;
    }
    assert_eq!(whole.events, split.events, "{what}: event sequences differ");
    panic!("{what}: runs differ in what is left over\nwhole: {whole:?}\nsplit: {split:?}");
}

/// All parser invariants on `input`, with cut points taken from `cuts`
/// (positions, reduced modulo the input length).
pub fn check_parse(input: &[u8], limits: &Limits, cuts: &[usize]) -> Run {
    let whole = run_stream(&[input], limits);
    if input.is_empty() {
        return whole;
    }
    // One cut, as the fuzz target describes.
    for &c in cuts {
        let at = c % (input.len() + 1);
        let split = run_stream(&[&input[..at], &input[at..]], limits);
        assert_same_run(&whole, &split, &format!("cut at {at}"));
    }
    // Several cuts at once.
    if cuts.len() > 1 {
        let mut pts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        pts.sort_unstable();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for p in pts {
            pieces.push(&input[prev..p]);
            prev = p;
        }
        pieces.push(&input[prev..]);
        let split = run_stream(&pieces, limits);
        assert_same_run(&whole, &split, "several cuts");
    }
    whole
}

/// Byte at a time: the most demanding split (quadratic, small inputs only).
pub fn check_parse_bytewise(input: &[u8], limits: &Limits) {
    let whole = run_stream(&[input], limits);
    let pieces: Vec<&[u8]> = input.chunks(1).collect();
    let split = run_stream(&pieces, limits);
    assert_same_run(&whole, &split, "byte at a time");
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

/// Reads operation parameters from fuzz bytes; zeros once exhausted.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = v << 8 | self.u8() as u64;
        }
        v
    }
}

#[derive(Clone, Debug)]
struct Entry {
    value: Vec<u8>,
    flags: u32,
    /// Absolute expiry as the store keeps it (0 = never).
    exp: u64,
    /// Last write (the store's `time`).
    written: u64,
    /// CAS seen by the last get since the last write, if any.
    cas: Option<u64>,
}

const START: u64 = 1_700_000_000;

fn key_for(id: u8) -> Vec<u8> {
    // Short and long keys, including the longest allowed.
    const LENS: [usize; 8] = [1, 2, 5, 16, 40, 100, 249, 250];
    let len = LENS[id as usize % LENS.len()];
    let mut k = vec![b'x'; len];
    k[0] = b'a' + id; // distinct per id
    k
}

struct Model {
    map: HashMap<Vec<u8>, Entry>,
    /// Target times of every flush issued (immediate: the time it was issued).
    flushes: Vec<u64>,
}

impl Model {
    /// May the store consider this entry expired or flushed by now? A
    /// superset of the store's rule (memcached's, with its off-by-ones).
    fn maybe_dead(&self, e: &Entry, now: u64) -> bool {
        (e.exp != 0 && e.exp <= now) || self.flushes.iter().any(|&t| e.written <= t + 1)
    }
    fn surely_expired(e: &Entry, now: u64) -> bool {
        e.exp != 0 && e.exp <= now
    }
}

/// A value; `long` makes the short ones up to 16 KiB, so that overwrites
/// fill segments with dead records quickly.
fn value_for(r: &mut Reader<'_>, limit: usize, long: bool) -> Vec<u8> {
    let kind = r.u8();
    let mut v = value_of_kind(r, limit, kind);
    if long && kind % 8 != 5 {
        // Padded with spaces, a number stays a number for incr and decr.
        v.resize(v.len().max(r.u8() as usize * 64), b' ');
    }
    v
}

fn value_of_kind(r: &mut Reader<'_>, limit: usize, kind: u8) -> Vec<u8> {
    match kind % 8 {
        0 => Vec::new(),
        1 | 2 => r.u64().to_string().into_bytes(),
        3 => format!("{}{}", r.u8(), " ".repeat(r.u8() as usize % 4)).into_bytes(),
        4 => format!("{}", u64::MAX - r.u8() as u64).into_bytes(),
        5 => {
            // Big: up to the whole limit and a bit beyond, to force eviction
            // and refusals (and values kept outside segments).
            let n = (r.u16() as usize * 64) % (limit + limit / 4 + 1);
            vec![b'v'.wrapping_add(kind); n]
        }
        _ => {
            let n = r.u8() as usize;
            (0..n).map(|i| (i as u8).wrapping_add(kind)).collect()
        }
    }
}

fn exptime_for(r: &mut Reader<'_>, now: u64) -> i64 {
    match r.u8() % 10 {
        0..=4 => 0,
        5 => -1 - (r.u8() as i64),
        6 | 7 => 1 + (r.u8() % 8) as i64,
        8 => (now + (r.u8() % 8) as u64) as i64,  // absolute, maybe past
        _ => 60 * 60 * 24 * 30 + (r.u8() as i64), // absolute, long ago
    }
}

/// What a store run exercised (to show the fuzz reaches the interesting cases).
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreRun {
    pub ops: u64,
    pub stored: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub no_memory: u64,
    pub compacted: u64,
}

impl std::ops::AddAssign for StoreRun {
    fn add_assign(&mut self, o: StoreRun) {
        self.ops += o.ops;
        self.stored += o.stored;
        self.hits += o.hits;
        self.misses += o.misses;
        self.evictions += o.evictions;
        self.no_memory += o.no_memory;
        self.compacted += o.compacted;
    }
}

/// Run a byte-coded sequence of store operations and check invariants.
pub fn check_store(data: &[u8]) -> StoreRun {
    let mut run = StoreRun::default();
    let mut r = Reader::new(data);
    let sized = r.u16();
    let limit = MIN_LIMIT + (sized as usize % 2048) * 1024;
    // Half the runs are overwrite-heavy: three ops in four are sets of the
    // same 16 keys, so dead records pile up and compaction runs.
    let overwrites = sized & 0x8000 != 0;
    let mode = r.u8();
    let cfg = StoreConfig {
        limit,
        evict: mode & 1 == 0,
        use_cas: mode & 2 == 0,
        cas_stride: 1 + (mode as u64 >> 4) % 4,
        cas_offset: (mode as u64 >> 2) % 4,
        started: START - 100,
        // Half the runs compress every value of 16 bytes or more.
        compress: CompressConfig { enabled: mode & 0x40 != 0, min_size: 16, ..Default::default() },
        digest: mode & 0x80 != 0,
        index_key: Default::default(),
        // -I at half the memory: big values and append chains cross it.
        item_size_max: limit / 2,
    };
    let mut s = Store::new(cfg.clone());
    let mut m = Model { map: HashMap::new(), flushes: Vec::new() };
    let mut now = START;
    let mut ops = 0;
    while !r.done() && ops < 10_000 {
        ops += 1;
        let op = r.u8();
        let op = if overwrites && !op.is_multiple_of(4) { op & 0xf0 } else { op };
        let key = key_for(r.u8() % 16);
        now += (op >> 5) as u64 % 3; // the clock advances now and then
        let before: HashSet<Vec<u8>> = s.live_keys().into_iter().collect();
        let live_before =
            |m: &Model, k: &[u8]| before.contains(k) && m.map.get(k).is_some_and(|e| !m.maybe_dead(e, now));
        let evictions_before = s.stats.evictions;
        let mut limit_changed = false;
        // Keys this operation may remove besides evictions and dead items.
        let mut may_vanish: Option<Vec<u8>> = None;
        let what;
        match op % 16 {
            0..=5 => {
                let mode = [
                    StoreMode::Set,
                    StoreMode::Add,
                    StoreMode::Replace,
                    StoreMode::Append,
                    StoreMode::Prepend,
                    StoreMode::Cas,
                ][op as usize % 16];
                let value = value_for(&mut r, limit, overwrites);
                let flags = if r.u8() & 1 == 0 { 0 } else { r.u64() as u32 };
                let exptime = exptime_for(&mut r, now);
                let exp = absolute_expiry(exptime, now, START - 100);
                let known = m.map.get(&key).and_then(|e| e.cas);
                let cas = match (r.u8() % 4, known) {
                    (0 | 1, Some(c)) => c,
                    (2, Some(c)) => c.wrapping_add(1),
                    _ => r.u64() % 64,
                };
                let live = live_before(&m, &key);
                let out = s.store(mode, &key, flags, exp, &value, cas, 0, now);
                what = format!(
                    "{mode:?} {:?} len {} -> {out:?}",
                    String::from_utf8_lossy(&key[..key.len().min(8)]),
                    value.len()
                );
                match out {
                    StoreOutcome::Stored => {
                        run.stored += 1;
                        let old = m.map.get(&key);
                        match mode {
                            StoreMode::Set => {}
                            StoreMode::Add => assert!(!live, "{what}: add stored over a live item"),
                            _ => assert!(before.contains(&key) && old.is_some(), "{what}: stored over nothing"),
                        }
                        if mode == StoreMode::Cas
                            && cfg.use_cas
                            && live
                            && let Some(c) = known
                        {
                            assert_eq!(cas, c, "{what}: cas {cas} matched, last seen {c}");
                        }
                        assert!(mode != StoreMode::Cas || cfg.use_cas, "{what}: cas stored with -C");
                        let e = match (mode, old) {
                            (StoreMode::Append, Some(o)) => Entry {
                                value: [&o.value[..], &value].concat(),
                                flags: o.flags,
                                exp: o.exp,
                                written: now,
                                cas: None,
                            },
                            (StoreMode::Prepend, Some(o)) => Entry {
                                value: [&value[..], &o.value].concat(),
                                flags: o.flags,
                                exp: o.exp,
                                written: now,
                                cas: None,
                            },
                            _ => Entry { value, flags, exp, written: now, cas: None },
                        };
                        if matches!(mode, StoreMode::Append | StoreMode::Prepend) {
                            let size = memcore::item::item_total_size(key.len(), e.flags, e.value.len());
                            assert!(size <= cfg.item_size_max, "{what}: built an item of {size} bytes, past -I");
                        }
                        m.map.insert(key.clone(), e);
                        assert!(s.live_keys().contains(&key), "{what}: new item is not there");
                    }
                    StoreOutcome::NotStored => match mode {
                        StoreMode::Add => assert!(before.contains(&key), "{what}: add refused with no item"),
                        StoreMode::Replace => assert!(!live, "{what}: refused over a live item"),
                        StoreMode::Append | StoreMode::Prepend => {
                            let (old_len, old_flags) = m.map.get(&key).map_or((0, 0), |e| (e.value.len(), e.flags));
                            let too_big = memcore::item::item_total_size(key.len(), old_flags, old_len + value.len())
                                > cfg.item_size_max;
                            assert!(!live || too_big, "{what}: refused over a live item")
                        }
                        _ => panic!("{what}"),
                    },
                    StoreOutcome::Exists => {
                        assert_eq!(mode, StoreMode::Cas, "{what}");
                        assert!(before.contains(&key), "{what}: exists with no item");
                        if cfg.use_cas && live && known == Some(cas) {
                            panic!("{what}: right cas {cas} refused");
                        }
                    }
                    StoreOutcome::NotFound => {
                        assert_eq!(mode, StoreMode::Cas, "{what}");
                        assert!(!live, "{what}: cas found no live item");
                    }
                    StoreOutcome::NoMemory => {
                        run.no_memory += 1;
                        if mode == StoreMode::Set {
                            may_vanish = Some(key.clone());
                        }
                    }
                }
            }
            6 => {
                let live = live_before(&m, &key);
                let hit = s.delete(&key, now);
                what = format!("delete -> {hit}");
                if hit {
                    assert!(before.contains(&key), "{what}: deleted a missing key");
                    may_vanish = Some(key.clone());
                } else {
                    assert!(!live, "{what}: live item not deleted");
                }
            }
            7 | 8 => {
                let incr = op % 16 == 7;
                let delta = match r.u8() % 3 {
                    0 => r.u8() as u64,
                    1 => u64::MAX - r.u8() as u64,
                    _ => r.u64(),
                };
                let live = live_before(&m, &key);
                let out = s.arith(&key, incr, delta, 0, now);
                what = format!("{} {delta} -> {out:?}", if incr { "incr" } else { "decr" });
                match out {
                    ArithOutcome::Value(v) => {
                        let e = m.map.get_mut(&key).unwrap_or_else(|| panic!("{what}: no model entry"));
                        assert!(!e.value.is_empty(), "{what}: empty value counted as number");
                        let cur = parse_stored_number(&e.value)
                            .unwrap_or_else(|| panic!("{what}: {:?} is no number", e.value));
                        let want = if incr { cur.wrapping_add(delta) } else { cur.saturating_sub(delta) };
                        assert_eq!(v, want, "{what}: from {cur}");
                        let mut digits = v.to_string().into_bytes();
                        if digits.len() <= e.value.len() {
                            digits.resize(e.value.len(), b' ');
                        }
                        e.value = digits;
                        e.written = now;
                        e.cas = None;
                    }
                    ArithOutcome::NonNumeric => {
                        let e = m.map.get(&key).unwrap_or_else(|| panic!("{what}: no model entry"));
                        assert!(
                            e.value.is_empty() || parse_stored_number(&e.value).is_none(),
                            "{what}: {:?} is a number",
                            e.value
                        );
                    }
                    ArithOutcome::NotFound => assert!(!live, "{what}: live item not found"),
                    ArithOutcome::NoMemory => {
                        assert!(before.contains(&key));
                    }
                }
            }
            9 => {
                let exptime = exptime_for(&mut r, now);
                let exp = absolute_expiry(exptime, now, START - 100);
                let live = live_before(&m, &key);
                let hit = s.touch(&key, exp, 0, now);
                what = format!("touch {exptime} -> {hit}");
                if hit {
                    let e = m.map.get_mut(&key).unwrap_or_else(|| panic!("{what}: no model entry"));
                    assert!(!Model::surely_expired(e, now), "{what}: touched an expired item");
                    e.exp = exp;
                } else {
                    // Giving an item an expiry may mean writing it again,
                    // which a full store without eviction (-M) can refuse.
                    let full = !cfg.evict && s.memory_used() + memcore::storage::SEG_SIZE > s.limit();
                    assert!(!live || full, "{what}: live item not touched");
                }
            }
            10..=13 if op % 16 != 13 || !r.u8().is_multiple_of(4) => {
                let touch = if op % 16 == 12 {
                    Some(absolute_expiry(exptime_for(&mut r, now), now, START - 100))
                } else {
                    None
                };
                let live = live_before(&m, &key);
                let read = |i: &memcore::storage::ItemRef<'_>| (i.value_vec(), i.flags, i.cas);
                let got = match touch {
                    Some(t) => s.get_and_touch(&key, now, t, 0, read),
                    None => s.get(&key, now).map(|i| read(&i)),
                };
                what = format!("get touch {touch:?} -> {}", if got.is_ok() { "hit" } else { "miss" });
                match got {
                    Ok((value, flags, cas)) => {
                        run.hits += 1;
                        let e = m.map.get_mut(&key).unwrap_or_else(|| panic!("{what}: hit on a key never stored"));
                        assert!(
                            !Model::surely_expired(e, now),
                            "{what}: expired item returned (exp {} now {now})",
                            e.exp
                        );
                        assert_eq!(value, e.value, "{what}: value is not the last one written");
                        assert_eq!(flags, e.flags, "{what}: flags");
                        if let Some(c) = e.cas {
                            assert_eq!(cas, c, "{what}: cas changed without a write");
                        }
                        e.cas = Some(cas);
                        if let Some(t) = touch {
                            e.exp = t;
                        }
                    }
                    Err(_) => {
                        run.misses += 1;
                        // gat may write the item again, as touch does (above).
                        let full =
                            touch.is_some() && !cfg.evict && s.memory_used() + memcore::storage::SEG_SIZE > s.limit();
                        assert!(!live || full, "{what}: live item missed")
                    }
                }
            }
            13 => {
                let delay = match r.u8() % 4 {
                    0 | 1 => 0,
                    2 => 1 + (r.u8() % 5) as i64,
                    _ => -(r.u8() as i64),
                };
                let at = if delay > 0 { absolute_expiry(delay, now, START - 100) } else { 0 };
                s.flush(at, now);
                m.flushes.push(if at == 0 || at <= now { now } else { at });
                what = format!("flush {delay}");
            }
            14 => {
                let budget = r.u8() as usize;
                let n = s.crawl(now, budget);
                what = format!("crawl {budget} -> {n}");
                assert!(n <= budget);
            }
            _ => {
                if r.u8().is_multiple_of(8) {
                    // cache_memlimit: shrink or grow.
                    let new = MIN_LIMIT + (r.u16() as usize % 2048) * 1024;
                    s.set_limit(new, now);
                    limit_changed = true;
                    what = format!("set_limit {new}");
                } else {
                    now += r.u8() as u64 % 10;
                    what = "tick".to_string();
                }
            }
        }
        if std::env::var("MEMCORE_FUZZ_TRACE").is_ok() {
            let e = s.engine_stats(now);
            eprintln!(
                "{what}: mem {} seg {} idx {} large {} items {}",
                s.memory_used(),
                e.segments,
                e.index_bytes,
                e.large_bytes,
                s.curr_items()
            );
        }
        // Memory and structure.
        assert!(s.memory_used() <= s.limit(), "{what}: {} bytes over limit {}", s.memory_used(), s.limit());
        let e = s.engine_stats(now);
        assert_eq!(e.memory, s.memory_used() as u64, "{what}: engine memory");
        assert_eq!(
            e.memory,
            e.live_bytes + e.dead_bytes + e.free_bytes + e.index_bytes + e.large_bytes + e.other_bytes,
            "{what}: live + dead + free + index + large + other is not the engine's memory ({e:?})"
        );
        let lru = s.live_keys();
        let after: HashSet<Vec<u8>> = lru.iter().cloned().collect();
        assert_eq!(after.len(), lru.len(), "{what}: key twice in the LRU");
        assert_eq!(s.curr_items() as usize, lru.len(), "{what}: curr_items");
        let mut kv = 0u64;
        for k in &after {
            let e = m.map.get(k).unwrap_or_else(|| panic!("{what}: store holds {k:?}, never written"));
            kv += (k.len() + e.value.len()) as u64;
        }
        let engine = s.engine_stats(now);
        if cfg.compress.enabled {
            // Stored sizes: compressed values are kept only when smaller.
            assert!(engine.key_value_bytes <= kv, "{what}: stored bytes above the items' bytes");
        } else {
            assert_eq!(engine.key_value_bytes, kv, "{what}: key and value bytes are not the sum of the items");
            // A header is at most 23 bytes, and a large record adds a 4-byte handle.
            assert!(s.bytes() >= kv && s.bytes() <= kv + 27 * after.len() as u64, "{what}: bytes");
        }
        // Items gone since the operation started must be accounted for.
        let evicted = (s.stats.evictions - evictions_before) as usize;
        let mut unexplained = 0;
        for k in before.difference(&after) {
            let e = &m.map[k];
            if may_vanish.as_deref() == Some(&k[..]) || m.maybe_dead(e, now) {
                continue;
            }
            unexplained += 1;
        }
        assert!(unexplained <= evicted, "{what}: {unexplained} live items vanished, {evicted} evictions");
        if !cfg.evict && !limit_changed {
            assert_eq!(evicted, 0, "{what}: eviction with -M");
        }
        m.map.retain(|k, _| after.contains(k));
    }
    run.ops = ops;
    run.evictions = s.stats.evictions;
    run.compacted = s.stats.compacted_segments;
    run
}

// ---------------------------------------------------------------------------
// Replication: what a peer sends
// ---------------------------------------------------------------------------

/// What a replication run reached (so the generator can be checked).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplRun {
    pub frames: u64,
    pub ops: u64,
    pub applied: u64,
    pub refused: u64,
}

impl std::ops::AddAssign for ReplRun {
    fn add_assign(&mut self, o: ReplRun) {
        self.frames += o.frames;
        self.ops += o.ops;
        self.applied += o.applied;
        self.refused += o.refused;
    }
}

/// The wall clock of a replication run, in ms.
pub const REPL_NOW_MS: u64 = START * 1000;

/// `data`: a header byte pair (limit, -I) then the peer's bytes.
pub fn check_repl(data: &[u8]) -> ReplRun {
    use memcore::repl::apply::ReplShard;
    use memcore::repl::hlc::MAX_DRIFT_MS;
    use memcore::repl::wire;
    let mut run = ReplRun::default();
    let (head, stream) = data.split_at(data.len().min(2));
    let limit = MIN_LIMIT + head.first().map_or(0, |&b| b as usize) * 16 * 1024;
    let value_max = 1024 + head.get(1).map_or(0, |&b| b as usize) * 512;
    let max_frame = value_max + 4096;
    let cfg = StoreConfig {
        limit,
        evict: head.first().is_some_and(|b| b & 1 == 0),
        started: START - 100,
        digest: true,
        ..Default::default()
    };
    let mut store = Store::new(cfg);
    let mut repl = ReplShard::new(1, 60_000, value_max, Default::default());
    let mut rebuild = memcore::repl::apply::Reassembly::new(value_max);
    let mut whole = Vec::new();

    // Frames whole, then a byte at a time as a socket may deliver them.
    let frames = split_all(stream, max_frame, usize::MAX);
    assert_eq!(frames, split_all(stream, max_frame, 1), "frames differ when the bytes come one at a time");
    let limit_version = ((REPL_NOW_MS + MAX_DRIFT_MS) << 12 | 0xfff) << 8 | 0xff;
    for (kind, payload) in frames.iter().filter_map(|f| f.as_ref().ok()) {
        run.frames += 1;
        if *kind != wire::BATCH {
            continue;
        }
        let mut r = wire::Reader(payload);
        if r.u64().is_err() {
            continue;
        }
        let ops = r.0;
        let Ok(n) = wire::validate_ops(ops) else { continue };
        // Decoding and re-encoding gives back the same bytes.
        let mut again = Vec::new();
        let mut rd = wire::Reader(ops);
        while !rd.is_empty() {
            let op = wire::next_op(&mut rd).expect("validated ops decode");
            wire::encode_op(&mut again, &op);
        }
        assert_eq!(again, ops, "ops do not re-encode to their bytes");
        run.ops += n as u64;
        // Long values arrive in parts; the link rebuilds them first, within
        // -I, and drops the link on parts out of place.
        whole.clear();
        if rebuild.feed(ops, &mut whole).is_err() {
            break;
        }
        assert!(rebuild.held() <= value_max + 300, "rebuilding holds {} bytes", rebuild.held());
        let ops = &whole[..];
        let n = wire::validate_ops(ops).expect("rebuilt ops are whole");
        let before = repl.stats;
        repl.apply_ops(&mut store, ops, START, REPL_NOW_MS);
        assert_eq!(repl.stats.received - before.received, n as u64);
        assert!(store.memory_used() <= store.limit(), "{} bytes over limit {}", store.memory_used(), store.limit());
        assert!(repl.tomb_bytes() <= store.limit() / 4, "tombstones take {} of {}", repl.tomb_bytes(), store.limit());
        let mut rd = wire::Reader(ops);
        while !rd.is_empty() {
            let op = wire::next_op(&mut rd).expect("validated ops decode");
            if let Some(key) = op.key()
                && let Some(v) = store.version_of(key, START)
            {
                assert!(v <= limit_version, "version {v:#x} from the future stored");
            }
            if let Some(t) = op.key().and_then(|k| repl.tombstone(k)) {
                assert!(t <= limit_version, "tombstone {t:#x} from the future kept");
            }
        }
    }
    let stats = repl.stats;
    run.applied = stats.applied;
    run.refused = stats.refused;
    // The clock went no further than the drift allows.
    let next = repl.stamp(REPL_NOW_MS);
    assert!(next <= limit_version + 0x100, "the local clock was dragged to {next:#x}");
    check_sealed(head, stream, &frames);
    run
}

/// The sealed framing of a keyed session (wire::Session): the peer's raw
/// bytes, read as a sealed stream, never open (nobody without the key
/// makes a frame that passes); the frames they hold, sealed under a key,
/// open in order to themselves, cut a byte at a time too; a changed byte,
/// a replay or two frames swapped fail.
fn check_sealed(head: &[u8], stream: &[u8], frames: &[Frame]) {
    use memcore::repl::wire::{self, Session, TAG_LEN};
    let key = [head.first().copied().unwrap_or(0); 32];
    if let Ok(Some((_, _, used))) = wire::split_frame(stream, usize::MAX)
        && stream.len() >= used + TAG_LEN
    {
        let mut f = stream[..used].to_vec();
        assert!(!Session::keyed(&key).open(&mut f, &stream[used..used + TAG_LEN]), "forged bytes opened");
    }
    let good: Vec<&(u8, Vec<u8>)> = frames.iter().filter_map(|f| f.as_ref().ok()).take(64).collect();
    let (mut tx, mut sealed, mut ends) = (Session::keyed(&key), Vec::new(), vec![0]);
    for (kind, payload) in &good {
        let mut f = Vec::new();
        wire::frame(&mut f, *kind, payload);
        assert!(tx.seal(&f, &mut sealed));
        assert_eq!(sealed.len() - ends.last().unwrap(), f.len() + TAG_LEN);
        ends.push(sealed.len());
    }
    let open = |rx: &mut Session, b: &[u8]| -> Option<(u8, Vec<u8>)> {
        let (_, range, used) = wire::split_frame(b, usize::MAX).ok().flatten()?;
        let mut f = b.get(..used)?.to_vec();
        rx.open(&mut f, b.get(used..used + TAG_LEN)?).then(|| (f[4], f[range].to_vec()))
    };
    let mut rx = Session::keyed(&key);
    for (i, (kind, payload)) in good.iter().enumerate() {
        let got = open(&mut rx, &sealed[ends[i]..ends[i + 1]]);
        assert_eq!(got.as_ref(), Some(&(*kind, payload.clone())), "sealed frame {i} did not open to itself");
    }
    if good.is_empty() {
        return;
    }
    let first = &sealed[ends[0]..ends[1]];
    assert!(open(&mut rx, first).is_none(), "a replayed frame opened");
    let mut bad = first.to_vec();
    let at = stream.len() % bad.len();
    bad[at] ^= 1 << (stream.len() % 8);
    assert!(open(&mut Session::keyed(&key), &bad).is_none(), "a changed byte at {at} opened");
    if good.len() >= 2 {
        assert!(open(&mut Session::keyed(&key), &sealed[ends[1]..ends[2]]).is_none(), "a frame out of order opened");
    }
    // Without a key (--repl-insecure) frames go as they are.
    let mut f = Vec::new();
    wire::frame(&mut f, good[0].0, &good[0].1);
    let mut plain = Vec::new();
    assert!(Session::plain().seal(&f, &mut plain) && plain == f && Session::plain().open(&mut f, &[]));
}

type Frame = Result<(u8, Vec<u8>), memcore::repl::wire::WireError>;

/// Cut `stream` into frames as a receiver does, `step` bytes arriving at a
/// time; stops at the first error (the link would be dropped).
fn split_all(stream: &[u8], max: usize, step: usize) -> Vec<Frame> {
    use memcore::repl::wire::split_frame;
    let mut out = Vec::new();
    let (mut have, mut start) = (0usize, 0usize);
    loop {
        loop {
            let avail = &stream[start..have];
            match split_frame(avail, max) {
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
                Ok(None) => break,
                Ok(Some((kind, range, used))) => {
                    assert!(used <= avail.len() && range.end <= used && range.start == 5 && used >= 5);
                    assert_eq!(kind, avail[4]);
                    out.push(Ok((kind, avail[range].to_vec())));
                    start += used;
                }
            }
        }
        if have == stream.len() {
            break;
        }
        have = have.saturating_add(step).min(stream.len());
    }
    out
}

// ---------------------------------------------------------------------------
// Authentication gate (-Y)
// ---------------------------------------------------------------------------

/// Drive `memcore::protocol::auth::parse_gate` over a stream the way an
/// unauthenticated connection does, whole and a byte at a time: no panic;
/// Refuse and Attempt consume 1..=len bytes; Incomplete's `need` is 0 or
/// beyond what is buffered and at most a line plus `MAX_TOKEN` + 2; an
/// attempt's user and password are non-empty and hold no space; both ways
/// give the same verdicts. Returns how many verdicts the stream gave.
pub fn check_gate(stream: &[u8]) -> usize {
    use memcore::protocol::auth::{Gate, MAX_LINE, MAX_TOKEN, parse_gate};
    let run = |feed: &dyn Fn(usize) -> usize| -> Vec<String> {
        let mut out = Vec::new();
        let (mut start, mut end) = (0usize, 0usize);
        loop {
            let avail = &stream[start..end];
            match parse_gate(avail) {
                Gate::Incomplete { need } => {
                    assert!(need == 0 || need > avail.len(), "need {need} with {} buffered", avail.len());
                    if need > 0 {
                        let nl = avail.iter().position(|&b| b == b'\n').expect("a need without a whole line");
                        assert!(need <= nl + 1 + MAX_TOKEN + 2, "need {need} after a line of {nl}");
                    } else {
                        assert!(avail.len() <= MAX_LINE && !avail.contains(&b'\n'));
                    }
                    if end == stream.len() {
                        out.push(format!("incomplete {}", end - start));
                        return out;
                    }
                    end = feed(end);
                }
                Gate::Close => {
                    out.push("close".into());
                    return out;
                }
                Gate::Refuse { msg, consumed } => {
                    assert!((1..=avail.len()).contains(&consumed));
                    out.push(format!("refuse {msg} {consumed}"));
                    start += consumed;
                }
                Gate::Attempt { user, password, consumed } => {
                    assert!((1..=avail.len()).contains(&consumed));
                    for w in [user, password] {
                        assert!(!w.is_empty() && !w.contains(&b' '));
                    }
                    out.push(format!("attempt {user:?} {password:?} {consumed}"));
                    start += consumed;
                }
            }
        }
    };
    let whole = run(&|_| stream.len());
    let bytewise = run(&|end| end + 1);
    assert_eq!(whole, bytewise, "the gate read the stream differently a byte at a time");
    whole.len()
}
