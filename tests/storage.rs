//! The storage engine through the real binary: large items, memory bounds,
//! expiry reclaim, runtime memory limits and the stats that describe it.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// `size` incompressible bytes (memcore compresses values by default; these
/// tests are about memory, so they must not shrink).
fn payload(size: usize) -> Vec<u8> {
    Rng::new(size as u64).bytes(size)
}

/// Write `n` items `prefix0..` of `size` bytes with noreply sets, in big
/// pipelined batches, then make sure the server has read them all.
fn fill(c: &mut Conn, prefix: &str, n: usize, size: usize, exptime: i64) {
    let value = payload(size);
    let mut batch = Vec::with_capacity(1 << 20);
    for i in 0..n {
        batch.extend_from_slice(format!("set {prefix}{i} 0 {exptime} {size} noreply\r\n").as_bytes());
        batch.extend_from_slice(&value);
        batch.extend_from_slice(b"\r\n");
        if batch.len() > 1 << 20 {
            c.send(&batch);
            batch.clear();
        }
    }
    c.send(&batch);
    // Replies come in order: once this one is back, every set was read.
    assert!(c.request(b"version\r\n").starts_with(b"VERSION "));
}

/// A 100 MiB value is stored in chunks and comes back byte for byte.
#[test]
fn hundred_mib_value_round_trips() {
    let Some(s) = Server::start_custom_or_skip("hundred_mib_value_round_trips", 2, &["-m", "512", "-I", "128m"]) else {
        return;
    };
    let mut c = s.conn();
    let len = 100 << 20;
    let data = payload(len);
    assert_bytes!(c.request(&store_cmd("set", "huge", 7, 0, &data)), b"STORED\r\n");
    c.send(b"get huge\r\n");
    let head = c.read_line();
    assert_eq!(head, format!("VALUE huge 7 {len}\r\n").into_bytes());
    let body = c.read_exact_n(len + 2);
    assert!(body[..len] == data[..], "the 100 MiB value came back changed");
    assert_eq!(&body[len..], b"\r\n");
    assert_bytes!(c.read_line(), b"END\r\n");
    assert_bytes!(c.request(&store_cmd("append", "huge", 0, 0, b"!")), b"STORED\r\n");
    if s.is_memcore() {
        let st = c.stats("stats");
        assert!(stat_u64(&st, "engine_large_bytes") > len as u64);
    }
    assert_bytes!(c.request(b"delete huge\r\n"), b"DELETED\r\n");
    if s.is_memcore() {
        assert_eq!(stat_u64(&c.stats("stats"), "engine_large_bytes"), 0);
    }
}

/// Small items, then large ones, then small again with -t 2 -m 64: the
/// process never holds more than -m x 1.05 + 32 MiB.
#[test]
fn rss_stays_within_the_memory_limit_as_sizes_shift() {
    let Some(s) = Server::start_custom_or_skip("rss_stays_within_the_memory_limit", 2, &["-m", "64"]) else {
        return;
    };
    let Some(pid) = s.pid() else { return };
    let bound = 64 * (1 << 20) * 105 / 100 + (32 << 20);
    let mut c = s.conn();
    for (phase, (n, size)) in [(700_000, 100), (400, 300_000), (700_000, 100)].into_iter().enumerate() {
        fill(&mut c, &format!("p{phase}-"), n, size, 0);
        let rss = rss_bytes(pid);
        assert!(rss <= bound, "phase {phase} ({n} x {size} B): RSS {rss} over {bound}");
    }
    let st = c.stats("stats");
    assert!(stat_u64(&st, "evictions") > 0);
    if s.is_memcore() {
        assert!(stat_u64(&st, "engine_memory") <= 64 << 20);
    }
}

/// Items with a short TTL that nobody reads again leave curr_items and
/// bytes within seconds.
#[test]
fn expired_items_are_reclaimed_without_reads() {
    let Some(s) = Server::start_custom_or_skip("expired_items_are_reclaimed", 2, &["-m", "256"]) else {
        return;
    };
    let mut c = s.conn();
    // A TTL long enough that a slow (shared, loaded) machine finishes
    // writing before the first items expire.
    fill(&mut c, "ttl", 200_000, 50, 4);
    fill(&mut c, "keep", 1000, 50, 0);
    let st = c.stats("stats");
    assert!(stat_u64(&st, "curr_items") > 150_000, "{:?}", st.get("curr_items"));
    let start = Instant::now();
    loop {
        let st = c.stats("stats");
        if stat_u64(&st, "curr_items") == 1000 {
            assert!(stat_u64(&st, "bytes") < 1000 * 100);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still {:?} items", st.get("curr_items"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_bytes!(c.request(b"get keep7\r\n"), [value("keep7", 0, &payload(50)), b"END\r\n".to_vec()].concat());
}

/// cache_memlimit shrinks every core's share at once (evicting) and grows
/// it again; stats cores shows each core's use against its limit.
#[test]
fn cache_memlimit_shrinks_and_grows_every_core() {
    let Some(s) = Server::start_custom_or_skip("cache_memlimit_shrinks", 2, &["-m", "64"]) else {
        return;
    };
    if !s.is_memcore() {
        return;
    }
    let mut c = s.conn();
    fill(&mut c, "m", 400_000, 100, 0);
    let before = stat_u64(&c.stats("stats"), "curr_items");
    assert_bytes!(c.request(b"cache_memlimit 16\r\n"), b"OK\r\n");
    let st = c.stats("stats");
    assert!(stat_u64(&st, "engine_memory") <= 16 << 20);
    assert!(stat_u64(&st, "curr_items") < before / 2);
    let cores = c.stats("stats cores");
    for i in 0..2 {
        let used = stat_u64(&cores, &format!("core{i}:engine_memory"));
        let limit = stat_u64(&cores, &format!("core{i}:limit_maxbytes"));
        assert_eq!(limit, 8 << 20);
        assert!(used <= limit && used > limit / 2, "core {i}: {used} of {limit}");
    }
    assert_bytes!(c.request(b"cache_memlimit 128\r\n"), b"OK\r\n");
    fill(&mut c, "n", 400_000, 100, 0);
    assert!(stat_u64(&c.stats("stats"), "curr_items") > before);
}

/// stats items, slabs and sizes describe the engine with memcached's names.
#[test]
fn stats_items_slabs_and_sizes_describe_the_engine() {
    let Some(s) = Server::start_custom_or_skip("stats_items_slabs_sizes", 2, &["-m", "64"]) else {
        return;
    };
    if !s.is_memcore() {
        return;
    }
    let mut c = s.conn();
    fill(&mut c, "a", 1000, 10, 0);
    fill(&mut c, "b", 10, 5000, 0);
    let items = c.stats("stats items");
    assert_eq!(stat_u64(&items, "items:1:number"), 1010);
    for k in ["evicted", "evicted_unfetched", "expired_unfetched", "reclaimed", "number_hot", "number_cold"] {
        assert!(items.contains_key(&format!("items:1:{k}")), "stats items lacks {k}");
    }
    let slabs = c.stats("stats slabs");
    assert!(stat_u64(&slabs, "1:total_pages") >= 2);
    assert!(stat_u64(&slabs, "total_malloced") > 0);
    let sizes = c.stats("stats sizes");
    // "a" items: 3 bytes of header + 2-4 of key + 10 of value = 15-17 bytes.
    assert_eq!(stat_u64(&sizes, "32"), 1000, "{sizes:?}");
    assert_eq!(stat_u64(&sizes, "8192"), 10, "{sizes:?}");
    let st = c.stats("stats");
    let overhead: f64 = st["bytes_per_item_overhead"].parse().unwrap();
    assert!(overhead > 3.0 && overhead < 24.0, "{overhead}");
}

/// A long overwrite loop with far more memory than live data (issue 12):
/// dead copies are won back as they arise, so engine memory and RSS track
/// the live items instead of growing to -m; deleting half the keys gives
/// memory back without any further write (the maintenance tick compacts).
#[test]
fn an_overwrite_loop_keeps_dead_bytes_bounded() {
    let Some(s) = Server::start_custom_or_skip("an_overwrite_loop_keeps_dead_bytes_bounded", 1, &["-m", "1024"]) else {
        return;
    };
    let Some(pid) = s.pid() else { return };
    let mut c = s.conn();
    let keys = 100_000;
    for round in 0..20 {
        fill(&mut c, "ow-", keys, 100, 0);
        let st = c.stats("stats");
        let (dead, memory) = (stat_u64(&st, "engine_dead_bytes"), stat_u64(&st, "engine_memory"));
        assert!(dead * 100 <= memory * 15, "round {round}: dead {dead} of engine memory {memory}");
    }
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "curr_items"), keys as u64);
    assert!(stat_u64(&st, "engine_compacted_segments") > 0 && stat_u64(&st, "evictions") == 0);
    let live = stat_u64(&st, "bytes");
    let memory = stat_u64(&st, "engine_memory");
    // 20 x 11.8 MB written; without compaction memory grew to ~236 MB.
    assert!(memory <= live * 13 / 10 + (4 << 20), "engine memory {memory} for {live} live bytes");
    let rss = rss_bytes(pid);
    assert!(rss <= 64 << 20, "RSS {rss} after the overwrite loop");
    let mut batch = Vec::new();
    for i in (0..keys).step_by(2) {
        batch.extend_from_slice(format!("delete ow-{i} noreply\r\n").as_bytes());
    }
    c.send(&batch);
    assert!(c.request(b"version\r\n").starts_with(b"VERSION "));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = c.stats("stats");
        let (dead, memory) = (stat_u64(&st, "engine_dead_bytes"), stat_u64(&st, "engine_memory"));
        if dead * 100 <= memory * 15 {
            assert!(memory <= stat_u64(&st, "bytes") * 13 / 10 + (4 << 20), "memory {memory} after the deletes");
            break;
        }
        assert!(Instant::now() < deadline, "dead {dead} of {memory} 10 s after deleting half the keys");
        std::thread::sleep(Duration::from_millis(50));
    }
}
