//! `/metrics`: the stats table in Prometheus's text exposition format
//! (version 0.0.4), so that a Prometheus server scrapes memcore directly.
//!
//! Every figure of the table (`stats::Stat`) appears once per core as
//! `memcore_<name>` (`_total` added to counters) with a `core` label; its
//! type comes from the table's kind and its HELP from the table's help.
//! Where the prometheus memcached_exporter has the figure, its sum over
//! the cores appears under the exporter's name too (`memcached_*`, e.g.
//! `memcached_commands_total{command="get",status="hit"}`), so that
//! dashboards and alerts written for memcached work unchanged. Beside the
//! table: process facts, latency histograms (`latency`), and replication's
//! links (from `stats repl`'s lines).
//!
//! Pure: figures in, text out. Imports stats and latency; must not import
//! `server`, `route`, `repl` or `storage`.

use std::fmt::Write as _;

use crate::latency::{Latency, Op};
use crate::stats::{Counters, Kind, ServerInfo, Stat};

/// Where a figure of the table appears besides `memcore_<name>{core}`:
/// memcached_exporter's metric and the labels that pick it out.
fn memcached_name(s: Stat) -> Option<(&'static str, &'static str)> {
    use Stat::*;
    const CMD: &str = "memcached_commands_total";
    Some(match s {
        curr_connections => ("memcached_current_connections", ""),
        total_connections => ("memcached_connections_total", ""),
        rejected_connections => ("memcached_connections_rejected_total", ""),
        conn_yields => ("memcached_connections_yielded_total", ""),
        get_hits => (CMD, r#"command="get",status="hit""#),
        get_misses => (CMD, r#"command="get",status="miss""#),
        delete_hits => (CMD, r#"command="delete",status="hit""#),
        delete_misses => (CMD, r#"command="delete",status="miss""#),
        incr_hits => (CMD, r#"command="incr",status="hit""#),
        incr_misses => (CMD, r#"command="incr",status="miss""#),
        decr_hits => (CMD, r#"command="decr",status="hit""#),
        decr_misses => (CMD, r#"command="decr",status="miss""#),
        cas_hits => (CMD, r#"command="cas",status="hit""#),
        cas_misses => (CMD, r#"command="cas",status="miss""#),
        cas_badval => (CMD, r#"command="cas",status="badval""#),
        touch_hits => (CMD, r#"command="touch",status="hit""#),
        touch_misses => (CMD, r#"command="touch",status="miss""#),
        cmd_flush => (CMD, r#"command="flush",status="hit""#),
        store_too_large => ("memcached_item_too_large_total", ""),
        store_no_memory => ("memcached_item_no_memory_total", ""),
        bytes_read => ("memcached_read_bytes_total", ""),
        bytes_written => ("memcached_written_bytes_total", ""),
        limit_maxbytes => ("memcached_limit_bytes", ""),
        bytes => ("memcached_current_bytes", ""),
        curr_items => ("memcached_current_items", ""),
        total_items => ("memcached_items_total", ""),
        evictions => ("memcached_items_evicted_total", ""),
        reclaimed => ("memcached_items_reclaimed_total", ""),
        crawler_reclaimed => ("memcached_lru_crawler_reclaimed_total", ""),
        _ => return None,
    })
}

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 16] =
    [10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0];

/// What one scrape shows.
pub struct Scrape<'a> {
    pub info: &'a ServerInfo,
    /// (user, system) CPU seconds of the process.
    pub cpu: (f64, f64),
    pub per_core: &'a [Counters],
    pub latency: &'a Latency,
    /// `stats repl` as (name, value) pairs.
    pub repl: &'a [(String, String)],
}

/// One metric family: its lines must be together in the output.
struct Family {
    name: String,
    kind: &'static str,
    help: String,
    samples: Vec<String>,
}

#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    fn add(&mut self, name: &str, kind: &'static str, help: &str, labels: &str, value: impl std::fmt::Display) {
        let i = match self.0.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.0.push(Family { name: name.to_string(), kind, help: help.to_string(), samples: Vec::new() });
                self.0.len() - 1
            }
        };
        let f = &mut self.0[i];
        let sample = if labels.is_empty() { format!("{name} {value}") } else { format!("{name}{{{labels}}} {value}") };
        f.samples.push(sample);
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(self.0.len() * 256);
        for f in &self.0 {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help.replace('\\', "\\\\").replace('\n', "\\n"));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for s in &f.samples {
                out.push_str(s);
                out.push('\n');
            }
        }
        out
    }
}

/// A label value, escaped as the format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole `/metrics` body.
pub fn render(s: &Scrape<'_>) -> String {
    let mut f = Families::default();
    let mut total = Counters::default();
    for c in s.per_core {
        total.add(c);
    }
    // Process facts, under memcached_exporter's names.
    f.add("memcached_up", "gauge", "Could the memcached server be reached.", "", 1);
    let uptime = s.info.now.saturating_sub(s.info.started);
    // A gauge (memcached_exporter says counter, which promtool's lint
    // refuses without _total; the value is the same).
    f.add("memcached_uptime_seconds", "gauge", "Number of seconds since the server started.", "", uptime);
    f.add("memcached_time_seconds", "gauge", "Current UNIX time according to the server.", "", s.info.now);
    let version = format!("version=\"{}\"", label(s.info.version));
    f.add("memcached_version", "gauge", "The version of this memcached server.", &version, 1);
    let (user, system) = s.cpu;
    f.add("memcached_process_user_cpu_seconds_total", "counter", "Accumulated user time for this process.", "", user);
    f.add(
        "memcached_process_system_cpu_seconds_total",
        "counter",
        "Accumulated system time for this process.",
        "",
        system,
    );
    f.add("memcached_max_connections", "gauge", "Maximum number of clients allowed.", "", s.info.max_connections);
    f.add("memcore_cores", "gauge", "Cores (executors) serving requests.", "", s.info.threads);
    // The table: memcached_exporter's names for the totals...
    for &stat in Stat::ALL {
        let Some((name, labels)) = memcached_name(stat) else { continue };
        let (kind, help) = match (name, stat.kind()) {
            ("memcached_commands_total", _) => ("counter", "Requests by command and result."),
            (_, Kind::Counter) => ("counter", stat.help()),
            (_, Kind::Gauge) => ("gauge", stat.help()),
        };
        f.add(name, kind, help, labels, total.get(stat));
        if stat == Stat::cmd_flush {
            // memcached counts cas in cmd_set; the exporter takes it out.
            let cas = total.cas_hits + total.cas_misses + total.cas_badval;
            f.add(name, kind, help, r#"command="set",status="hit""#, total.cmd_set.saturating_sub(cas));
        }
    }
    // ...and every figure per core under memcore's.
    for &stat in Stat::ALL {
        let (name, kind) = match stat.kind() {
            Kind::Counter => (format!("memcore_{}_total", stat.name()), "counter"),
            Kind::Gauge => (format!("memcore_{}", stat.name()), "gauge"),
        };
        for (i, c) in s.per_core.iter().enumerate() {
            f.add(&name, kind, stat.help(), &format!("core=\"{i}\""), c.get(stat));
        }
    }
    latency(&mut f, s.latency);
    repl(&mut f, s.repl);
    f.render()
}

/// The latency histograms, in seconds, one series per kind of command.
fn latency(f: &mut Families, l: &Latency) {
    for op in Op::ALL {
        let (name, help, labels) = match op {
            Op::Hop => (
                "memcore_hop_duration_seconds",
                "Time a batch waited for the replies of other cores it forwarded to.",
                String::new(),
            ),
            _ => (
                "memcore_request_duration_seconds",
                "Time from a request's first byte read to its reply queued, by command.",
                format!("command=\"{}\",", op.name()),
            ),
        };
        let h = l.get(op);
        for le in BUCKETS {
            let n = h.count_between(0, (le * 1e9) as u64);
            f.add(&format!("{name}_bucket"), "histogram", help, &format!("{labels}le=\"{le}\""), n);
        }
        f.add(&format!("{name}_bucket"), "histogram", help, &format!("{labels}le=\"+Inf\""), h.len());
        let labels = labels.trim_end_matches(',');
        f.add(&format!("{name}_sum"), "histogram", help, labels, h.mean() * h.len() as f64 / 1e9);
        f.add(&format!("{name}_count"), "histogram", help, labels, h.len());
    }
    // The three parts of a histogram are one family under its base name.
    merge_histograms(f);
}

/// `x_bucket`, `x_sum` and `x_count` were gathered apart; the format wants
/// them as one family `x`, in that order.
fn merge_histograms(f: &mut Families) {
    let mut merged: Vec<Family> = Vec::new();
    for fam in std::mem::take(&mut f.0) {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| fam.name.strip_suffix(s));
        match base.filter(|_| fam.kind == "histogram") {
            Some(base) => match merged.iter_mut().find(|m| m.name == base) {
                Some(m) => m.samples.extend(fam.samples),
                None => merged.push(Family { name: base.to_string(), ..fam }),
            },
            None => merged.push(fam),
        }
    }
    f.0 = merged;
}

/// Replication from `stats repl`'s lines: whether it is on, and per peer
/// link state, lag and backlog.
fn repl(f: &mut Families, lines: &[(String, String)]) {
    let get = |n: &str| lines.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let on = get("repl_enabled") == Some("yes");
    f.add("memcore_repl_enabled", "gauge", "Whether this node replicates.", "", u8::from(on));
    if !on {
        return;
    }
    let num = |n: &str| get(n).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    for (name, kind, help) in [
        ("items_shipped", "counter", "Writes shipped to the peers."),
        ("items_received", "counter", "Writes received from the peers."),
        ("items_applied", "counter", "Writes from the peers applied here."),
        ("conflicts_resolved", "counter", "Concurrent writes resolved by version."),
        ("ops_refused", "counter", "Peer writes refused."),
        ("links_refused", "counter", "Inbound replication links refused."),
        ("write_timeouts", "counter", "sync/majority writes whose peers did not answer in time."),
        ("tombstones", "gauge", "Deletes remembered for the peers."),
    ] {
        let metric =
            if kind == "counter" { format!("memcore_repl_{name}_total") } else { format!("memcore_repl_{name}") };
        f.add(&metric, kind, help, "", num(&format!("repl_{name}")));
    }
    for p in 0.. {
        let Some(addr) = get(&format!("peer{p}_addr")) else { break };
        let peer = format!("peer=\"{}\"", label(addr));
        let field = |n: &str| get(&format!("peer{p}_{n}")).unwrap_or("");
        let up = u8::from(field("state") == "connected");
        f.add("memcore_repl_peer_up", "gauge", "Whether the link to the peer is connected and live.", &peer, up);
        let lag = field("lag_ms").parse::<f64>().unwrap_or(0.0) / 1000.0;
        f.add("memcore_repl_peer_lag_seconds", "gauge", "How far the peer is behind this node's writes.", &peer, lag);
        let backlog = field("backlog_bytes").parse::<u64>().unwrap_or(0);
        f.add("memcore_repl_peer_backlog_bytes", "gauge", "Bytes kept for the peer to catch up from.", &peer, backlog);
        let resyncs = field("resyncs_sent").parse::<u64>().unwrap_or(0);
        f.add("memcore_repl_peer_resyncs_total", "counter", "Full resyncs sent to the peer.", &peer, resyncs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info() -> ServerInfo {
        ServerInfo {
            pid: 1,
            started: 10,
            now: 20,
            version: "1.6.18-memcore-0.1.0",
            max_connections: 1024,
            threads: 2,
            listeners: 1,
            idle_timeout: false,
        }
    }

    fn scrape(per_core: &[Counters], l: &Latency, repl: &[(String, String)]) -> String {
        render(&Scrape { info: &info(), cpu: (1.5, 0.25), per_core, latency: l, repl })
    }

    #[test]
    fn totals_under_memcached_names_and_every_figure_per_core() {
        let cores = [
            Counters { get_hits: 3, cmd_set: 10, cas_hits: 1, curr_items: 5, ..Default::default() },
            Counters { get_hits: 4, cmd_set: 2, curr_items: 6, ..Default::default() },
        ];
        let text = scrape(&cores, &Latency::default(), &[]);
        for want in [
            "memcached_commands_total{command=\"get\",status=\"hit\"} 7\n",
            "memcached_commands_total{command=\"set\",status=\"hit\"} 11\n",
            "# TYPE memcached_current_items gauge\nmemcached_current_items 11\n",
            "memcore_curr_items{core=\"1\"} 6\n",
            "# TYPE memcore_get_hits_total counter\n",
            "memcore_forwarded_out_total{core=\"0\"} 0\n",
            "memcached_version{version=\"1.6.18-memcore-0.1.0\"} 1\n",
            "memcached_uptime_seconds 10\n",
            "memcore_repl_enabled 0\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
        // Each family declared once, its samples together.
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(current.clone()), "{current} declared twice");
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&current), "{line} outside its family {current}");
            }
        }
    }

    #[test]
    fn latency_is_a_histogram_in_seconds() {
        let mut l = Latency::default();
        l.record_one(Op::Get, Duration::from_micros(30));
        l.record_one(Op::Get, Duration::from_millis(2));
        let text = scrape(&[Counters::default()], &l, &[]);
        assert!(text.contains("# TYPE memcore_request_duration_seconds histogram\n"), "{text}");
        for want in [
            "memcore_request_duration_seconds_bucket{command=\"get\",le=\"0.00001\"} 0\n",
            "memcore_request_duration_seconds_bucket{command=\"get\",le=\"0.00005\"} 1\n",
            "memcore_request_duration_seconds_bucket{command=\"get\",le=\"0.0025\"} 2\n",
            "memcore_request_duration_seconds_bucket{command=\"get\",le=\"+Inf\"} 2\n",
            "memcore_request_duration_seconds_count{command=\"get\"} 2\n",
            "memcore_hop_duration_seconds_count 0\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
    }

    #[test]
    fn replication_links_show_state_and_lag() {
        let repl: Vec<(String, String)> = [
            ("repl_enabled", "yes"),
            ("repl_items_shipped", "9"),
            ("peer0_addr", "10.0.0.2:7000"),
            ("peer0_state", "connected"),
            ("peer0_lag_ms", "250"),
            ("peer1_addr", "10.0.0.3:7000"),
            ("peer1_state", "down"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let text = scrape(&[Counters::default()], &Latency::default(), &repl);
        for want in [
            "memcore_repl_items_shipped_total 9\n",
            "memcore_repl_peer_up{peer=\"10.0.0.2:7000\"} 1\n",
            "memcore_repl_peer_up{peer=\"10.0.0.3:7000\"} 0\n",
            "memcore_repl_peer_lag_seconds{peer=\"10.0.0.2:7000\"} 0.25\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
    }
}
