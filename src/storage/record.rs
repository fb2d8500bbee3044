//! The byte layout of one item inside a segment.
//!
//! ```text
//! info    u8   kind (2 bits) | has_flags | has_exp | has_cas | fetched | freq (2 bits)
//! klen    u8   key length, 1..=250
//! ext     u8   only for kind EXT: LARGE | COMPRESSED | VERSIONED | STATE | XCAS (bits 5-7 free)
//! vlen    LEB128, 1-5 bytes: the value's length as the client sees it
//! zlen    LEB128, only when COMPRESSED: the stored (compressed) length
//! dict    u8   only when COMPRESSED: the dictionary it was written with (0: none)
//! flags   u32  only when has_flags (most clients send 0)
//! exp     u32  only when has_exp: seconds after `Store::started`, 0 = never
//! cas     u64  only when has_cas: the item's original write position, kept
//!              when the item is moved so that its CAS value survives
//! ver     u64  only when VERSIONED: the replication version (hybrid logical
//!              clock and node id, see `repl::hlc`); only written when the
//!              server replicates, so a plain item pays nothing for it
//! state   u8   only when STATE: the meta protocol's per-item state (STALE,
//!              WON, BINARY_KEY), never 0; written only while some of it
//!              is set, so an item no meta client marked pays nothing
//! atime   u32  only when STATE: last access, seconds after `Store::started`
//! xcas    u64  only when XCAS: a CAS value a client chose (meta `E`), in
//!              place of the one the record's position gives
//! key     klen bytes
//! body    the stored value (inline) or a u32 handle to the large value
//! ```
//!
//! A plain item with a 100-byte value therefore carries 3 bytes of header;
//! everything memcached keeps per item beyond that (LRU links, refcount,
//! slab class, time, CAS) is either derived from where the record sits or
//! kept per segment.
//!
//! Must not import protocol, route, repl or server.

const KIND_INLINE: u8 = 0;
const KIND_LARGE: u8 = 1;
/// Followed by an `ext` byte; kind 2 is unused.
const KIND_EXT: u8 = 3;
const EXT_LARGE: u8 = 1;
const EXT_COMPRESSED: u8 = 2;
const EXT_VERSIONED: u8 = 4;
const EXT_STATE: u8 = 8;
const EXT_XCAS: u8 = 16;

/// Per-item state of the meta protocol's stampede control: marked stale by
/// `md I` or a stale `ms I`.
pub const STATE_STALE: u8 = 1;
/// A client was sent the win (`W`); the others see `Z`.
pub const STATE_WON: u8 = 2;
/// Stored with a base64 key (`b`): `k` returns it encoded.
pub const STATE_BINARY_KEY: u8 = 4;

const KIND_MASK: u8 = 0b11;
const HAS_FLAGS: u8 = 1 << 2;
const HAS_EXP: u8 = 1 << 3;
const HAS_CAS: u8 = 1 << 4;
pub const FETCHED: u8 = 1 << 5;
const FREQ_SHIFT: u8 = 6;
pub const FREQ_MAX: u8 = 3;

/// How a value is stored compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compressed {
    /// Bytes stored (the compressed frame).
    pub stored_len: usize,
    /// Dictionary id, 0 for none.
    pub dict: u8,
}

/// The fields a new record is written with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Meta {
    /// The value lives outside the segment (large.rs).
    pub large: bool,
    pub compressed: Option<Compressed>,
    pub flags: u32,
    /// Relative expiry (see `Store::rel_exp`), 0 = never.
    pub exp: u32,
    /// Original write position, for a record that keeps its CAS when moved.
    pub cas_pos: Option<u64>,
    /// Replication version, 0 = none (no field written).
    pub version: u64,
    pub fetched: bool,
    pub freq: u8,
    /// Meta protocol state (`STATE_*`), 0 = none (no field written).
    pub state: u8,
    /// Last access (relative like `exp`), written with `state`.
    pub atime: u32,
    /// A client's CAS value (meta `E`), 0 = none (no field written).
    pub xcas: u64,
}

impl Meta {
    fn kind(&self) -> (u8, u8) {
        match (self.large, self.compressed.is_some(), self.version != 0, self.state != 0 || self.xcas != 0) {
            (false, false, false, false) => (KIND_INLINE, 0),
            (true, false, false, false) => (KIND_LARGE, 0),
            (large, z, v, _) => (
                KIND_EXT,
                if large { EXT_LARGE } else { 0 }
                    | if z { EXT_COMPRESSED } else { 0 }
                    | if v { EXT_VERSIONED } else { 0 }
                    | if self.state != 0 { EXT_STATE } else { 0 }
                    | if self.xcas != 0 { EXT_XCAS } else { 0 },
            ),
        }
    }
}

/// A parsed record header: where the parts of the record are.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub info: u8,
    pub large: bool,
    pub compressed: Option<Compressed>,
    pub flags: u32,
    pub exp: u32,
    pub cas_pos: Option<u64>,
    /// Offset of the exp field from the record start (touch rewrites it).
    pub exp_at: Option<usize>,
    /// Replication version (0 = none) and where its field is.
    pub version: u64,
    pub ver_at: Option<usize>,
    /// Meta protocol state and last access, and where the state byte is
    /// (the access time follows it).
    pub state: u8,
    pub atime: u32,
    pub state_at: Option<usize>,
    /// A client's CAS value, 0 = none.
    pub xcas: u64,
    pub key_at: usize,
    pub key_len: usize,
    pub body_at: usize,
    /// The value's length as the client sees it.
    pub value_len: usize,
}

impl Header {
    /// Bytes the value takes in storage (compressed or not).
    pub fn stored_len(&self) -> usize {
        self.compressed.map_or(self.value_len, |c| c.stored_len)
    }
    /// Bytes the body takes inside the segment.
    pub fn body_len(&self) -> usize {
        if self.large { 4 } else { self.stored_len() }
    }
    /// Record length before alignment.
    pub fn len(&self) -> usize {
        self.body_at + self.body_len()
    }
    pub fn fetched(&self) -> bool {
        self.info & FETCHED != 0
    }
    pub fn freq(&self) -> u8 {
        self.info >> FREQ_SHIFT
    }
    pub fn meta(&self) -> Meta {
        Meta {
            large: self.large,
            compressed: self.compressed,
            flags: self.flags,
            exp: self.exp,
            cas_pos: self.cas_pos,
            version: self.version,
            fetched: self.fetched(),
            freq: self.freq(),
            state: self.state,
            atime: self.atime,
            xcas: self.xcas,
        }
    }
}

/// Large records always carry the expiry field, so that touching one
/// never has to write it again (and juggle its large value meanwhile).
fn has_exp(meta: &Meta) -> bool {
    meta.exp != 0 || meta.large
}

fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(dst: &mut [u8], mut at: usize, mut v: usize) -> usize {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            dst[at] = byte;
            return at + 1;
        }
        dst[at] = byte | 0x80;
        at += 1;
    }
}

fn get_varint(rec: &[u8], mut at: usize) -> (usize, usize) {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let b = rec[at];
        at += 1;
        v |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return (v, at);
        }
        shift += 7;
    }
}

/// Length of the header a record with these fields gets.
pub fn header_len(meta: &Meta, value_len: usize) -> usize {
    2 + usize::from(meta.kind().0 == KIND_EXT)
        + varint_len(value_len)
        + meta.compressed.map_or(0, |c| varint_len(c.stored_len) + 1)
        + if meta.flags != 0 { 4 } else { 0 }
        + if has_exp(meta) { 4 } else { 0 }
        + if meta.cas_pos.is_some() { 8 } else { 0 }
        + if meta.version != 0 { 8 } else { 0 }
        + if meta.state != 0 { 5 } else { 0 }
        + if meta.xcas != 0 { 8 } else { 0 }
}

/// Length of a whole record (before alignment).
pub fn record_len(meta: &Meta, key_len: usize, value_len: usize) -> usize {
    let body = if meta.large { 4 } else { meta.compressed.map_or(value_len, |c| c.stored_len) };
    header_len(meta, value_len) + key_len + body
}

/// Write a header and key at the start of `dst`; returns where the body
/// goes. `dst` must hold `record_len` bytes.
pub fn write_head(dst: &mut [u8], meta: &Meta, key: &[u8], value_len: usize) -> usize {
    let (kind, ext) = meta.kind();
    let mut info = kind | (meta.freq.min(FREQ_MAX) << FREQ_SHIFT);
    if meta.flags != 0 {
        info |= HAS_FLAGS;
    }
    if has_exp(meta) {
        info |= HAS_EXP;
    }
    if meta.cas_pos.is_some() {
        info |= HAS_CAS;
    }
    if meta.fetched {
        info |= FETCHED;
    }
    dst[0] = info;
    dst[1] = key.len() as u8;
    let mut at = 2;
    if kind == KIND_EXT {
        dst[at] = ext;
        at += 1;
    }
    at = put_varint(dst, at, value_len);
    if let Some(c) = meta.compressed {
        at = put_varint(dst, at, c.stored_len);
        dst[at] = c.dict;
        at += 1;
    }
    if meta.flags != 0 {
        dst[at..at + 4].copy_from_slice(&meta.flags.to_le_bytes());
        at += 4;
    }
    if has_exp(meta) {
        dst[at..at + 4].copy_from_slice(&meta.exp.to_le_bytes());
        at += 4;
    }
    if let Some(c) = meta.cas_pos {
        dst[at..at + 8].copy_from_slice(&c.to_le_bytes());
        at += 8;
    }
    if meta.version != 0 {
        dst[at..at + 8].copy_from_slice(&meta.version.to_le_bytes());
        at += 8;
    }
    if meta.state != 0 {
        dst[at] = meta.state;
        dst[at + 1..at + 5].copy_from_slice(&meta.atime.to_le_bytes());
        at += 5;
    }
    if meta.xcas != 0 {
        dst[at..at + 8].copy_from_slice(&meta.xcas.to_le_bytes());
        at += 8;
    }
    dst[at..at + key.len()].copy_from_slice(key);
    at + key.len()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parse the header of the record starting at `rec[0]`.
pub fn parse(rec: &[u8]) -> Header {
    let info = rec[0];
    let key_len = rec[1] as usize;
    let mut at = 2;
    let (mut large, mut z, mut versioned, mut stated, mut xcased) =
        (info & KIND_MASK == KIND_LARGE, false, false, false, false);
    if info & KIND_MASK == KIND_EXT {
        let ext = rec[at];
        at += 1;
        large = ext & EXT_LARGE != 0;
        z = ext & EXT_COMPRESSED != 0;
        versioned = ext & EXT_VERSIONED != 0;
        stated = ext & EXT_STATE != 0;
        xcased = ext & EXT_XCAS != 0;
    }
    let (value_len, next) = get_varint(rec, at);
    at = next;
    let mut compressed = None;
    if z {
        let (stored_len, next) = get_varint(rec, at);
        compressed = Some(Compressed { stored_len, dict: rec[next] });
        at = next + 1;
    }
    let mut flags = 0;
    if info & HAS_FLAGS != 0 {
        flags = u32_at(rec, at);
        at += 4;
    }
    let mut exp = 0;
    let mut exp_at = None;
    if info & HAS_EXP != 0 {
        exp = u32_at(rec, at);
        exp_at = Some(at);
        at += 4;
    }
    let mut cas_pos = None;
    if info & HAS_CAS != 0 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&rec[at..at + 8]);
        cas_pos = Some(u64::from_le_bytes(w));
        at += 8;
    }
    let (mut version, mut ver_at) = (0, None);
    if versioned {
        let mut w = [0u8; 8];
        w.copy_from_slice(&rec[at..at + 8]);
        version = u64::from_le_bytes(w);
        ver_at = Some(at);
        at += 8;
    }
    let (mut state, mut atime, mut state_at) = (0, 0, None);
    if stated {
        state = rec[at];
        atime = u32_at(rec, at + 1);
        state_at = Some(at);
        at += 5;
    }
    let mut xcas = 0;
    if xcased {
        let mut w = [0u8; 8];
        w.copy_from_slice(&rec[at..at + 8]);
        xcas = u64::from_le_bytes(w);
        at += 8;
    }
    Header {
        info,
        large,
        compressed,
        flags,
        exp,
        cas_pos,
        exp_at,
        version,
        ver_at,
        state,
        atime,
        state_at,
        xcas,
        key_at: at,
        key_len,
        body_at: at + key_len,
        value_len,
    }
}

/// Note a read: set the fetched bit and count up the access frequency.
pub fn mark_fetched(info: &mut u8) {
    let freq = (*info >> FREQ_SHIFT).saturating_add(1).min(FREQ_MAX);
    *info = (*info & !(FREQ_MAX << FREQ_SHIFT)) | FETCHED | (freq << FREQ_SHIFT);
}

/// The u32 stored in a large record's body.
pub fn large_handle(rec: &[u8], h: &Header) -> u32 {
    u32_at(rec, h.body_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_stay_small() {
        let z = Some(Compressed { stored_len: 77, dict: 3 });
        for meta in [
            Meta::default(),
            Meta { flags: 7, ..Default::default() },
            Meta { exp: 99, cas_pos: Some(1 << 40), fetched: true, freq: 2, ..Default::default() },
            Meta { large: true, flags: u32::MAX, exp: 1, ..Default::default() },
            Meta { compressed: z, ..Default::default() },
            Meta { large: true, compressed: z, cas_pos: Some(5), ..Default::default() },
            Meta { large: true, version: u64::MAX - 3, cas_pos: Some(5), freq: 3, ..Default::default() },
            Meta { version: 1, compressed: z, ..Default::default() },
            Meta { version: 1, ..Default::default() },
            Meta { state: STATE_STALE | STATE_WON, atime: 12345, ..Default::default() },
            Meta { large: true, version: 9, state: STATE_BINARY_KEY, atime: u32::MAX, flags: 3, ..Default::default() },
            Meta { xcas: 77, ..Default::default() },
            Meta { xcas: u64::MAX, state: STATE_STALE, version: 5, cas_pos: Some(9), ..Default::default() },
        ] {
            for vlen in [0usize, 1, 127, 128, 100_000, 1 << 30] {
                let key = b"some:key";
                let mut buf = vec![0u8; 64];
                let body = write_head(&mut buf, &meta, key, vlen);
                let h = parse(&buf);
                assert_eq!(h.body_at, body);
                assert_eq!(h.body_at, header_len(&meta, vlen) + key.len());
                assert_eq!(&buf[h.key_at..h.key_at + h.key_len], key);
                assert_eq!(
                    (h.large, h.compressed, h.flags, h.cas_pos),
                    (meta.large, meta.compressed, meta.flags, meta.cas_pos)
                );
                assert_eq!(h.exp, meta.exp);
                assert_eq!((h.version, h.ver_at.is_some()), (meta.version, meta.version != 0));
                assert_eq!((h.state, h.atime, h.state_at.is_some()), (meta.state, meta.atime, meta.state != 0));
                assert_eq!(h.xcas, meta.xcas);
                assert_eq!((h.fetched(), h.freq(), h.value_len), (meta.fetched, meta.freq, vlen));
                assert_eq!(h.len(), record_len(&meta, key.len(), vlen));
            }
        }
        assert_eq!(header_len(&Meta::default(), 100), 3, "a plain 100-byte item has a 3-byte header");
        let stale = Meta { state: STATE_STALE, ..Default::default() };
        assert_eq!(header_len(&stale, 100), 9, "stampede state costs an ext byte and 5 bytes");
    }

    #[test]
    fn reads_count_up_to_the_cap() {
        let mut info = KIND_INLINE;
        for want in [1, 2, 3, 3] {
            mark_fetched(&mut info);
            assert_eq!(info >> FREQ_SHIFT, want);
            assert!(info & FETCHED != 0);
            assert_eq!(info & KIND_MASK, KIND_INLINE);
        }
    }
}
