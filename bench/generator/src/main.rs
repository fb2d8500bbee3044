//! memcore-bench: a memtier_benchmark-like load generator for the memcached
//! text protocol.
//!
//! Option names mirror memtier_benchmark so scripts can switch between the
//! two, and the final `Totals` line has memtier's columns:
//! `Totals <ops/s> <hits/s> <misses/s> <avg-ms> <p50-ms> <p99-ms> <p99.9-ms> <KB/s>`.
//!
//! Design: one OS thread per `-t`, each with its own epoll loop over its
//! `-c` non-blocking TCP_NODELAY connections; each connection keeps
//! `--pipeline` requests in flight. Per-thread HdrHistograms (µs) are merged
//! at the end.
//!
//! A crate of its own in the workspace (bench/generator): it shares no code
//! with the server and must not import it, so that the server's
//! dependencies stay the server's and the generator measures only the wire.

mod jsongen;
mod keygen;
mod worker;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use clap::Parser;

use jsongen::{JsonGen, Kind};
use keygen::{KeyPattern, Zipf};
use worker::{Mode, Progress, Stats, Times, Worker, now_ns};

#[derive(Parser, Debug, Clone)]
#[command(name = "memcore-bench", version, about = "memtier-like load generator for the memcached text protocol")]
struct Args {
    /// Server address.
    #[arg(short = 's', long = "server", default_value = "127.0.0.1")]
    server: String,
    /// Server port.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    port: u16,
    /// Protocol; only memcache_text is supported (accepted for memtier compatibility).
    #[arg(short = 'P', long = "protocol", default_value = "memcache_text")]
    protocol: String,
    /// Number of threads.
    #[arg(short = 't', long = "threads", default_value_t = 4)]
    threads: usize,
    /// Connections per thread.
    #[arg(short = 'c', long = "clients", default_value_t = 50)]
    clients: usize,
    /// Requests in flight per connection.
    #[arg(long = "pipeline", default_value_t = 1)]
    pipeline: usize,
    /// Set:get ratio, or set:get:delete (deletes pick keys as gets do).
    #[arg(long = "ratio", default_value = "1:10")]
    ratio: String,
    /// Key pattern: R (uniform), S (sequential), P (parallel sequential),
    /// G (Gaussian), Z (Zipf). Either one letter or SET:GET like memtier ("R:R").
    #[arg(long = "key-pattern", default_value = "R:R")]
    key_pattern: String,
    /// Zipf exponent for --key-pattern Z.
    #[arg(long = "zipf-alpha", default_value_t = 0.99)]
    zipf_alpha: f64,
    /// Gaussian standard deviation (default: key range / 6).
    #[arg(long = "key-stddev")]
    key_stddev: Option<f64>,
    /// Gaussian median (default: middle of the key range).
    #[arg(long = "key-median")]
    key_median: Option<f64>,
    /// Smallest key id.
    #[arg(long = "key-minimum", default_value_t = 0)]
    key_minimum: u64,
    /// Largest key id.
    #[arg(long = "key-maximum", default_value_t = 10_000_000)]
    key_maximum: u64,
    /// Key prefix.
    #[arg(long = "key-prefix", default_value = "memtier-")]
    key_prefix: String,
    /// Value size in bytes.
    #[arg(short = 'd', long = "data-size", default_value_t = 32)]
    data_size: usize,
    /// Value size range A-B (uniform); overrides --data-size.
    #[arg(long = "data-size-range")]
    data_size_range: Option<String>,
    /// Incompressible random values (default: compressible filler).
    #[arg(short = 'R', long = "random-data")]
    random_data: bool,
    /// Realistic JSON records as values: user (profiles), product
    /// (listings) or mix (half each), of exactly --data-size bytes (or a
    /// length in --data-size-range fixed per key). A key's value depends
    /// only on --data-seed, the key and the length.
    #[arg(long = "data-json", value_name = "user|product|mix", conflicts_with_all = ["random_data", "verify_data"])]
    data_json: Option<String>,
    /// Seed of the --data-json values (fixed by default, so every run and
    /// every server gets the same bytes for a key).
    #[arg(long = "data-seed", default_value_t = 1)]
    data_seed: u64,
    /// Print the values of the first N keys from --key-minimum (one a line),
    /// then how long generating 100,000 of them took on stderr, and exit
    /// without connecting.
    #[arg(long = "print-values", value_name = "N")]
    print_values: Option<u64>,
    /// Keys per get request.
    #[arg(long = "multi-key-get", default_value_t = 1)]
    multi_key_get: usize,
    /// Run for this many seconds (measured part, after --warmup).
    #[arg(long = "test-time", conflicts_with = "requests")]
    test_time: Option<f64>,
    /// Requests per connection (memtier semantics; default 10000 when no
    /// --test-time), or `allkeys`: the key range divided over all connections.
    #[arg(short = 'n', long = "requests")]
    requests: Option<String>,
    /// Seconds of load before measuring starts.
    #[arg(long = "warmup", default_value_t = 0.0)]
    warmup: f64,
    /// First set every key in [min,max] once (sequential, split over connections, not measured).
    #[arg(long = "prefill")]
    prefill: bool,
    /// Expiry (exptime) for sets.
    #[arg(long = "expiry", default_value_t = 0)]
    expiry: u32,
    /// Look-aside cache: after a get that misses, set that key (same
    /// connection, before its next request). These sets are extra: they do
    /// not count toward -n or --ratio. Needs --multi-key-get 1.
    #[arg(long = "set-on-miss")]
    set_on_miss: bool,
    /// Check VALUE payloads against the filler pattern (needs filler data written by this tool).
    #[arg(long = "verify-data", conflicts_with = "random_data")]
    verify_data: bool,
    /// Start an event-loop turn at most every this many µs (sleeping in
    /// between; also capped at 1/8 of the recent mean latency) so replies
    /// and refills batch up per turn as with memtier; 0 reacts to every
    /// event at once. Reply detection may lag by up to the pause, so
    /// latencies can read up to that much high.
    #[arg(long = "poll-interval-us", default_value_t = 100)]
    poll_interval_us: u64,
    /// Write results as JSON to this file.
    #[arg(long = "json-out-file")]
    json_out_file: Option<PathBuf>,
    /// Do not print the latency distribution.
    #[arg(long = "hide-histogram")]
    hide_histogram: bool,
    /// RNG seed (default: from the clock).
    #[arg(long = "seed")]
    seed: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Time(f64),
    Requests(u64),
}

/// Resolved settings shared (read-only) by all workers.
#[derive(Debug)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub threads: usize,
    pub clients: usize,
    pub pipeline: usize,
    pub ratio_set: u64,
    pub ratio_get: u64,
    pub ratio_delete: u64,
    pub set_pattern: KeyPattern,
    pub get_pattern: KeyPattern,
    pub key_min: u64,
    pub key_max: u64,
    pub prefix: Vec<u8>,
    pub size_min: usize,
    pub size_max: usize,
    pub random_data: bool,
    /// Realistic JSON values (--data-json).
    pub json: Option<JsonGen>,
    pub multi_get: usize,
    pub limit: Limit,
    pub warmup: f64,
    pub prefill: bool,
    pub expiry: u32,
    pub set_on_miss: bool,
    pub verify_data: bool,
    pub seed: u64,
    pub zipf_alpha: f64,
    pub poll_interval_us: u64,
}

fn parse_pattern(s: &str, a: &Args) -> Result<KeyPattern, String> {
    let n = a.key_maximum - a.key_minimum + 1;
    Ok(match s.trim() {
        "R" | "r" => KeyPattern::Uniform,
        "S" | "s" => KeyPattern::Sequential,
        "P" | "p" => KeyPattern::Parallel,
        "G" | "g" => KeyPattern::Gaussian {
            median: a.key_median.unwrap_or((a.key_minimum as f64 + a.key_maximum as f64) / 2.0),
            stddev: a.key_stddev.unwrap_or(n as f64 / 6.0),
        },
        "Z" | "z" => {
            if a.zipf_alpha.is_nan() || a.zipf_alpha <= 0.0 {
                return Err("--zipf-alpha must be > 0".into());
            }
            KeyPattern::Zipf(Zipf::new(n, a.zipf_alpha))
        }
        other => return Err(format!("unknown key pattern {other:?} (use R, S, P, G or Z)")),
    })
}

fn config_from(a: &Args) -> Result<Config, String> {
    if a.protocol != "memcache_text" {
        return Err(format!("protocol {:?} not supported (only memcache_text)", a.protocol));
    }
    if a.threads == 0 || a.clients == 0 || a.pipeline == 0 {
        return Err("--threads, --clients and --pipeline must be >= 1".into());
    }
    if a.key_maximum < a.key_minimum || a.key_maximum == u64::MAX {
        return Err("--key-maximum must be >= --key-minimum (and < 2^64-1)".into());
    }
    let (rs, rg) = a.ratio.split_once(':').ok_or("--ratio must look like S:G or S:G:D")?;
    let (rg, rd) = rg.split_once(':').unwrap_or((rg, "0"));
    let ratio_set: u64 = rs.trim().parse().map_err(|_| "bad --ratio")?;
    let ratio_get: u64 = rg.trim().parse().map_err(|_| "bad --ratio")?;
    let ratio_delete: u64 = rd.trim().parse().map_err(|_| "bad --ratio")?;
    if ratio_set + ratio_get + ratio_delete == 0 {
        return Err("--ratio 0:0 issues nothing".into());
    }
    let (sp, gp) = match a.key_pattern.split_once(':') {
        Some((s, g)) => (s, g),
        None => (a.key_pattern.as_str(), a.key_pattern.as_str()),
    };
    let (size_min, size_max) = match &a.data_size_range {
        Some(r) => {
            let (lo, hi) = r.split_once('-').ok_or("--data-size-range must look like A-B")?;
            let lo: usize = lo.trim().parse().map_err(|_| "bad --data-size-range")?;
            let hi: usize = hi.trim().parse().map_err(|_| "bad --data-size-range")?;
            if lo > hi || hi == 0 {
                return Err("bad --data-size-range".into());
            }
            (lo, hi)
        }
        None => (a.data_size, a.data_size),
    };
    if a.key_prefix.bytes().any(|b| b <= b' ' || b == 127) {
        return Err("--key-prefix must not contain spaces or control characters".into());
    }
    let requests = match a.requests.as_deref() {
        None => None,
        Some("allkeys") => {
            let conns = (a.threads * a.clients).max(1) as u64;
            let range = a.key_maximum.saturating_sub(a.key_minimum) + 1;
            Some(range.div_ceil(conns))
        }
        Some(n) => Some(n.parse::<u64>().map_err(|_| format!("--requests: {n:?} is neither a number nor allkeys"))?),
    };
    if requests == Some(0) {
        return Err("--requests must be >= 1".into());
    }
    if a.set_on_miss && a.multi_key_get > 1 {
        return Err("--set-on-miss needs --multi-key-get 1".into());
    }
    let limit = match (a.test_time, requests) {
        (Some(t), _) if t > 0.0 => Limit::Time(t),
        (Some(_), _) => return Err("--test-time must be > 0".into()),
        (None, Some(n)) => Limit::Requests(n),
        (None, None) => Limit::Requests(10_000),
    };
    let seed = a.seed.unwrap_or_else(|| now_ns() ^ (std::process::id() as u64) << 32);
    Ok(Config {
        host: a.server.clone(),
        port: a.port,
        threads: a.threads,
        clients: a.clients,
        pipeline: a.pipeline,
        ratio_set,
        ratio_get,
        ratio_delete,
        set_pattern: parse_pattern(sp, a)?,
        get_pattern: parse_pattern(gp, a)?,
        key_min: a.key_minimum,
        key_max: a.key_maximum,
        prefix: a.key_prefix.as_bytes().to_vec(),
        size_min,
        size_max,
        random_data: a.random_data,
        json: match &a.data_json {
            Some(k) => Some(JsonGen::new(Kind::parse(k)?, a.data_seed)),
            None => None,
        },
        multi_get: a.multi_key_get.max(1),
        limit,
        warmup: a.warmup.max(0.0),
        prefill: a.prefill,
        expiry: a.expiry,
        set_on_miss: a.set_on_miss,
        verify_data: a.verify_data,
        seed,
        zipf_alpha: a.zipf_alpha,
        poll_interval_us: a.poll_interval_us,
    })
}

struct PhaseResult {
    stats: Stats,
    /// Length of the measured window in seconds.
    duration: f64,
}

/// Run one phase (prefill or the benchmark) on `cfg.threads` threads, with a
/// progress line on stderr when it is a terminal.
fn run_phase(cfg: &Arc<Config>, values: &Arc<Vec<u8>>, mode: Mode) -> Result<PhaseResult, String> {
    let nthreads = cfg.threads;
    let barrier = Arc::new(Barrier::new(nthreads + 1));
    let times = Arc::new(Times::default());
    let progs: Vec<Arc<Progress>> = (0..nthreads).map(|_| Arc::new(Progress::default())).collect();
    let mut handles = Vec::with_capacity(nthreads);
    for (tid, prog) in progs.iter().enumerate() {
        let (cfg, values, prog) = (cfg.clone(), values.clone(), prog.clone());
        let (barrier, times) = (barrier.clone(), times.clone());
        let h = std::thread::Builder::new()
            .name(format!("bench-{tid}"))
            .spawn(move || -> Result<Stats, String> {
                let w = Worker::new(cfg.clone(), mode, tid, values, prog.clone());
                let mut w = match w {
                    Ok(w) => w,
                    Err(e) => {
                        // Still take part in both barriers so nobody deadlocks.
                        barrier.wait();
                        barrier.wait();
                        prog.done.store(true, Ordering::Release);
                        return Err(format!("thread {tid}: connecting to {}:{}: {e}", cfg.host, cfg.port));
                    }
                };
                w.run(&barrier, &times);
                Ok(std::mem::replace(&mut w.stats, Stats::new()))
            })
            .map_err(|e| format!("spawning thread: {e}"))?;
        handles.push(h);
    }
    barrier.wait(); // everybody connected (or failed)
    let start = now_ns();
    let (measure, end) = match (mode, cfg.limit) {
        (Mode::Prefill, _) => (start, 0),
        (Mode::Run, Limit::Time(t)) => {
            let m = start + (cfg.warmup * 1e9) as u64;
            (m, m + (t * 1e9) as u64)
        }
        (Mode::Run, Limit::Requests(_)) => (start + (cfg.warmup * 1e9) as u64, 0),
    };
    times.start_ns.store(start, Ordering::Release);
    times.measure_ns.store(measure, Ordering::Release);
    times.end_ns.store(end, Ordering::Release);
    barrier.wait();

    progress_loop(cfg, mode, &progs, start, measure, end);

    let mut stats = Stats::new();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => stats.merge(&s),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("worker thread panicked".into()),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let duration = match (mode, cfg.limit) {
        (Mode::Run, Limit::Time(t)) => t,
        _ => (stats.last_ns.max(measure) - measure) as f64 / 1e9,
    };
    Ok(PhaseResult { stats, duration })
}

fn progress_loop(cfg: &Config, mode: Mode, progs: &[Arc<Progress>], start: u64, measure: u64, end: u64) {
    let tty = unsafe { libc::isatty(2) } == 1;
    let total_issue = match (mode, cfg.limit) {
        (Mode::Prefill, _) => cfg.key_max - cfg.key_min + 1,
        (Mode::Run, Limit::Requests(n)) => n * (cfg.threads * cfg.clients) as u64,
        (Mode::Run, Limit::Time(_)) => 0,
    };
    let (mut prev_ops, mut prev_lat, mut prev_bytes, mut prev_t) = (0u64, 0u64, 0u64, start);
    let (mut base_ops, mut base_lat, mut base_bytes, mut based) = (0u64, 0u64, 0u64, false);
    let mut base_t = measure;
    let mut next_tick = start + 1_000_000_000;
    let mut printed = false;
    loop {
        let all_done = progs.iter().all(|p| p.done.load(Ordering::Acquire));
        if all_done {
            break;
        }
        let now = now_ns();
        if now < next_tick {
            std::thread::sleep(Duration::from_nanos((next_tick - now).min(50_000_000)));
            continue;
        }
        next_tick += 1_000_000_000;
        if !tty {
            continue;
        }
        let ops: u64 = progs.iter().map(|p| p.ops.load(Ordering::Relaxed)).sum();
        let lat: u64 = progs.iter().map(|p| p.lat_ns.load(Ordering::Relaxed)).sum();
        let bytes: u64 = progs.iter().map(|p| p.bytes.load(Ordering::Relaxed)).sum();
        let issued: u64 = progs.iter().map(|p| p.issued.load(Ordering::Relaxed)).sum();
        let in_warmup = mode == Mode::Run && now < measure;
        if !in_warmup && !based {
            // Averages cover the measured window only.
            (base_ops, base_lat, base_bytes, based) = (prev_ops, prev_lat, prev_bytes, true);
            base_t = prev_t;
        }
        let dt = (now - prev_t) as f64 / 1e9;
        let rate = (ops - prev_ops) as f64 / dt;
        let mbs = (bytes - prev_bytes) as f64 / dt / 1048576.0;
        let cur_lat = if ops > prev_ops { (lat - prev_lat) as f64 / (ops - prev_ops) as f64 / 1e6 } else { 0.0 };
        let since = now.saturating_sub(base_t) as f64 / 1e9;
        let (avg_rate, avg_mbs, avg_lat) = if in_warmup || !based {
            (rate, mbs, cur_lat)
        } else {
            let o = ops - base_ops;
            (
                o as f64 / since.max(1e-9),
                (bytes - base_bytes) as f64 / since.max(1e-9) / 1048576.0,
                if o > 0 { (lat - base_lat) as f64 / o as f64 / 1e6 } else { 0.0 },
            )
        };
        let pct = if total_issue > 0 {
            (issued as f64 * 100.0 / total_issue as f64).min(100.0)
        } else if end > 0 {
            ((now - start) as f64 * 100.0 / (end - start) as f64).min(100.0)
        } else {
            0.0
        };
        let label = match mode {
            Mode::Prefill => "PREFILL",
            Mode::Run if in_warmup => "WARMUP",
            Mode::Run => "RUN #1",
        };
        eprint!(
            "\r[{label} {pct:3.0}%, {secs:3.0} secs] {t:2} threads: {ops:11} ops, {rate:7.0} (avg: {avg_rate:7.0}) ops/sec, {mbs:.2}MB/sec (avg: {avg_mbs:.2}MB/sec), {cur_lat:5.2} (avg: {avg_lat:5.2}) msec latency",
            secs = (now - start) as f64 / 1e9,
            t = cfg.threads,
        );
        let _ = std::io::stderr().flush();
        printed = true;
        (prev_ops, prev_lat, prev_bytes, prev_t) = (ops, lat, bytes, now);
    }
    if printed {
        eprintln!();
    }
}

fn ms_q(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 }
}

struct Row {
    ops_s: f64,
    hits_s: Option<f64>,
    misses_s: Option<f64>,
    avg: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    kb_s: f64,
}

fn row(ops: u64, lat_ns: u64, bytes: u64, h: &hdrhistogram::Histogram<u64>, hm: Option<(u64, u64)>, d: f64) -> Row {
    let d = d.max(1e-9);
    Row {
        ops_s: ops as f64 / d,
        hits_s: hm.map(|(h, _)| h as f64 / d),
        misses_s: hm.map(|(_, m)| m as f64 / d),
        avg: if ops > 0 { lat_ns as f64 / ops as f64 / 1e6 } else { 0.0 },
        p50: ms_q(h, 0.5),
        p90: ms_q(h, 0.9),
        p99: ms_q(h, 0.99),
        p999: ms_q(h, 0.999),
        max: if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
        kb_s: bytes as f64 / 1024.0 / d,
    }
}

fn fmt_row(name: &str, r: &Row) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "---".to_string(), |x| format!("{x:.2}"));
    format!(
        "{name:<6}{:>14.2} {:>12} {:>12} {:>15.5} {:>15.5} {:>15.5} {:>15.5} {:>12.2} ",
        r.ops_s,
        opt(r.hits_s),
        opt(r.misses_s),
        r.avg,
        r.p50,
        r.p99,
        r.p999,
        r.kb_s
    )
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(x: f64) -> String {
    if x.is_finite() { format!("{x:.6}") } else { "null".into() }
}

fn json_row(r: &Row) -> String {
    format!(
        "{{\"ops_per_sec\": {}, \"kb_per_sec\": {}, \"latency_ms\": {{\"avg\": {}, \"p50\": {}, \"p90\": {}, \"p99\": {}, \"p99_9\": {}, \"max\": {}}}}}",
        json_num(r.ops_s),
        json_num(r.kb_s),
        json_num(r.avg),
        json_num(r.p50),
        json_num(r.p90),
        json_num(r.p99),
        json_num(r.p999),
        json_num(r.max)
    )
}

/// --print-values: the first `n` values, then the generation speed.
fn print_values(cfg: &Config, n: u64) {
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    let values = worker::make_values(cfg);
    let (lo, hi) = (cfg.size_min, cfg.size_max);
    for key in cfg.key_min..cfg.key_min.saturating_add(n) {
        buf.clear();
        worker::write_value(&mut buf, cfg, &values, key, &mut keygen::Rng::new(key));
        buf.push(b'\n');
        if out.write_all(&buf).is_err() {
            return;
        }
    }
    let _ = out.flush();
    let t0 = now_ns();
    let (mut bytes, count) = (0usize, 100_000u64);
    let mut rng = keygen::Rng::new(cfg.seed);
    for key in 0..count {
        buf.clear();
        worker::write_value(&mut buf, cfg, &values, cfg.key_min + key, &mut rng);
        bytes += buf.len();
    }
    let dt = (now_ns() - t0) as f64 / 1e9;
    eprintln!(
        "memcore-bench: {count} values of {lo}..{hi} bytes ({}) generated in {dt:.3} s: {:.0} values/s, {:.0} MB/s",
        cfg.json.as_ref().map_or(if cfg.random_data { "random" } else { "filler" }, |j| j.kind.name()),
        count as f64 / dt,
        bytes as f64 / dt / 1e6
    );
}

/// Appends `v` in decimal (keys, lengths and JSON numbers; no allocation).
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let cfg = match config_from(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("memcore-bench: {e}");
            std::process::exit(2);
        }
    };
    if let Some(n) = args.print_values {
        print_values(&cfg, n);
        return;
    }
    let values = Arc::new(worker::make_values(&cfg));

    let limit_desc = match cfg.limit {
        Limit::Time(t) => format!("{:<10}Seconds", t),
        Limit::Requests(n) => format!("{:<10}Requests per client", n),
    };
    println!("Writing results to stdout");
    println!("[RUN #1] Preparing benchmark client...");
    println!("[RUN #1] Launching threads now...");
    let _ = std::io::stdout().flush();

    if cfg.prefill {
        let t0 = now_ns();
        match run_phase(&cfg, &values, Mode::Prefill) {
            Ok(r) => {
                let s = &r.stats;
                eprintln!(
                    "prefill: {} keys set in {:.2} s ({} errors, {} not stored, {} connection errors)",
                    cfg.key_max - cfg.key_min + 1,
                    (now_ns() - t0) as f64 / 1e9,
                    s.errors,
                    s.not_stored,
                    s.conn_errors
                );
            }
            Err(e) => {
                eprintln!("memcore-bench: prefill failed: {e}");
                std::process::exit(1);
            }
        }
    }

    let r = match run_phase(&cfg, &values, Mode::Run) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("memcore-bench: {e}");
            std::process::exit(1);
        }
    };
    let s = &r.stats;
    let d = r.duration;

    let sets = row(s.sets.ops, s.sets.lat_ns, s.sets.bytes, &s.sets.hist, None, d);
    let gets = row(s.gets.ops, s.gets.lat_ns, s.gets.bytes, &s.gets.hist, Some((s.hits, s.misses)), d);
    let mut all_hist = worker::new_hist();
    all_hist.add(&s.sets.hist).unwrap();
    all_hist.add(&s.gets.hist).unwrap();
    let total_ops = s.sets.ops + s.gets.ops;
    let totals = row(
        total_ops,
        s.sets.lat_ns + s.gets.lat_ns,
        s.sets.bytes + s.gets.bytes,
        &all_hist,
        Some((s.hits, s.misses)),
        d,
    );
    let hit_ratio = if s.hits + s.misses > 0 { s.hits as f64 / (s.hits + s.misses) as f64 } else { 0.0 };

    let mut out = String::new();
    let _ = writeln!(out, "\n{:<10}Threads", cfg.threads);
    let _ = writeln!(out, "{:<10}Connections per thread", cfg.clients);
    let _ = writeln!(out, "{limit_desc}");
    let _ = writeln!(out, "\n\nALL STATS");
    let bar = "=".repeat(124);
    let _ = writeln!(out, "{bar}");
    let _ = writeln!(
        out,
        "Type         Ops/sec     Hits/sec   Misses/sec    Avg. Latency     p50 Latency     p99 Latency   p99.9 Latency       KB/sec "
    );
    let _ = writeln!(out, "{}", "-".repeat(124));
    let _ = writeln!(out, "{}", fmt_row("Sets", &sets));
    let _ = writeln!(out, "{}", fmt_row("Gets", &gets));
    let _ = writeln!(
        out,
        "{:<6}{:>14.2} {:>12} {:>12} {:>15} {:>15} {:>15} {:>15} {:>12} ",
        "Waits", 0.0, "---", "---", "---", "---", "---", "---", "---"
    );
    let _ = writeln!(out, "{}", fmt_row("Totals", &totals));
    let _ = writeln!(out, "\nLatency (msec, all ops): p90 {:.5}  max {:.5}", totals.p90, totals.max);
    let _ = writeln!(
        out,
        "Hit ratio {:.4} ({} hits, {} misses); {} ops in {:.3} s; errors {}, not stored {}, verify failures {}, connection errors {}; {} sends, {} recvs",
        hit_ratio,
        s.hits,
        s.misses,
        total_ops,
        d,
        s.errors,
        s.not_stored,
        s.verify_failures,
        s.conn_errors,
        s.sends,
        s.recvs
    );
    if !args.hide_histogram {
        let _ = writeln!(out, "\n\nRequest Latency Distribution");
        let _ = writeln!(out, "Type     <= msec         Percent");
        let _ = writeln!(out, "{}", "-".repeat(124));
        for (name, h) in [("SET", &s.sets.hist), ("GET", &s.gets.hist)] {
            if h.is_empty() {
                continue;
            }
            for q in [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0] {
                let v = if q == 0.0 {
                    h.min()
                } else if q == 1.0 {
                    h.max()
                } else {
                    h.value_at_quantile(q)
                };
                let _ = writeln!(out, "{name:<8} {:>8.3} {:>15.3}", v as f64 / 1000.0, q * 100.0);
            }
            let _ = writeln!(out, "---");
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();

    if let Some(path) = &args.json_out_file {
        let pat = |p: &KeyPattern| p.letter().to_string();
        let limit_json = match cfg.limit {
            Limit::Time(t) => format!("\"test_time_s\": {}, \"requests\": null", json_num(t)),
            Limit::Requests(n) => format!("\"test_time_s\": null, \"requests\": {n}"),
        };
        let mut j = String::new();
        let _ = writeln!(j, "{{");
        let _ = writeln!(j, "  \"tool\": \"memcore-bench\",");
        let _ = writeln!(j, "  \"ops_per_sec\": {},", json_num(totals.ops_s));
        let _ = writeln!(j, "  \"sets_per_sec\": {},", json_num(sets.ops_s));
        let _ = writeln!(j, "  \"gets_per_sec\": {},", json_num(gets.ops_s));
        let _ = writeln!(j, "  \"hits\": {},", s.hits);
        let _ = writeln!(j, "  \"misses\": {},", s.misses);
        let _ = writeln!(j, "  \"hit_ratio\": {},", json_num(hit_ratio));
        let _ = writeln!(j, "  \"hits_per_sec\": {},", json_num(totals.hits_s.unwrap_or(0.0)));
        let _ = writeln!(j, "  \"misses_per_sec\": {},", json_num(totals.misses_s.unwrap_or(0.0)));
        let _ = writeln!(
            j,
            "  \"latency_ms\": {{\"avg\": {}, \"p50\": {}, \"p90\": {}, \"p99\": {}, \"p99_9\": {}, \"max\": {}}},",
            json_num(totals.avg),
            json_num(totals.p50),
            json_num(totals.p90),
            json_num(totals.p99),
            json_num(totals.p999),
            json_num(totals.max)
        );
        let _ = writeln!(j, "  \"kb_per_sec\": {},", json_num(totals.kb_s));
        let _ = writeln!(j, "  \"duration_s\": {},", json_num(d));
        let _ = writeln!(j, "  \"total_ops\": {},", total_ops);
        let _ = writeln!(j, "  \"sets\": {},", json_row(&sets));
        let _ = writeln!(j, "  \"gets\": {},", json_row(&gets));
        let _ = writeln!(
            j,
            "  \"errors\": {{\"error_replies\": {}, \"not_stored\": {}, \"verify_failures\": {}, \"connection_errors\": {}}},",
            s.errors, s.not_stored, s.verify_failures, s.conn_errors
        );
        let _ = writeln!(j, "  \"settings\": {{");
        let _ = writeln!(j, "    \"server\": {},", json_str(&cfg.host));
        let _ = writeln!(j, "    \"port\": {},", cfg.port);
        let _ = writeln!(j, "    \"protocol\": \"memcache_text\",");
        let _ = writeln!(j, "    \"threads\": {},", cfg.threads);
        let _ = writeln!(j, "    \"clients\": {},", cfg.clients);
        let _ = writeln!(j, "    \"pipeline\": {},", cfg.pipeline);
        let _ = writeln!(
            j,
            "    \"ratio\": {},",
            json_str(&format!("{}:{}:{}", cfg.ratio_set, cfg.ratio_get, cfg.ratio_delete))
        );
        let _ = writeln!(
            j,
            "    \"key_pattern\": {},",
            json_str(&format!("{}:{}", pat(&cfg.set_pattern), pat(&cfg.get_pattern)))
        );
        let _ = writeln!(j, "    \"zipf_alpha\": {},", json_num(cfg.zipf_alpha));
        let _ = writeln!(j, "    \"key_minimum\": {},", cfg.key_min);
        let _ = writeln!(j, "    \"key_maximum\": {},", cfg.key_max);
        let _ = writeln!(j, "    \"key_prefix\": {},", json_str(&String::from_utf8_lossy(&cfg.prefix)));
        let _ = writeln!(j, "    \"data_size_min\": {},", cfg.size_min);
        let _ = writeln!(j, "    \"data_size_max\": {},", cfg.size_max);
        let _ = writeln!(j, "    \"random_data\": {},", cfg.random_data);
        let _ = writeln!(j, "    \"multi_key_get\": {},", cfg.multi_get);
        let _ = writeln!(j, "    {limit_json},");
        let _ = writeln!(j, "    \"warmup_s\": {},", json_num(cfg.warmup));
        let _ = writeln!(j, "    \"prefill\": {},", cfg.prefill);
        let _ = writeln!(j, "    \"expiry\": {},", cfg.expiry);
        let _ = writeln!(j, "    \"set_on_miss\": {},", cfg.set_on_miss);
        let _ = writeln!(j, "    \"verify_data\": {},", cfg.verify_data);
        let _ = writeln!(j, "    \"poll_interval_us\": {},", cfg.poll_interval_us);
        let _ = writeln!(j, "    \"seed\": {}", cfg.seed);
        let _ = writeln!(j, "  }}");
        let _ = writeln!(j, "}}");
        if let Err(e) = std::fs::write(path, j) {
            eprintln!("memcore-bench: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    if total_ops == 0 || s.conn_errors > 0 {
        std::process::exit(1);
    }
}
