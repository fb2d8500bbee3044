//! Server-side latency: per core, one HdrHistogram per kind of command of
//! the time from a request's first byte read to its reply queued for the
//! socket, and one for cross-core hops; merged on demand for `stats
//! latency` and `/metrics`.
//!
//! A connection counts its batch's requests per kind and records them all
//! at once when the batch's replies are queued (one clock read per read and
//! one per batch, one uncontended lock per batch), so the request path pays
//! no clock read per request. Requests of one batch share the time their
//! first byte arrived: a pipelined batch is as slow as its slowest part.
//! The hop figure is how long a batch waited for the replies of the other
//! cores it forwarded to, from its last local reply to their arrival.
//!
//! Imports protocol (what kind a request is); must not import `server`,
//! `route`, `repl` or `storage`.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::protocol::Request;

/// What a latency is recorded under. `Hop` is not a command: the wait for
/// other cores' replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Gat,
    Set,
    Delete,
    Incr,
    Touch,
    Other,
    Hop,
}

impl Op {
    pub const ALL: [Op; 8] = [Op::Get, Op::Gat, Op::Set, Op::Delete, Op::Incr, Op::Touch, Op::Other, Op::Hop];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Gat => "gat",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::Incr => "incr_decr",
            Op::Touch => "touch",
            Op::Other => "other",
            Op::Hop => "hop",
        }
    }

    /// The kind of a parsed request: get and gets are `Get`, gat and gats
    /// `Gat`, every storage command `Set` (a refused one too).
    pub fn of(req: &Request<'_>) -> Op {
        match *req {
            Request::Get { kind, .. } if kind.touches() => Op::Gat,
            Request::Get { .. } => Op::Get,
            Request::Store { .. } | Request::TooLarge { .. } => Op::Set,
            Request::Delete { .. } => Op::Delete,
            Request::Arith { .. } => Op::Incr,
            Request::Touch { .. } => Op::Touch,
            _ => Op::Other,
        }
    }
}

/// Requests of one batch per kind, before they are recorded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pending(pub [u32; Op::ALL.len()]);

impl Pending {
    pub fn count(&mut self, op: Op) {
        self.0[op as usize] += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }
}

/// Longest time recorded; longer ones count as this.
const HIGHEST_NS: u64 = 60_000_000_000;

/// One histogram per `Op`, in nanoseconds, 2 significant digits (1%).
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Vec<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        let h = Histogram::new_with_bounds(1, HIGHEST_NS, 2).unwrap_or_else(|_| unreachable!("constant bounds"));
        Latency { hist: vec![h; Op::ALL.len()] }
    }
}

impl Latency {
    /// Record `pending`'s requests as each taking `took`, then empty it.
    pub fn record(&mut self, pending: &mut Pending, took: Duration) {
        let ns = (took.as_nanos() as u64).max(1);
        for (h, n) in self.hist.iter_mut().zip(pending.0.iter_mut()) {
            if *n > 0 {
                h.saturating_record_n(ns, u64::from(*n));
                *n = 0;
            }
        }
    }

    pub fn record_one(&mut self, op: Op, took: Duration) {
        self.hist[op as usize].saturating_record((took.as_nanos() as u64).max(1));
    }

    pub fn add(&mut self, o: &Latency) {
        for (a, b) in self.hist.iter_mut().zip(&o.hist) {
            // Same bounds on both sides: cannot fail.
            let _ = a.add(b);
        }
    }

    pub fn reset(&mut self) {
        self.hist.iter_mut().for_each(Histogram::reset);
    }

    pub fn get(&self, op: Op) -> &Histogram<u64> {
        &self.hist[op as usize]
    }
}

/// Every core's histograms, each behind its own lock: the owning core
/// takes it once per batch (nobody else wants it then, so it costs an
/// atomic), a reader of `stats latency` or `/metrics` takes each in turn.
pub struct PerCore(Vec<Mutex<Latency>>);

impl PerCore {
    pub fn new(cores: usize) -> PerCore {
        PerCore((0..cores).map(|_| Mutex::new(Latency::default())).collect())
    }

    pub fn with<R>(&self, core: usize, f: impl FnOnce(&mut Latency) -> R) -> Option<R> {
        let mut l = self.0.get(core)?.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut l))
    }

    /// All cores' histograms added up.
    pub fn merged(&self) -> Latency {
        let mut total = Latency::default();
        for l in &self.0 {
            total.add(&l.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }

    pub fn reset(&self) {
        for l in &self.0 {
            l.lock().unwrap_or_else(|e| e.into_inner()).reset();
        }
    }
}

/// Quantiles `stats latency` shows, with their names.
pub const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// `stats latency`: per kind, the count and p50 p90 p99 p99.9 max in
/// microseconds (to 0.1 us), as `STAT get:p99 41.5`; kinds never seen
/// show count 0 only.
pub fn render(out: &mut Vec<u8>, l: &Latency) {
    use std::io::Write;
    for op in Op::ALL {
        let h = l.get(op);
        let name = op.name();
        let _ = write!(out, "STAT {name}:count {}\r\n", h.len());
        if h.is_empty() {
            continue;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        for (q, at) in QUANTILES {
            let _ = write!(out, "STAT {name}:{q} {:.1}\r\n", us(h.value_at_quantile(at)));
        }
        let _ = write!(out, "STAT {name}:max {:.1}\r\n", us(h.max()));
    }
    out.extend_from_slice(b"END\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_recorded_per_kind_and_emptied() {
        let mut l = Latency::default();
        let mut p = Pending::default();
        p.count(Op::Get);
        p.count(Op::Get);
        p.count(Op::Set);
        l.record(&mut p, Duration::from_micros(40));
        assert!(p.is_empty());
        assert_eq!((l.get(Op::Get).len(), l.get(Op::Set).len(), l.get(Op::Hop).len()), (2, 1, 0));
        let p50 = l.get(Op::Get).value_at_quantile(0.5);
        assert!((39_500..=40_500).contains(&p50), "{p50}");
    }

    #[test]
    fn cores_merge_and_reset() {
        let all = PerCore::new(2);
        all.with(0, |l| l.record_one(Op::Hop, Duration::from_micros(5)));
        all.with(1, |l| l.record_one(Op::Hop, Duration::from_millis(5)));
        let m = all.merged();
        assert_eq!(m.get(Op::Hop).len(), 2);
        assert!(m.get(Op::Hop).max() >= 4_900_000);
        let mut out = Vec::new();
        render(&mut out, &m);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("STAT hop:count 2\r\nSTAT hop:p50 5.0\r\n"), "{text}");
        assert!(text.contains("STAT get:count 0\r\nSTAT gat:count 0\r\n"), "{text}");
        assert!(text.ends_with("END\r\n"));
        all.reset();
        assert_eq!(all.merged().get(Op::Hop).len(), 0);
        assert!(all.with(2, |_| ()).is_none());
    }

    #[test]
    fn an_absurd_time_saturates() {
        let mut l = Latency::default();
        l.record_one(Op::Get, Duration::from_secs(3600));
        assert!(l.get(Op::Get).max() >= HIGHEST_NS / 2);
    }
}
