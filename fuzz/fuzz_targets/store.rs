//! Byte-coded store operations (set/add/replace/append/prepend/cas/delete/
//! incr/decr/touch/get/gat/flush/crawl/cache_memlimit, with a clock that
//! advances) on a small `memcore::storage::Store`, checked against a model
//! of the last value written per key: bytes() <= limit and equals the sum of
//! the items' charges, no panic, a hit returns the last value and flags
//! written, a live item is never missed, items vanish only when deleted,
//! expired/flushed or evicted (no more than the eviction count), no
//! eviction with -M, and live + dead + free segment bytes, index, large
//! values and the rest add up to the engine's memory after every step (half
//! the runs overwrite-heavy, so compaction runs). See
//! memcore_fuzz::check_store.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    memcore_fuzz::check_store(data);
});
