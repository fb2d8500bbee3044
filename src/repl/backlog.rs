//! One core's outgoing replication stream: numbered batches kept for the
//! peers, within a byte budget. Runtime-free.
//!
//! Every batch is a ready BATCH frame. A peer that reconnects says which
//! batch it applied last; if the batches after it are still here it gets
//! them, otherwise (it fell further behind, or this core restarted and so
//! has a new epoch) it needs a full resync.
//!
//! Pure: imports only `wire`; must not import route, server or storage.

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

    /// Turn the pending ops into the next batches, each at most
    /// `wire::BATCH_MAX` bytes of ops, so a frame never grows with the
    /// values or the number of writes. Old batches beyond the byte budget
    /// are dropped, but never those of this seal: a value larger than the
    /// budget stays until the next seal, for the links to send it. The
    /// last seq sealed.
    pub fn seal(&mut self, ops: &mut Vec<u8>, now_ms: u64) -> Option<u64> {
        if ops.is_empty() {
            return None;
        }
        let first_new = self.next_seq;
        for (range, count) in wire::split_ops(ops, wire::BATCH_MAX) {
            let mut frame = Vec::with_capacity(range.len() + 13);
            let at = wire::begin_frame(&mut frame, wire::BATCH);
            frame.extend_from_slice(&self.next_seq.to_le_bytes());
            frame.extend_from_slice(&ops[range]);
            if let Err(e) = wire::try_end_frame(&mut frame, at) {
                // split_ops cuts at BATCH_MAX and no op is longer.
                log::error!("replication batch not sealed: {e:?}");
                continue;
            }
            self.bytes += frame.len();
            self.batches.push_back(Batch { seq: self.next_seq, sealed_ms: now_ms, ops: count, frame });
            self.next_seq += 1;
        }
        ops.clear();
        if ops.capacity() > 1 << 20 {
            *ops = Vec::new();
        }
        while self.bytes > self.cap && self.batches.front().is_some_and(|b| b.seq < first_new) {
            let b = self.batches.pop_front().expect("not empty");
            self.bytes -= b.frame.len();
        }
        Some(self.last_seq())
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
        assert_eq!(b.seal(&mut Vec::new(), 0), None, "nothing to seal");
        for i in 0..10u8 {
            let mut ops = Vec::new();
            wire::encode_op(&mut ops, &wire::Op::Del { key: &[b'k'; 40], version: u64::from(i) });
            assert_eq!(b.seal(&mut ops, 1000 + u64::from(i)), Some(u64::from(i) + 1));
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

    #[test]
    fn large_values_and_many_writes_seal_into_bounded_frames() {
        let mut b = Backlog::new(1, 64 << 20);
        let mut ops = Vec::new();
        let value = vec![7u8; 1_000_000];
        for key in [b"a", b"b", b"c"] {
            wire::encode_value(&mut ops, key, 1, 0, 0, &value, None);
        }
        for i in 0..20_000u32 {
            wire::encode_op(&mut ops, &wire::Op::Del { key: format!("{i:0>200}").as_bytes(), version: 2 });
        }
        let last = b.seal(&mut ops, 0).unwrap();
        assert!(last >= 7, "{last} batches for 7 MB of ops");
        let (mut items, mut bytes) = (0, 0);
        for seq in 1..=last {
            let f = &b.after(seq - 1).unwrap().frame;
            assert!(f.len() <= 4 + wire::MAX_FRAME, "batch {seq}: {} bytes", f.len());
            let (_, range, used) = wire::split_frame(f, wire::MAX_FRAME).unwrap().unwrap();
            assert_eq!(used, f.len());
            items += wire::validate_ops(&f[range.start + 8..range.end]).unwrap();
            assert_eq!(
                u64::from(b.after(seq - 1).unwrap().ops),
                wire::validate_ops(&f[range.start + 8..range.end]).unwrap() as u64
            );
            bytes += f.len();
        }
        assert_eq!(items, 3 + 20_000);
        assert_eq!(bytes, b.bytes());
        // Far over a 1 MB budget, yet kept until the next seal.
        let mut small = Backlog::new(1, 1 << 20);
        let mut ops = Vec::new();
        wire::encode_value(&mut ops, b"big", 1, 0, 0, &value.repeat(3), None);
        let last = small.seal(&mut ops, 0).unwrap();
        assert_eq!(small.resume(1, 0), Resume::From(0), "every batch of the value is kept");
        wire::encode_op(&mut ops, &wire::Op::Del { key: b"k", version: 2 });
        small.seal(&mut ops, 0);
        assert!(small.bytes() <= 1 << 20);
        assert_eq!(small.resume(1, last), Resume::From(last));
        assert_eq!(small.resume(1, 0), Resume::Resync);
    }
}
