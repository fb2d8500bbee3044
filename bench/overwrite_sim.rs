//! One core's engine under an overwrite mix, in process (issue 12): Zipf
//! 0.99 sets, gets and deletes over a key space KEYS_X times what -m holds,
//! random values; prints live items, the get miss ratio over the last
//! third, dead bytes / engine memory, evictions and what compaction moved.
//! For trying eviction and compaction policies in seconds; the figures
//! beside memcached come from bench/storage/overwrite.py.
//!
//! cargo run --release --example overwrite_sim -- MB SIZE_LO SIZE_HI SETS GETS KEYS_X PASSES DELETES TTL
//! (defaults 16 200 200 1 10 8 4 0 0)
#![allow(dead_code)]
#[path = "generator/src/keygen.rs"]
mod keygen;
use keygen::{Rng, Zipf};
use memcore::storage::{Store, StoreConfig, StoreMode};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let mb = arg(1, 16.0) as usize;
    let size_lo = arg(2, 200.0) as usize;
    let size_hi = arg(3, size_lo as f64) as usize;
    let sets = arg(4, 1.0) as u64;
    let gets = arg(5, 10.0) as u64;
    let keys_x = arg(6, 8.0);
    let passes = arg(7, 4.0);
    let dels = arg(8, 0.0) as u64;
    let ttl = arg(9, 0.0) as u64;
    let mean = (size_lo + size_hi) as f64 / 2.0;
    let held = (mb << 20) as f64 / (mean + 64.0);
    let keys = (keys_x * held) as u64;
    let period = sets + gets + dels;
    let warm = (passes * held * period as f64 / sets as f64) as u64;
    let meas = warm / 2;
    let mut s = Store::new(StoreConfig { limit: mb << 20, started: 1_000_000, ..Default::default() });
    let z = Zipf::new(keys, 0.99);
    let mut rng = Rng::new(7);
    let mut vals = vec![0u8; 1 << 17];
    for b in vals.iter_mut() {
        *b = rng.next_u64() as u8;
    }
    let mut key = Vec::with_capacity(32);
    let (mut g, mut miss) = (0u64, 0u64);
    let t0 = std::time::Instant::now();
    let mut now = 1_000_100u64;
    // Nanoseconds per set (measured part): the engine's own stalls.
    let mut lat: Vec<u32> = Vec::new();
    for i in 0..warm + meas {
        if i == warm {
            g = 0;
            miss = 0;
        }
        if i % 300_000 == 0 {
            now += 1;
            s.crawl(now, 5000);
        }
        if i % 3000 == 0 {
            s.crawl(now, 5000);
        }
        let k = z.sample(&mut rng);
        key.clear();
        write!(key, "memtier-{k}").unwrap();
        let slot = i % period;
        if slot < sets {
            let len =
                if size_hi > size_lo { size_lo + rng.below((size_hi - size_lo + 1) as u64) as usize } else { size_lo };
            let off = rng.below(65536) as usize;
            let exp = if ttl > 0 { now + ttl } else { 0 };
            let t = std::time::Instant::now();
            s.store(StoreMode::Set, &key, 0, exp, &vals[off..off + len], 0, 0, now);
            if i >= warm {
                lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
            }
        } else if slot < sets + gets {
            g += 1;
            if s.get(&key, now).is_err() {
                miss += 1;
            }
        } else {
            s.delete(&key, now);
        }
    }
    let e = s.engine_stats(now);
    lat.sort_unstable();
    let q = |f: f64| lat.get(((lat.len() as f64 * f) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "set (and tick) ns: p50 {} p99 {} p99.9 {} p99.99 {} max {}",
        q(0.5),
        q(0.99),
        q(0.999),
        q(0.9999),
        lat.last().copied().unwrap_or(0)
    );
    println!(
        "mb {mb} size {size_lo}-{size_hi} ratio {sets}:{gets}:{dels} keys {keys} ttl {ttl}: items {} miss {:.4} dead {:.3} mem {} evictions {} moved {} compacted {} segs {} items {:.1}s",
        s.curr_items(),
        miss as f64 / g as f64,
        e.dead_bytes as f64 / e.memory as f64,
        e.memory,
        s.stats.evictions,
        s.stats.moved,
        s.stats.compacted_segments,
        s.stats.compacted_items,
        t0.elapsed().as_secs_f64()
    );
}
