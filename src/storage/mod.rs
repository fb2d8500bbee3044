//! One core's items: a log of fixed-size segments, a compact index, S3-FIFO
//! eviction at segment granularity, expiry and flush.
//!
//! Runtime-free: every call takes `now` (Unix seconds) so tests can drive
//! the clock. Nothing here is shared between cores; the server gives each
//! core its own `Store` and routes keys to it.
//!
//! Layout (docs/storage.md has the reasons and the measurements):
//! - Items are records appended to 256 KiB segments (`record.rs`): 3 bytes
//!   of header for a plain item. Values larger than `INLINE_MAX` live in
//!   chunk lists (`large.rs`) and the record holds a handle.
//! - The index is a bucketized cuckoo table of u32 locations (segment,
//!   offset) with an 8-bit tag each, 5 bytes per slot (`index.rs`); the key
//!   is compared in the segment.
//! - A record's CAS value and its place in flush order come from where it
//!   was written: every segment gets a fresh range of write positions when
//!   it is opened. A record that is moved keeps its position in an extra
//!   field.
//! - Two FIFO queues of segments, as in S3-FIFO: new writes go to the small
//!   queue (a tenth of the segments); when a segment leaves a queue, its
//!   live items that were read since they were written move to the main
//!   queue's head, the others are evicted. Memory moves between value sizes
//!   freely: there are no size classes to calcify.
//! - Everything counts against the limit: segments, large values, the index
//!   and the buffer used to move items.
//!
//! The store's own types at its edge (`StoreMode`, `StoreOutcome`,
//! `ArithOutcome`, `Miss`); times are absolute (the caller turns a wire
//! exptime into one with `protocol::absolute_expiry`). Imports only the
//! shared `item` sizes; must not import protocol, route, repl or server.

mod compress;
mod index;
mod large;
mod record;

use std::collections::VecDeque;

use slab::Slab;

use compress::Codec;
pub use compress::{CompressConfig, CompressStats, DictMode};
use index::Index;
use large::LargeValue;
use record::{Compressed, Header, Meta};

const SEG_SHIFT: u32 = 18;
/// Bytes per segment: small enough that evicting one is a short slice of
/// work and that the last partly used one wastes little of a small core's
/// share, large enough that per-segment metadata is negligible.
pub const SEG_SIZE: usize = 1 << SEG_SHIFT;
/// Longest record kept inside a segment; longer values go to chunk lists.
/// It bounds the space lost at the end of a segment to an eighth of it.
pub const INLINE_MAX: usize = SEG_SIZE / 8;
/// At most this much of a main-queue segment is moved forward when it is
/// evicted, so that every eviction there frees a quarter of a segment.
/// (Leaving the small queue, everything read moves: that queue shrinks by
/// a segment each time, which is progress enough.)
const MAIN_MOVE_CAP: usize = SEG_SIZE / 4 * 3;
/// The smallest per-core limit: a few segments for each queue.
pub const MIN_LIMIT: usize = 4 * SEG_SIZE;
/// Index slots address 2^32 units; a unit is 1 byte for up to 4 GiB per
/// core and grows (with records aligned to it) for larger limits.
const ADDRESS_BITS: u32 = 32;

/// Outcome of a storage command, in memcached's reply words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    NoMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    Value(u64),
    NotFound,
    NonNumeric,
    NoMemory,
}

/// Why a lookup found nothing usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    Absent,
    Expired,
    Flushed,
}

/// Counters kept by the store itself (command counters live in the server).
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    pub total_items: u64,
    pub evictions: u64,
    pub evicted_unfetched: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub crawler_reclaimed: u64,
    /// Items moved forward instead of being evicted.
    pub moved: u64,
    pub segments_evicted: u64,
}

/// Buckets of `stats sizes`: 32-byte steps up to 1 KiB, then powers of two.
pub const SIZE_BUCKETS: usize = 56;

pub fn size_bucket(size: usize) -> usize {
    if size <= 1024 {
        size.div_ceil(32)
    } else {
        (32 + (usize::BITS - (size - 1).leading_zeros()) as usize - 10).min(SIZE_BUCKETS - 1)
    }
}

/// Largest item size that falls in a bucket (the label `stats sizes` uses).
pub fn size_bucket_label(b: usize) -> u64 {
    if b <= 32 { b as u64 * 32 } else { 1u64 << (b - 32 + 10) }
}

/// What the engine holds, for `stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineStats {
    /// Bytes counted against the limit.
    pub memory: u64,
    pub segments: u64,
    pub small_segments: u64,
    pub small_items: u64,
    pub index_bytes: u64,
    pub large_bytes: u64,
    /// Key and value bytes of live items.
    pub key_value_bytes: u64,
    /// Record bytes of live items, headers included (memcached's `bytes`).
    pub item_bytes: u64,
    /// Bytes in segments held by overwritten, deleted or expired records.
    pub dead_bytes: u64,
    /// Seconds since the oldest segment was opened.
    pub oldest_age: u64,
    /// Live items stored compressed, and their values' bytes before and
    /// after compression.
    pub compressed_items: u64,
    pub compressed_bytes_in: u64,
    pub compressed_bytes_out: u64,
    pub dictionaries: u64,
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Bytes this core may hold (everything the engine allocates).
    pub limit: usize,
    /// `-M` turns eviction off: a full store refuses writes instead.
    pub evict: bool,
    /// `-C` turns CAS off: gets shows 0 and cas never sees a mismatch.
    pub use_cas: bool,
    /// CAS values are `position * cas_stride + cas_offset`, so that every
    /// core hands out distinct values without sharing a counter.
    pub cas_stride: u64,
    pub cas_offset: u64,
    /// Process start (Unix seconds); absolute expiry times before it are
    /// already expired, as in memcached.
    pub started: u64,
    pub compress: CompressConfig,
    /// Keep `digest()` up to date (replication turns it on): every item
    /// stored or removed is hashed once more.
    pub digest: bool,
    /// Key of the index's hash (see `HashKey`): the server gives each store
    /// a random one.
    pub index_key: HashKey,
    /// `-I`: an append or prepend whose result would be larger (counted as
    /// `item::item_total_size`) is refused, as memcached does; a set is
    /// checked by the parser before its value is read.
    pub item_size_max: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            limit: 64 << 20,
            evict: true,
            use_cas: true,
            cas_stride: 1,
            cas_offset: 1,
            started: 0,
            compress: CompressConfig::default(),
            digest: false,
            index_key: HashKey::default(),
            item_size_max: 1 << 20,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

struct Segment {
    /// None while the segment id is free.
    data: Option<Box<[u8]>>,
    /// Write position of byte 0: CAS values and flush order come from it.
    seq: u64,
    /// Bytes written.
    used: u32,
    /// No more writes (the heads are sealed by flush_all).
    sealed: bool,
    live: u32,
    live_bytes: u32,
    /// Earliest relative expiry among its records (0: none). Lets the
    /// crawler skip segments with nothing to reclaim.
    min_exp: u32,
    opened: u64,
    queue: Queue,
}

/// The value of an item being written.
#[derive(Clone, Copy)]
enum Body<'a> {
    /// The concatenation of these parts, as the client sent it (it may get
    /// compressed).
    Value(&'a [&'a [u8]]),
    /// An inline record's stored body, as `meta.compressed` describes it,
    /// and the value's length (an item written again to add an expiry).
    Stored(&'a [u8], usize),
}

/// A live item as read: valid until the store is next changed.
pub struct ItemRef<'a> {
    pub flags: u32,
    pub cas: u64,
    /// Replication version (0 when the store does not replicate).
    pub version: u64,
    /// Absolute expiry in Unix seconds, 0 = never.
    pub exp: u64,
    value: Value<'a>,
    len: usize,
    compressed: Option<Compressed>,
    codec: &'a Codec,
}

#[derive(Clone, Copy)]
enum Value<'a> {
    Inline(&'a [u8]),
    Large(&'a LargeValue),
}

impl ItemRef<'_> {
    /// The value's length as the client sees it.
    pub fn value_len(&self) -> usize {
        self.len
    }

    /// Append the value to `out`, decompressing it straight there when it is
    /// stored compressed. False, with `out` unchanged, when the stored frame
    /// is corrupt.
    pub fn copy_value(&self, out: &mut Vec<u8>) -> bool {
        match self.compressed {
            None => {
                out.reserve(self.len);
                self.stored_pieces().for_each(|p| out.extend_from_slice(p));
                true
            }
            Some(z) => self.codec.decompress_into(z.dict, self.stored_pieces(), self.len, out),
        }
    }

    /// The value as stored (a compressed frame when it is one): one piece,
    /// or a large value's chunks.
    fn stored_pieces(&self) -> impl Iterator<Item = &[u8]> {
        let (one, chunks) = match self.value {
            Value::Inline(v) => (Some(v), &[][..]),
            Value::Large(l) => (None, l.chunks()),
        };
        one.into_iter().chain(chunks.iter().map(|c| &c[..]))
    }

    /// The value as a new vector; None when its stored frame is corrupt.
    pub fn read_value(&self) -> Option<Vec<u8>> {
        let mut v = Vec::with_capacity(self.len);
        self.copy_value(&mut v).then_some(v)
    }

    /// The value for a peer: the stored frame as it is when it was
    /// compressed without a dictionary (any node can read it), with the
    /// length clients see; else the value as clients see it. None when
    /// the stored frame is corrupt.
    pub fn replication_form(&self) -> Option<(Vec<u8>, Option<u32>)> {
        match self.compressed {
            // The wire's u32 length holds any value -I allows (1 GiB at
            // most); a longer one is sent as clients see it.
            Some(z) if z.dict == 0 && u32::try_from(self.len).is_ok() => {
                let mut frame = Vec::with_capacity(z.stored_len);
                self.stored_pieces().for_each(|p| frame.extend_from_slice(p));
                Some((frame, u32::try_from(self.len).ok()))
            }
            _ => self.read_value().map(|v| (v, None)),
        }
    }

    /// The value as a new vector, empty when corrupt (tests).
    pub fn value_vec(&self) -> Vec<u8> {
        self.read_value().unwrap_or_default()
    }
}

pub struct Store {
    cfg: StoreConfig,
    /// log2 of the addressing unit (and record alignment).
    unit_shift: u32,
    /// The most `set_limit` can grant with this addressing.
    max_limit: usize,
    index: Index,
    segs: Vec<Segment>,
    free_ids: Vec<u32>,
    /// One freed segment buffer kept for reuse (counted in `blocks`).
    spare: Option<Box<[u8]>>,
    /// Segment buffers allocated, spare included.
    blocks: usize,
    small: VecDeque<u32>,
    main: VecDeque<u32>,
    next_seq: u64,
    large: Slab<LargeValue>,
    /// Large values in the order they were stored, (handle, id): evicted by
    /// age beside the segments, so that one segment holding many large
    /// values' records does not take them all at once.
    large_fifo: VecDeque<(u32, u64)>,
    large_next_id: u64,
    large_bytes: usize,
    /// Bytes a layer above keeps for this core outside the store, charged
    /// against the same limit (`set_external`).
    external: usize,
    /// Records being moved out of an evicted segment (reused).
    move_list: Vec<(u64, u32, usize, usize)>,
    /// Segments whose `seq` is below this were written before a flush_all.
    flush_seq: u64,
    /// A delayed flush_all's deadline (Unix seconds), 0 when none.
    flush_at: u64,
    crawl_seg: usize,
    crawl_off: usize,
    crawl_min_exp: u32,
    /// The last crawl stopped at its budget: more may be waiting.
    crawl_busy: bool,
    items: u64,
    item_bytes: u64,
    kv_bytes: u64,
    sizes: [u64; SIZE_BUCKETS],
    codec: Codec,
    compressed_items: u64,
    compressed_bytes_in: u64,
    compressed_bytes_out: u64,
    pub stats: StoreStats,
    /// XOR of `item_digest` over the live items (when `cfg.digest`).
    digest: u64,
    /// Version the next local write gets (0: writes carry none). The
    /// replication layer sets it before each write.
    pub stamp: u64,
}

/// Outcome of applying a replicated item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The store holds this version or a newer one: nothing changed.
    Older,
    NoMemory,
}

/// A secret key for SipHash-1-3 over item keys. Who can predict a key's
/// hash can pick keys that all land in one place (hash flooding), so the
/// server chooses one at random per process: one shared by every core for
/// the choice of core, and one per core for its index. Storage itself reads
/// no randomness; `Default` is a fixed key for tests and benchmarks only.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct HashKey {
    k0: u64,
    k1: u64,
}

impl HashKey {
    pub const fn new(k0: u64, k1: u64) -> Self {
        HashKey { k0, k1 }
    }

    /// SipHash-1-3 of `key` (the variant std's HashMap uses, a keyed PRF
    /// designed against flooding); ~15 ns for a 16-byte key.
    pub fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::Hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(key);
        h.finish()
    }
}

/// The key stays out of logs and panics.
impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// How a store combines with the item already under its key (memcached's
/// set, add, replace, append, prepend and cas). The store's own type: the
/// caller maps the protocol's command onto it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// memcached's `safe_strtoull` applied to a stored value for incr/decr:
/// leading whitespace, digits, then the end or whitespace.
pub fn parse_stored_number(value: &[u8]) -> Option<u64> {
    let start = value.iter().position(|b| !b.is_ascii_whitespace())?;
    let v = &value[start..];
    let v = v.strip_prefix(b"+").unwrap_or(v);
    let end = v.iter().position(|b| !b.is_ascii_digit()).unwrap_or(v.len());
    if end == 0 || (end < v.len() && !v[end].is_ascii_whitespace()) {
        return None;
    }
    // Digits only: `parse` fails on overflow alone.
    std::str::from_utf8(&v[..end]).ok()?.parse().ok()
}

/// The segment data, key and header of one record, borrowed from the
/// segment table (a free function so that callers can borrow the index
/// mutably at the same time).
fn record_at(segs: &[Segment], seg_bits: u32, unit_shift: u32, loc: u32) -> &[u8] {
    let seg = (loc >> seg_bits) as usize;
    let off = ((loc & ((1 << seg_bits) - 1)) as usize) << unit_shift;
    let data = segs[seg].data.as_deref().expect("index points into a free segment");
    &data[off..]
}

fn key_of(rec: &[u8]) -> &[u8] {
    let h = record::parse(rec);
    &rec[h.key_at..h.key_at + h.key_len]
}

impl Store {
    pub fn new(mut cfg: StoreConfig) -> Self {
        // Room to grow the limit fourfold at runtime (cache_memlimit).
        let want = cfg.limit.max(MIN_LIMIT).saturating_mul(4).max(1 << 30);
        let mut unit_shift = 0;
        while unit_shift < SEG_SHIFT && (1usize << (ADDRESS_BITS + unit_shift)) < want {
            unit_shift += 1;
        }
        // Less two segments: ids are reused only after a segment is freed.
        let max_limit = (1usize << (ADDRESS_BITS + unit_shift).min(usize::BITS - 2)) - 2 * SEG_SIZE;
        cfg.limit = cfg.limit.clamp(MIN_LIMIT, max_limit);
        Store {
            cfg: cfg.clone(),
            unit_shift,
            max_limit,
            index: Index::default(),
            segs: Vec::new(),
            free_ids: Vec::new(),
            spare: None,
            blocks: 0,
            small: VecDeque::new(),
            main: VecDeque::new(),
            next_seq: 0,
            large: Slab::new(),
            large_fifo: VecDeque::new(),
            large_next_id: 0,
            large_bytes: 0,
            external: 0,
            move_list: Vec::new(),
            flush_seq: 0,
            flush_at: 0,
            crawl_seg: 0,
            crawl_off: 0,
            crawl_min_exp: 0,
            crawl_busy: false,
            items: 0,
            item_bytes: 0,
            kv_bytes: 0,
            sizes: [0; SIZE_BUCKETS],
            codec: Codec::new(cfg.compress.clone(), cfg.limit),
            compressed_items: 0,
            compressed_bytes_in: 0,
            compressed_bytes_out: 0,
            stats: StoreStats::default(),
            digest: 0,
            stamp: 0,
        }
    }

    pub fn curr_items(&self) -> u64 {
        self.items
    }
    /// memcached's `bytes`: what the live items take, headers included.
    pub fn bytes(&self) -> u64 {
        self.item_bytes
    }
    pub fn limit(&self) -> usize {
        self.cfg.limit
    }
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }
    /// Item counts by size bucket (see `size_bucket`).
    pub fn sizes(&self) -> &[u64; SIZE_BUCKETS] {
        &self.sizes
    }

    /// Everything counted against the limit. (The buffer that evicted
    /// items move through exists only while a segment is being evicted.)
    pub fn memory_used(&self) -> usize {
        self.blocks * SEG_SIZE + self.large_bytes + self.index.allocation_size() + self.codec.memory() + self.external
    }

    /// Count `bytes` that the caller keeps beside this store (replication's
    /// tombstones, say) against the limit: items make room for them as for
    /// any write (evicted, or with eviction off, only expired ones go).
    /// The caller bounds them well below the limit.
    pub fn set_external(&mut self, bytes: usize, now: u64) {
        let grew = bytes > self.external;
        self.external = bytes;
        if grew {
            while self.memory_used() > self.cfg.limit && self.evict_one(now, self.cfg.evict) {}
        }
    }

    /// Compression counters (stats).
    pub fn compress_stats(&self) -> CompressStats {
        self.codec.stats
    }

    /// `stats reset`: zero the event counters.
    pub fn reset_stats(&mut self) {
        self.stats = StoreStats::default();
        self.codec.stats = CompressStats::default();
    }

    pub fn engine_stats(&self, now: u64) -> EngineStats {
        let mut s = EngineStats {
            memory: self.memory_used() as u64,
            index_bytes: self.index.allocation_size() as u64,
            large_bytes: self.large_bytes as u64,
            key_value_bytes: self.kv_bytes,
            item_bytes: self.item_bytes,
            compressed_items: self.compressed_items,
            compressed_bytes_in: self.compressed_bytes_in,
            compressed_bytes_out: self.compressed_bytes_out,
            dictionaries: self.codec.dictionaries() as u64,
            ..Default::default()
        };
        for seg in self.segs.iter().filter(|s| s.data.is_some()) {
            s.segments += 1;
            s.dead_bytes += u64::from(seg.used - seg.live_bytes);
            if seg.queue == Queue::Small {
                s.small_segments += 1;
                s.small_items += u64::from(seg.live);
            }
            s.oldest_age = s.oldest_age.max(now.saturating_sub(seg.opened));
        }
        s
    }

    /// Change the memory limit; shrinking evicts down to it at once.
    pub fn set_limit(&mut self, limit: usize, now: u64) {
        self.cfg.limit = limit.clamp(MIN_LIMIT, self.max_limit);
        if limit > self.max_limit {
            log::warn!("memory per core capped at {} MiB by this core's addressing", self.max_limit >> 20);
        }
        if self.spare.take().is_some() {
            self.blocks -= 1;
        }
        while self.memory_used() > self.cfg.limit && self.evict_one(now, true) {}
    }

    fn live_segments(&self) -> usize {
        self.small.len() + self.main.len()
    }

    // ---- addressing ---------------------------------------------------

    fn seg_bits(&self) -> u32 {
        SEG_SHIFT - self.unit_shift
    }

    fn loc(&self, seg: u32, off: usize) -> u32 {
        (seg << self.seg_bits()) | (off >> self.unit_shift) as u32
    }

    fn split(&self, loc: u32) -> (usize, usize) {
        let bits = self.seg_bits();
        ((loc >> bits) as usize, ((loc & ((1 << bits) - 1)) as usize) << self.unit_shift)
    }

    fn align(&self, len: usize) -> usize {
        let unit = 1usize << self.unit_shift;
        (len + unit - 1) & !(unit - 1)
    }

    fn rec(&self, loc: u32) -> &[u8] {
        record_at(&self.segs, self.seg_bits(), self.unit_shift, loc)
    }

    fn header(&self, loc: u32) -> Header {
        record::parse(self.rec(loc))
    }

    /// The position a record's CAS value and flush order come from.
    fn position(&self, loc: u32, h: &Header) -> u64 {
        h.cas_pos.unwrap_or_else(|| {
            let (seg, off) = self.split(loc);
            self.segs[seg].seq + off as u64
        })
    }

    fn cas_value(&self, pos: u64) -> u64 {
        if self.cfg.use_cas { pos * self.cfg.cas_stride + self.cfg.cas_offset } else { 0 }
    }

    /// Expiry relative to process start, so that it fits 32 bits: 0 never,
    /// otherwise `abs - started + 1` (anything before the start is 1).
    fn rel_exp(&self, abs: u64) -> u32 {
        if abs == 0 { 0 } else { (abs.max(self.cfg.started) - self.cfg.started + 1).min(u32::MAX as u64) as u32 }
    }

    /// Undo `rel_exp`: the absolute Unix second, 0 = never.
    fn abs_exp(&self, rel: u32) -> u64 {
        if rel == 0 { 0 } else { self.cfg.started + u64::from(rel) - 1 }
    }

    fn now_rel(&self, now: u64) -> u32 {
        self.rel_exp(now.max(1))
    }

    // ---- lookups ----------------------------------------------------------

    fn index_hash(&self, key: &[u8]) -> u64 {
        self.cfg.index_key.hash(key)
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let (segs, bits, shift) = (&self.segs, self.seg_bits(), self.unit_shift);
        self.index.find(self.index_hash(key), |&l| key_of(record_at(segs, bits, shift, l)) == key).copied()
    }

    /// Is the record at `loc` the one the index points to for its key?
    fn is_live(&self, loc: u32, hash: u64) -> bool {
        self.index.find(hash, |&l| l == loc).is_some()
    }

    fn dead(&self, loc: u32, h: &Header, now: u64) -> Option<Miss> {
        if h.exp != 0 && h.exp <= self.now_rel(now) {
            return Some(Miss::Expired);
        }
        if self.segs[self.split(loc).0].seq < self.flush_seq {
            return Some(Miss::Flushed);
        }
        None
    }

    /// Find a key, dropping it on the way if it has expired or been flushed.
    fn find_live(&mut self, key: &[u8], now: u64) -> Result<(u32, Header), Miss> {
        self.apply_flush(now);
        let loc = self.find(key).ok_or(Miss::Absent)?;
        let h = self.header(loc);
        if let Some(miss) = self.dead(loc, &h, now) {
            self.reclaim(loc, &h, self.index_hash(key), false);
            return Err(miss);
        }
        Ok((loc, h))
    }

    fn item_ref(&self, loc: u32, h: &Header) -> ItemRef<'_> {
        let rec = self.rec(loc);
        let value = if h.large {
            Value::Large(&self.large[record::large_handle(rec, h) as usize])
        } else {
            Value::Inline(&rec[h.body_at..h.body_at + h.stored_len()])
        };
        ItemRef {
            flags: h.flags,
            cas: self.cas_value(self.position(loc, h)),
            version: h.version,
            exp: self.abs_exp(h.exp),
            value,
            len: h.value_len,
            compressed: h.compressed,
            codec: &self.codec,
        }
    }

    fn info_byte(&mut self, loc: u32) -> &mut u8 {
        let (seg, off) = self.split(loc);
        &mut self.segs[seg].data.as_mut().expect("live segment")[off]
    }

    // ---- commands ---------------------------------------------------------

    /// Look a key up for reading: counts the access and marks it fetched.
    pub fn get(&mut self, key: &[u8], now: u64) -> Result<ItemRef<'_>, Miss> {
        let (loc, h) = self.find_live(key, now)?;
        record::mark_fetched(self.info_byte(loc));
        Ok(self.item_ref(loc, &h))
    }

    /// gat: read a key and give it a new expiry (absolute, 0 = never). The
    /// item is handed to `f` while it is valid; an expiry already past
    /// still returns it once, as memcached does.
    pub fn get_and_touch<R>(
        &mut self,
        key: &[u8],
        now: u64,
        exptime: u64,
        f: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Result<R, Miss> {
        let (loc, h) = self.find_live(key, now)?;
        record::mark_fetched(self.info_byte(loc));
        let exp = self.rel_exp(exptime);
        if exp != 0 && exp <= self.now_rel(now) {
            let r = f(&self.item_ref(loc, &h));
            self.unlink(loc, &h, self.index_hash(key));
            return Ok(r);
        }
        // Writing it again may have moved or (in a tiny cache) evicted it.
        if !self.retime(key, loc, exptime, now) {
            return Err(Miss::Absent);
        }
        let loc = self.find(key).ok_or(Miss::Absent)?;
        let h = self.header(loc);
        Ok(f(&self.item_ref(loc, &h)))
    }

    pub fn touch(&mut self, key: &[u8], exptime: u64, now: u64) -> bool {
        match self.find_live(key, now) {
            Ok((loc, _)) => {
                record::mark_fetched(self.info_byte(loc));
                self.retime(key, loc, exptime, now)
            }
            Err(_) => false,
        }
    }

    pub fn delete(&mut self, key: &[u8], now: u64) -> bool {
        match self.find_live(key, now) {
            Ok((loc, h)) => {
                self.unlink(loc, &h, self.index_hash(key));
                true
            }
            Err(_) => false,
        }
    }

    /// The arguments are the fields of memcached's storage line, in its order.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: u64,
        data: &[u8],
        cas: u64,
        now: u64,
    ) -> StoreOutcome {
        let old = self.find_live(key, now).ok();
        match (mode, old) {
            (StoreMode::Add, Some((loc, _))) => {
                // memcached bumps the existing item on a failed add.
                let info = self.info_byte(loc);
                let fetched = *info & record::FETCHED;
                record::mark_fetched(info);
                *info = (*info & !record::FETCHED) | fetched;
                return StoreOutcome::NotStored;
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => return StoreOutcome::NotStored,
            (StoreMode::Cas, None) => return StoreOutcome::NotFound,
            // Without CAS (-C) no unique ever matches, as in memcached.
            (StoreMode::Cas, Some((loc, h))) if !self.cfg.use_cas || self.cas_value(self.position(loc, &h)) != cas => {
                return StoreOutcome::Exists;
            }
            _ => {}
        }
        let stored = match (mode, old) {
            (StoreMode::Append | StoreMode::Prepend, Some((loc, h))) => {
                // -I bounds the item that results, not only the chunk sent:
                // else a chain of appends builds a value of any size (with
                // compression, for a few bytes of -m each). memcached 1.6.18
                // answers NOT_STORED and keeps the item as it was.
                let total = h.value_len.saturating_add(data.len());
                if crate::item::item_total_size(key.len(), h.flags, total) > self.cfg.item_size_max {
                    return StoreOutcome::NotStored;
                }
                let Some(old_value) = self.item_ref(loc, &h).read_value() else {
                    self.drop_corrupt(key);
                    return StoreOutcome::NotStored;
                };
                let parts: [&[u8]; 2] = if mode == StoreMode::Append { [&old_value, data] } else { [data, &old_value] };
                let meta = Meta { flags: h.flags, exp: h.exp, version: self.stamp, ..Default::default() };
                self.insert(key, meta, Body::Value(&parts), now)
            }
            _ => {
                let meta = Meta { flags, exp: self.rel_exp(exptime), version: self.stamp, ..Default::default() };
                self.insert(key, meta, Body::Value(&[data]), now)
            }
        };
        if stored {
            self.stats.total_items += 1;
            return StoreOutcome::Stored;
        }
        // memcached drops the old value when a set cannot be stored.
        if mode == StoreMode::Set
            && let Some(loc) = self.find(key)
        {
            let h = self.header(loc);
            self.unlink(loc, &h, self.index_hash(key));
        }
        StoreOutcome::NoMemory
    }

    pub fn arith(&mut self, key: &[u8], incr: bool, delta: u64, now: u64) -> ArithOutcome {
        let Ok((loc, h)) = self.find_live(key, now) else {
            return ArithOutcome::NotFound;
        };
        let item = self.item_ref(loc, &h);
        // Like memcached's strtoull, only the leading digits and the byte
        // after them matter, so a large value's first chunk is enough.
        let unpacked;
        let head = match (item.value, item.compressed) {
            (Value::Inline(v), None) => v,
            (Value::Large(l), None) => l.chunks().first().map_or(&[][..], |c| &c[..]),
            (_, Some(_)) => match item.read_value() {
                Some(v) => {
                    unpacked = v;
                    &unpacked[..]
                }
                None => {
                    self.drop_corrupt(key);
                    return ArithOutcome::NotFound;
                }
            },
        };
        let number = if head.is_empty() { None } else { parse_stored_number(head) };
        let Some(cur) = number else {
            return ArithOutcome::NonNumeric;
        };
        let v = if incr { cur.wrapping_add(delta) } else { cur.saturating_sub(delta) };
        let mut digits = Vec::with_capacity(20);
        {
            use std::io::Write;
            let _ = write!(digits, "{v}");
        }
        // Like memcached, a shorter number keeps the old length, padded with
        // spaces (memcached rewrites it in place).
        if digits.len() < h.value_len {
            digits.resize(h.value_len, b' ');
        }
        let meta = Meta {
            flags: h.flags,
            exp: h.exp,
            version: self.stamp,
            fetched: h.fetched(),
            freq: h.freq(),
            ..Default::default()
        };
        if self.insert(key, meta, Body::Value(&[&digits]), now) {
            ArithOutcome::Value(v)
        } else {
            ArithOutcome::NoMemory
        }
    }

    /// Invalidate everything written before now (`at == 0`) or, from the
    /// absolute second `at` on, everything written before `at`. O(1): the
    /// segments written before it are dead from then on; their items are
    /// dropped when next seen or by `crawl`.
    pub fn flush(&mut self, at: u64, now: u64) {
        if at == 0 || at <= now {
            self.flush_at = 0;
            self.flush_now();
        } else {
            self.flush_at = at;
        }
    }

    fn flush_now(&mut self) {
        self.flush_seq = self.next_seq;
        for id in self.small.back().into_iter().chain(self.main.back()) {
            self.segs[*id as usize].sealed = true;
        }
    }

    /// A delayed flush takes effect before anything else happens at or
    /// after its deadline, so items written from then on survive it.
    fn apply_flush(&mut self, now: u64) {
        if self.flush_at != 0 && now >= self.flush_at {
            self.flush_at = 0;
            self.flush_now();
        }
    }

    // ---- writing ----------------------------------------------------------

    /// Write a new version of `key` and point the index at it, replacing
    /// whatever version was there. False when no room could be made.
    fn insert(&mut self, key: &[u8], mut meta: Meta, body: Body<'_>, now: u64) -> bool {
        // What goes into storage: the value, or its compressed frame.
        let mut frame = None;
        let value_len = match body {
            Body::Stored(_, len) => len,
            Body::Value(parts) => {
                meta.compressed = None;
                let joined;
                let value: &[u8] = match parts {
                    [one] => one,
                    _ if self.codec.enabled() => {
                        joined = parts.concat();
                        &joined
                    }
                    _ => &[],
                };
                if let Some(dict) = self.codec.compress(value) {
                    let f = self.codec.take_frame();
                    meta.compressed = Some(Compressed { stored_len: f.len(), dict });
                    frame = Some(f);
                }
                parts.iter().map(|p| p.len()).sum()
            }
        };
        let one;
        let stored: &[&[u8]] = match (&frame, body) {
            (Some(f), _) => {
                one = [&f[..]];
                &one
            }
            (None, Body::Stored(b, _)) => {
                one = [b];
                &one
            }
            (None, Body::Value(parts)) => parts,
        };
        let stored_len: usize = stored.iter().map(|p| p.len()).sum();
        meta.large = false;
        let mut len = record::record_len(&meta, key.len(), value_len);
        let mut handle = None;
        if len > INLINE_MAX {
            if !self.make_room(LargeValue::charge(stored_len), now) {
                return false;
            }
            self.large_bytes += LargeValue::charge(stored_len);
            handle = Some(self.large.insert(LargeValue::from_parts(stored)) as u32);
            meta.large = true;
            len = record::record_len(&meta, key.len(), value_len);
        }
        let Some(loc) = self.reserve(Queue::Small, self.align(len), now, true) else {
            if let Some(h) = handle {
                self.free_large(h);
            }
            return false;
        };
        if let Some(h) = handle {
            let (seg, off) = self.split(loc);
            let id = self.large_next_id;
            self.large_next_id += 1;
            let v = &mut self.large[h as usize];
            (v.head, v.pos, v.id) = (loc, self.segs[seg].seq + off as u64, id);
            self.large_fifo.push_back((h, id));
        }
        {
            let (seg, off) = self.split(loc);
            let dst = &mut self.segs[seg].data.as_mut().expect("head segment")[off..off + len];
            let mut at = record::write_head(dst, &meta, key, value_len);
            match handle {
                Some(h) => dst[at..at + 4].copy_from_slice(&h.to_le_bytes()),
                None => {
                    for p in stored {
                        dst[at..at + p.len()].copy_from_slice(p);
                        at += p.len();
                    }
                }
            }
        }
        if let Some(f) = frame {
            self.codec.give_back_frame(f);
        }
        let hash = self.index_hash(key);
        // Without eviction, a new key must leave room for the index to grow
        // (the record just written stays behind as dead bytes).
        if !self.cfg.evict
            && self.find(key).is_none()
            && self.memory_used() + self.index.growth_on_insert(hash) > self.cfg.limit
        {
            if let Some(h) = handle {
                self.free_large(h);
            }
            return false;
        }
        let (segs, bits, shift, ik) = (&self.segs, self.seg_bits(), self.unit_shift, self.cfg.index_key);
        let mut dropped = Vec::new();
        let replaced = match self.index.find_mut(hash, |&l| key_of(record_at(segs, bits, shift, l)) == key) {
            Some(slot) => Some(std::mem::replace(slot, loc)),
            None => {
                let placed = self.index.insert_unique(
                    hash,
                    loc,
                    |&l| ik.hash(key_of(record_at(segs, bits, shift, l))),
                    &mut dropped,
                );
                if !placed {
                    // Its buckets are full of keys that collide with it: the
                    // write is refused rather than the table grown for them
                    // (the record stays behind as dead bytes).
                    self.evict_dropped(&dropped);
                    if let Some(h) = handle {
                        self.free_large(h);
                    }
                    return false;
                }
                None
            }
        };
        self.evict_dropped(&dropped);
        self.account_new(loc, len);
        if let Some(old) = replaced {
            let h = self.header(old);
            self.account_gone(old, &h, true);
        }
        // The index or the compressor may have grown past the limit.
        if self.memory_used() <= self.cfg.limit {
            return true;
        }
        while self.memory_used() > self.cfg.limit && self.evict_one(now, self.cfg.evict) {}
        let present = self.find(key);
        if self.memory_used() > self.cfg.limit {
            // Nothing else left to evict: the new item itself does not fit.
            if let Some(loc) = present {
                let h = self.header(loc);
                self.unlink(loc, &h, hash);
            }
            return false;
        }
        // In a cache of a few segments, making room can evict the new item.
        present.is_some()
    }

    /// Give an item a new expiry, in place when its record has the field,
    /// else by writing it again (keeping its CAS value). False when it
    /// could not be written again.
    fn retime(&mut self, key: &[u8], loc: u32, abs: u64, now: u64) -> bool {
        let exp = self.rel_exp(abs);
        let h = self.header(loc);
        let (seg, off) = self.split(loc);
        // A replicating store gives the touched item a new version, in place
        // when the record has the field.
        let stamp = self.stamp;
        if let Some(at) = h.exp_at
            && (stamp == 0 || h.ver_at.is_some())
        {
            let before = if self.cfg.digest { self.item_digest(loc, &h) } else { 0 };
            let data = self.segs[seg].data.as_mut().expect("live segment");
            data[off + at..off + at + 4].copy_from_slice(&exp.to_le_bytes());
            if let Some(v) = h.ver_at.filter(|_| stamp != 0) {
                data[off + v..off + v + 8].copy_from_slice(&stamp.to_le_bytes());
            }
            if self.cfg.digest {
                let after = self.item_digest(loc, &self.header(loc));
                self.digest ^= before ^ after;
            }
            let s = &mut self.segs[seg];
            if exp != 0 && (s.min_exp == 0 || exp < s.min_exp) {
                s.min_exp = exp;
            }
            return true;
        }
        if exp == 0 && stamp == 0 {
            return true;
        }
        if exp != 0 && exp <= self.now_rel(now) {
            // Already past: gone, as memcached would find it next time.
            self.unlink(loc, &h, self.index_hash(key));
            return true;
        }
        // Only inline records lack the field (see record::has_exp). Writing
        // it again needs room: with -M and a full store this can fail.
        let version = if stamp != 0 { stamp } else { h.version };
        let meta = Meta { exp, cas_pos: Some(self.position(loc, &h)), version, ..h.meta() };
        let body = self.rec(loc)[h.body_at..h.body_at + h.body_len()].to_vec();
        self.insert(key, meta, Body::Stored(&body, h.value_len), now)
    }

    /// Make sure the head of `queue` has `len` free bytes, opening a new
    /// segment (and evicting, when `may_evict`) if needed. Returns where the
    /// record goes and advances the head past it.
    fn reserve(&mut self, queue: Queue, len: usize, now: u64, may_evict: bool) -> Option<u32> {
        debug_assert!(len <= SEG_SIZE);
        loop {
            let q = if queue == Queue::Small { &self.small } else { &self.main };
            if let Some(&id) = q.back() {
                let s = &mut self.segs[id as usize];
                if !s.sealed && SEG_SIZE - s.used as usize >= len {
                    let off = s.used as usize;
                    s.used += len as u32;
                    return Some(self.loc(id, off));
                }
            }
            // Evicting may itself leave room at the head (items moved
            // there), so look again after each step.
            if let Some(block) = self.spare.take() {
                self.open_segment(queue, block, now);
            } else if self.memory_used() + SEG_SIZE <= self.cfg.limit {
                self.blocks += 1;
                self.open_segment(queue, vec![0u8; SEG_SIZE].into_boxed_slice(), now);
            } else if !may_evict || !self.evict_one(now, self.cfg.evict) {
                return None;
            }
        }
    }

    fn open_segment(&mut self, queue: Queue, block: Box<[u8]>, now: u64) {
        let seg = Segment {
            data: Some(block),
            seq: self.next_seq,
            used: 0,
            sealed: false,
            live: 0,
            live_bytes: 0,
            min_exp: 0,
            opened: now,
            queue,
        };
        self.next_seq += SEG_SIZE as u64;
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.segs[id as usize] = seg;
                id
            }
            None => {
                self.segs.push(seg);
                (self.segs.len() - 1) as u32
            }
        };
        match queue {
            Queue::Small => self.small.push_back(id),
            Queue::Main => self.main.push_back(id),
        }
    }

    /// Evict until `bytes` more fit under the limit.
    fn make_room(&mut self, bytes: usize, now: u64) -> bool {
        if bytes > self.cfg.limit {
            return false;
        }
        if self.memory_used() + bytes > self.cfg.limit && self.spare.take().is_some() {
            self.blocks -= 1;
        }
        while self.memory_used() + bytes > self.cfg.limit {
            if !self.evict_one(now, self.cfg.evict) {
                return false;
            }
        }
        true
    }

    /// Count a record that the index is about to point at.
    fn account_new(&mut self, loc: u32, rec_len: usize) {
        let h = self.header(loc);
        debug_assert_eq!(self.align(h.len()), self.align(rec_len));
        let (seg, _) = self.split(loc);
        let s = &mut self.segs[seg];
        s.live += 1;
        s.live_bytes += h.len() as u32;
        if h.exp != 0 && (s.min_exp == 0 || h.exp < s.min_exp) {
            s.min_exp = h.exp;
        }
        let size = h.len() + if h.large { h.stored_len() } else { 0 };
        self.items += 1;
        self.item_bytes += size as u64;
        self.kv_bytes += (h.key_len + h.stored_len()) as u64;
        self.sizes[size_bucket(size)] += 1;
        if let Some(z) = h.compressed {
            self.compressed_items += 1;
            self.compressed_bytes_in += h.value_len as u64;
            self.compressed_bytes_out += z.stored_len as u64;
        }
        if self.cfg.digest {
            self.digest ^= self.item_digest(loc, &h);
        }
    }

    /// Undo `account_new` for a record that is no longer live (the index
    /// no longer points at it), freeing its large value unless told not to.
    fn account_gone(&mut self, loc: u32, h: &Header, free_large: bool) {
        let (seg, _) = self.split(loc);
        if self.cfg.digest {
            self.digest ^= self.item_digest(loc, h);
        }
        let s = &mut self.segs[seg];
        s.live -= 1;
        s.live_bytes -= h.len() as u32;
        let size = h.len() + if h.large { h.stored_len() } else { 0 };
        self.items -= 1;
        self.item_bytes -= size as u64;
        self.kv_bytes -= (h.key_len + h.stored_len()) as u64;
        self.sizes[size_bucket(size)] -= 1;
        if let Some(z) = h.compressed {
            self.compressed_items -= 1;
            self.compressed_bytes_in -= h.value_len as u64;
            self.compressed_bytes_out -= z.stored_len as u64;
        }
        if h.large && free_large {
            let handle = record::large_handle(self.rec(loc), h);
            self.free_large(handle);
        }
    }

    /// A stored frame failed to decompress: log it, count it and drop the
    /// item, so that it reads as a miss from now on.
    pub fn drop_corrupt(&mut self, key: &[u8]) {
        log::error!(
            "stored value of key {:?} is corrupt (decompression failed); dropped",
            String::from_utf8_lossy(key)
        );
        self.codec.stats.corrupt += 1;
        if let Some(loc) = self.find(key) {
            let h = self.header(loc);
            self.unlink(loc, &h, self.index_hash(key));
        }
    }

    fn free_large(&mut self, handle: u32) {
        let v = self.large.remove(handle as usize);
        self.large_bytes -= LargeValue::charge(v.len());
    }

    /// Account for items a growing index could not place (it no longer
    /// points at them): they are evicted.
    fn evict_dropped(&mut self, dropped: &[u32]) {
        for &loc in dropped {
            let h = self.header(loc);
            self.stats.evictions += 1;
            self.stats.evicted_unfetched += u64::from(!h.fetched());
            self.account_gone(loc, &h, true);
        }
    }

    /// Drop an item found expired or flushed, counting it as memcached does.
    fn reclaim(&mut self, loc: u32, h: &Header, hash: u64, by_crawler: bool) {
        if by_crawler {
            self.stats.crawler_reclaimed += 1;
        } else {
            self.stats.reclaimed += 1;
        }
        self.stats.expired_unfetched += u64::from(!h.fetched());
        self.unlink(loc, h, hash);
    }

    /// Remove a live item: index entry, accounting, large value.
    fn unlink(&mut self, loc: u32, h: &Header, hash: u64) {
        self.index.remove(hash, |&l| l == loc);
        self.account_gone(loc, h, true);
    }

    /// The record at `off` in segment `id`, for walking a segment: its
    /// location, header, key hash, whether it is the live version of its
    /// key, and where the next record starts.
    fn walk(&self, id: u32, off: usize) -> (u32, Header, u64, bool, usize) {
        let loc = self.loc(id, off);
        let h = self.header(loc);
        let hash = self.index_hash(&self.rec(loc)[h.key_at..h.key_at + h.key_len]);
        (loc, h, hash, self.is_live(loc, hash), off + self.align(h.len()))
    }

    // ---- eviction ---------------------------------------------------------

    /// Free one segment: the small queue's oldest while that queue holds
    /// more than its tenth, else the main queue's oldest. Its live items
    /// that were read since they were written move to the main queue's head
    /// (see MAIN_MOVE_CAP); the rest are evicted. With `evict` false
    /// (`-M`) only a segment without live unexpired items may go. Returns
    /// false when nothing could be freed.
    fn evict_one(&mut self, now: u64, evict: bool) -> bool {
        let total = self.live_segments();
        let small_share = (total / 10).max(1);
        let from_small = !self.small.is_empty() && (self.small.len() > small_share || self.main.is_empty());
        let victim = if from_small { self.small.front() } else { self.main.front() };
        if !evict {
            return victim.is_some() && self.compact_one(now);
        }
        // The oldest large value goes first unless the segment that would
        // go holds only older items (its last write is older).
        while let Some(&(handle, id)) = self.large_fifo.front() {
            match self.large.get(handle as usize) {
                Some(v) if v.id == id => {
                    if victim.is_none_or(|&s| v.pos < self.segs[s as usize].seq + u64::from(self.segs[s as usize].used))
                    {
                        self.evict_large(handle, now);
                        return true;
                    }
                    break;
                }
                // Gone already (deleted, overwritten or evicted with its record).
                _ => {
                    self.large_fifo.pop_front();
                }
            }
        }
        let Some(&victim) = victim else {
            return false;
        };
        self.evict_segment(victim, now);
        true
    }

    fn evict_large(&mut self, handle: u32, now: u64) {
        self.large_fifo.pop_front();
        let loc = self.large[handle as usize].head;
        let h = self.header(loc);
        let hash = self.index_hash(&self.rec(loc)[h.key_at..h.key_at + h.key_len]);
        debug_assert!(self.is_live(loc, hash), "a large value outlived its record");
        if self.dead(loc, &h, now).is_some() {
            self.reclaim(loc, &h, hash, false);
        } else {
            self.stats.evictions += 1;
            self.stats.evicted_unfetched += u64::from(!h.fetched());
            self.unlink(loc, &h, hash);
        }
    }

    /// Without eviction (`-M`), room comes only from dead items: free the
    /// segment with the most bytes of overwritten, deleted or expired items,
    /// moving its live items to its queue's head. False when no segment has
    /// any.
    fn compact_one(&mut self, now: u64) -> bool {
        let heads = [self.small.back().copied(), self.main.back().copied()];
        let now_rel = self.now_rel(now);
        let mut best: Option<(u32, u32)> = None;
        for &id in self.small.iter().chain(self.main.iter()) {
            if heads.contains(&Some(id)) {
                continue;
            }
            let g = &self.segs[id as usize];
            let dead = g.used - g.live_bytes;
            let expiring = g.min_exp != 0 && g.min_exp <= now_rel;
            if (dead > 0 || expiring || g.seq < self.flush_seq) && best.is_none_or(|(_, d)| dead > d) {
                best = Some((id, dead));
            }
        }
        let Some((id, _)) = best else {
            return false;
        };
        // Moved items gain 8 bytes (their CAS position); compact only when
        // that leaves room to spare.
        let used = self.segs[id as usize].used as usize;
        let mut needed = 0;
        let mut off = 0;
        while off < used {
            let (loc, h, _, live, next) = self.walk(id, off);
            off = next;
            if live && self.dead(loc, &h, now).is_none() {
                let meta = Meta { cas_pos: Some(0), ..h.meta() };
                needed += self.align(record::record_len(&meta, h.key_len, h.value_len));
            }
        }
        if needed >= used {
            return false;
        }
        self.move_segment(id, now, false);
        true
    }

    fn evict_segment(&mut self, id: u32, now: u64) {
        self.move_segment(id, now, true);
    }

    /// Empty a segment and free it. Dead items are reclaimed. With `evict`,
    /// live items read since they were written move to the main queue's
    /// head and the others are evicted; without, every live item moves to
    /// the head of the segment's own queue (compaction).
    fn move_segment(&mut self, id: u32, now: u64, evict: bool) {
        let queue = self.segs[id as usize].queue;
        let from_small = queue == Queue::Small;
        let dest = if evict { Queue::Main } else { queue };
        match self.segs[id as usize].queue {
            Queue::Small => self.small.retain(|&s| s != id),
            Queue::Main => self.main.retain(|&s| s != id),
        }
        if evict {
            self.stats.segments_evicted += 1;
        }
        // Freed at the end: it must not stay as memory nobody counts.
        let mut buf = Vec::new();
        let mut list = std::mem::take(&mut self.move_list);
        list.clear();
        let used = self.segs[id as usize].used as usize;
        let mut off = 0;
        while off < used {
            let (loc, h, hash, live, next) = self.walk(id, off);
            off = next;
            if !live {
                continue;
            }
            if self.dead(loc, &h, now).is_some() {
                self.reclaim(loc, &h, hash, false);
                continue;
            }
            let freq = match (evict, from_small) {
                (false, _) => h.freq(),
                (true, true) => 0,
                (true, false) => h.freq().saturating_sub(1),
            };
            let meta = Meta { cas_pos: Some(self.position(loc, &h)), freq, ..h.meta() };
            let new_len = record::record_len(&meta, h.key_len, h.value_len);
            let cap = if from_small || !evict { SEG_SIZE } else { MAIN_MOVE_CAP };
            if (h.freq() > 0 || !evict) && buf.len() + self.align(new_len) <= cap {
                let rec = self.rec(loc);
                let start = buf.len();
                buf.resize(start + new_len, 0);
                let at =
                    record::write_head(&mut buf[start..], &meta, &rec[h.key_at..h.key_at + h.key_len], h.value_len);
                let body = h.body_len();
                buf[start + at..start + at + body].copy_from_slice(&rec[h.body_at..h.body_at + body]);
                list.push((hash, loc, start, new_len));
                continue;
            }
            self.stats.evictions += 1;
            if !h.fetched() {
                self.stats.evicted_unfetched += 1;
            }
            self.unlink(loc, &h, hash);
        }
        // The moved items still count as live in the old segment until they
        // are written again; account for them there, then free it.
        for &(_, loc, _, _) in &list {
            let h = self.header(loc);
            self.account_gone(loc, &h, false);
        }
        // The id is reused only after the moves, so that no new location
        // equals an old one still in the index.
        let block = self.segs[id as usize].data.take();
        if self.spare.is_none() {
            self.spare = block;
        } else {
            self.blocks -= 1;
        }
        for &(hash, old, start, len) in &list {
            let rec = &buf[start..start + len];
            let Some(loc) = self.reserve(dest, self.align(len), now, false) else {
                // Cannot happen: the moves fit the head's room plus the
                // block just freed. Should it, drop the item.
                self.index.remove(hash, |&l| l == old);
                self.stats.evictions += 1;
                continue;
            };
            let (seg, off) = self.split(loc);
            self.segs[seg].data.as_mut().expect("head segment")[off..off + len].copy_from_slice(rec);
            if let Some(slot) = self.index.find_mut(hash, |&l| l == old) {
                *slot = loc;
            }
            let h = self.header(loc);
            if h.large {
                let handle = record::large_handle(self.rec(loc), &h);
                self.large[handle as usize].head = loc;
            }
            self.account_new(loc, len);
            self.stats.moved += 1;
        }
        self.free_ids.push(id);
        self.move_list = list;
    }

    // ---- expiry -----------------------------------------------------------

    /// Reclaim expired and flushed items, walking at most `budget` records
    /// (and skipping segments with nothing to reclaim), so that memory comes
    /// back without waiting for a read or eviction. Segments left without
    /// live items are freed. Returns the items reclaimed.
    pub fn crawl(&mut self, now: u64, budget: usize) -> usize {
        self.apply_flush(now);
        self.codec.poll_training();
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
        self.crawl_busy = work >= budget;
        reclaimed
    }

    /// Did the last `crawl` stop at its budget? Then calling again soon
    /// pays off.
    pub fn crawl_busy(&self) -> bool {
        self.crawl_busy
    }

    fn next_crawl_seg(&mut self, visited: &mut usize, work: &mut usize) {
        self.crawl_seg += 1;
        self.crawl_off = 0;
        *visited += 1;
        *work += 1;
    }

    /// Release a segment that holds no live items.
    fn free_segment(&mut self, id: u32) {
        debug_assert_eq!(self.segs[id as usize].live, 0);
        match self.segs[id as usize].queue {
            Queue::Small => self.small.retain(|&s| s != id),
            Queue::Main => self.main.retain(|&s| s != id),
        }
        self.segs[id as usize].data = None;
        self.free_ids.push(id);
        self.blocks -= 1;
    }

    // ---- replication ------------------------------------------------------

    /// Hash of what a node must agree on for one item: key, value, flags
    /// and absolute expiry (not the CAS, which is per node, nor where or
    /// how the value is kept).
    fn item_digest(&self, loc: u32, h: &Header) -> u64 {
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
        self.apply_flush(now);
        let id = self
            .small
            .iter()
            .chain(self.main.iter())
            .copied()
            .filter(|&id| self.segs[id as usize].seq >= cursor)
            .min_by_key(|&id| self.segs[id as usize].seq)?;
        let used = self.segs[id as usize].used as usize;
        let mut off = 0;
        while off < used {
            let (loc, h, _, live, next) = self.walk(id, off);
            off = next;
            if live && self.dead(loc, &h, now).is_none() {
                let rec = self.rec(loc);
                f(&rec[h.key_at..h.key_at + h.key_len], &self.item_ref(loc, &h));
            }
        }
        Some(self.segs[id as usize].seq + SEG_SIZE as u64)
    }

    /// Every live key, oldest segment first. O(items): for tests and fuzzing.
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

#[cfg(test)]
mod tests;
