//! One core's outgoing replication stream: numbered batches kept for the
//! peers, within a byte budget. Runtime-free.
//!
//! Every batch is a ready BATCH frame. A peer that reconnects says which
//! batch it applied last; if the batches after it are still here it gets
//! them, otherwise (it fell further behind, or this core restarted and so
//! has a new epoch) it needs a full resync.

use std::collections::VecDeque;

use super::wire;

pub struct Batch {
    pub seq: u64,
    /// Wall-clock ms when sealed, for the lag figure.
    pub sealed_ms: u64,
    pub ops: u32,
    pub frame: Vec<u8>,
}

pub struct Backlog {
    /// Random per process and core: a peer's resume point from an older
    /// run of this core means nothing.
    pub epoch: u64,
    batches: VecDeque<Batch>,
    bytes: usize,
    cap: usize,
    /// Seq the next sealed batch gets (the first is 1).
    next_seq: u64,
}

/// Where a peer's stream resumes.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// Send the batches after this seq.
    From(u64),
    /// The peer needs a full resync.
    Resync,
}

impl Backlog {
    pub fn new(epoch: u64, cap: usize) -> Self {
        Backlog { epoch, batches: VecDeque::new(), bytes: 0, cap, next_seq: 1 }
    }

    /// Turn the pending ops into the next batch. Old batches beyond the
    /// byte budget are dropped (the newest is always kept).
    pub fn seal(&mut self, ops: &mut Vec<u8>, count: u32, now_ms: u64) -> Option<u64> {
        if ops.is_empty() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut frame = Vec::with_capacity(ops.len() + 13);
        let at = wire::begin_frame(&mut frame, wire::BATCH);
        frame.extend_from_slice(&seq.to_le_bytes());
        frame.extend_from_slice(ops);
        wire::end_frame(&mut frame, at);
        ops.clear();
        if ops.capacity() > 1 << 20 {
            *ops = Vec::new();
        }
        self.bytes += frame.len();
        self.batches.push_back(Batch { seq, sealed_ms: now_ms, ops: count, frame });
        while self.bytes > self.cap && self.batches.len() > 1 {
            let b = self.batches.pop_front().expect("not empty");
            self.bytes -= b.frame.len();
        }
        Some(seq)
    }

    /// The seq of the last sealed batch (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Where a peer that applied up to (`epoch`, `seq`) resumes.
    pub fn resume(&self, epoch: u64, seq: u64) -> Resume {
        if epoch != self.epoch || seq > self.last_seq() {
            return Resume::Resync;
        }
        let oldest = self.batches.front().map_or(self.next_seq, |b| b.seq);
        if seq + 1 >= oldest { Resume::From(seq) } else { Resume::Resync }
    }

    /// The first batch after `seq`, or None when there is none (yet). A
    /// gap (the batch was dropped) shows as a batch with a larger seq.
    pub fn after(&self, seq: u64) -> Option<&Batch> {
        let front = self.batches.front()?.seq;
        let i = (seq + 1).saturating_sub(front) as usize;
        self.batches.get(i)
    }

    /// When the batch `seq` was sealed, if it is still kept.
    pub fn sealed_ms(&self, seq: u64) -> Option<u64> {
        let front = self.batches.front()?.seq;
        self.batches.get(seq.checked_sub(front)? as usize).map(|b| b.sealed_ms)
    }

    /// Frame bytes of the kept batches after `seq`.
    pub fn bytes_after(&self, seq: u64) -> usize {
        self.batches.iter().filter(|b| b.seq > seq).map(|b| b.frame.len()).sum()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_resumes_within_the_budget_and_resyncs_beyond_it() {
        let mut b = Backlog::new(7, 300);
        assert_eq!(b.resume(7, 0), Resume::From(0));
        assert_eq!(b.seal(&mut Vec::new(), 0, 0), None, "nothing to seal");
        for i in 0..10u8 {
            let mut ops = vec![i; 50];
            assert_eq!(b.seal(&mut ops, 1, 1000 + u64::from(i)), Some(u64::from(i) + 1));
            assert!(ops.is_empty());
        }
        assert!(b.bytes() <= 300);
        assert_eq!(b.last_seq(), 10);
        assert_eq!(b.resume(7, 10), Resume::From(10));
        assert_eq!(b.resume(7, 9), Resume::From(9));
        assert_eq!(b.resume(7, 1), Resume::Resync, "batch 2 was dropped");
        assert_eq!(b.resume(8, 10), Resume::Resync, "another epoch");
        assert_eq!(b.resume(7, 11), Resume::Resync, "a seq from the future");
        assert_eq!(b.after(9).map(|x| x.seq), Some(10));
        assert!(b.after(10).is_none());
        assert_eq!(b.after(1).map(|x| x.seq), Some(b.batches[0].seq), "a gap shows as a later seq");
        assert_eq!(b.sealed_ms(10), Some(1009));
        assert_eq!(b.bytes_after(9), b.after(9).unwrap().frame.len());
        let f = &b.after(9).unwrap().frame;
        let (kind, range, used) = wire::split_frame(f, 1000).unwrap().unwrap();
        assert_eq!((kind, used, &f[range][..8]), (wire::BATCH, f.len(), &10u64.to_le_bytes()[..]));
    }
}
