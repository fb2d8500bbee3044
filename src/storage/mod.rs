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
//! - Dead records (overwritten, deleted, expired) are won back by
//!   compaction as they arise, so they stay under a tenth of memory.
//! - Everything counts against the limit: segments, large values, the index
//!   and the buffer used to move items.
//!
//! Files, one idea each: this one holds the `Store`'s shape (config,
//! fields, constructor, addressing); `commands.rs` the commands and the
//! write path; `item_ref.rs` an item as read; `segments.rs` segment space
//! and accounting; `eviction.rs` S3-FIFO eviction; `compact.rs` compaction
//! of dead bytes; `crawl.rs` the expiry crawler; `replication.rs`
//! versions, scan and digest; `stats.rs` the counters and the limit;
//! `meta.rs` the meta protocol's per-item stampede state (stale, won, last
//! access); `compress.rs`, `index.rs`, `large.rs` and
//! `record.rs` the pieces below them.
//!
//! The store's own types at its edge (`StoreMode`, `StoreOutcome`,
//! `ArithOutcome`, `Miss`); times are absolute (the caller turns a wire
//! exptime into one with `protocol::absolute_expiry`). Imports only the
//! shared `item` sizes; must not import protocol, route, repl or server.

mod commands;
mod compact;
mod compress;
mod crawl;
mod dump;
mod eviction;
mod index;
mod item_ref;
mod large;
mod meta;
mod record;
mod replication;
mod segments;
mod stats;

use std::collections::VecDeque;

use slab::Slab;

pub use commands::{StoreMode, parse_stored_number};
use compress::Codec;
pub use compress::{CompressConfig, CompressStats, DictMode, TrainingJob};
pub use dump::DumpRecord;
use index::Index;
pub use item_ref::ItemRef;
use item_ref::{Body, Value};
use large::LargeValue;
pub use meta::{MetaDeleteOutcome, MetaView};
use record::{Compressed, Header, Meta};
pub use replication::ApplyOutcome;
use stats::size_bucket;
pub use stats::{EngineStats, SIZE_BUCKETS, StoreStats, size_bucket_label};

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
    /// When a record was last written into it (Unix seconds): the last
    /// access the meta protocol reports for an item without its own
    /// (`meta.rs`).
    written: u64,
    queue: Queue,
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
    /// Bytes written into the allocated segments (alignment included) and
    /// the live records' share of them: dead bytes are the difference.
    seg_used: u64,
    seg_live: u64,
    /// Where compaction's choice of a victim starts looking, and the
    /// segment of each queue (small, main) that compaction is filling with
    /// moved items (compact.rs).
    compact_cursor: usize,
    survivors: [Option<u32>; 2],
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
            seg_used: 0,
            seg_live: 0,
            compact_cursor: 0,
            survivors: [None, None],
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
        }
    }

    fn live_segments(&self) -> usize {
        self.small.len() + self.main.len()
    }

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

    /// A record's CAS value: the one a client chose (meta `E`), else the
    /// one its position gives; 0 with `-C`.
    fn item_cas(&self, loc: u32, h: &Header) -> u64 {
        if self.cfg.use_cas && h.xcas != 0 { h.xcas } else { self.cas_value(self.position(loc, h)) }
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
            cas: self.item_cas(loc, h),
            version: h.version,
            exp: self.abs_exp(h.exp),
            state: h.state,
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
}

#[cfg(test)]
mod tests;
