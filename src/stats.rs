//! Per-core counters with memcached's names, and the `stats` replies built
//! from the sum over every core.
//!
//! Each core counts into its own `Counters` (plain integers, no atomics on
//! the request path); `stats` gathers one `Snapshot` per core over the mesh
//! and sums them.

use crate::protocol::encode::encode_stat;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Event counters of one core. Names are memcached's.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters { $(pub $name: u64,)* }

        impl Counters {
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];
            pub fn to_array(&self) -> Vec<u64> { vec![$(self.$name),*] }
            pub fn from_array(a: &[u64]) -> Self {
                let mut it = a.iter().copied();
                Counters { $($name: it.next().unwrap_or(0),)* }
            }
            pub fn add(&mut self, o: &Counters) { $(self.$name += o.$name;)* }
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
    curr_connections, total_connections, rejected_connections, conn_yields,
    forwarded_out, forwarded_in,
    // Filled from the store when a snapshot is taken.
    curr_items, total_items, bytes, limit_maxbytes,
    evictions, evicted_unfetched, reclaimed, expired_unfetched, crawler_reclaimed,
}

/// Counters that `stats reset` leaves alone: they describe state, not events.
const GAUGES: &[&str] = &["curr_connections", "curr_items", "bytes", "limit_maxbytes"];

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
            "curr_connections",
            "total_connections",
            "cmd_get",
            "cmd_set",
            "forwarded_out",
            "forwarded_in",
            "evictions",
        ] {
            encode_stat(out, &format!("core{i}:{name}"), c.get(name));
        }
    }
    out.extend_from_slice(b"END\r\n");
}

/// `stats items`: the store is one LRU per core, shown as memcached's
/// slab class 1 summed over cores.
pub fn render_items(out: &mut Vec<u8>, c: &Counters) {
    if c.curr_items > 0 {
        encode_stat(out, "items:1:number", c.curr_items);
        encode_stat(out, "items:1:mem_requested", c.bytes);
        encode_stat(out, "items:1:evicted", c.evictions);
        encode_stat(out, "items:1:evicted_unfetched", c.evicted_unfetched);
        encode_stat(out, "items:1:outofmemory", c.store_no_memory);
        encode_stat(out, "items:1:reclaimed", c.reclaimed);
        encode_stat(out, "items:1:expired_unfetched", c.expired_unfetched);
        encode_stat(out, "items:1:crawler_reclaimed", c.crawler_reclaimed);
    }
    out.extend_from_slice(b"END\r\n");
}

/// `stats slabs`: there are no slab classes yet; report the totals.
pub fn render_slabs(out: &mut Vec<u8>, c: &Counters) {
    encode_stat(out, "active_slabs", u64::from(c.curr_items > 0));
    encode_stat(out, "total_malloced", c.bytes);
    out.extend_from_slice(b"END\r\n");
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
