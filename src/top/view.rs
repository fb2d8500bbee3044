//! Figures an operator reads, worked out from two looks at a server (rates
//! need both), and the two ways of showing them: the text frame `top`
//! redraws and `stat` prints, and `stat --json`.
//!
//! Works on `fetch::Sample`s only; the same code serves memcore and
//! memcached (memcore's own figures show when present).

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::fetch::{Sample, Stats};

/// Commands shown with their rate: (label, the figures that sum to it).
const COMMANDS: &[(&str, &[&str])] = &[
    ("get", &["cmd_get"]),
    ("set", &["cmd_set"]),
    ("delete", &["delete_hits", "delete_misses"]),
    ("incr", &["incr_hits", "incr_misses"]),
    ("decr", &["decr_hits", "decr_misses"]),
    ("cas", &["cas_hits", "cas_misses", "cas_badval"]),
    ("touch", &["cmd_touch"]),
    ("flush", &["cmd_flush"]),
];

/// Errors shown with their count: (label, figure). The last two are
/// memcore's (memcached has no such figure and shows 0).
const ERRORS: &[(&str, &str)] = &[
    ("too_large", "store_too_large"),
    ("no_memory", "store_no_memory"),
    ("conn_rejected", "rejected_connections"),
    ("conn_memory_refused", "conn_memory_refused"),
    ("forward_errors", "forward_errors"),
];

/// Samples of ops/s and hit rate kept for the sparklines.
pub const HISTORY: usize = 60;

/// One server as `top` tracks it between frames.
#[derive(Default)]
pub struct Server {
    pub addr: String,
    pub prev: Option<Sample>,
    pub last: Option<Result<Sample, String>>,
    pub ops_history: VecDeque<f64>,
    pub hit_history: VecDeque<f64>,
}

impl Server {
    pub fn new(addr: &str) -> Server {
        Server { addr: addr.to_string(), ..Default::default() }
    }

    /// Take a new look; the previous good one stays for the rates.
    pub fn update(&mut self, s: Result<Sample, String>) {
        if let Some(Ok(old)) = self.last.take() {
            self.prev = Some(old);
        }
        self.last = Some(s);
        if let Some(f) = self.figures() {
            push(&mut self.ops_history, f.ops_per_sec.unwrap_or(0.0));
            push(&mut self.hit_history, f.hit_now.or(f.hit_all).unwrap_or(0.0));
        }
    }

    pub fn figures(&self) -> Option<Figures> {
        match &self.last {
            Some(Ok(s)) => Some(Figures::new(self.prev.as_ref(), s)),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match &self.last {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}

fn push(h: &mut VecDeque<f64>, v: f64) {
    if h.len() == HISTORY {
        h.pop_front();
    }
    h.push_back(v);
}

/// What the view shows of one server, from its last look and the one before.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub version: String,
    pub memcore: bool,
    pub uptime: u64,
    pub curr_connections: u64,
    pub max_connections: u64,
    pub rejected_connections: u64,
    pub clients: Vec<(String, u64)>,
    /// Per command, operations per second (None on the first look).
    pub ops: Vec<(&'static str, Option<f64>)>,
    pub ops_per_sec: Option<f64>,
    /// Hits over lookups, since the look before and since start.
    pub hit_now: Option<f64>,
    pub hit_all: Option<f64>,
    /// (label, count since start, per second now).
    pub errors: Vec<(&'static str, u64, Option<f64>)>,
    pub curr_items: u64,
    pub bytes: u64,
    pub limit_maxbytes: u64,
    /// What the cache holds in memory: memcore's engine, memcached's items.
    pub memory: u64,
    pub evictions_per_sec: Option<f64>,
    pub expired_per_sec: Option<f64>,
    pub cores: Vec<CoreFigures>,
    pub repl: Stats,
    pub latency: Stats,
    pub hotkeys: Stats,
}

#[derive(Clone, Debug, Default)]
pub struct CoreFigures {
    pub items: u64,
    pub bytes: u64,
    pub limit: u64,
    pub requests_per_sec: Option<f64>,
    pub hops_per_sec: Option<f64>,
}

impl Figures {
    pub fn new(prev: Option<&Sample>, s: &Sample) -> Figures {
        let g = &s.general;
        let secs = prev.map(|p| s.at.duration_since(p.at).as_secs_f64()).filter(|&d| d > 0.0);
        let rate = |names: &[&str]| -> Option<f64> {
            let (p, d) = (prev?, secs?);
            let sum = |st: &Stats| names.iter().map(|n| st.num(n)).sum::<u64>();
            Some(sum(g).saturating_sub(sum(&p.general)) as f64 / d)
        };
        let ops: Vec<_> = COMMANDS.iter().map(|(label, names)| (*label, rate(names))).collect();
        let ops_per_sec = ops.iter().map(|o| o.1).sum::<Option<f64>>();
        let ratio = |hits: u64, misses: u64| (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
        let hit_now = prev.and_then(|p| {
            let d = |n: &str| g.num(n).saturating_sub(p.general.num(n));
            ratio(d("get_hits"), d("get_misses"))
        });
        let memcore = s.is_memcore();
        let cores = s
            .cores
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let before = prev.and_then(|p| p.cores.get(i));
                let core_rate = |names: &[&str]| -> Option<f64> {
                    let (p, d) = (before?, secs?);
                    let sum = |st: &Stats| names.iter().map(|n| st.num(n)).sum::<u64>();
                    Some(sum(c).saturating_sub(sum(p)) as f64 / d)
                };
                CoreFigures {
                    items: c.num("curr_items"),
                    bytes: c.num("bytes"),
                    limit: c.num("limit_maxbytes"),
                    requests_per_sec: core_rate(&["cmd_get", "cmd_set"]),
                    hops_per_sec: core_rate(&["forwarded_out"]),
                }
            })
            .collect();
        Figures {
            version: g.get("version").unwrap_or("?").to_string(),
            memcore,
            uptime: g.num("uptime"),
            curr_connections: g.num("curr_connections"),
            max_connections: g.num("max_connections"),
            rejected_connections: g.num("rejected_connections"),
            clients: s.clients.clone(),
            ops,
            ops_per_sec,
            hit_now,
            hit_all: ratio(g.num("get_hits"), g.num("get_misses")),
            // Only those the server reports (memcached has no memcore figure).
            errors: ERRORS
                .iter()
                .filter(|(_, name)| g.get(name).is_some())
                .map(|(label, name)| (*label, g.num(name), rate(&[name])))
                .collect(),
            curr_items: g.num("curr_items"),
            bytes: g.num("bytes"),
            limit_maxbytes: g.num("limit_maxbytes"),
            memory: if memcore { g.num("engine_memory") } else { g.num("bytes") },
            evictions_per_sec: rate(&["evictions"]),
            expired_per_sec: rate(&["get_expired", "crawler_reclaimed"]),
            cores,
            repl: s.repl.clone(),
            latency: s.latency.clone(),
            hotkeys: s.hotkeys.clone(),
        }
    }

    /// The sum of several servers (the total row).
    fn total<'a>(all: impl Iterator<Item = &'a Figures>) -> Figures {
        let mut t = Figures {
            ops: COMMANDS.iter().map(|(l, _)| (*l, None)).collect(),
            errors: ERRORS.iter().map(|(l, _)| (*l, 0, None)).collect(),
            ..Default::default()
        };
        let add = |a: &mut Option<f64>, b: Option<f64>| *a = Some(a.unwrap_or(0.0) + b.unwrap_or(0.0));
        let (mut hits_w, mut weight) = (0.0, 0.0);
        for f in all {
            t.curr_connections += f.curr_connections;
            t.max_connections += f.max_connections;
            t.rejected_connections += f.rejected_connections;
            for (a, b) in t.ops.iter_mut().zip(&f.ops) {
                add(&mut a.1, b.1);
            }
            for b in &f.errors {
                if let Some(a) = t.errors.iter_mut().find(|a| a.0 == b.0) {
                    a.1 += b.1;
                    add(&mut a.2, b.2);
                }
            }
            add(&mut t.ops_per_sec, f.ops_per_sec);
            if let (Some(h), Some(o)) = (f.hit_now, f.ops_per_sec) {
                hits_w += h * o;
                weight += o;
            }
            t.hit_all = t.hit_all.or(f.hit_all);
            t.curr_items += f.curr_items;
            t.bytes += f.bytes;
            t.limit_maxbytes += f.limit_maxbytes;
            t.memory += f.memory;
            add(&mut t.evictions_per_sec, f.evictions_per_sec);
            add(&mut t.expired_per_sec, f.expired_per_sec);
        }
        t.hit_now = (weight > 0.0).then(|| hits_w / weight);
        t
    }
}

/// A number in 4 significant characters: 999, 1.2k, 45M.
pub fn human(v: f64) -> String {
    let units = [("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)];
    let (u, d) = units.iter().rev().find(|(_, d)| v.abs() >= *d).copied().unwrap_or(("", 1.0));
    let x = v / d;
    if u.is_empty() {
        if x.fract() == 0.0 || x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
    } else if x >= 100.0 {
        format!("{x:.0}{u}")
    } else {
        format!("{x:.1}{u}")
    }
}

/// Bytes with binary units: 512, 1.5Ki, 64Mi.
pub fn human_bytes(v: u64) -> String {
    let units = [("", 1u64), ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40)];
    let (u, d) = units.iter().rev().find(|(_, d)| v >= *d).copied().unwrap_or(("", 1));
    if d == 1 { v.to_string() } else { format!("{:.1}{u}", v as f64 / d as f64) }
}

fn rate(v: Option<f64>) -> String {
    v.map_or("-".into(), human)
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |r| format!("{:.1}", r * 100.0))
}

/// Eight-level bars for the last `width` values, scaled to their maximum.
pub fn sparkline(values: &VecDeque<f64>, width: usize, max: Option<f64>) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = values.len().saturating_sub(width);
    let top = max.unwrap_or_else(|| values.iter().copied().fold(0.0, f64::max));
    values
        .iter()
        .skip(skip)
        .map(|&v| if top <= 0.0 { BARS[0] } else { BARS[((v / top * 7.0).round() as usize).min(7)] })
        .collect()
}

/// The frame: one row per server and a total, then each server's detail.
/// Lines end with "\n"; the caller fits them to the terminal.
pub fn frame(servers: &[Server], title: &str) -> Vec<String> {
    let mut lines = vec![title.to_string(), String::new()];
    lines.push(format!(
        "{:<22} {:>9} {:>5} {:>7} {:>7} {:>7} {:>11} {:>8} {:>17} {:>8} {:>7} {:>6} {:>6}",
        "SERVER",
        "CONN/MAX",
        "REJ",
        "OPS/S",
        "GET/S",
        "SET/S",
        "HIT% NOW/ALL",
        "ITEMS",
        "BYTES/LIMIT",
        "MEMORY",
        "EVICT/S",
        "EXP/S",
        "ERR/S"
    ));
    let row = |name: &str, f: &Figures| {
        let errs = f.errors.iter().filter(|e| e.0 != "conn_rejected").map(|e| e.2).sum::<Option<f64>>();
        format!(
            "{:<22} {:>9} {:>5} {:>7} {:>7} {:>7} {:>11} {:>8} {:>17} {:>8} {:>7} {:>6} {:>6}",
            clip(name, 22),
            format!("{}/{}", f.curr_connections, f.max_connections),
            f.rejected_connections,
            rate(f.ops_per_sec),
            rate(f.ops[0].1),
            rate(f.ops[1].1),
            format!("{}/{}", pct(f.hit_now), pct(f.hit_all)),
            human(f.curr_items as f64),
            format!("{}/{}", human_bytes(f.bytes), human_bytes(f.limit_maxbytes)),
            human_bytes(f.memory),
            rate(f.evictions_per_sec),
            rate(f.expired_per_sec),
            rate(errs),
        )
    };
    let figures: Vec<Option<Figures>> = servers.iter().map(Server::figures).collect();
    for (s, f) in servers.iter().zip(&figures) {
        match (f, s.error()) {
            (Some(f), _) => lines.push(row(&s.addr, f)),
            (None, Some(e)) => lines.push(format!("{:<22} DOWN: {e}", clip(&s.addr, 22))),
            (None, None) => lines.push(format!("{:<22} ...", clip(&s.addr, 22))),
        }
    }
    if servers.len() > 1 {
        lines.push(row("TOTAL", &Figures::total(figures.iter().flatten())));
    }
    for (s, f) in servers.iter().zip(&figures) {
        let Some(f) = f else { continue };
        lines.push(String::new());
        detail(&mut lines, s, f);
    }
    lines
}

/// One server's block: rates per command, errors, clients, sparklines,
/// then memcore's cores, replication, latency and hot keys.
fn detail(lines: &mut Vec<String>, s: &Server, f: &Figures) {
    let kind = if f.memcore { "memcore" } else { "memcached" };
    lines.push(format!("── {} ({kind} {}, up {}) ──", s.addr, f.version, uptime(f.uptime)));
    let ops: Vec<String> = f.ops.iter().map(|(l, r)| format!("{l} {}", rate(*r))).collect();
    lines.push(format!("  ops/s    {}", ops.join("  ")));
    let errs: Vec<String> = f.errors.iter().map(|(l, n, r)| format!("{l} {n} ({}/s)", rate(*r))).collect();
    lines.push(format!("  errors   {}", errs.join("  ")));
    let clients: Vec<String> = f.clients.iter().take(8).map(|(a, n)| format!("{a} x{n}")).collect();
    let more = f.clients.len().saturating_sub(8);
    let more = if more > 0 { format!("  (+{more} more)") } else { String::new() };
    lines.push(format!("  clients  {} address(es): {}{more}", f.clients.len(), clients.join("  ")));
    lines.push(format!("  ops/s    {}", sparkline(&s.ops_history, HISTORY, None)));
    lines.push(format!("  hit%     {}", sparkline(&s.hit_history, HISTORY, Some(1.0))));
    if !f.cores.is_empty() {
        lines.push(format!(
            "  {:<5} {:>9} {:>10} {:>10} {:>10} {:>8}",
            "CORE", "ITEMS", "BYTES", "LIMIT", "REQ/S", "HOPS/S"
        ));
        for (i, c) in f.cores.iter().enumerate() {
            lines.push(format!(
                "  {:<5} {:>9} {:>10} {:>10} {:>10} {:>8}",
                i,
                human(c.items as f64),
                human_bytes(c.bytes),
                human_bytes(c.limit),
                rate(c.requests_per_sec),
                rate(c.hops_per_sec)
            ));
        }
    }
    if f.repl.get("repl_enabled") == Some("yes") {
        let mut text = format!("  repl     state {}", f.repl.get("repl_state").unwrap_or("?"));
        for p in 0.. {
            let Some(addr) = f.repl.get(&format!("peer{p}_addr")) else { break };
            let field = |n: &str| f.repl.get(&format!("peer{p}_{n}")).unwrap_or("?").to_string();
            let _ = write!(text, "  {addr} {} lag {} ms", field("state"), field("lag_ms"));
        }
        lines.push(text);
    }
    let lat: Vec<&(String, String)> = f.latency.0.iter().filter(|(n, _)| n.ends_with(":p99")).collect();
    if !lat.is_empty() {
        let mut text = "  latency  p50/p99/max us:".to_string();
        for (n, _) in lat {
            let cmd = n.trim_end_matches(":p99");
            let q = |p: &str| f.latency.get(&format!("{cmd}:{p}")).unwrap_or("?").to_string();
            if f.latency.num(&format!("{cmd}:count")) > 0 {
                let _ = write!(text, "  {cmd} {}/{}/{}", q("p50"), q("p99"), q("max"));
            }
        }
        lines.push(text);
    }
    for dir in ["read", "write"] {
        let keys: Vec<String> = (0..5)
            .filter_map(|i| {
                let key = f.hotkeys.get(&format!("{dir}:{i}:key"))?;
                Some(format!("{key} ({})", f.hotkeys.num(&format!("{dir}:{i}:count"))))
            })
            .collect();
        if !keys.is_empty() {
            lines.push(format!("  hot {dir:<6}{}", keys.join("  ")));
        }
    }
}

fn uptime(s: u64) -> String {
    if s >= 86400 { format!("{}d{}h", s / 86400, s % 86400 / 3600) } else { format!("{}h{}m", s / 3600, s % 3600 / 60) }
}

fn clip(s: &str, w: usize) -> String {
    s.chars().take(w).collect()
}

/// `stat --json`: one object per server, with the figures above and the
/// raw replies they came from.
pub fn json(servers: &[Server]) -> String {
    let mut out = String::from("{\"servers\":[");
    for (i, s) in servers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"addr\":{}", quote(&s.addr));
        match (&s.last, s.figures()) {
            (Some(Ok(sample)), Some(f)) => {
                let _ = write!(out, ",\"up\":true,\"memcore\":{},\"version\":{}", f.memcore, quote(&f.version));
                let num = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.3}"));
                let _ = write!(
                    out,
                    ",\"curr_connections\":{},\"max_connections\":{},\"rejected_connections\":{},\"ops_per_sec\":{},\"hit_ratio_now\":{},\"hit_ratio\":{},\"curr_items\":{},\"bytes\":{},\"limit_maxbytes\":{},\"memory\":{},\"evictions_per_sec\":{},\"expired_per_sec\":{}",
                    f.curr_connections,
                    f.max_connections,
                    f.rejected_connections,
                    num(f.ops_per_sec),
                    num(f.hit_now),
                    num(f.hit_all),
                    f.curr_items,
                    f.bytes,
                    f.limit_maxbytes,
                    f.memory,
                    num(f.evictions_per_sec),
                    num(f.expired_per_sec)
                );
                let ops: Vec<String> = f.ops.iter().map(|(l, r)| format!("{}:{}", quote(l), num(*r))).collect();
                let _ = write!(out, ",\"ops\":{{{}}}", ops.join(","));
                let errs: Vec<String> = f.errors.iter().map(|(l, n, _)| format!("{}:{n}", quote(l))).collect();
                let _ = write!(out, ",\"errors\":{{{}}}", errs.join(","));
                let clients: Vec<String> = f.clients.iter().map(|(a, n)| format!("{}:{n}", quote(a))).collect();
                let _ = write!(out, ",\"clients\":{{{}}}", clients.join(","));
                let _ = write!(out, ",\"stats\":{}", stats_json(&sample.general));
                let cores: Vec<String> = sample.cores.iter().map(stats_json).collect();
                let _ = write!(out, ",\"cores\":[{}]", cores.join(","));
                let _ = write!(out, ",\"repl\":{}", stats_json(&sample.repl));
                let _ = write!(out, ",\"latency\":{}", stats_json(&sample.latency));
                let _ = write!(out, ",\"hotkeys\":{}", stats_json(&sample.hotkeys));
            }
            _ => {
                let _ = write!(out, ",\"up\":false,\"error\":{}", quote(s.error().unwrap_or("no answer")));
            }
        }
        out.push('}');
    }
    out.push_str("]}\n");
    out
}

fn stats_json(s: &Stats) -> String {
    let fields: Vec<String> = s.0.iter().map(|(n, v)| format!("{}:{}", quote(n), quote(v))).collect();
    format!("{{{}}}", fields.join(","))
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn sample(at: Instant, text: &str) -> Sample {
        Sample {
            at,
            general: Stats::parse(text),
            clients: vec![],
            cores: vec![],
            repl: Stats::default(),
            latency: Stats::default(),
            hotkeys: Stats::default(),
        }
    }

    #[test]
    fn rates_and_hit_ratios_come_from_two_looks() {
        let t = Instant::now();
        let a = sample(t, "STAT cmd_get 100\r\nSTAT get_hits 50\r\nSTAT get_misses 50\r\nSTAT cmd_set 10\r\n");
        let b = sample(
            t + Duration::from_secs(2),
            "STAT cmd_get 300\r\nSTAT get_hits 230\r\nSTAT get_misses 70\r\nSTAT cmd_set 30\r\n",
        );
        let f = Figures::new(Some(&a), &b);
        assert_eq!(f.ops[0], ("get", Some(100.0)));
        assert_eq!(f.ops[1], ("set", Some(10.0)));
        assert_eq!(f.ops_per_sec, Some(110.0));
        assert_eq!(f.hit_now, Some(0.9));
        assert_eq!(f.hit_all, Some(230.0 / 300.0));
        let first = Figures::new(None, &b);
        assert_eq!((first.ops_per_sec, first.hit_now), (None, None));
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(
            (human(999.0), human(1234.0), human(45e6), human(2.5)),
            ("999".into(), "1.2k".into(), "45.0M".into(), "2.5".into())
        );
        assert_eq!(human_bytes(64 << 20), "64.0Mi");
        let v: VecDeque<f64> = [0.0, 1.0, 2.0].into_iter().collect();
        assert_eq!(sparkline(&v, 10, None), "▁▅█");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
