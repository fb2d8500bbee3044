//! The memory one core's connections may hold: their input buffers and the
//! replies they owe. memcore copies values into replies (memcached sends
//! references to its items), so without a bound a client that never reads
//! could make the server copy gigabytes (a pipeline of gets naming one large
//! key many times, on many connections).
//!
//! Each connection holds `FREE_PER_CONN` bytes without charge, so a small
//! request always makes progress; beyond that, every byte of input buffer and
//! reply is charged to its core's budget, and so is every byte another core
//! builds in reply to its forwarded gets (the owner caps those replies by
//! what the budget leaves, and charges them until they are delivered). The
//! budget is `--conn-memory`, split over the cores. When it is spent
//! (server/conn.rs, and `route::dispatch` for a get's reply):
//! - a get whose reply does not fit in what is left is not run yet: its
//!   batch writes what it owes first (a connection that does not read its
//!   replies therefore stops being read), or, owing nothing, waits up to
//!   `BUDGET_WAIT` for others to free room; then it runs with what there is
//!   (at least `GET_FLOOR`), and a reply past that answers `SERVER_ERROR out
//!   of memory writing get response`. Counted in `conn_memory_backpressure`;
//! - an input buffer that must grow waits the same way, then ends the
//!   connection with `SERVER_ERROR out of memory reading request`
//!   (`conn_memory_refused`), as memcached does when it cannot grow one.
//!
//! Pure accounting (a relaxed atomic per core, no I/O): imports nothing of
//! memcore's.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Bytes a connection holds without being charged: its buffers at rest.
pub const FREE_PER_CONN: usize = 128 * 1024;
/// A get may always reply this much, whatever the budget says.
pub const GET_FLOOR: usize = 64 * 1024;
/// A batch owing more than this writes it out before taking more requests.
pub const FLUSH_AT: usize = 1 << 20;
/// How long a request waits for room before it runs with what there is.
pub const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// One core's budget. Shared with the other cores (in `Global`): a core
/// that builds replies to this core's forwarded gets charges them here, so
/// replies on their way count too. Relaxed atomics: the figure steers
/// decisions, it orders nothing.
pub struct ConnBudget {
    used: AtomicUsize,
    limit: usize,
    /// Room a get whose reply did not fit waits for: one of the largest
    /// items, or half the budget when that is less.
    admit: usize,
}

impl ConnBudget {
    pub fn new(limit: usize, item_size_max: usize) -> Self {
        let admit = (item_size_max + 4096).min(limit / 2).max(GET_FLOOR);
        ConnBudget { used: AtomicUsize::new(0), limit, admit }
    }

    pub fn admit(&self) -> usize {
        self.admit
    }

    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Replies built on another core for this core's connections, until
    /// they are delivered here (`uncharge`) and their connections hold them.
    pub fn charge(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_add(bytes, Relaxed);
        }
    }

    pub fn uncharge(&self, bytes: usize) {
        if bytes > 0 {
            let _ = self.used.fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(bytes)));
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    /// The most a get may reply now, capped at `max`.
    pub fn get_cap(&self, max: usize) -> usize {
        self.available().max(GET_FLOOR).min(max)
    }

    /// May a connection holding `held` bytes grow to `held + more`?
    pub fn may_grow(&self, held: usize, more: usize) -> bool {
        held + more <= FREE_PER_CONN || more <= self.available()
    }
}

/// One connection's charge against its core's budget.
#[derive(Default)]
pub struct Charge {
    charged: usize,
}

impl Charge {
    /// Charge for `held` bytes held (and replies reserved), replacing the
    /// previous charge.
    pub fn settle(&mut self, budget: &ConnBudget, held: usize) {
        let now = held.saturating_sub(FREE_PER_CONN);
        // Most requests leave a connection within its free bytes: no atomic.
        if now > self.charged {
            budget.charge(now - self.charged);
        } else if now < self.charged {
            budget.uncharge(self.charged - now);
        }
        self.charged = now;
    }

    pub fn release(&mut self, budget: &ConnBudget) {
        self.settle(budget, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_replace_each_other_and_release_returns_everything() {
        let b = ConnBudget::new(1 << 20, 1 << 20);
        let (mut x, mut y) = (Charge::default(), Charge::default());
        x.settle(&b, FREE_PER_CONN + 100);
        y.settle(&b, FREE_PER_CONN + 50);
        assert_eq!(b.used(), 150);
        x.settle(&b, FREE_PER_CONN + 10);
        assert_eq!(b.used(), 60);
        x.release(&b);
        y.release(&b);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_spent_budget_still_lets_small_requests_through() {
        let b = ConnBudget::new(1000, 1 << 20);
        let mut hog = Charge::default();
        hog.settle(&b, FREE_PER_CONN + 5000);
        assert_eq!(b.available(), 0);
        assert_eq!(b.get_cap(64 << 20), GET_FLOOR);
        assert!(b.may_grow(16 * 1024, 16 * 1024));
        assert!(!b.may_grow(FREE_PER_CONN, 1));
    }
}
