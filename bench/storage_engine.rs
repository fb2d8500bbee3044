//! The storage engine alone, no network: nanoseconds per get and per set of
//! 100-byte values in a full, evicting 64 MiB store (one core's engine), and
//! the index's keyed hash alone.
//!
//! `cargo bench --bench storage_engine`

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use memcore::storage::{HashKey, Store, StoreConfig, StoreMode};

const NOW: u64 = 1_700_000_000;
const LIMIT: usize = 64 << 20;

fn key(i: u64) -> Vec<u8> {
    format!("memtier-{i}").into_bytes()
}

/// A store filled past its limit (so that every new key evicts), and the
/// ids of keys it still holds.
fn full_store() -> (Store, u64) {
    let mut s = Store::new(StoreConfig { limit: LIMIT, started: NOW - 10, ..Default::default() });
    let value = [b'v'; 100];
    let mut i = 0;
    while s.stats.evictions < 100_000 {
        s.store(StoreMode::Set, &key(i), 0, 0, &value, 0, 0, NOW);
        i += 1;
    }
    (s, i)
}

fn engine(c: &mut Criterion) {
    let (mut s, next) = full_store();
    let held = s.curr_items();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut g = c.benchmark_group("engine_100B_full");
    g.throughput(Throughput::Elements(1));
    // Gets of keys that are present (the most recent `held` ones).
    g.bench_function("get_hit", |b| {
        b.iter_batched(
            || key(next - 1 - rand() % (held / 2)),
            |k| black_box(s.get(&k, NOW).map(|i| i.value_len()).ok()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("get_miss", |b| {
        b.iter_batched(
            || key(u64::MAX - rand() % 1_000_000),
            |k| black_box(s.get(&k, NOW).is_ok()),
            BatchSize::SmallInput,
        )
    });
    let value = [b'w'; 100];
    let mut fresh = next;
    // Sets of new keys: each one evicts (amortized over segment evictions).
    g.bench_function("set_new_evicting", |b| {
        b.iter_batched(
            || {
                fresh += 1;
                key(fresh)
            },
            |k| black_box(s.store(StoreMode::Set, &k, 0, 0, &value, 0, 0, NOW)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    // The keyed hash alone (SipHash-1-3): one per get, about three per set.
    let mut g = c.benchmark_group("index_hash");
    let hk = HashKey::new(rand(), rand());
    for len in [16usize, 64] {
        let k = vec![b'k'; len];
        g.bench_function(format!("siphash13_{len}B_key"), |b| b.iter(|| hk.hash(black_box(&k))));
    }
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
