//! Values too big to sit inside a segment.
//!
//! A large value is a list of chunks of at most `CHUNK` bytes each (the last
//! one exactly as long as what is left), so that a 1 GiB item never needs
//! one 1 GiB allocation. Its record in the segment log holds a handle into
//! the store's `Slab<LargeValue>`; the value is freed when that record dies.
//!
//! Must not import protocol, route, repl or server.

pub const CHUNK: usize = super::SEG_SIZE;

#[derive(Debug)]
pub struct LargeValue {
    chunks: Vec<Box<[u8]>>,
    len: usize,
    /// Where its record is (kept current when the record moves).
    pub head: u32,
    /// Write position of its record when stored: its place in the FIFO
    /// order that eviction follows.
    pub pos: u64,
    /// Tells this value from a later one in the same slab slot.
    pub id: u64,
}

impl LargeValue {
    /// The concatenation of `parts`, cut into chunks.
    pub fn from_parts(parts: &[&[u8]]) -> LargeValue {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut cur: Vec<u8> = Vec::new();
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                if cur.capacity() == 0 {
                    let left = len - chunks.len() * CHUNK;
                    cur = Vec::with_capacity(left.min(CHUNK));
                }
                let n = rest.len().min(cur.capacity() - cur.len());
                cur.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if cur.len() == cur.capacity() {
                    chunks.push(std::mem::take(&mut cur).into_boxed_slice());
                }
            }
        }
        // Not in the eviction order until its record is written (id set then).
        LargeValue { chunks, len, head: 0, pos: 0, id: u64::MAX }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn chunks(&self) -> &[Box<[u8]>] {
        &self.chunks
    }

    /// What this value costs against the memory limit.
    pub fn charge(len: usize) -> usize {
        len + len.div_ceil(CHUNK) * std::mem::size_of::<Box<[u8]>>() + std::mem::size_of::<LargeValue>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_into_bounded_chunks() {
        let a = vec![1u8; CHUNK + 7];
        let b = vec![2u8; 2 * CHUNK];
        let v = LargeValue::from_parts(&[&a, &b]);
        assert_eq!(v.len(), 3 * CHUNK + 7);
        assert!(v.chunks().iter().all(|c| c.len() <= CHUNK));
        assert_eq!(v.chunks().len(), 4);
        let joined: Vec<u8> = v.chunks().iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(&joined[..CHUNK + 7], &a[..]);
        assert_eq!(&joined[CHUNK + 7..], &b[..]);
    }
}
