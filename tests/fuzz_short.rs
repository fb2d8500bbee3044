//! Short, deterministic property fuzz of the parser and the store, for CI.
//!
//! A seeded xorshift PRNG (no dependency) generates random bytes, valid
//! requests for every command of the grammar in src/protocol/parse.rs,
//! mutations of them, and pipelined streams of all of these, and checks the
//! invariants in fuzz/src/lib.rs (shared with the cargo-fuzz targets):
//! no panic, consumed in 1..=len, Incomplete's need 0 or beyond the buffer,
//! keys of 1..=250 bytes, the same results whether the input arrives whole,
//! cut in pieces or a byte at a time. Valid requests must also parse to the
//! request they encode. Byte-coded operation sequences run on a small store
//! against a model of the last value written per key.
//!
//! Runs for `MEMCORE_FUZZ_SECS` seconds per test (default 10);
//! `MEMCORE_FUZZ_SEED` picks another seed. A failure prints the seed, the
//! case number and the input; `MEMCORE_FUZZ_CASE=n` (with the same seed)
//! replays that store case alone, and `MEMCORE_FUZZ_TRACE=1` prints each
//! store operation with the engine's memory.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use memcore::protocol::{KEY_MAX_LENGTH, Limits, Parsed, Request, parse};

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// xorshift64*.
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

fn budget() -> Duration {
    let secs = std::env::var("MEMCORE_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(10.0);
    Duration::from_secs_f64(secs.max(0.0))
}

fn seed() -> u64 {
    std::env::var("MEMCORE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6d65_6d63_6f72_6521)
}

fn only_case() -> Option<u64> {
    std::env::var("MEMCORE_FUZZ_CASE").ok().and_then(|s| s.parse().ok())
}

fn show(b: &[u8]) -> String {
    if b.len() > 600 {
        format!("{} bytes, starting {:?}", b.len(), String::from_utf8_lossy(&b[..600]))
    } else {
        format!("{:?}", String::from_utf8_lossy(b))
    }
}

/// Run `f`, and on failure say which input broke it before failing.
fn guarded(seed: u64, case: u64, input: &[u8], f: impl FnOnce()) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(f)) {
        eprintln!("fuzz_short failed: seed {seed} case {case}\ninput: {}", show(input));
        resume_unwind(e);
    }
}

// --- generators --------------------------------------------------------------

fn key(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => KEY_MAX_LENGTH,
        1 => rng.range(200, KEY_MAX_LENGTH),
        2..=4 => rng.range(1, 40),
        _ => rng.range(1, 8),
    };
    (0..len)
        .map(|_| match rng.below(20) {
            0 => 0x80 + rng.below(0x80) as u8, // non-ASCII bytes are fine in keys
            _ => 0x21 + rng.below(0x7f - 0x21) as u8,
        })
        .collect()
}

fn sep(rng: &mut Rng) -> &'static str {
    if rng.chance(6) { rng.pick::<&str>(&["  ", "   ", "    "]) } else { " " }
}

fn eol(rng: &mut Rng) -> &'static str {
    if rng.chance(5) { "\n" } else { "\r\n" }
}

fn i32_arg(rng: &mut Rng) -> i64 {
    match rng.below(6) {
        0 => 0,
        1 => i32::MAX as i64,
        2 => i32::MIN as i64,
        3 => -(rng.below(100) as i64),
        _ => rng.below(100_000) as i64,
    }
}

fn u64_arg(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => u64::MAX,
        1 => rng.next(),
        _ => rng.below(1000),
    }
}

/// What a valid request must parse to (the fields worth checking).
#[derive(Default)]
struct Expect {
    key: Option<Vec<u8>>,
    keys: Option<Vec<Vec<u8>>>,
    data: Option<Vec<u8>>,
    noreply: Option<bool>,
    /// Length of the command line (for TooLarge, which consumes only it).
    line_len: usize,
}

const COMMANDS: &[&str] = &[
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
    "get",
    "gets",
    "gat",
    "gats",
    "delete",
    "incr",
    "decr",
    "touch",
    "flush_all",
    "verbosity",
    "version",
    "quit",
    "shutdown",
    "stats",
    "cache_memlimit",
    "mg",
    "ms",
    "md",
    "ma",
    "me",
    "mn",
];

/// Flags of each meta command, any subset in any order (each once).
fn meta_flags(rng: &mut Rng, cmd: &str) -> String {
    let all: &[&str] = match cmd {
        "mg" => &["c", "f", "h", "k", "l", "Oop", "q", "s", "t", "u", "v", "N30", "R10", "T-1"],
        "ms" => &["c", "C5", "F7", "I", "k", "O1", "q", "T0", "ME", "MA", "MS"],
        "md" => &["C9", "I", "k", "Oz", "q", "T30"],
        "ma" => &["c", "C1", "D5", "J9", "k", "N0", "Oa", "q", "t", "T5", "v", "MD"],
        _ => &[],
    };
    let mut out = String::new();
    let mut seen = Vec::new();
    if all.is_empty() {
        return out;
    }
    for _ in 0..rng.range(0, 6) {
        let f = *rng.pick(all);
        if !seen.contains(&f.as_bytes()[0]) {
            seen.push(f.as_bytes()[0]);
            out.push_str(sep(rng));
            out.push_str(f);
        }
    }
    out
}

/// A valid request, every command of the grammar, with random arguments.
fn valid_request(rng: &mut Rng) -> (Vec<u8>, Expect) {
    let cmd = *rng.pick(COMMANDS);
    let mut ex = Expect::default();
    let noreply = rng.chance(3);
    let nr = |noreply: bool, rng: &mut Rng| if noreply { format!("{}noreply", sep(rng)) } else { String::new() };
    let mut out: Vec<u8> = Vec::new();
    let lead = if rng.chance(10) { " " } else { "" };
    match cmd {
        "set" | "add" | "replace" | "append" | "prepend" | "cas" => {
            let k = key(rng);
            let dlen = match rng.below(8) {
                0 => 0,
                1 => rng.range(1000, 5000),
                _ => rng.range(1, 64),
            };
            // Data may hold anything, CR and LF included.
            let data: Vec<u8> = (0..dlen).map(|_| *rng.pick(b"ab\r\n \x00\xffxyz0123")).collect();
            let flags = match rng.below(3) {
                0 => 0,
                1 => u32::MAX,
                _ => rng.below(1 << 16) as u32,
            };
            out.extend_from_slice(format!("{lead}{cmd}{}", sep(rng)).as_bytes());
            out.extend_from_slice(&k);
            out.extend_from_slice(
                format!("{}{flags}{}{}{}{dlen}", sep(rng), sep(rng), i32_arg(rng), sep(rng)).as_bytes(),
            );
            if cmd == "cas" {
                out.extend_from_slice(format!("{}{}", sep(rng), u64_arg(rng)).as_bytes());
            }
            out.extend_from_slice(format!("{}{}", nr(noreply, rng), eol(rng)).as_bytes());
            ex.line_len = out.len();
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            ex.key = Some(k);
            ex.data = Some(data);
            ex.noreply = Some(noreply);
        }
        "get" | "gets" | "gat" | "gats" => {
            out.extend_from_slice(format!("{lead}{cmd}").as_bytes());
            if cmd.starts_with("gat") {
                out.extend_from_slice(format!("{}{}", sep(rng), i32_arg(rng)).as_bytes());
            }
            let n = if cmd.starts_with("gat") { rng.range(0, 6) } else { rng.range(1, 6) };
            let n = if rng.chance(40) { 200 } else { n }; // lines past 2048 bytes
            let mut keys = Vec::new();
            for _ in 0..n {
                let k = key(rng);
                out.extend_from_slice(sep(rng).as_bytes());
                out.extend_from_slice(&k);
                keys.push(k);
            }
            if rng.chance(8) {
                out.push(b' ');
            }
            out.extend_from_slice(eol(rng).as_bytes());
            ex.keys = Some(keys);
        }
        "delete" => {
            let k = key(rng);
            out.extend_from_slice(format!("{lead}delete{}", sep(rng)).as_bytes());
            out.extend_from_slice(&k);
            if rng.chance(3) {
                out.extend_from_slice(format!("{}0", sep(rng)).as_bytes());
            }
            out.extend_from_slice(format!("{}{}", nr(noreply, rng), eol(rng)).as_bytes());
            ex.key = Some(k);
            ex.noreply = Some(noreply);
        }
        "incr" | "decr" | "touch" => {
            let k = key(rng);
            let arg = if cmd == "touch" { i32_arg(rng).to_string() } else { u64_arg(rng).to_string() };
            out.extend_from_slice(format!("{lead}{cmd}{}", sep(rng)).as_bytes());
            out.extend_from_slice(&k);
            out.extend_from_slice(format!("{}{arg}{}{}", sep(rng), nr(noreply, rng), eol(rng)).as_bytes());
            ex.key = Some(k);
            ex.noreply = Some(noreply);
        }
        "flush_all" => {
            let delay = if rng.chance(2) { format!("{}{}", sep(rng), i32_arg(rng)) } else { String::new() };
            out.extend_from_slice(format!("{lead}flush_all{delay}{}{}", nr(noreply, rng), eol(rng)).as_bytes());
            ex.noreply = Some(noreply);
        }
        "verbosity" | "cache_memlimit" => {
            // cache_memlimit below 8 MB is refused (MEMLIMIT_TOO_SMALL).
            let n = if cmd == "cache_memlimit" { u64_arg(rng).max(8) } else { u64_arg(rng) };
            out.extend_from_slice(format!("{lead}{cmd}{}{n}{}{}", sep(rng), nr(noreply, rng), eol(rng)).as_bytes());
            ex.noreply = Some(noreply);
        }
        "mg" | "md" | "ma" | "me" | "ms" => {
            let k = key(rng);
            out.extend_from_slice(format!("{lead}{cmd}{}", sep(rng)).as_bytes());
            out.extend_from_slice(&k);
            let dlen = rng.range(0, 40);
            if cmd == "ms" {
                out.extend_from_slice(format!("{}{dlen}", sep(rng)).as_bytes());
            }
            out.extend_from_slice(format!("{}{}", meta_flags(rng, cmd), eol(rng)).as_bytes());
            ex.line_len = out.len();
            if cmd == "ms" {
                let data: Vec<u8> = (0..dlen).map(|_| *rng.pick(b"ab\r\n \x00xyz")).collect();
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
                ex.data = Some(data);
            }
            ex.key = Some(k);
        }
        "stats" => {
            let args = ["", " items", " slabs", " settings", " cachedump 1 2", " reset", " detail on"];
            out.extend_from_slice(format!("{lead}stats{}{}", rng.pick(&args), eol(rng)).as_bytes());
        }
        _ => out.extend_from_slice(format!("{lead}{cmd}{}", eol(rng)).as_bytes()),
    }
    (out, ex)
}

/// A valid request must parse, whole, to the request it encodes.
fn check_valid(input: &[u8], ex: &Expect, limits: &Limits) {
    match parse(input, limits) {
        Parsed::Request { req, consumed, swallow } => {
            if let Request::Meta(m) = req
                && m.too_large
            {
                assert_eq!(consumed, ex.line_len, "a too large ms consumes the command line");
                assert_eq!(consumed + swallow, input.len(), "a too large ms swallows the rest");
                return;
            }
            if let Request::TooLarge { key, noreply, .. } = req {
                assert_eq!(consumed, ex.line_len, "TooLarge consumes the command line");
                assert_eq!(consumed + swallow, input.len(), "TooLarge swallows the rest");
                assert_eq!(Some(key), ex.key.as_deref());
                assert_eq!(Some(noreply), ex.noreply);
                return;
            }
            assert_eq!(consumed, input.len(), "valid request not consumed whole: {req:?}");
            assert_eq!(swallow, 0);
            if let Some(k) = &ex.key {
                assert_eq!(req.key(), Some(&k[..]), "{req:?}");
            }
            match req {
                Request::Get { keys, .. } => {
                    let got: Vec<&[u8]> = keys.iter().collect();
                    let want: Vec<&[u8]> = ex.keys.as_ref().expect("keys").iter().map(|k| &k[..]).collect();
                    assert_eq!(got, want);
                }
                Request::Meta(m) if m.cmd == memcore::protocol::MetaCmd::Set => {
                    assert_eq!(Some(m.data), ex.data.as_deref());
                }
                Request::Store { data, noreply, .. } => {
                    assert_eq!(Some(data), ex.data.as_deref());
                    assert_eq!(Some(noreply), ex.noreply);
                }
                Request::Delete { noreply, .. }
                | Request::Arith { noreply, .. }
                | Request::Touch { noreply, .. }
                | Request::FlushAll { noreply, .. }
                | Request::CacheMemlimit { noreply, .. }
                | Request::Verbosity { noreply, .. } => assert_eq!(Some(noreply), ex.noreply, "{req:?}"),
                _ => {}
            }
        }
        other => panic!("valid request refused: {other:?}"),
    }
}

const HUGE: &[&str] = &[
    "99999999999999999999999",
    "18446744073709551616",
    "18446744073709551615",
    "4294967296",
    "2147483648",
    "2147483647",
    "2147483646",
    "-2147483648",
    "-2147483649",
    "-1",
    "-0",
    "+5",
    "-+5",
    "000000000000000000000001",
    "",
    "x",
];

/// Damage `input` in one of several ways.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..rng.range(1, 3) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len as u64) as usize;
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.truncate(rng.range(0, len)),
            2 => {
                let i = rng.range(0, len);
                let b = *rng.pick(&[b' ', b'\r', b'\n', b'\t', 0u8]);
                input.insert(i, b);
            }
            3 if len > 0 => {
                input.remove(rng.below(len as u64) as usize);
            }
            4 => {
                // Replace the n-th token of the first line with an odd number.
                let line_end = input.iter().position(|&b| b == b'\n').unwrap_or(len);
                let starts: Vec<usize> =
                    (0..line_end).filter(|&i| input[i] != b' ' && (i == 0 || input[i - 1] == b' ')).collect();
                if let Some(&s) = starts.get(rng.below(starts.len().max(1) as u64) as usize) {
                    let e = (s..line_end).find(|&i| matches!(input[i], b' ' | b'\r')).unwrap_or(line_end);
                    input.splice(s..e, rng.pick(HUGE).bytes());
                }
            }
            5 => {
                let i = rng.range(0, len);
                let ins: &[u8] =
                    rng.pick::<&[u8]>(&[&b" noreply"[..], b"\r\n", b" 0", b"HTTP/1.1", b"get ", b"set k 0 0 1\r\n"]);
                input.splice(i..i, ins.iter().copied());
            }
            6 if len > 0 => {
                // Duplicate a slice.
                let a = rng.range(0, len - 1);
                let b = rng.range(a, len);
                let piece = input[a..b].to_vec();
                let at = rng.range(0, len);
                input.splice(at..at, piece);
            }
            7 => {
                // Grow a line past the no-newline limit.
                let at = rng.range(0, len);
                let fill = *rng.pick(b"k ");
                input.splice(at..at, std::iter::repeat_n(fill, rng.range(1000, 3000)));
            }
            _ => {
                let i = rng.range(0, len);
                input.insert(i, rng.next() as u8);
            }
        }
    }
}

/// Bytes drawn mostly from protocol fragments.
fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"set ",
        b"add ",
        b"cas ",
        b"get ",
        b"gets ",
        b"gat ",
        b"delete ",
        b"incr ",
        b"touch ",
        b"flush_all",
        b"verbosity ",
        b"stats",
        b"quit",
        b"cache_memlimit ",
        b"mg ",
        b"ms ",
        b"md ",
        b"ma ",
        b"me ",
        b"mn",
        b" v",
        b" q",
        b" b",
        b" T30",
        b" N30",
        b" MA",
        b" O123",
        b" ",
        b" ",
        b"\r\n",
        b"\n",
        b"\r",
        b"0",
        b"1",
        b"5",
        b"-1",
        b"noreply",
        b"k",
        b"key",
        b"4294967295",
        b"HTTP/1.0",
    ];
    let mut out = Vec::new();
    let n = rng.range(0, 40);
    for _ in 0..n {
        if rng.chance(4) {
            for _ in 0..rng.range(1, 8) {
                out.push(rng.next() as u8);
            }
        } else {
            let p: &[u8] = rng.pick::<&[u8]>(PIECES);
            out.extend_from_slice(p);
        }
    }
    out
}

fn limits(rng: &mut Rng) -> Limits {
    let item_size_max = match rng.below(4) {
        0 => 64,
        1 => rng.range(100, 2000),
        _ => 1 << 20,
    };
    Limits { item_size_max }
}

fn cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    (0..rng.range(1, 4)).map(|_| rng.range(0, len)).collect()
}

#[test]
fn parser_property_fuzz() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + budget();
    let mut counts = [0u64; 4];
    let mut case = 0u64;
    loop {
        case += 1;
        let lim = limits(&mut rng);
        let kind = rng.below(4) as usize;
        let input: Vec<u8> = match kind {
            0 => random_bytes(&mut rng),
            1 => {
                let (req, ex) = valid_request(&mut rng);
                guarded(seed, case, &req, || check_valid(&req, &ex, &lim));
                req
            }
            2 => {
                let (mut req, _) = valid_request(&mut rng);
                mutate(&mut rng, &mut req);
                req
            }
            _ => {
                // A pipelined stream of valid, damaged and random requests.
                let mut s = Vec::new();
                for _ in 0..rng.range(2, 8) {
                    let (mut req, _) = valid_request(&mut rng);
                    match rng.below(4) {
                        0 => mutate(&mut rng, &mut req),
                        1 => req = random_bytes(&mut rng),
                        _ => {}
                    }
                    s.extend_from_slice(&req);
                }
                s
            }
        };
        counts[kind] += 1;
        let c = cuts(&mut rng, input.len());
        guarded(seed, case, &input, || {
            harness::check_parse(&input, &lim, &c);
            if input.len() <= 4096 {
                harness::check_parse_bytewise(&input, &lim);
            }
        });
        if Instant::now() >= deadline {
            break;
        }
    }
    println!(
        "parser fuzz: {case} cases (random {}, valid {}, mutated {}, streams {}), seed {seed}",
        counts[0], counts[1], counts[2], counts[3]
    );
    assert!(case > 0);
}

/// The `-Y` gate over random bytes, damaged authentication sets and
/// pipelines of both (harness::check_gate).
#[test]
fn auth_gate_property_fuzz() {
    let seed = seed() ^ 0xa07;
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + budget() / 4;
    let mut case = 0u64;
    let mut verdicts = 0;
    while Instant::now() < deadline {
        case += 1;
        let mut s = Vec::new();
        for _ in 0..rng.range(1, 5) {
            let mut part = match rng.below(3) {
                0 => random_bytes(&mut rng),
                _ => {
                    let data = format!("{}{}{}", String::from_utf8_lossy(&key(&mut rng)), sep(&mut rng), rng.next());
                    let n = if rng.chance(4) { rng.range(0, 40) } else { data.len() };
                    format!("set {} 0 0 {n}{}{data}\r\n", String::from_utf8_lossy(&key(&mut rng)), eol(&mut rng))
                        .into_bytes()
                }
            };
            if rng.chance(3) {
                mutate(&mut rng, &mut part);
            }
            s.extend_from_slice(&part);
        }
        guarded(seed, case, &s, || verdicts += harness::check_gate(&s));
    }
    assert!(verdicts > 0);
}

#[test]
fn store_property_fuzz() {
    let seed = seed() ^ 0x5707e;
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + budget();
    let mut case = 0u64;
    let mut total = harness::StoreRun::default();
    loop {
        case += 1;
        // A quarter of the cases are long enough for overwrites to fill
        // several segments with dead records (and compaction to run).
        let most = if rng.chance(4) { 40_000 } else { 4000 };
        let len = rng.range(0, most);
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.chance(3) {
            // Few keys, so that operations meet the same items often.
            for (i, b) in data.iter_mut().enumerate() {
                if i % 2 == 1 && i > 2 {
                    *b %= 8;
                }
            }
        }
        // MEMCORE_FUZZ_CASE=n replays only case n of this seed.
        match only_case() {
            Some(n) if n != case => {}
            _ => guarded(seed, case, &data, || total += harness::check_store(&data)),
        }
        if only_case().is_some_and(|n| case >= n) {
            return;
        }
        if only_case().is_none() && Instant::now() >= deadline {
            break;
        }
    }
    println!("store fuzz: {case} cases, seed {seed}: {total:?}");
    assert!(case > 0);
    // The generator must reach what the checks are about.
    assert!(
        total.hits > 0 && total.misses > 0 && total.evictions > 0 && total.no_memory > 0 && total.compacted > 0,
        "{total:?}"
    );
}

/// A peer's stream: valid batches of ops (versions now, a little ahead,
/// far ahead or u64::MAX; values plain or claiming any unpacked size;
/// deletes and flushes), other frames, then mutated.
fn repl_stream(rng: &mut Rng) -> Vec<u8> {
    use memcore::repl::wire::{self, Op};
    let now = harness::REPL_NOW_MS;
    let drift = memcore::repl::hlc::MAX_DRIFT_MS;
    let mut out = vec![rng.next() as u8, rng.next() as u8];
    for seq in 0..rng.range(1, 5) as u64 {
        if rng.chance(6) {
            let kind = *rng.pick(&[wire::ACK, wire::HEARTBEAT, wire::SNAP_BEGIN, wire::SNAP_END, 0, 200]);
            wire::frame(&mut out, kind, &rng.next().to_le_bytes());
            continue;
        }
        let mut payload = seq.to_le_bytes().to_vec();
        let keys: Vec<Vec<u8>> = (0..8).map(|_| key(rng)).collect();
        for _ in 0..rng.range(1, 200) {
            let k = rng.pick(&keys);
            let ms = match rng.below(8) {
                0 => now + drift + 1 + rng.below(1 << 40),
                1 => u64::MAX >> 20,
                2 => now + drift,
                _ => now - rng.below(100_000),
            };
            let version = if rng.chance(12) { u64::MAX } else { (ms << 12 | rng.below(4096)) << 8 | rng.below(256) };
            let most = if rng.chance(10) { 70_000 } else { 300 };
            let len = rng.range(0, most);
            let value: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let packed = Some(if rng.chance(2) { u32::MAX } else { rng.below(200_000) as u32 });
            let op = match rng.below(10) {
                0..=4 => Op::Set { key: k, version, flags: rng.next() as u32, exp: 0, value: &value, packed: None },
                5 => Op::Set { key: k, version, flags: 0, exp: 0, value: &value, packed },
                6..=8 => Op::Del { key: k, version },
                _ => Op::Flush { at: 0, version },
            };
            wire::encode_op(&mut payload, &op);
        }
        wire::frame(&mut out, wire::BATCH, &payload);
    }
    if rng.chance(3) {
        let mut body = out.split_off(2);
        mutate(rng, &mut body);
        out.extend_from_slice(&body);
    }
    out
}

#[test]
fn replication_input_property_fuzz() {
    let seed = seed() ^ 0x4e91;
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + budget();
    let mut case = 0u64;
    let mut total = harness::ReplRun::default();
    loop {
        case += 1;
        let data = if rng.chance(8) { random_bytes(&mut rng) } else { repl_stream(&mut rng) };
        match only_case() {
            Some(n) if n != case => {}
            _ => guarded(seed, case, &data, || total += harness::check_repl(&data)),
        }
        if only_case().is_some_and(|n| case >= n) {
            return;
        }
        if only_case().is_none() && Instant::now() >= deadline {
            break;
        }
    }
    println!("replication fuzz: {case} cases, seed {seed}: {total:?}");
    // The generator must reach what the checks are about.
    assert!(total.applied > 0 && total.refused > 0, "{total:?}");
}

/// The checks can fail: a parser that lied about a key must be caught.
#[test]
#[should_panic(expected = "key of 251 bytes")]
fn the_key_check_can_fail() {
    let long = [b'k'; 251];
    let line = [b"get ".as_slice(), &long, b"\r\n"].concat();
    let keys = memcore::protocol::parse::Keys(&line[4..line.len() - 2]);
    // Feed the checker a hand-made result as if the parser had returned it.
    let fake = Parsed::Request {
        req: Request::Get { kind: memcore::protocol::GetKind::Get, exptime: 0, keys },
        consumed: line.len(),
        swallow: 0,
    };
    harness::check_result(&line, &fake);
}
