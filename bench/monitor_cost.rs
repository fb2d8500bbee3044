//! What seeing inside costs a request: the latency recording a connection
//! does per batch (two clock reads, a lock, a histogram record) and the
//! hot-key count per key when `stats hotkeys on`, each timed in a loop of
//! one-request batches (the get-heavy profile's shape: memtier sends one
//! request per read). Compare with a request's whole CPU cost in
//! scripts/compare (about 10 us of server CPU per get at -t 1 here).
//!
//! Run: `cargo bench --bench monitor_cost` (MC_ITERS, default 2000000).
//! Uses only std and the memcore library.

use std::hint::black_box;
use std::time::{Duration, Instant};

use memcore::hotkeys::{self, Sketches};
use memcore::latency::{self, Op, Pending};
use memcore::protocol::{Limits, Parsed, parse};

fn per_op(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    // Best of three passes: the machine is shared.
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let iters: u64 = std::env::var("MC_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let lat = latency::PerCore::new(1);
    let mut pending = Pending::default();
    let mut first_byte = Instant::now();
    // What conn.rs does for a batch of one request: a clock read when the
    // read returns, a count, a clock read when the reply is queued and one
    // record under the core's lock.
    let latency_ns = per_op(iters, |_| {
        first_byte = black_box(Instant::now());
        pending.count(Op::Get);
        let took: Duration = first_byte.elapsed();
        lat.with(0, |l| l.record(&mut pending, took));
    });
    let nothing_ns = per_op(iters, |i| {
        black_box(i);
    });
    // 100k keys with a few hot ones, one get of one key per request.
    let keys: Vec<Vec<u8>> = (0..100_000).map(|i| format!("get memtier-{i}\r\n").into_bytes()).collect();
    let limits = Limits { item_size_max: 1 << 20 };
    let hot = hotkeys::PerCore::new(1);
    hot.set(true);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let hot_ns = per_op(iters, |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = if x.is_multiple_of(10) { 0 } else { (x % keys.len() as u64) as usize };
        if let Parsed::Request { req, .. } = parse(&keys[k], &limits) {
            hot.with(0, |s: &mut Sketches| s.count(&req));
        }
    });
    let parse_ns = per_op(iters, |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = (x % keys.len() as u64) as usize;
        black_box(matches!(parse(&keys[k], &limits), Parsed::Request { .. }));
    });
    println!("latency recording per one-request batch: {:.1} ns", latency_ns - nothing_ns);
    println!(
        "hot-key count per get of one key (on; parse included {:.1} ns, subtracted): {:.1} ns",
        parse_ns,
        hot_ns - parse_ns
    );
    let top = hot.merged().0;
    println!("top read key: {} x{}", String::from_utf8_lossy(&top[0].0), top[0].1);
}
