//! The store's unit and model tests: commands as memcached answers them,
//! expiry, flush, the crawl, eviction, large and compressed values, the
//! replication digest, and random operations checked against a model.
//! Like the store, must not import protocol, route, repl or server.

use super::*;
use std::collections::HashMap;

const NOW: u64 = 1_700_000_000;

/// Items up to 16 MiB (-I 16m), for the tests of large values.
const ITEM_MAX: usize = 16 << 20;

fn store(limit: usize) -> Store {
    Store::new(StoreConfig { limit, started: NOW - 100, item_size_max: ITEM_MAX, ..Default::default() })
}

fn compressing_store(limit: usize, min_size: usize) -> Store {
    let compress = CompressConfig { enabled: true, min_size, ..Default::default() };
    Store::new(StoreConfig { limit, started: NOW - 100, compress, item_size_max: ITEM_MAX, ..Default::default() })
}

fn get(s: &mut Store, k: &str, now: u64) -> Option<Vec<u8>> {
    s.get(k.as_bytes(), now).ok().map(|i| i.value_vec())
}

fn set(s: &mut Store, k: &str, v: &str, now: u64) -> StoreOutcome {
    s.store(StoreMode::Set, k.as_bytes(), 0, 0, v.as_bytes(), 0, 0, now)
}

fn cas_of(s: &mut Store, k: &str, now: u64) -> u64 {
    s.get(k.as_bytes(), now).unwrap().cas
}

/// Accounting invariants that must hold after every operation.
fn check(s: &Store) {
    assert!(s.memory_used() <= s.limit(), "memory {} over limit {}", s.memory_used(), s.limit());
    let keys = s.live_keys();
    assert_eq!(keys.len() as u64, s.curr_items(), "live records and item count disagree");
    assert_eq!(s.sizes().iter().sum::<u64>(), s.curr_items());
    let live: u32 = s.segs.iter().filter(|g| g.data.is_some()).map(|g| g.live).sum();
    assert_eq!(u64::from(live), s.curr_items());
}

#[test]
fn storage_modes_follow_memcached() {
    let mut s = store(1 << 20);
    assert_eq!(s.store(StoreMode::Replace, b"k", 0, 0, b"v", 0, 0, NOW), StoreOutcome::NotStored);
    assert_eq!(s.store(StoreMode::Append, b"k", 0, 0, b"v", 0, 0, NOW), StoreOutcome::NotStored);
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"v", 1, 0, NOW), StoreOutcome::NotFound);
    assert_eq!(s.store(StoreMode::Add, b"k", 5, 0, b"mid", 0, 0, NOW), StoreOutcome::Stored);
    assert_eq!(s.store(StoreMode::Add, b"k", 0, 0, b"x", 0, 0, NOW), StoreOutcome::NotStored);
    assert_eq!(s.store(StoreMode::Append, b"k", 9, 0, b">", 0, 0, NOW), StoreOutcome::Stored);
    assert_eq!(s.store(StoreMode::Prepend, b"k", 9, 0, b"<", 0, 0, NOW), StoreOutcome::Stored);
    let item = s.get(b"k", NOW).unwrap();
    assert_eq!((item.value_vec(), item.flags), (b"<mid>".to_vec(), 5), "append/prepend keep the flags");
    let cas = item.cas;
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"new", cas + 1, 0, NOW), StoreOutcome::Exists);
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"new", cas, 0, NOW), StoreOutcome::Stored);
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"again", cas, 0, NOW), StoreOutcome::Exists);
    assert_eq!(get(&mut s, "k", NOW).unwrap(), b"new");
    check(&s);
}

#[test]
fn cas_values_are_unique_and_strided_per_core() {
    let mut s = Store::new(StoreConfig { cas_stride: 4, cas_offset: 3, ..Default::default() });
    set(&mut s, "a", "1", NOW);
    set(&mut s, "b", "1", NOW);
    let a = cas_of(&mut s, "a", NOW);
    let b = cas_of(&mut s, "b", NOW);
    assert_ne!(a, b);
    assert_eq!(a % 4, 3);
    assert_eq!(b % 4, 3);
    set(&mut s, "a", "2", NOW);
    assert!(cas_of(&mut s, "a", NOW) > b, "a new version gets a new, larger CAS");
    assert!(s.touch(b"a", NOW + 100, 0, NOW));
    let a2 = cas_of(&mut s, "a", NOW);
    assert!(s.touch(b"a", NOW + 200, 0, NOW));
    assert_eq!(cas_of(&mut s, "a", NOW), a2, "touch keeps the CAS, like memcached");
}

#[test]
fn incr_decr_wrap_clamp_and_pad_like_memcached() {
    let mut s = store(1 << 20);
    set(&mut s, "n", "100", NOW);
    assert_eq!(s.arith(b"n", false, 95, 0, NOW), ArithOutcome::Value(5));
    assert_eq!(get(&mut s, "n", NOW).unwrap(), b"5  ");
    assert_eq!(s.arith(b"n", false, 10, 0, NOW), ArithOutcome::Value(0));
    assert_eq!(s.arith(b"n", true, u64::MAX, 0, NOW), ArithOutcome::Value(u64::MAX));
    assert_eq!(s.arith(b"n", true, 2, 0, NOW), ArithOutcome::Value(1));
    assert_eq!(get(&mut s, "n", NOW).unwrap(), b"1                   ");
    set(&mut s, "n", "9", NOW);
    let before = cas_of(&mut s, "n", NOW);
    assert_eq!(s.arith(b"n", true, 1, 0, NOW), ArithOutcome::Value(10));
    assert_eq!(get(&mut s, "n", NOW).unwrap(), b"10");
    assert_ne!(cas_of(&mut s, "n", NOW), before, "incr changes the CAS");
    set(&mut s, "t", "abc", NOW);
    assert_eq!(s.arith(b"t", true, 1, 0, NOW), ArithOutcome::NonNumeric);
    set(&mut s, "e", "", NOW);
    assert_eq!(s.arith(b"e", true, 1, 0, NOW), ArithOutcome::NonNumeric);
    assert_eq!(s.arith(b"missing", true, 1, 0, NOW), ArithOutcome::NotFound);
    check(&s);
}

#[test]
fn expiry_rules() {
    let mut s = store(1 << 20);
    s.store(StoreMode::Set, b"k", 0, NOW + 2, b"v", 0, 0, NOW);
    assert!(get(&mut s, "k", NOW + 1).is_some());
    assert_eq!(s.get(b"k", NOW + 2).err(), Some(Miss::Expired));
    assert_eq!(s.curr_items(), 0);
    s.store(StoreMode::Set, b"k", 0, 1, b"v", 0, 0, NOW);
    assert!(get(&mut s, "k", NOW).is_none(), "negative exptime is already expired");
    s.store(StoreMode::Set, b"k", 0, NOW + 2, b"v", 0, 0, NOW);
    assert!(s.touch(b"k", 0, 0, NOW + 1));
    assert!(get(&mut s, "k", NOW + 100).is_some(), "touch to 0 removes the expiry");
    // An item written without expiry gets one by touch and by gat.
    set(&mut s, "t", "v", NOW);
    assert!(s.touch(b"t", NOW + 5, 0, NOW));
    assert!(get(&mut s, "t", NOW + 4).is_some());
    assert!(get(&mut s, "t", NOW + 5).is_none());
    set(&mut s, "g", "v", NOW);
    assert_eq!(s.get_and_touch(b"g", NOW, NOW + 3, 0, |i| i.value_vec()).unwrap(), b"v");
    set(&mut s, "p", "v", NOW);
    assert_eq!(s.get_and_touch(b"p", NOW, 1, 0, |i| i.value_vec()).unwrap(), b"v", "gat to the past returns it once");
    assert!(get(&mut s, "p", NOW).is_none());
    assert!(get(&mut s, "g", NOW + 3).is_none());
    check(&s);
}

#[test]
fn flush_now_hides_older_items_but_not_newer() {
    let mut s = store(1 << 20);
    set(&mut s, "old", "v", NOW);
    s.flush(0, NOW);
    set(&mut s, "new", "v", NOW);
    assert_eq!(s.get(b"old", NOW).err(), Some(Miss::Flushed));
    assert!(get(&mut s, "new", NOW).is_some());
    assert!(get(&mut s, "new", NOW + 5).is_some());
    check(&s);
}

#[test]
fn delayed_flush_takes_effect_at_its_deadline() {
    let mut s = store(1 << 20);
    set(&mut s, "k", "v", NOW);
    s.flush(NOW + 10, NOW);
    set(&mut s, "k2", "v", NOW + 9);
    assert!(get(&mut s, "k", NOW + 5).is_some());
    assert!(get(&mut s, "k", NOW + 10).is_none());
    assert!(get(&mut s, "k2", NOW + 10).is_none(), "written before the deadline");
    set(&mut s, "k", "v2", NOW + 10);
    assert!(get(&mut s, "k", NOW + 12).is_some(), "items written from the deadline on live");
    check(&s);
}

#[test]
fn crawl_reclaims_expired_items_and_frees_their_segments() {
    let mut s = store(64 << 20);
    let value = [b'x'; 100];
    for i in 0..100_000 {
        s.store(StoreMode::Set, format!("k{i}").as_bytes(), 0, NOW + 2, &value, 0, 0, NOW);
    }
    set(&mut s, "keep", "v", NOW);
    let segments = s.engine_stats(NOW).segments;
    assert!(segments > 30);
    assert_eq!(s.crawl(NOW + 1, 1_000_000), 0, "nothing has expired yet");
    let mut n = 0;
    let mut slices = 0;
    while s.curr_items() > 1 {
        n += s.crawl(NOW + 3, 5_000);
        slices += 1;
        assert!(slices < 100, "the crawler makes progress");
    }
    assert_eq!(n, 100_000);
    assert_eq!(s.stats.crawler_reclaimed, 100_000);
    assert_eq!(s.stats.expired_unfetched, 100_000);
    // "keep": 3 bytes of header, 4 of key, 1 of value.
    assert_eq!(s.bytes(), 8);
    s.crawl(NOW + 3, 1_000_000);
    assert!(s.engine_stats(NOW).segments <= 2, "emptied segments are released");
    assert_eq!(get(&mut s, "keep", NOW + 3).unwrap(), b"v");
    check(&s);
}

#[test]
fn flushed_segments_are_released_by_the_crawler() {
    let mut s = store(64 << 20);
    for i in 0..50_000 {
        set(&mut s, &format!("k{i}"), "0123456789", NOW);
    }
    s.flush(0, NOW);
    set(&mut s, "after", "v", NOW);
    s.crawl(NOW, 10_000_000);
    assert_eq!(s.curr_items(), 1);
    assert!(s.engine_stats(NOW).segments <= 2);
    check(&s);
}

#[test]
fn full_store_keeps_what_is_read_and_evicts_what_is_not() {
    let mut s = store(4 << 20);
    let value = [b'v'; 200];
    let hot: Vec<String> = (0..1000).map(|i| format!("hot{i}")).collect();
    for k in &hot {
        s.store(StoreMode::Set, k.as_bytes(), 0, 0, &value, 0, 0, NOW);
    }
    // Write 10x the memory in items that are never read, reading the hot
    // set now and then.
    for i in 0..200_000 {
        s.store(StoreMode::Set, format!("cold{i}").as_bytes(), 0, 0, &value, 0, 0, NOW);
        if i % 2000 == 0 {
            for k in &hot {
                assert!(get(&mut s, k, NOW).is_some(), "{k} was evicted although read");
            }
        }
        assert!(s.memory_used() <= s.limit());
    }
    assert!(s.stats.evictions > 150_000);
    assert!(s.stats.moved > 0);
    assert_eq!(get(&mut s, "cold0", NOW), None);
    check(&s);
}

#[test]
fn moved_items_keep_their_cas_and_their_flush_order() {
    let mut s = store(2 << 20);
    set(&mut s, "k", "value", NOW);
    let cas = cas_of(&mut s, "k", NOW);
    for i in 0..50_000 {
        set(&mut s, &format!("f{i}"), "0123456789012345678901234567890123456789", NOW);
        if i % 1000 == 0 {
            assert_eq!(cas_of(&mut s, "k", NOW), cas);
        }
    }
    assert!(s.stats.moved > 0, "k was moved forward");
    assert_eq!(cas_of(&mut s, "k", NOW), cas);
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"new", cas, 0, NOW), StoreOutcome::Stored);
    s.flush(0, NOW);
    assert!(get(&mut s, "k", NOW).is_none());
    check(&s);
}

#[test]
fn no_evict_mode_refuses_and_set_drops_old_value() {
    let mut s = Store::new(StoreConfig { limit: MIN_LIMIT, evict: false, ..Default::default() });
    let value = [b'v'; 1000];
    let mut stored = 0;
    while s.store(StoreMode::Set, format!("k{stored}").as_bytes(), 0, 0, &value, 0, 0, NOW) == StoreOutcome::Stored {
        stored += 1;
        assert!(stored < 10_000);
    }
    assert!(stored > 500, "a 1 MiB store holds most of a megabyte of values ({stored})");
    assert_eq!(s.stats.evictions, 0);
    assert!(get(&mut s, "k0", NOW).is_some());
    assert_eq!(s.store(StoreMode::Set, b"k0", 0, 0, &[b'w'; 2000], 0, 0, NOW), StoreOutcome::NoMemory);
    assert!(get(&mut s, "k0", NOW).is_none(), "a failed set removes the old item");
    // Deleting makes room again once a segment is empty.
    for i in 0..stored {
        s.delete(format!("k{i}").as_bytes(), NOW);
    }
    assert_eq!(s.store(StoreMode::Set, b"again", 0, 0, &value, 0, 0, NOW), StoreOutcome::Stored);
    check(&s);
}

#[test]
fn shrinking_the_limit_evicts_at_once() {
    let mut s = store(16 << 20);
    for i in 0..100_000 {
        set(&mut s, &format!("k{i}"), "0123456789012345678901234567890123456789", NOW);
    }
    let before = s.curr_items();
    s.set_limit(2 << 20, NOW);
    assert!(s.memory_used() <= 2 << 20);
    assert!(s.curr_items() < before / 4 && s.curr_items() > 0);
    s.set_limit(32 << 20, NOW);
    assert_eq!(s.limit(), 32 << 20);
    check(&s);
}

#[test]
fn large_values_are_chunked_and_behave_like_small_ones() {
    let mut s = store(64 << 20);
    for len in [INLINE_MAX - 20, INLINE_MAX - 10, INLINE_MAX, INLINE_MAX + 1, 3 * SEG_SIZE + 5, 10 << 20] {
        let v: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let key = format!("big{len}");
        assert_eq!(s.store(StoreMode::Set, key.as_bytes(), 42, 0, &v, 0, 0, NOW), StoreOutcome::Stored);
        let item = s.get(key.as_bytes(), NOW).unwrap();
        assert_eq!(item.flags, 42);
        assert_eq!(item.value_len(), len);
        assert!(item.value_vec() == v, "value of {len} bytes comes back intact");
    }
    let big = "big10485760";
    let cas = cas_of(&mut s, big, NOW);
    assert!(s.touch(big.as_bytes(), NOW + 10, 0, NOW));
    assert_eq!(cas_of(&mut s, big, NOW), cas);
    assert_eq!(s.store(StoreMode::Append, big.as_bytes(), 0, 0, b"tail", 0, 0, NOW), StoreOutcome::Stored);
    let v = s.get(big.as_bytes(), NOW).unwrap().value_vec();
    assert_eq!(v.len(), (10 << 20) + 4);
    assert_eq!(&v[v.len() - 4..], b"tail");
    assert!(get(&mut s, big, NOW + 10).is_none(), "touch set its expiry");
    let used = s.memory_used();
    assert!(s.delete(format!("big{}", 3 * SEG_SIZE + 5).as_bytes(), NOW));
    assert!(s.memory_used() < used - 3 * SEG_SIZE, "deleting frees the chunks");
    assert_eq!(s.arith(format!("big{}", INLINE_MAX + 1).as_bytes(), true, 1, 0, NOW), ArithOutcome::NonNumeric);
    let mut number = b"41 ".to_vec();
    number.resize(INLINE_MAX * 2, b'#');
    s.store(StoreMode::Set, b"bignum", 0, 0, &number, 0, 0, NOW);
    assert_eq!(s.arith(b"bignum", true, 1, 0, NOW), ArithOutcome::Value(42), "memcached reads the leading digits");
    let v = s.get(b"bignum", NOW).unwrap().value_vec();
    assert_eq!((&v[..3], v.len()), (&b"42 "[..], INLINE_MAX * 2));
    check(&s);
}

#[test]
fn large_values_are_evicted_to_make_room() {
    let mut s = store(16 << 20);
    let v = vec![b'L'; 3 << 20];
    for i in 0..20 {
        assert_eq!(s.store(StoreMode::Set, format!("L{i}").as_bytes(), 0, 0, &v, 0, 0, NOW), StoreOutcome::Stored);
        assert!(s.memory_used() <= s.limit());
    }
    assert!(get(&mut s, "L19", NOW).is_some());
    assert!(get(&mut s, "L0", NOW).is_none());
    assert_eq!(s.store(StoreMode::Set, b"huge", 0, 0, &vec![0u8; 17 << 20], 0, 0, NOW), StoreOutcome::NoMemory);
    check(&s);
}

/// Large values leave in the order they came, a few at a time, even though
/// their records share a segment: a full store of large values stays full.
#[test]
fn large_values_are_evicted_oldest_first_and_one_by_one() {
    let mut s = store(16 << 20);
    let v = vec![b'L'; 700_000];
    let mut least = u64::MAX;
    for i in 0..200 {
        assert_eq!(s.store(StoreMode::Set, format!("L{i}").as_bytes(), 0, 0, &v, 0, 0, NOW), StoreOutcome::Stored);
        s.store(StoreMode::Set, format!("s{i}").as_bytes(), 0, 0, b"small", 0, 0, NOW);
        if i >= 40 {
            least = least.min(s.curr_items());
            assert!(get(&mut s, &format!("L{}", i - 10), NOW).is_some(), "a recent large value was evicted");
        }
    }
    assert!(least >= 2 * 18, "the store dropped to {least} items");
    assert!(get(&mut s, "L0", NOW).is_none());
    check(&s);
}

/// Memory moves to the new size: after switching from 100-byte values to
/// 10 KiB ones, the store holds about as many 10 KiB values as a store
/// that only ever saw them (no size classes to calcify), and back.
#[test]
fn no_calcification_when_value_sizes_shift() {
    let limit = 16 << 20;
    let fill = |s: &mut Store, prefix: &str, size: usize, n: usize| {
        let v = vec![b'x'; size];
        for i in 0..n {
            s.store(StoreMode::Set, format!("{prefix}{i}").as_bytes(), 0, 0, &v, 0, 0, NOW);
        }
    };
    let held = |s: &Store, size: usize| {
        s.sizes().iter().enumerate().filter(|(b, _)| size_bucket(size) == *b).map(|(_, n)| *n).sum::<u64>()
    };
    let mut cold = store(limit);
    fill(&mut cold, "big", 10_240, 4000);
    let cold_big = cold.curr_items();
    let mut s = store(limit);
    fill(&mut s, "small", 100, 400_000);
    fill(&mut s, "big", 10_240, 4000);
    assert!(held(&s, 10_240 + 3 + 8) as f64 >= 0.8 * cold_big as f64, "{} vs {cold_big}", s.curr_items());
    let mut cold = store(limit);
    fill(&mut cold, "small", 100, 400_000);
    let cold_small = cold.curr_items();
    fill(&mut s, "small", 100, 400_000);
    assert!(s.curr_items() as f64 >= 0.8 * cold_small as f64, "{} vs {cold_small}", s.curr_items());
    check(&s);
}

/// Random operations against a plain map: with room for everything the
/// store must agree exactly; with little room, every hit must be the latest
/// value written and accounting must stay within the limit.
#[test]
fn random_operations_agree_with_a_model() {
    for (limit, keys, exact, compress) in [
        (64usize << 20, 300u64, true, false),
        (MIN_LIMIT, 3000, false, false),
        (64 << 20, 300, true, true),
        (MIN_LIMIT, 3000, false, true),
    ] {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut s = if compress { compressing_store(limit, 16) } else { store(limit) };
        // key -> (value, flags, absolute expiry)
        let mut model: HashMap<Vec<u8>, (Vec<u8>, u32, u64)> = HashMap::new();
        let mut now = NOW;
        for step in 0..60_000 {
            let key = format!("k{}", next() % keys).into_bytes();
            let live = |m: &HashMap<Vec<u8>, (Vec<u8>, u32, u64)>, now: u64| {
                m.get(&key).filter(|(_, _, e)| *e == 0 || *e > now).cloned()
            };
            let value = |n: &mut dyn FnMut() -> u64| {
                let len = match n() % 10 {
                    0 => (n() % 50_000) as usize,
                    1..=3 => (n() % 1000) as usize,
                    _ => (n() % 100) as usize,
                };
                // Letters: compressible, but not to nothing.
                let mut x = n() | 1;
                (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        b'a' + ((x >> 33) % 26) as u8
                    })
                    .collect::<Vec<u8>>()
            };
            match next() % 14 {
                0..=3 => {
                    let v = value(&mut next);
                    let exp = if next() % 4 == 0 { now + next() % 5 } else { 0 };
                    let flags = if next() % 3 == 0 { next() as u32 } else { 0 };
                    let mode = [StoreMode::Set, StoreMode::Add, StoreMode::Replace][(next() % 3) as usize];
                    let had = live(&model, now);
                    let r = s.store(mode, &key, flags, exp, &v, 0, 0, now);
                    let want = match (mode, &had) {
                        (StoreMode::Add, Some(_)) | (StoreMode::Replace, None) => StoreOutcome::NotStored,
                        _ => StoreOutcome::Stored,
                    };
                    if exact {
                        assert_eq!(r, want, "step {step} {mode:?}");
                    }
                    if r == StoreOutcome::Stored {
                        model.insert(key.clone(), (v, flags, exp));
                    } else if r == StoreOutcome::NotStored && had.is_none() {
                        model.remove(&key);
                    }
                }
                4 | 5 => {
                    let append = next() % 2 == 0;
                    let mode = if append { StoreMode::Append } else { StoreMode::Prepend };
                    let r = s.store(mode, &key, 0, 0, b"+-", 0, 0, now);
                    match (r, live(&model, now)) {
                        (StoreOutcome::Stored, Some((v, f, e))) => {
                            let v = if append { [v, b"+-".to_vec()].concat() } else { [b"+-".to_vec(), v].concat() };
                            model.insert(key.clone(), (v, f, e));
                        }
                        (StoreOutcome::NotStored, m) => {
                            assert!(!exact || m.is_none(), "step {step}");
                            model.remove(&key);
                        }
                        (r, m) => panic!("step {step}: append gave {r:?} with model {m:?}"),
                    }
                }
                6 => {
                    let deleted = s.delete(&key, now);
                    let had = live(&model, now).is_some();
                    if exact {
                        assert_eq!(deleted, had);
                    }
                    assert!(!deleted || had, "deleted something the model never had");
                    model.remove(&key);
                }
                7 => {
                    let r = s.arith(&key, true, 3, 0, now);
                    match (r, live(&model, now)) {
                        (ArithOutcome::NotFound, m) => {
                            assert!(!exact || m.is_none());
                            model.remove(&key);
                        }
                        (ArithOutcome::NonNumeric, Some(_)) => {}
                        (ArithOutcome::Value(v), Some((old, f, e))) => {
                            let cur: u64 = std::str::from_utf8(&old).unwrap().trim_end().parse().unwrap();
                            assert_eq!(v, cur.wrapping_add(3));
                            let mut digits = v.to_string().into_bytes();
                            if digits.len() < old.len() {
                                digits.resize(old.len(), b' ');
                            }
                            model.insert(key.clone(), (digits, f, e));
                        }
                        (r, m) => panic!("step {step}: incr gave {r:?} with model {m:?}"),
                    }
                    if next() % 2 == 0 {
                        let n = format!("{}", next() % 1000);
                        s.store(StoreMode::Set, &key, 0, 0, n.as_bytes(), 0, 0, now);
                        model.insert(key.clone(), (n.into_bytes(), 0, 0));
                        let r = s.arith(&key, false, 1, 0, now);
                        let m = model.get_mut(&key).unwrap();
                        let cur: u64 = std::str::from_utf8(&m.0).unwrap().trim_end().parse().unwrap();
                        if let ArithOutcome::Value(v) = r {
                            assert_eq!(v, cur.saturating_sub(1));
                            let mut digits = v.to_string().into_bytes();
                            if digits.len() < m.0.len() {
                                digits.resize(m.0.len(), b' ');
                            }
                            m.0 = digits;
                        } else {
                            assert!(!exact, "step {step}: decr gave {r:?}");
                            model.remove(&key);
                        }
                    }
                }
                8 => {
                    let exp = if next() % 2 == 0 { now + 1 + next() % 5 } else { 0 };
                    let touched = s.touch(&key, exp, 0, now);
                    let had = live(&model, now);
                    if exact {
                        assert_eq!(touched, had.is_some());
                    }
                    match had {
                        Some((v, f, _)) if touched => {
                            model.insert(key.clone(), (v, f, exp));
                        }
                        _ => {
                            model.remove(&key);
                        }
                    }
                }
                9 => {
                    let had = live(&model, now);
                    let r = s.get(&key, now).ok().map(|i| i.cas);
                    if let Some(cas) = r {
                        let v = value(&mut next);
                        let r = s.store(
                            StoreMode::Cas,
                            &key,
                            7,
                            0,
                            &v,
                            if next() % 4 == 0 { cas + 1 } else { cas },
                            0,
                            now,
                        );
                        if r == StoreOutcome::Stored {
                            model.insert(key.clone(), (v, 7, 0));
                        } else if r == StoreOutcome::NoMemory {
                            model.remove(&key);
                        }
                    } else if exact {
                        assert!(had.is_none());
                    }
                }
                10 => now += next() % 2,
                11 if next() % 200 == 0 => {
                    s.flush(0, now);
                    model.clear();
                }
                12 => {
                    s.crawl(now, 100);
                }
                _ => {
                    let got = s.get(&key, now).ok().map(|i| (i.value_vec(), i.flags));
                    let want = live(&model, now).map(|(v, f, _)| (v, f));
                    if exact {
                        assert_eq!(got, want, "step {step}");
                    } else if got.is_some() {
                        assert_eq!(got, want, "step {step}: a hit must be the latest value");
                    }
                }
            }
            assert!(s.memory_used() <= s.limit(), "step {step}");
            if step % 1000 == 0 {
                check(&s);
            }
        }
        check(&s);
        if !exact {
            assert!(s.stats.evictions > 0, "the small store had to evict");
        }
        if compress {
            assert!(s.engine_stats(now).compressed_items > 0);
        }
    }
}

/// Values of every size around the thresholds come back exactly, with
/// their flags, whether or not they were kept compressed, through append,
/// prepend and incr.
#[test]
fn compressed_values_round_trip_at_every_size() {
    let min = 64;
    let mut s = compressing_store(64 << 20, min);
    let text = |n: usize| -> Vec<u8> { b"lorem ipsum dolor sit amet, ".iter().copied().cycle().take(n).collect() };
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect()
    };
    let sizes =
        [0, 1, min - 1, min, min + 1, 1000, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, 3 * SEG_SIZE + 3, 5 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        for (kind, v) in [("text", text(n)), ("random", random(n))] {
            let key = format!("{kind}{i}");
            let flags = 0xC0FF_EE00 | i as u32;
            assert_eq!(s.store(StoreMode::Set, key.as_bytes(), flags, 0, &v, 0, 0, NOW), StoreOutcome::Stored);
            let item = s.get(key.as_bytes(), NOW).unwrap();
            assert_eq!(item.flags, flags, "flags are never touched");
            assert!(item.read_value().unwrap() == v, "{key}: {n} bytes");
            s.store(StoreMode::Append, key.as_bytes(), 0, 0, b"<tail>", 0, 0, NOW);
            s.store(StoreMode::Prepend, key.as_bytes(), 0, 0, b"<head>", 0, 0, NOW);
            let want = [&b"<head>"[..], &v, b"<tail>"].concat();
            assert!(s.get(key.as_bytes(), NOW).unwrap().read_value().unwrap() == want, "{key} after append/prepend");
        }
    }
    let e = s.engine_stats(NOW);
    assert!(e.compressed_items >= 8, "{e:?}");
    assert!(e.compressed_bytes_out * 5 < e.compressed_bytes_in, "{e:?}");
    assert!(s.compress_stats().skipped_compressed > 0, "random values were not even tried");
    // A long, padded number compresses; incr still works on it.
    let mut n = b"41".to_vec();
    n.resize(500, b' ');
    s.store(StoreMode::Set, b"num", 0, 0, &n, 0, 0, NOW);
    assert_eq!(s.arith(b"num", true, 1, 0, NOW), ArithOutcome::Value(42));
    let got = s.get(b"num", NOW).unwrap().read_value().unwrap();
    assert_eq!((&got[..3], got.len()), (&b"42 "[..], 500));
    // gat on a compressed item keeps it readable.
    assert_eq!(s.get_and_touch(b"num", NOW, NOW + 100, 0, |i| i.read_value().unwrap().len()).unwrap(), 500);
    check(&s);
}

/// A compressed frame damaged in memory is reported as a miss (and
/// dropped), never returned as garbage.
#[test]
fn a_corrupt_frame_reads_as_a_miss() {
    let mut s = compressing_store(64 << 20, 64);
    let v = b"abcdefgh".repeat(200);
    s.store(StoreMode::Set, b"k", 0, 0, &v, 0, 0, NOW);
    let loc = s.find(b"k").unwrap();
    let h = s.header(loc);
    assert!(h.compressed.is_some());
    let (seg, off) = s.split(loc);
    let at = off + h.body_at + h.stored_len() / 2;
    s.segs[seg].data.as_mut().unwrap()[at] ^= 0xFF;
    let item = s.get(b"k", NOW).unwrap();
    let mut out = b"before".to_vec();
    assert!(!item.copy_value(&mut out));
    assert_eq!(out, b"before", "nothing of the bad value is written");
    s.drop_corrupt(b"k");
    assert!(s.get(b"k", NOW).is_err());
    assert_eq!(s.compress_stats().corrupt, 1);
    check(&s);
}

#[test]
fn append_and_prepend_past_the_item_size_limit_are_not_stored_and_keep_the_item() {
    for compress in [false, true] {
        let mut s = Store::new(StoreConfig {
            started: NOW - 100,
            item_size_max: 1024,
            compress: CompressConfig { enabled: compress, min_size: 1, ..Default::default() },
            ..Default::default()
        });
        // The longest value of key "k" that -I 1k admits, as the parser counts.
        let max = (0..1024).rev().find(|&n| crate::item::item_total_size(1, 7, n) <= 1024).unwrap();
        let v = vec![b'0'; max - 10];
        assert_eq!(s.store(StoreMode::Set, b"k", 7, 0, &v, 0, 0, NOW), StoreOutcome::Stored);
        assert_eq!(s.store(StoreMode::Append, b"k", 0, 0, &[b'a'; 5], 0, 0, NOW), StoreOutcome::Stored);
        assert_eq!(s.store(StoreMode::Prepend, b"k", 0, 0, &[b'p'; 5], 0, 0, NOW), StoreOutcome::Stored);
        assert_eq!(s.get(b"k", NOW).unwrap().value_len(), max, "compress {compress}: exactly at the limit");
        assert_eq!(s.store(StoreMode::Append, b"k", 0, 0, b"a", 0, 0, NOW), StoreOutcome::NotStored);
        assert_eq!(s.store(StoreMode::Prepend, b"k", 0, 0, b"p", 0, 0, NOW), StoreOutcome::NotStored);
        let item = s.get(b"k", NOW).unwrap();
        assert_eq!((item.value_len(), item.flags), (max, 7), "compress {compress}: the item is kept as it was");
    }
}

#[test]
fn an_append_chain_of_compressible_chunks_stops_at_the_item_size_limit() {
    // Zeros compress a thousandfold: without a check on the result, 100
    // appends of 64 KiB would build a 6.4 MB value costing a few KiB of -m.
    let mut s = Store::new(StoreConfig {
        started: NOW - 100,
        item_size_max: 1 << 20,
        compress: CompressConfig { enabled: true, ..Default::default() },
        ..Default::default()
    });
    let chunk = vec![0u8; 64 << 10];
    assert_eq!(s.store(StoreMode::Set, b"zeros", 0, 0, &chunk, 0, 0, NOW), StoreOutcome::Stored);
    let refused = (0..100)
        .filter(|_| s.store(StoreMode::Append, b"zeros", 0, 0, &chunk, 0, 0, NOW) == StoreOutcome::NotStored)
        .count();
    let len = s.get(b"zeros", NOW).unwrap().value_len();
    assert!(crate::item::item_total_size(5, 0, len) <= 1 << 20, "{len} bytes");
    assert_eq!(len, 15 * chunk.len(), "every append that fits is stored");
    assert_eq!(refused, 100 - 14);
}

#[test]
fn digests_agree_across_stores_whose_index_keys_differ() {
    // Nodes draw their index keys at random; what they compare must not
    // depend on them.
    let mut stores = [HashKey::new(1, 2), HashKey::new(0xDEAD, 0xBEEF)]
        .map(|index_key| Store::new(StoreConfig { started: NOW - 100, digest: true, index_key, ..Default::default() }));
    for s in &mut stores {
        for i in 0..1000 {
            s.store(StoreMode::Set, format!("k{i}").as_bytes(), i, 0, format!("v{i}").as_bytes(), 0, 0, NOW);
        }
    }
    assert_ne!(stores[0].digest(), 0);
    assert_eq!(stores[0].digest(), stores[1].digest());
}

#[test]
fn stored_numbers_parse_like_strtoull() {
    assert_eq!(parse_stored_number(b"123"), Some(123));
    assert_eq!(parse_stored_number(b"5  "), Some(5));
    assert_eq!(parse_stored_number(b" 7"), Some(7));
    assert_eq!(parse_stored_number(b"12abc"), None);
    assert_eq!(parse_stored_number(b"-1"), None);
    assert_eq!(parse_stored_number(b""), None);
    assert_eq!(parse_stored_number(b"18446744073709551616"), None);
    // A C string: a NUL ends it; `-0` is 0 (memcached 1.6.18).
    assert_eq!(parse_stored_number(b"0\0b"), Some(0));
    assert_eq!(parse_stored_number(b"-0"), Some(0));
}

/// `check` plus the byte accounting: the segments' live, dead and free
/// bytes, the index, large values and the rest add up to the engine's
/// memory.
fn check_bytes(s: &Store, now: u64) -> EngineStats {
    check(s);
    let e = s.engine_stats(now);
    assert_eq!(e.memory, e.live_bytes + e.dead_bytes + e.free_bytes + e.index_bytes + e.large_bytes + e.other_bytes);
    e
}

#[test]
fn an_overwrite_loop_keeps_dead_bytes_bounded_and_memory_tracking_live_data() {
    // Far more memory than the live data: without compaction, every
    // overwrite's old copy would stay and memory would grow to the limit.
    let mut s = store(256 << 20);
    let value = vec![b'v'; 100];
    let mut most = 0;
    for round in 0..20u64 {
        for k in 0..100_000u64 {
            let key = format!("key-{}", (k * 7919 + round) % 100_000);
            assert_eq!(s.store(StoreMode::Set, key.as_bytes(), 0, 0, &value, 0, 0, NOW), StoreOutcome::Stored);
        }
        let e = check_bytes(&s, NOW);
        most = most.max(e.memory);
        if round >= 2 {
            assert!(e.dead_bytes * 100 <= e.memory * 15, "round {round}: dead {} of {}", e.dead_bytes, e.memory);
        }
    }
    assert_eq!(s.curr_items(), 100_000);
    let live = s.engine_stats(NOW).live_bytes;
    assert!(most <= live * 13 / 10 + 3 * SEG_SIZE as u64, "memory peaked at {most} for {live} live bytes");
    assert!(s.stats.compacted_segments > 0 && s.stats.evictions == 0);
    for k in 0..100_000u64 {
        assert_eq!(get(&mut s, &format!("key-{k}"), NOW).as_deref(), Some(&value[..]));
    }
}
