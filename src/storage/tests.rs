use super::*;
use std::collections::HashMap;

const NOW: u64 = 1_700_000_000;

fn store(limit: usize) -> Store {
    Store::new(StoreConfig { limit, started: NOW - 100, ..Default::default() })
}

fn get(s: &mut Store, k: &str, now: u64) -> Option<Vec<u8>> {
    s.get(k.as_bytes(), now, None).ok().map(|i| i.value().to_vec())
}

fn set(s: &mut Store, k: &str, v: &str, now: u64) -> StoreOutcome {
    s.store(StoreMode::Set, k.as_bytes(), 0, 0, v.as_bytes(), 0, now)
}

#[test]
fn storage_modes_follow_memcached() {
    let mut s = store(1 << 20);
    assert_eq!(s.store(StoreMode::Replace, b"k", 0, 0, b"v", 0, NOW), StoreOutcome::NotStored);
    assert_eq!(s.store(StoreMode::Append, b"k", 0, 0, b"v", 0, NOW), StoreOutcome::NotStored);
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"v", 1, NOW), StoreOutcome::NotFound);
    assert_eq!(s.store(StoreMode::Add, b"k", 5, 0, b"mid", 0, NOW), StoreOutcome::Stored);
    assert_eq!(s.store(StoreMode::Add, b"k", 0, 0, b"x", 0, NOW), StoreOutcome::NotStored);
    assert_eq!(s.store(StoreMode::Append, b"k", 9, 0, b">", 0, NOW), StoreOutcome::Stored);
    assert_eq!(s.store(StoreMode::Prepend, b"k", 9, 0, b"<", 0, NOW), StoreOutcome::Stored);
    let item = s.get(b"k", NOW, None).unwrap();
    assert_eq!((item.value(), item.flags), (&b"<mid>"[..], 5), "append/prepend keep the flags");
    let cas = item.cas;
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"new", cas + 1, NOW), StoreOutcome::Exists);
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"new", cas, NOW), StoreOutcome::Stored);
    assert_eq!(s.store(StoreMode::Cas, b"k", 0, 0, b"again", cas, NOW), StoreOutcome::Exists);
    assert_eq!(get(&mut s, "k", NOW).unwrap(), b"new");
}

#[test]
fn cas_values_are_unique_and_strided_per_core() {
    let mut s = Store::new(StoreConfig { cas_stride: 4, cas_offset: 3, ..Default::default() });
    set(&mut s, "a", "1", NOW);
    set(&mut s, "b", "1", NOW);
    let a = s.get(b"a", NOW, None).unwrap().cas;
    let b = s.get(b"b", NOW, None).unwrap().cas;
    assert_ne!(a, b);
    assert_eq!(a % 4, 3);
    assert_eq!(b % 4, 3);
}

#[test]
fn incr_decr_wrap_clamp_and_pad_like_memcached() {
    let mut s = store(1 << 20);
    set(&mut s, "n", "100", NOW);
    assert_eq!(s.arith(b"n", false, 95, NOW), ArithOutcome::Value(5));
    assert_eq!(get(&mut s, "n", NOW).unwrap(), b"5  ");
    assert_eq!(s.arith(b"n", false, 10, NOW), ArithOutcome::Value(0));
    assert_eq!(s.arith(b"n", true, u64::MAX, NOW), ArithOutcome::Value(u64::MAX));
    assert_eq!(s.arith(b"n", true, 2, NOW), ArithOutcome::Value(1));
    assert_eq!(get(&mut s, "n", NOW).unwrap(), b"1                   ");
    set(&mut s, "n", "9", NOW);
    assert_eq!(s.arith(b"n", true, 1, NOW), ArithOutcome::Value(10));
    assert_eq!(get(&mut s, "n", NOW).unwrap(), b"10");
    set(&mut s, "t", "abc", NOW);
    assert_eq!(s.arith(b"t", true, 1, NOW), ArithOutcome::NonNumeric);
    set(&mut s, "e", "", NOW);
    assert_eq!(s.arith(b"e", true, 1, NOW), ArithOutcome::NonNumeric);
    assert_eq!(s.arith(b"missing", true, 1, NOW), ArithOutcome::NotFound);
}

#[test]
fn expiry_rules() {
    let started = NOW - 100;
    assert_eq!(absolute_expiry(0, NOW, started), 0);
    assert_eq!(absolute_expiry(-1, NOW, started), 1);
    assert_eq!(absolute_expiry(10, NOW, started), NOW + 10);
    assert_eq!(absolute_expiry(REALTIME_MAXDELTA, NOW, started), NOW + REALTIME_MAXDELTA as u64);
    assert_eq!(absolute_expiry(REALTIME_MAXDELTA + 1, NOW, started), 1, "absolute time before start");
    assert_eq!(absolute_expiry((NOW + 50) as i64, NOW, started), NOW + 50);

    let mut s = store(1 << 20);
    s.store(StoreMode::Set, b"k", 0, NOW + 2, b"v", 0, NOW);
    assert!(get(&mut s, "k", NOW + 1).is_some());
    assert_eq!(s.get(b"k", NOW + 2, None).err(), Some(Miss::Expired));
    assert_eq!(s.curr_items(), 0);
    s.store(StoreMode::Set, b"k", 0, 1, b"v", 0, NOW);
    assert!(get(&mut s, "k", NOW).is_none(), "negative exptime is already expired");
    s.store(StoreMode::Set, b"k", 0, NOW + 2, b"v", 0, NOW);
    assert!(s.touch(b"k", 0, NOW + 1));
    assert!(get(&mut s, "k", NOW + 100).is_some(), "touch to 0 removes the expiry");
}

#[test]
fn flush_now_hides_older_items_but_not_newer() {
    let mut s = store(1 << 20);
    set(&mut s, "old", "v", NOW);
    s.flush(0, NOW);
    set(&mut s, "new", "v", NOW);
    assert_eq!(s.get(b"old", NOW, None).err(), Some(Miss::Flushed));
    assert!(get(&mut s, "new", NOW).is_some());
    assert!(get(&mut s, "new", NOW + 5).is_some());
}

#[test]
fn delayed_flush_takes_effect_at_its_deadline() {
    let mut s = store(1 << 20);
    set(&mut s, "k", "v", NOW);
    s.flush(NOW + 10, NOW);
    assert!(get(&mut s, "k", NOW + 5).is_some());
    assert!(get(&mut s, "k", NOW + 10).is_none());
    set(&mut s, "k", "v2", NOW + 11);
    assert!(get(&mut s, "k", NOW + 12).is_some(), "items written after the deadline live");
}

#[test]
fn crawl_reclaims_expired_items_without_reads() {
    let mut s = store(1 << 30);
    for i in 0..1000 {
        s.store(StoreMode::Set, format!("k{i}").as_bytes(), 0, NOW + 2, b"v", 0, NOW);
    }
    set(&mut s, "keep", "v", NOW);
    let mut n = 0;
    for _ in 0..10 {
        n += s.crawl(NOW + 3, 200);
    }
    assert_eq!(n, 1000);
    assert_eq!(s.curr_items(), 1);
    assert_eq!(s.bytes() as usize, 4 + 1 + ITEM_OVERHEAD);
}

#[test]
fn full_store_evicts_least_recently_used() {
    let per = 10 + ITEM_OVERHEAD + 2;
    let mut s = store(per * 3);
    set(&mut s, "k1", "0123456789", NOW);
    set(&mut s, "k2", "0123456789", NOW);
    set(&mut s, "k3", "0123456789", NOW);
    get(&mut s, "k1", NOW);
    set(&mut s, "k4", "0123456789", NOW);
    assert!(get(&mut s, "k2", NOW).is_none(), "k2 was least recently used");
    assert!(get(&mut s, "k1", NOW).is_some());
    assert_eq!(s.stats.evictions, 1);
    assert_eq!(s.stats.evicted_unfetched, 1);
    assert!(s.bytes() as usize <= per * 3);
}

#[test]
fn no_evict_mode_refuses_and_set_drops_old_value() {
    let per = 10 + ITEM_OVERHEAD + 2;
    let mut s = Store::new(StoreConfig { limit: per * 2, evict: false, ..Default::default() });
    set(&mut s, "k1", "0123456789", NOW);
    set(&mut s, "k2", "0123456789", NOW);
    assert_eq!(set(&mut s, "k3", "0123456789", NOW), StoreOutcome::NoMemory);
    assert_eq!(set(&mut s, "k1", "01234567890123456789", NOW), StoreOutcome::NoMemory);
    assert!(get(&mut s, "k1", NOW).is_none(), "a failed set removes the old item");
    assert!(get(&mut s, "k2", NOW).is_some());
}

#[test]
fn replacing_the_lru_tail_never_evicts_itself() {
    let per = 10 + ITEM_OVERHEAD + 2;
    let mut s = store(per * 2);
    set(&mut s, "k1", "0123456789", NOW);
    set(&mut s, "k2", "0123456789", NOW);
    assert_eq!(s.store(StoreMode::Append, b"k1", 0, 0, b"x", 0, NOW), StoreOutcome::Stored);
    assert_eq!(get(&mut s, "k1", NOW).unwrap(), b"0123456789x");
    assert!(get(&mut s, "k2", NOW).is_none());
}

#[test]
fn shrinking_the_limit_evicts_at_once() {
    let mut s = store(1 << 20);
    for i in 0..100 {
        set(&mut s, &format!("k{i}"), "0123456789", NOW);
    }
    s.set_limit(10 * (13 + ITEM_OVERHEAD), NOW);
    assert!(s.bytes() as usize <= 10 * (13 + ITEM_OVERHEAD));
    assert!(s.curr_items() <= 10 && s.curr_items() > 0);
}

/// Random operations against a plain map: with room for everything the
/// store must agree exactly; with little room, every hit must be the latest
/// value written and accounting must stay within the limit.
#[test]
fn random_operations_agree_with_a_model() {
    for (limit, exact) in [(1usize << 30, true), (4000, false)] {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut s = store(limit);
        let mut model: HashMap<Vec<u8>, (Vec<u8>, u64)> = HashMap::new();
        let mut now = NOW;
        for _ in 0..50_000 {
            let key = format!("k{}", next() % 64).into_bytes();
            let live = |m: &HashMap<Vec<u8>, (Vec<u8>, u64)>, now: u64| {
                m.get(&key).filter(|(_, e)| *e == 0 || *e > now).map(|(v, _)| v.clone())
            };
            match next() % 8 {
                0..=2 => {
                    let v = vec![b'a' + (next() % 26) as u8; (next() % 40) as usize];
                    let exp = if next() % 4 == 0 { now + next() % 5 } else { 0 };
                    let r = s.store(StoreMode::Set, &key, 0, exp, &v, 0, now);
                    if r == StoreOutcome::Stored {
                        model.insert(key.clone(), (v, exp));
                    } else {
                        model.remove(&key);
                    }
                }
                3 => {
                    let r = s.store(StoreMode::Append, &key, 0, 0, b"+", 0, now);
                    match (r, live(&model, now)) {
                        (StoreOutcome::Stored, Some(mut v)) => {
                            v.push(b'+');
                            let e = model[&key].1;
                            model.insert(key.clone(), (v, e));
                        }
                        (StoreOutcome::NotStored, m) => {
                            assert!(!exact || m.is_none());
                            model.remove(&key);
                        }
                        (r, m) => panic!("append gave {r:?} with model {m:?}"),
                    }
                }
                4 => {
                    let deleted = s.delete(&key, now);
                    let had = live(&model, now).is_some();
                    if exact {
                        assert_eq!(deleted, had);
                    }
                    assert!(!deleted || had, "deleted something the model never had");
                    model.remove(&key);
                }
                5 => now += next() % 2,
                _ => {
                    let got = s.get(&key, now, None).ok().map(|i| i.value().to_vec());
                    let want = live(&model, now);
                    if exact {
                        assert_eq!(got, want);
                    } else if got.is_some() {
                        assert_eq!(got, want, "a hit must be the latest value");
                    }
                }
            }
            assert!(s.bytes() as usize <= limit);
        }
    }
}
