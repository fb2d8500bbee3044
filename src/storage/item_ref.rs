//! An item as read (`ItemRef`: flags, CAS, version, expiry and its value,
//! decompressed on demand) and an item as written (`Body`).
//!
//! Must not import protocol, route, repl or server.

use super::*;

/// The value of an item being written.
#[derive(Clone, Copy)]
pub(super) enum Body<'a> {
    /// The concatenation of these parts, as the client sent it (it may get
    /// compressed).
    Value(&'a [&'a [u8]]),
    /// An inline record's stored body, as `meta.compressed` describes it,
    /// and the value's length (an item written again to add an expiry).
    Stored(&'a [u8], usize),
}

/// A live item as read: valid until the store is next changed.
pub struct ItemRef<'a> {
    pub flags: u32,
    pub cas: u64,
    /// Replication version (0 when the store does not replicate).
    pub version: u64,
    /// Absolute expiry in Unix seconds, 0 = never.
    pub exp: u64,
    /// The meta protocol's state bits (`meta.rs`), carried to peers.
    pub state: u8,
    pub(super) value: Value<'a>,
    pub(super) len: usize,
    pub(super) compressed: Option<Compressed>,
    pub(super) codec: &'a Codec,
}

#[derive(Clone, Copy)]
pub(super) enum Value<'a> {
    Inline(&'a [u8]),
    Large(&'a LargeValue),
}

impl ItemRef<'_> {
    /// The value's length as the client sees it.
    pub fn value_len(&self) -> usize {
        self.len
    }

    /// Append the value to `out`, decompressing it straight there when it is
    /// stored compressed. False, with `out` unchanged, when the stored frame
    /// is corrupt.
    pub fn copy_value(&self, out: &mut Vec<u8>) -> bool {
        match self.compressed {
            None => {
                out.reserve(self.len);
                self.stored_pieces().for_each(|p| out.extend_from_slice(p));
                true
            }
            Some(z) => self.codec.decompress_into(z.dict, self.stored_pieces(), self.len, out),
        }
    }

    /// The value as stored (a compressed frame when it is one): one piece,
    /// or a large value's chunks.
    pub(super) fn stored_pieces(&self) -> impl Iterator<Item = &[u8]> {
        let (one, chunks) = match self.value {
            Value::Inline(v) => (Some(v), &[][..]),
            Value::Large(l) => (None, l.chunks()),
        };
        one.into_iter().chain(chunks.iter().map(|c| &c[..]))
    }

    /// The value as a new vector; None when its stored frame is corrupt.
    pub(super) fn read_value(&self) -> Option<Vec<u8>> {
        let mut v = Vec::with_capacity(self.len);
        self.copy_value(&mut v).then_some(v)
    }

    /// The value for a peer: the stored frame as it is when it was
    /// compressed without a dictionary (any node can read it), with the
    /// length clients see; else the value as clients see it. None when
    /// the stored frame is corrupt.
    pub fn replication_form(&self) -> Option<(Vec<u8>, Option<u32>)> {
        match self.compressed {
            // The wire's u32 length holds any value -I allows (1 GiB at
            // most); a longer one is sent as clients see it.
            Some(z) if z.dict == 0 && u32::try_from(self.len).is_ok() => {
                let mut frame = Vec::with_capacity(z.stored_len);
                self.stored_pieces().for_each(|p| frame.extend_from_slice(p));
                Some((frame, u32::try_from(self.len).ok()))
            }
            _ => self.read_value().map(|v| (v, None)),
        }
    }

    /// The value as a new vector, empty when corrupt (tests and the fuzz
    /// crate's invariant checkers).
    pub fn value_vec(&self) -> Vec<u8> {
        self.read_value().unwrap_or_default()
    }
}
