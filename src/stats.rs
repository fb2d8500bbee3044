//! Per-core counters with memcached's names, and the `stats` replies built
//! from the sum over every core.
//!
//! Each core counts into its own `Counters` (plain integers, no atomics on
//! the request path); `stats` gathers one `Snapshot` per core over the mesh
//! and sums them.

use crate::protocol::encode::encode_stat;
use crate::storage::{SIZE_BUCKETS, size_bucket_label};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Event counters of one core. Names are memcached's.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $(pub $name: u64,)*
            /// Live items per size bucket (`stats sizes`).
            pub sizes: Sizes,
        }

        impl Counters {
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];
            /// The named counters, then the size buckets.
            pub fn to_array(&self) -> Vec<u64> {
                let mut a = vec![$(self.$name),*];
                a.extend_from_slice(&self.sizes.0);
                a
            }
            pub fn from_array(a: &[u64]) -> Self {
                let mut it = a.iter().copied();
                let mut c = Counters { $($name: it.next().unwrap_or(0),)* sizes: Sizes::default() };
                for (slot, v) in c.sizes.0.iter_mut().zip(it) {
                    *slot = v;
                }
                c
            }
            pub fn add(&mut self, o: &Counters) {
                $(self.$name += o.$name;)*
                for (a, b) in self.sizes.0.iter_mut().zip(o.sizes.0.iter()) {
                    *a += b;
                }
            }
        }
    };
}

counters! {
    cmd_get, cmd_set, cmd_flush, cmd_touch,
    get_hits, get_misses, get_expired, get_flushed,
    delete_misses, delete_hits, incr_misses, incr_hits, decr_misses, decr_hits,
    cas_misses, cas_hits, cas_badval, touch_hits, touch_misses,
    store_too_large, store_no_memory,
    bytes_read, bytes_written,
    curr_connections, total_connections, rejected_connections, conn_yields, idle_kicks,
    forwarded_out, forwarded_in, forward_errors,
    // Connection memory (route/budget.rs): bytes held now, the core's
    // budget, batches cut short to drain replies first, and requests refused
    // because the budget was spent.
    conn_memory_bytes, conn_memory_limit, conn_memory_backpressure, conn_memory_refused,
    // Filled from the store when a snapshot is taken.
    curr_items, total_items, bytes, limit_maxbytes,
    evictions, evicted_unfetched, reclaimed, expired_unfetched, crawler_reclaimed,
    moved_items, segments_evicted,
    // The engine's memory (storage/mod.rs, EngineStats).
    engine_memory, engine_segments, engine_small_segments, engine_small_items,
    engine_index_bytes, engine_large_bytes, engine_key_value_bytes, engine_dead_bytes,
    // Compression (storage/compress.rs).
    compress_items, compress_bytes_in, compress_bytes_out, compress_dictionaries,
    compress_skipped_incompressible, compress_skipped_compressed, compress_dict_trainings, compress_corrupt,
}

/// Live items per `stats sizes` bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes(pub [u64; SIZE_BUCKETS]);

impl Default for Sizes {
    fn default() -> Self {
        Sizes([0; SIZE_BUCKETS])
    }
}

/// Counters that `stats reset` leaves alone: they describe state, not events.
const GAUGES: &[&str] = &[
    "curr_connections",
    "conn_memory_bytes",
    "conn_memory_limit",
    "curr_items",
    "bytes",
    "limit_maxbytes",
    "engine_memory",
    "engine_segments",
    "engine_small_segments",
    "engine_small_items",
    "engine_index_bytes",
    "engine_large_bytes",
    "engine_key_value_bytes",
    "engine_dead_bytes",
    "compress_items",
    "compress_bytes_in",
    "compress_bytes_out",
    "compress_dictionaries",
];

impl Counters {
    /// `stats reset`: zero the event counters, keep the gauges.
    pub fn reset(&mut self) {
        let mut a = self.to_array();
        for (i, name) in Self::NAMES.iter().enumerate() {
            if !GAUGES.contains(name) {
                a[i] = 0;
            }
        }
        *self = Counters::from_array(&a);
    }

    /// Serialize for the trip across cores.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in self.to_array() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    pub fn decode(b: &[u8]) -> Counters {
        let a: Vec<u64> = b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        Counters::from_array(&a)
    }
}

/// Process-wide facts `stats` prints beside the counters.
pub struct ServerInfo {
    pub pid: u32,
    pub started: u64,
    pub now: u64,
    pub version: &'static str,
    pub max_connections: u64,
    pub threads: u64,
    pub listeners: u64,
    /// `-o idle_timeout` is set: memcached then shows `idle_kicks`.
    pub idle_timeout: bool,
}

/// The general-purpose `stats` reply, fields in memcached's order.
pub fn render_general(out: &mut Vec<u8>, info: &ServerInfo, c: &Counters) {
    let (user, sys) = rusage();
    encode_stat(out, "pid", info.pid);
    encode_stat(out, "uptime", info.now.saturating_sub(info.started));
    encode_stat(out, "time", info.now);
    encode_stat(out, "version", info.version);
    encode_stat(out, "pointer_size", usize::BITS);
    encode_stat(out, "rusage_user", format!("{}.{:06}", user.0, user.1));
    encode_stat(out, "rusage_system", format!("{}.{:06}", sys.0, sys.1));
    encode_stat(out, "max_connections", info.max_connections);
    encode_stat(out, "curr_connections", c.curr_connections);
    encode_stat(out, "total_connections", c.total_connections);
    encode_stat(out, "rejected_connections", c.rejected_connections);
    // memcached's connection structures include its listening sockets.
    encode_stat(out, "connection_structures", c.curr_connections + info.listeners);
    for name in [
        "cmd_get",
        "cmd_set",
        "cmd_flush",
        "cmd_touch",
        "get_hits",
        "get_misses",
        "get_expired",
        "get_flushed",
        "delete_misses",
        "delete_hits",
        "incr_misses",
        "incr_hits",
        "decr_misses",
        "decr_hits",
        "cas_misses",
        "cas_hits",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "store_too_large",
        "store_no_memory",
    ] {
        encode_stat(out, name, c.get(name));
    }
    encode_stat(out, "auth_cmds", 0);
    encode_stat(out, "auth_errors", 0);
    if info.idle_timeout {
        encode_stat(out, "idle_kicks", c.idle_kicks);
    }
    encode_stat(out, "bytes_read", c.bytes_read);
    encode_stat(out, "bytes_written", c.bytes_written);
    encode_stat(out, "limit_maxbytes", c.limit_maxbytes);
    encode_stat(out, "accepting_conns", 1);
    encode_stat(out, "threads", info.threads);
    encode_stat(out, "conn_yields", c.conn_yields);
    encode_stat(out, "bytes", c.bytes);
    encode_stat(out, "curr_items", c.curr_items);
    encode_stat(out, "total_items", c.total_items);
    encode_stat(out, "expired_unfetched", c.expired_unfetched);
    encode_stat(out, "evicted_unfetched", c.evicted_unfetched);
    encode_stat(out, "evictions", c.evictions);
    encode_stat(out, "reclaimed", c.reclaimed);
    encode_stat(out, "crawler_reclaimed", c.crawler_reclaimed);
    encode_stat(out, "forwarded_requests", c.forwarded_out);
    for name in
        ["forward_errors", "conn_memory_bytes", "conn_memory_limit", "conn_memory_backpressure", "conn_memory_refused"]
    {
        encode_stat(out, name, c.get(name));
    }
    encode_stat(out, "engine_memory", c.engine_memory);
    encode_stat(out, "engine_segments", c.engine_segments);
    encode_stat(out, "engine_index_bytes", c.engine_index_bytes);
    encode_stat(out, "engine_large_bytes", c.engine_large_bytes);
    encode_stat(out, "engine_dead_bytes", c.engine_dead_bytes);
    encode_stat(out, "engine_moved_items", c.moved_items);
    encode_stat(out, "bytes_per_item_overhead", format!("{:.2}", overhead_per_item(c)));
    for name in [
        "compress_items",
        "compress_bytes_in",
        "compress_bytes_out",
        "compress_skipped_incompressible",
        "compress_skipped_compressed",
        "compress_dictionaries",
        "compress_dict_trainings",
        "compress_corrupt",
    ] {
        encode_stat(out, name, c.get(name));
    }
    let ratio = if c.compress_bytes_out == 0 { 0.0 } else { c.compress_bytes_in as f64 / c.compress_bytes_out as f64 };
    encode_stat(out, "compress_ratio", format!("{ratio:.2}"));
    let lookups = c.get_hits + c.get_misses;
    let ratio = if lookups == 0 { 0.0 } else { c.get_hits as f64 / lookups as f64 };
    encode_stat(out, "get_hit_ratio", format!("{ratio:.4}"));
    out.extend_from_slice(b"END\r\n");
}

/// `stats cores`: one block per core, which memcached has no notion of.
pub fn render_cores(out: &mut Vec<u8>, per_core: &[Counters]) {
    for (i, c) in per_core.iter().enumerate() {
        for name in [
            "curr_items",
            "bytes",
            "limit_maxbytes",
            "engine_memory",
            "curr_connections",
            "total_connections",
            "cmd_get",
            "cmd_set",
            "forwarded_out",
            "forwarded_in",
            "forward_errors",
            "conn_memory_bytes",
            "conn_memory_limit",
            "evictions",
        ] {
            encode_stat(out, &format!("core{i}:{name}"), c.get(name));
        }
    }
    out.extend_from_slice(b"END\r\n");
}

/// `stats items`: memcached's per-class LRU figures. memcore has no size
/// classes, so the whole engine is class 1; "hot" is the small (probation)
/// queue and "cold" the main queue.
pub fn render_items(out: &mut Vec<u8>, c: &Counters) {
    if c.curr_items > 0 {
        let stat = |out: &mut Vec<u8>, name: &str, v: u64| encode_stat(out, &format!("items:1:{name}"), v);
        stat(out, "number", c.curr_items);
        stat(out, "number_hot", c.engine_small_items);
        stat(out, "number_warm", 0);
        stat(out, "number_cold", c.curr_items - c.engine_small_items.min(c.curr_items));
        stat(out, "mem_requested", c.bytes);
        stat(out, "evicted", c.evictions);
        stat(out, "evicted_unfetched", c.evicted_unfetched);
        stat(out, "outofmemory", c.store_no_memory);
        stat(out, "reclaimed", c.reclaimed);
        stat(out, "expired_unfetched", c.expired_unfetched);
        stat(out, "crawler_reclaimed", c.crawler_reclaimed);
        stat(out, "moves_to_cold", c.moved_items);
    }
    out.extend_from_slice(b"END\r\n");
}

/// `stats slabs`: the engine's segments shown as memcached's class 1 (one
/// segment per page), then the totals.
pub fn render_slabs(out: &mut Vec<u8>, c: &Counters) {
    if c.engine_segments > 0 {
        let stat = |out: &mut Vec<u8>, name: &str, v: u64| encode_stat(out, &format!("1:{name}"), v);
        stat(out, "chunk_size", crate::storage::SEG_SIZE as u64);
        stat(out, "chunks_per_page", 1);
        stat(out, "total_pages", c.engine_segments);
        stat(out, "total_chunks", c.engine_segments);
        stat(out, "used_chunks", c.engine_segments);
        stat(out, "free_chunks", 0);
        stat(out, "free_chunks_end", 0);
        stat(out, "mem_requested", c.bytes);
        stat(out, "get_hits", c.get_hits);
        stat(out, "cmd_set", c.cmd_set);
        stat(out, "delete_hits", c.delete_hits);
        stat(out, "incr_hits", c.incr_hits);
        stat(out, "decr_hits", c.decr_hits);
        stat(out, "cas_hits", c.cas_hits);
        stat(out, "cas_badval", c.cas_badval);
        stat(out, "touch_hits", c.touch_hits);
    }
    encode_stat(out, "active_slabs", u64::from(c.engine_segments > 0));
    encode_stat(out, "total_malloced", c.engine_memory);
    out.extend_from_slice(b"END\r\n");
}

/// `stats sizes`: live items by total size (32-byte steps up to 1 KiB,
/// then powers of two), as memcached's `-o track_sizes` shows them.
pub fn render_sizes(out: &mut Vec<u8>, c: &Counters) {
    for (b, &n) in c.sizes.0.iter().enumerate() {
        if n > 0 {
            encode_stat(out, &size_bucket_label(b).to_string(), n);
        }
    }
    out.extend_from_slice(b"END\r\n");
}

/// Bytes per item beyond its key and value: record headers and the index.
pub fn overhead_per_item(c: &Counters) -> f64 {
    if c.curr_items == 0 {
        return 0.0;
    }
    let meta = (c.bytes + c.engine_index_bytes).saturating_sub(c.engine_key_value_bytes);
    meta as f64 / c.curr_items as f64
}

impl Counters {
    /// A counter by its memcached name (0 for unknown names).
    pub fn get(&self, name: &str) -> u64 {
        Self::NAMES.iter().position(|n| *n == name).map_or(0, |i| self.to_array()[i])
    }
}

/// (seconds, microseconds) of user and system CPU time of the process.
fn rusage() -> ((i64, i64), (i64, i64)) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ((ru.ru_utime.tv_sec, ru.ru_utime.tv_usec), (ru.ru_stime.tv_sec, ru.ru_stime.tv_usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_the_trip_across_cores() {
        let c = Counters { cmd_get: 7, curr_items: 3, evictions: 9, ..Default::default() };
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(Counters::decode(&b), c);
    }

    #[test]
    fn reset_keeps_gauges() {
        let mut c = Counters { cmd_get: 7, curr_items: 3, curr_connections: 2, ..Default::default() };
        c.reset();
        assert_eq!((c.cmd_get, c.curr_items, c.curr_connections), (0, 3, 2));
    }
}
