//! Hybrid logical clock versions: what decides which write wins.
//!
//! ```text
//! version (u64) = timestamp (56 bits) << 8 | node id (8 bits)
//! timestamp     = wall-clock milliseconds << 12 | logical counter (12 bits)
//! ```
//!
//! A node's timestamps only grow: each local write takes
//! max(last + 1, now_ms << 12), and every version received from a peer
//! pushes `last` up to it, so a write made after seeing another one is
//! ordered after it even when the two wall clocks disagree. Comparing two
//! versions as integers compares the timestamps first and breaks ties by
//! node id, so every node picks the same winner. No I/O, no clock: the
//! caller passes the time.
//!
//! A peer's version may be at most `MAX_DRIFT_MS` ahead of the local wall
//! clock: one from further ahead is refused (`observe` says so), or a
//! single bad or hostile peer could pin a key forever and drag every
//! later local write behind it. The timestamp saturates at its 56 bits
//! instead of wrapping.
//!
//! Pure: imports nothing of memcore's; must not import route, server or
//! storage.

pub const NODE_BITS: u32 = 8;
pub const LOGICAL_BITS: u32 = 12;
pub const MAX_NODE_ID: u32 = (1 << NODE_BITS) - 1;
/// How far ahead of this node's wall clock a peer's version may be: room
/// for clocks kept by NTP, and for a peer's clock stepped a little ahead.
pub const MAX_DRIFT_MS: u64 = 60_000;
/// The largest timestamp (the version without its node id).
const MAX_TIMESTAMP: u64 = u64::MAX >> NODE_BITS;

#[derive(Clone, Copy, Debug)]
pub struct Hlc {
    /// Last timestamp handed out or seen (without the node id).
    last: u64,
    node: u8,
}

impl Hlc {
    pub fn new(node: u8) -> Self {
        Hlc { last: 0, node }
    }

    /// A new version for a local write at wall-clock `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> u64 {
        let wall = now_ms.min(MAX_TIMESTAMP >> LOGICAL_BITS) << LOGICAL_BITS;
        self.last = self.last.saturating_add(1).max(wall).min(MAX_TIMESTAMP);
        (self.last << NODE_BITS) | u64::from(self.node)
    }

    /// Account for a version written elsewhere, unless it is more than
    /// `MAX_DRIFT_MS` ahead of `now_ms`: false then, and the caller must
    /// refuse the op that carries it.
    #[must_use]
    pub fn observe(&mut self, version: u64, now_ms: u64) -> bool {
        if version_ms(version) > now_ms.saturating_add(MAX_DRIFT_MS) {
            return false;
        }
        self.last = self.last.max(version >> NODE_BITS);
        true
    }
}

/// The wall-clock milliseconds a version was stamped with.
pub fn version_ms(version: u64) -> u64 {
    version >> (NODE_BITS + LOGICAL_BITS)
}

pub fn version_node(version: u64) -> u8 {
    (version & u64::from(MAX_NODE_ID)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_even_when_the_clock_stands_still_or_goes_back() {
        let mut h = Hlc::new(3);
        let a = h.tick(1_000);
        let b = h.tick(1_000);
        let c = h.tick(900);
        assert!(a < b && b < c);
        assert_eq!((version_ms(a), version_node(a)), (1_000, 3));
        assert_eq!(version_ms(c), 1_000);
    }

    #[test]
    fn a_write_after_seeing_a_newer_version_wins_over_it() {
        let mut fast = Hlc::new(1);
        let mut slow = Hlc::new(2);
        let remote = fast.tick(50_000);
        assert!(slow.observe(remote, 10_000 + MAX_DRIFT_MS));
        let local = slow.tick(10_000);
        assert!(local > remote);
    }

    #[test]
    fn equal_timestamps_are_ordered_by_node_id() {
        let a = Hlc::new(1).tick(7);
        let b = Hlc::new(2).tick(7);
        assert!(b > a);
        assert_eq!(a >> NODE_BITS, b >> NODE_BITS);
    }

    #[test]
    fn a_version_from_far_ahead_is_refused_and_the_clock_never_wraps() {
        let mut h = Hlc::new(1);
        let before = h.tick(1_000);
        assert!(!h.observe(u64::MAX, 1_000));
        assert!(!h.observe(Hlc::new(2).tick(1_000 + MAX_DRIFT_MS + 1), 1_000));
        assert!(h.observe(Hlc::new(2).tick(1_000 + MAX_DRIFT_MS), 1_000));
        assert!(h.tick(1_000) > before, "refused versions leave the clock alone");
        let mut h = Hlc::new(7);
        let first = h.tick(u64::MAX);
        let top = (0..1 << LOGICAL_BITS).map(|_| h.tick(u64::MAX)).last().unwrap();
        assert!(top > first);
        assert_eq!(h.tick(u64::MAX), top, "saturates instead of wrapping");
        assert_eq!(h.tick(0), top);
        assert!(top > Hlc::new(7).tick(1_800_000_000_000));
    }
}
