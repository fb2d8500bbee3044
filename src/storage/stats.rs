//! What the store counts and reports (`StoreStats`, `EngineStats`, the
//! `stats sizes` buckets) and the memory limit it keeps to (`set_limit`,
//! `set_external`, `memory_used`).
//!
//! Reads the store's fields; must not import protocol, route, repl, server
//! or the server's stats table (whose lines name these figures as their
//! source, stats.rs).

use super::*;

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
    /// Dead bytes freed with evicted segments.
    pub evicted_dead_bytes: u64,
    /// Segments freed by compaction (compact.rs), the live items it moved
    /// and the dead bytes it freed.
    pub compacted_segments: u64,
    pub compacted_items: u64,
    pub compacted_dead_bytes: u64,
}

/// Buckets of `stats sizes`: 32-byte steps up to 1 KiB, then powers of two.
pub const SIZE_BUCKETS: usize = 56;

pub(super) fn size_bucket(size: usize) -> usize {
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
    /// Live items.
    pub items: u64,
    /// The memory limit, in bytes.
    pub limit: u64,
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
    /// Bytes in segments held by live records.
    pub live_bytes: u64,
    /// Segment bytes not written yet (the heads' room, a survivor's, the
    /// spare segment, the few bytes at a segment's end too short for the
    /// next record).
    pub free_bytes: u64,
    /// Compression's contexts and dictionaries, and what a layer above
    /// charges (`set_external`). memory = live + dead + free + index +
    /// large + other.
    pub other_bytes: u64,
    /// Seconds since the oldest segment was opened.
    pub oldest_age: u64,
    /// Live items stored compressed, and their values' bytes before and
    /// after compression.
    pub compressed_items: u64,
    pub compressed_bytes_in: u64,
    pub compressed_bytes_out: u64,
    pub dictionaries: u64,
}

impl Store {
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
            items: self.items,
            limit: self.cfg.limit as u64,
            memory: self.memory_used() as u64,
            index_bytes: self.index.allocation_size() as u64,
            large_bytes: self.large_bytes as u64,
            key_value_bytes: self.kv_bytes,
            item_bytes: self.item_bytes,
            compressed_items: self.compressed_items,
            compressed_bytes_in: self.compressed_bytes_in,
            compressed_bytes_out: self.compressed_bytes_out,
            dictionaries: self.codec.dictionaries() as u64,
            live_bytes: self.seg_live,
            free_bytes: (self.blocks * SEG_SIZE) as u64 - self.seg_used,
            other_bytes: (self.codec.memory() + self.external) as u64,
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
}
