//! Per-core figures with memcached's names, declared once, and the `stats`
//! replies built from the sum over every core.
//!
//! The `counters!` table below is the one place a figure is declared: its
//! name, its kind (a counter that `stats reset` zeroes, or a gauge that
//! describes state), one line of help for an exporter, and, for a figure
//! the store keeps, which field of the store's reports it is read from
//! (`read_store`; nothing copies them by hand). `Stat` names a
//! figure in code, so a misspelt name does not compile; `stats` (`GENERAL`,
//! in memcached's order) and `stats cores` (`CORES`) list `Stat`s, and a
//! test pins both replies' names and order.
//!
//! Each core counts into its own `Counters` (plain integers, no atomics on
//! the request path); `stats` gathers one snapshot per core over the mesh,
//! as a typed value (the cores share one process: nothing is encoded), and
//! sums them. Imports protocol's encoder and storage's reports (its figure
//! structs, the size buckets); must not import `server`, `route`, `repl`
//! or `config`.

use crate::protocol::encode::encode_stat;
use crate::storage::{CompressStats, EngineStats, SIZE_BUCKETS, StoreStats, size_bucket_label};

/// Whether `stats reset` zeroes a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Counts events since start (or the last `stats reset`).
    Counter,
    /// Describes state now; `stats reset` leaves it alone.
    Gauge,
}

/// Declares the table: each figure once, with its kind and help, and for
/// a figure the store keeps, where in the store's reports it comes from
/// (`= engine.items`: a field of `StoreFigures`). From it come the
/// `Counters` fields, the `Stat` names that the renderers and an exporter
/// refer to (a misspelt one does not compile), `add`, `reset` and
/// `read_store`.
macro_rules! counters {
    (@read $c:ident $f:ident $name:ident) => {};
    (@read $c:ident $f:ident $name:ident $src:ident . $field:ident) => {
        $c.$name = $f.$src.$field;
    };
    ($($name:ident: $kind:ident $help:literal $(= $src:ident . $field:ident)?,)*) => {
        /// Figures of one core (or their sum). Names are memcached's where
        /// memcached has the figure.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $(#[doc = $help] pub $name: u64,)*
            /// Live items per size bucket (`stats sizes`).
            pub sizes: Sizes,
        }

        /// One figure of `Counters`, by name.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Stat {
            $($name,)*
        }

        impl Stat {
            /// Every figure, in the table's order.
            pub const ALL: &'static [Stat] = &[$(Stat::$name),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Stat::$name => stringify!($name),)*
                }
            }

            pub fn kind(self) -> Kind {
                match self {
                    $(Stat::$name => Kind::$kind,)*
                }
            }

            /// One line for a reader of the figure (an exporter's HELP).
            pub fn help(self) -> &'static str {
                match self {
                    $(Stat::$name => $help,)*
                }
            }
        }

        impl Counters {
            pub fn get(&self, stat: Stat) -> u64 {
                match stat {
                    $(Stat::$name => self.$name,)*
                }
            }

            fn slot(&mut self, stat: Stat) -> &mut u64 {
                match stat {
                    $(Stat::$name => &mut self.$name,)*
                }
            }

            /// Take the figures the store keeps from its reports, each from
            /// the source its table line names.
            pub fn read_store(&mut self, f: &StoreFigures) {
                $(counters!(@read self f $name $($src . $field)?);)*
            }
        }
    };
}

/// The store's reports, which the table's storage figures are read from.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreFigures {
    /// Event counters (`stats reset` zeroes them in the store).
    pub store: StoreStats,
    /// What the engine holds now.
    pub engine: EngineStats,
    pub compress: CompressStats,
}

counters! {
    curr_connections: Gauge "Client connections open now.",
    total_connections: Counter "Client connections accepted.",
    rejected_connections: Counter "Connections refused at the -c limit.",
    cmd_get: Counter "Keys asked for by get, gets, gat and gats.",
    cmd_set: Counter "Storage commands run (set, add, replace, append, prepend, cas).",
    cmd_flush: Counter "flush_all commands.",
    cmd_touch: Counter "Keys touched by touch, gat and gats.",
    cmd_meta: Counter "me (meta debug) commands, as memcached counts them.",
    get_hits: Counter "Keys found by get and gets.",
    get_misses: Counter "Keys not found by get and gets.",
    get_expired: Counter "Keys not found because they had expired.",
    get_flushed: Counter "Keys not found because flush_all had invalidated them.",
    delete_misses: Counter "delete of a key that was not there.",
    delete_hits: Counter "delete of a key that was there.",
    incr_misses: Counter "incr of a key that was not there.",
    incr_hits: Counter "incr of a key that was there.",
    decr_misses: Counter "decr of a key that was not there.",
    decr_hits: Counter "decr of a key that was there.",
    cas_misses: Counter "cas of a key that was not there.",
    cas_hits: Counter "cas that stored.",
    cas_badval: Counter "cas refused because the item had changed.",
    touch_hits: Counter "Touches of a key that was there.",
    touch_misses: Counter "Touches of a key that was not there.",
    store_too_large: Counter "Writes refused for a value over the item size limit.",
    store_no_memory: Counter "Writes refused for want of memory.",
    auth_cmds: Counter "Authentication attempts (-Y): the set that carries user and password.",
    auth_errors: Counter "Authentication attempts refused (-Y): unknown user or wrong password.",
    ssl_handshake_errors: Counter "TLS handshakes refused or failed (-Z): bad or missing client certificates, plain text, timeouts.",
    idle_kicks: Counter "Connections closed by -o idle_timeout.",
    bytes_read: Counter "Bytes read from clients.",
    bytes_written: Counter "Bytes written to clients.",
    limit_maxbytes: Gauge "Memory limit for items, in bytes." = engine.limit,
    conn_yields: Counter "Times a connection yielded to others after -R requests.",
    bytes: Gauge "Bytes of live items." = engine.item_bytes,
    curr_items: Gauge "Live items." = engine.items,
    total_items: Counter "Items stored." = store.total_items,
    expired_unfetched: Counter "Items expired without being read." = store.expired_unfetched,
    evicted_unfetched: Counter "Items evicted without being read." = store.evicted_unfetched,
    evictions: Counter "Live items evicted to make room." = store.evictions,
    reclaimed: Counter "Writes that reused the room of an expired item." = store.reclaimed,
    crawler_reclaimed: Counter "Expired items removed by the background crawl." = store.crawler_reclaimed,
    forwarded_out: Counter "Requests this core sent to the core owning the key.",
    forwarded_in: Counter "Requests this core ran for another core.",
    forward_errors: Counter "Forwarded replies that did not match their request.",
    // Connection memory (route/budget.rs): bytes held now, the core's
    // budget, batches cut short to drain replies first, and requests refused
    // because the budget was spent.
    conn_memory_bytes: Gauge "Bytes held by connections' buffers now.",
    conn_memory_limit: Gauge "Budget for connections' buffers, in bytes.",
    conn_memory_backpressure: Counter "Batches cut short to drain replies under the budget.",
    conn_memory_refused: Counter "Requests refused because the connection budget was spent.",
    // The engine's memory (storage, EngineStats).
    engine_memory: Gauge "Bytes the engine holds (segments, index, large items)." = engine.memory,
    engine_segments: Gauge "Segments in use." = engine.segments,
    engine_small_segments: Gauge "Segments of the small (probation) queue." = engine.small_segments,
    engine_small_items: Gauge "Items in the small (probation) queue." = engine.small_items,
    engine_index_bytes: Gauge "Bytes of the index." = engine.index_bytes,
    engine_large_bytes: Gauge "Bytes of items stored outside segments." = engine.large_bytes,
    engine_key_value_bytes: Gauge "Bytes of live keys and values." = engine.key_value_bytes,
    engine_dead_bytes: Gauge "Bytes of dead records not yet compacted." = engine.dead_bytes,
    moved_items: Counter "Items moved from the small queue to the main queue." = store.moved,
    // Dead bytes and what won them back (storage/compact.rs).
    engine_compacted_segments: Counter "Segments freed by compaction (live items moved, dead bytes won back)." = store.compacted_segments,
    engine_compacted_items: Counter "Live items moved by compaction." = store.compacted_items,
    engine_compacted_dead_bytes: Counter "Dead bytes won back by compaction." = store.compacted_dead_bytes,
    engine_evicted_dead_bytes: Counter "Dead bytes freed with evicted segments." = store.evicted_dead_bytes,
    segments_evicted: Counter "Segments evicted whole." = store.segments_evicted,
    // Compression (storage/compress.rs).
    compress_items: Gauge "Live items stored compressed." = engine.compressed_items,
    compress_bytes_in: Gauge "Bytes of compressed items' values before compression." = engine.compressed_bytes_in,
    compress_bytes_out: Gauge "Bytes of compressed items' values after compression." = engine.compressed_bytes_out,
    compress_skipped_incompressible: Counter "Values left uncompressed because they did not shrink." = compress.skipped_incompressible,
    compress_skipped_compressed: Counter "Values left uncompressed because they looked compressed already." = compress.skipped_compressed,
    compress_dictionaries: Gauge "Compression dictionaries in use." = engine.dictionaries,
    compress_dict_trainings: Counter "Compression dictionaries trained." = compress.dict_trainings,
    compress_corrupt: Counter "Compressed values that failed to decompress." = compress.corrupt,
}

/// Live items per `stats sizes` bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes(pub [u64; SIZE_BUCKETS]);

impl Default for Sizes {
    fn default() -> Self {
        Sizes([0; SIZE_BUCKETS])
    }
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        for &s in Stat::ALL {
            *self.slot(s) += o.get(s);
        }
        for (a, b) in self.sizes.0.iter_mut().zip(o.sizes.0.iter()) {
            *a += b;
        }
    }

    /// `stats reset`: zero the counters, keep the gauges (and the sizes).
    pub fn reset(&mut self) {
        for &s in Stat::ALL {
            if s.kind() == Kind::Counter {
                *self.slot(s) = 0;
            }
        }
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

/// One line of the general-purpose `stats` reply.
enum Line {
    /// A figure of the table under its own name.
    Stat(Stat),
    /// A figure of the table under another name on the wire.
    Renamed(&'static str, Stat),
    /// A figure memcached shows only with `-o idle_timeout`.
    WithIdleTimeout(Stat),
    /// A process-wide fact or a figure derived from the table.
    Info(&'static str, fn(&ServerInfo, &Counters) -> String),
}

/// The general-purpose `stats` reply, in memcached's order for memcached's
/// fields, then memcore's own. Names, kinds and help come from the table.
const GENERAL: &[Line] = {
    use Line::{Info, Renamed, Stat as S, WithIdleTimeout};
    use Stat::*;
    &[
        Info("pid", |i, _| i.pid.to_string()),
        Info("uptime", |i, _| i.now.saturating_sub(i.started).to_string()),
        Info("time", |i, _| i.now.to_string()),
        Info("version", |i, _| i.version.to_string()),
        Info("pointer_size", |_, _| usize::BITS.to_string()),
        Info("rusage_user", |_, _| {
            let (s, us) = rusage().0;
            format!("{s}.{us:06}")
        }),
        Info("rusage_system", |_, _| {
            let (s, us) = rusage().1;
            format!("{s}.{us:06}")
        }),
        Info("max_connections", |i, _| i.max_connections.to_string()),
        S(curr_connections),
        S(total_connections),
        S(rejected_connections),
        // memcached's connection structures include its listening sockets.
        Info("connection_structures", |i, c| (c.curr_connections + i.listeners).to_string()),
        S(cmd_get),
        S(cmd_set),
        S(cmd_flush),
        S(cmd_touch),
        S(cmd_meta),
        S(get_hits),
        S(get_misses),
        S(get_expired),
        S(get_flushed),
        S(delete_misses),
        S(delete_hits),
        S(incr_misses),
        S(incr_hits),
        S(decr_misses),
        S(decr_hits),
        S(cas_misses),
        S(cas_hits),
        S(cas_badval),
        S(touch_hits),
        S(touch_misses),
        S(store_too_large),
        S(store_no_memory),
        S(auth_cmds),
        S(auth_errors),
        S(ssl_handshake_errors),
        WithIdleTimeout(idle_kicks),
        S(bytes_read),
        S(bytes_written),
        S(limit_maxbytes),
        Info("accepting_conns", |_, _| "1".into()),
        Info("threads", |i, _| i.threads.to_string()),
        S(conn_yields),
        S(bytes),
        S(curr_items),
        S(total_items),
        S(expired_unfetched),
        S(evicted_unfetched),
        S(evictions),
        S(reclaimed),
        S(crawler_reclaimed),
        Renamed("forwarded_requests", forwarded_out),
        S(forward_errors),
        S(conn_memory_bytes),
        S(conn_memory_limit),
        S(conn_memory_backpressure),
        S(conn_memory_refused),
        S(engine_memory),
        S(engine_segments),
        S(engine_index_bytes),
        S(engine_large_bytes),
        S(engine_dead_bytes),
        Renamed("engine_moved_items", moved_items),
        S(engine_compacted_segments),
        S(engine_compacted_items),
        S(engine_compacted_dead_bytes),
        S(engine_evicted_dead_bytes),
        Info("bytes_per_item_overhead", |_, c| format!("{:.2}", overhead_per_item(c))),
        S(compress_items),
        S(compress_bytes_in),
        S(compress_bytes_out),
        S(compress_skipped_incompressible),
        S(compress_skipped_compressed),
        S(compress_dictionaries),
        S(compress_dict_trainings),
        S(compress_corrupt),
        Info("compress_ratio", |_, c| {
            let ratio =
                if c.compress_bytes_out == 0 { 0.0 } else { c.compress_bytes_in as f64 / c.compress_bytes_out as f64 };
            format!("{ratio:.2}")
        }),
        Info("get_hit_ratio", |_, c| {
            let lookups = c.get_hits + c.get_misses;
            let ratio = if lookups == 0 { 0.0 } else { c.get_hits as f64 / lookups as f64 };
            format!("{ratio:.4}")
        }),
    ]
};

/// The figures `stats cores` shows for each core, in its order.
const CORES: &[Stat] = {
    use Stat::*;
    &[
        curr_items,
        bytes,
        limit_maxbytes,
        engine_memory,
        curr_connections,
        total_connections,
        cmd_get,
        cmd_set,
        forwarded_out,
        forwarded_in,
        forward_errors,
        conn_memory_bytes,
        conn_memory_limit,
        evictions,
    ]
};

/// The general-purpose `stats` reply (see `GENERAL`).
pub fn render_general(out: &mut Vec<u8>, info: &ServerInfo, c: &Counters) {
    for line in GENERAL {
        match *line {
            Line::Stat(s) => encode_stat(out, s.name(), c.get(s)),
            Line::Renamed(name, s) => encode_stat(out, name, c.get(s)),
            Line::WithIdleTimeout(s) if info.idle_timeout => encode_stat(out, s.name(), c.get(s)),
            Line::WithIdleTimeout(_) => {}
            Line::Info(name, value) => encode_stat(out, name, value(info, c)),
        }
    }
    out.extend_from_slice(b"END\r\n");
}

/// `stats cores`: one block per core, which memcached has no notion of.
pub fn render_cores(out: &mut Vec<u8>, per_core: &[Counters]) {
    for (i, c) in per_core.iter().enumerate() {
        for &s in CORES {
            encode_stat(out, &format!("core{i}:{}", s.name()), c.get(s));
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

/// (seconds, microseconds) of user and system CPU time of the process.
pub fn rusage() -> ((i64, i64), (i64, i64)) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ((ru.ru_utime.tv_sec, ru.ru_utime.tv_usec), (ru.ru_stime.tv_sec, ru.ru_stime.tv_usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_figures_are_read_from_the_source_their_line_names() {
        let mut f = StoreFigures::default();
        f.engine.items = 7;
        f.engine.item_bytes = 700;
        f.engine.dictionaries = 2;
        f.store.moved = 5;
        f.compress.corrupt = 3;
        let mut c = Counters { cmd_get: 9, ..Default::default() };
        c.read_store(&f);
        assert_eq!((c.curr_items, c.bytes, c.compress_dictionaries), (7, 700, 2));
        assert_eq!((c.moved_items, c.compress_corrupt, c.cmd_get), (5, 3, 9));
    }

    #[test]
    fn reset_keeps_gauges() {
        let mut c = Counters { cmd_get: 7, curr_items: 3, curr_connections: 2, ..Default::default() };
        c.reset();
        assert_eq!((c.cmd_get, c.curr_items, c.curr_connections), (0, 3, 2));
    }

    /// The names of a rendered reply, in order.
    fn names(out: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(out);
        text.lines().filter_map(|l| l.strip_prefix("STAT ")).map(|l| l.split(' ').next().unwrap().to_string()).collect()
    }

    fn info(idle_timeout: bool) -> ServerInfo {
        ServerInfo {
            pid: 1,
            started: 10,
            now: 20,
            version: "1.6.18",
            max_connections: 1024,
            threads: 2,
            listeners: 1,
            idle_timeout,
        }
    }

    /// The wire order of `stats`: memcached's fields in memcached's order,
    /// then memcore's. Clients and the differential test read it.
    #[test]
    fn stats_names_and_order_are_pinned() {
        let mut out = Vec::new();
        render_general(&mut out, &info(true), &Counters::default());
        let want = "pid uptime time version pointer_size rusage_user rusage_system max_connections \
            curr_connections total_connections rejected_connections connection_structures \
            cmd_get cmd_set cmd_flush cmd_touch cmd_meta get_hits get_misses get_expired get_flushed \
            delete_misses delete_hits incr_misses incr_hits decr_misses decr_hits \
            cas_misses cas_hits cas_badval touch_hits touch_misses store_too_large store_no_memory \
            auth_cmds auth_errors ssl_handshake_errors idle_kicks bytes_read bytes_written limit_maxbytes accepting_conns \
            threads conn_yields bytes curr_items total_items expired_unfetched evicted_unfetched \
            evictions reclaimed crawler_reclaimed forwarded_requests forward_errors \
            conn_memory_bytes conn_memory_limit conn_memory_backpressure conn_memory_refused \
            engine_memory engine_segments engine_index_bytes engine_large_bytes engine_dead_bytes \
            engine_moved_items engine_compacted_segments engine_compacted_items \
            engine_compacted_dead_bytes engine_evicted_dead_bytes bytes_per_item_overhead compress_items compress_bytes_in \
            compress_bytes_out compress_skipped_incompressible compress_skipped_compressed \
            compress_dictionaries compress_dict_trainings compress_corrupt compress_ratio get_hit_ratio";
        assert_eq!(names(&out), want.split_whitespace().collect::<Vec<_>>());
        let mut out = Vec::new();
        render_general(&mut out, &info(false), &Counters::default());
        assert!(!names(&out).iter().any(|n| n == "idle_kicks"));
    }

    #[test]
    fn stats_cores_names_and_order_are_pinned() {
        let mut out = Vec::new();
        render_cores(&mut out, &[Counters::default(), Counters { cmd_get: 4, ..Default::default() }]);
        let want = "curr_items bytes limit_maxbytes engine_memory curr_connections total_connections \
            cmd_get cmd_set forwarded_out forwarded_in forward_errors conn_memory_bytes conn_memory_limit evictions";
        let want: Vec<String> =
            (0..2).flat_map(|i| want.split_whitespace().map(move |n| format!("core{i}:{n}"))).collect();
        assert_eq!(names(&out), want);
        assert!(String::from_utf8_lossy(&out).contains("STAT core1:cmd_get 4\r\n"));
    }

    /// Every figure has a help line, and no name is shown twice.
    #[test]
    fn every_figure_is_declared_once_with_help() {
        let mut seen = std::collections::HashSet::new();
        for &s in Stat::ALL {
            assert!(seen.insert(s.name()), "{} declared twice", s.name());
            assert!(!s.help().is_empty() && !s.help().contains('\n'), "{}: one line of help", s.name());
        }
        let mut out = Vec::new();
        render_general(&mut out, &info(true), &Counters::default());
        let shown = names(&out);
        let unique: std::collections::HashSet<_> = shown.iter().collect();
        assert_eq!(unique.len(), shown.len(), "a name twice in `stats`");
    }

    #[test]
    fn the_gauges_are_the_state_figures() {
        let gauges: Vec<&str> = Stat::ALL.iter().filter(|s| s.kind() == Kind::Gauge).map(|s| s.name()).collect();
        let mut gauges = gauges;
        gauges.sort_unstable();
        let mut want = vec![
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
        want.sort_unstable();
        assert_eq!(gauges, want);
    }
}
