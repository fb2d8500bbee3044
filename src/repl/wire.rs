//! The replication protocol's bytes: frames, the handshake, the session
//! tags, and the operations a batch carries. Pure functions over byte
//! slices, no I/O.
//!
//! ```text
//! frame     = len u32 (type + payload) | type u8 | payload          (handshake, and --repl-insecure)
//! sealed    = len u32 (type + payload) | ChaCha20-Poly1305(type u8 | payload) | tag [16]
//! HELLO     = magic "MCREPL03" | node u16 | core u16 | epoch u64 | nonce [16]   (linking node)
//! CHALLENGE = node u16 | nonce [16]                                           (accepting node)
//! AUTH      = proof [32]          the linking node first, then the accepting node
//! -- every frame from here on is sealed (with a secret) --
//! RESUME    = epoch u64 | seq u64       last batch applied from this stream (0 0: none)
//! BATCH     = seq u64 | op*             seq 0: part of a snapshot, not acked
//! SNAP_BEGIN                            a full resync starts
//! SNAP_END  = seq u64                   the snapshot covers every batch up to seq
//! ACK       = seq u64                   every batch up to seq is applied
//! REFUSE    = reason (UTF-8)            (untagged, only during the handshake)
//! HEARTBEAT = unix_ms u64               either way, after a heartbeat interval without writing
//! op        = SET   1 | klen u8 | key | version u64 | flags u32 | exp u64 | vlen u32 | value
//!           | DEL   2 | klen u8 | key | version u64
//!           | FLUSH 3 | at u64 | version u64
//!           | SET_PACKED 4 | klen u8 | key | version u64 | flags u32 | exp u64 | unpacked u32 | vlen u32 | frame
//!           | BEGIN 5 | klen u8 | key | version u64 | flags u32 | exp u64 | unpacked u32 | total u64
//!           | PART  6 | clen u32 | bytes
//! ```
//!
//! Every frame after the handshake is at most `MAX_FRAME` bytes, whatever
//! `-I` is: a batch is sealed before its ops pass `BATCH_MAX`, and a value
//! (as sent) longer than `CHUNK` goes as a BEGIN (the SET's fields and the
//! value's `total` length; `unpacked` 0: not a compressed frame, else its
//! length unpacked) followed by PARTs of at most `CHUNK` bytes, nothing
//! else in between, until `total` bytes came. A value's PARTs may span
//! batches; the receiver reassembles it in a buffer bounded by its own
//! `-I` (apply.rs `Reassembly`) and acknowledges only batches that end
//! outside a value, so a resumed stream never starts inside one.
//!
//! All integers are little-endian; `exp` and `at` are absolute Unix
//! seconds (0: never / now).
//!
//! Handshake: proofs are HMAC-SHA256 under the shared secret over a role
//! label, both nonces and both node ids. The linking node proves first and
//! the accepting node answers with its own proof only after checking it,
//! so neither side hands a proof to someone who has not shown the secret,
//! and neither a replayed nor a reflected answer passes. Both then derive
//! one session key per direction from the secret and both nonces
//! (`session_keys`), and every later frame is sealed (`Session`): its type
//! and payload encrypted with ChaCha20-Poly1305 under the direction's key,
//! the frame's number in this direction as the nonce, its length (in
//! clear) as associated data, and the 16-byte tag after it. No byte of a
//! frame is parsed before its tag passed (compared in constant time; on a
//! failure what was decrypted is zeroed); a changed,
//! dropped, replayed or reordered frame, or one from another session,
//! fails it, and the link is dropped. A HELLO of another version
//! (`MCREPL02`: HMAC-tagged frames in clear) is refused with a REFUSE
//! naming both versions.
//!
//! Without a secret (`--repl-insecure`) the proofs use an empty key and
//! frames go in clear with no tag at all.
//!
//! Pure: imports nothing of memcore's; must not import route, server,
//! protocol or storage (ops name keys and values, not the store's records).

use hmac::{Hmac, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use sha2::Sha256;

pub const MAGIC: &[u8; 8] = b"MCREPL03";
/// Every version's magic starts so: a HELLO of another version is told
/// apart from bytes that are not replication at all.
pub const MAGIC_FAMILY: &[u8; 6] = b"MCREPL";
pub const HELLO: u8 = 1;
pub const CHALLENGE: u8 = 2;
pub const AUTH: u8 = 3;
pub const RESUME: u8 = 4;
pub const BATCH: u8 = 5;
pub const SNAP_BEGIN: u8 = 6;
pub const SNAP_END: u8 = 7;
pub const ACK: u8 = 8;
pub const REFUSE: u8 = 9;
pub const HEARTBEAT: u8 = 10;

pub const OP_SET: u8 = 1;
pub const OP_DEL: u8 = 2;
pub const OP_FLUSH: u8 = 3;
/// A SET whose value travels as the sender stores it: a zstd frame (see
/// storage/compress.rs: magicless, checksummed, no dictionary), with the
/// length clients see.
pub const OP_SET_PACKED: u8 = 4;
/// The head of a value sent in chunks (see the grammar above).
pub const OP_SET_BEGIN: u8 = 5;
/// Up to `CHUNK` bytes of the value a BEGIN announced.
pub const OP_SET_PART: u8 = 6;
/// The meta protocol's state (stale, won, binary key) of the item a SET of
/// the same key and version just carried: sent only when some is set.
pub const OP_STATE: u8 = 7;

pub const NONCE_LEN: usize = 16;
pub const PROOF_LEN: usize = 32;
/// The Poly1305 tag that ends every frame of a keyed session.
pub const TAG_LEN: usize = 16;
pub const HELLO_LEN: usize = 8 + 2 + 2 + 8 + NONCE_LEN;
/// Frames are at most this much larger than the largest item.
pub const FRAME_SLACK: usize = 1 << 20;
/// Value bytes per op at most: a longer value goes as BEGIN + PARTs.
pub const CHUNK: usize = 512 * 1024;
/// A batch's ops take at most this many bytes (one op is at most `CHUNK`
/// plus a SET's fields, well under it).
pub const BATCH_MAX: usize = 1 << 20;
/// The longest frame a peer accepts after the handshake: a batch's ops,
/// its seq and type, and room for a per-frame trailer. Independent of
/// `-I`, so a node with a larger `-I` can never send what its peers refuse.
pub const MAX_FRAME: usize = BATCH_MAX + 4096;
/// The longest key an op may name: memcached's (`protocol::KEY_MAX_LENGTH`,
/// which route's tests check it against), so every key a client could
/// store travels and no longer one does.
pub const KEY_MAX: usize = 250;
/// The largest SET op header: kind, klen, a 250-byte key, version, flags,
/// exp, unpacked and the value's length.
const SET_HEAD_MAX: usize = 1 + 1 + KEY_MAX + 8 + 4 + 8 + 4 + 8;
const _: () = assert!(CHUNK + SET_HEAD_MAX <= BATCH_MAX);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A frame longer than the receiver accepts.
    TooLong(usize),
    /// Bytes that do not parse.
    Malformed,
}

/// Start a frame of `kind` in `out`; `end_frame` fills in its length.
pub fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

/// Fill in the length of a frame of fixed, small size (handshake, ACK,
/// heartbeat, REFUSE) begun at `at`.
pub fn end_frame(out: &mut [u8], at: usize) {
    try_end_frame(out, at).expect("a fixed-size frame is far below MAX_FRAME");
}

/// Fill in the length of the frame begun at `at`, unless it is longer than
/// a peer accepts: a length cut to 32 bits, or any frame past `MAX_FRAME`,
/// would be refused or desynchronise the stream. Batches are built to fit
/// (`split_ops`), so an error here is a bug, reported, never sent.
pub fn try_end_frame(out: &mut [u8], at: usize) -> Result<(), WireError> {
    let len = out.len() - at - 4;
    if len > MAX_FRAME {
        return Err(WireError::TooLong(len));
    }
    let len = u32::try_from(len).map_err(|_| WireError::TooLong(len))?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

pub fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let at = begin_frame(out, kind);
    out.extend_from_slice(payload);
    end_frame(out, at);
}

/// A HEARTBEAT frame: the link is alive even when it has nothing to say.
pub fn heartbeat(out: &mut Vec<u8>, now_ms: u64) {
    frame(out, HEARTBEAT, &now_ms.to_le_bytes());
}

/// The first complete frame in `buf`: (type, payload range, bytes used),
/// or None when more bytes are needed.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<(u8, std::ops::Range<usize>, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Err(WireError::Malformed);
    }
    if len > max {
        return Err(WireError::TooLong(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some((buf[4], 5..4 + len, 4 + len)))
}

/// Reads fixed-width fields off the front of a slice.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, WireError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(w))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub node: u16,
    pub core: u16,
    pub epoch: u64,
    pub nonce: [u8; NONCE_LEN],
}

pub fn encode_hello(out: &mut Vec<u8>, h: &Hello) {
    let at = begin_frame(out, HELLO);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&h.node.to_le_bytes());
    out.extend_from_slice(&h.core.to_le_bytes());
    out.extend_from_slice(&h.epoch.to_le_bytes());
    out.extend_from_slice(&h.nonce);
    end_frame(out, at);
}

pub fn parse_hello(kind: u8, p: &[u8]) -> Result<Hello, WireError> {
    if kind != HELLO || p.len() != HELLO_LEN || &p[..8] != MAGIC {
        return Err(WireError::Malformed);
    }
    let mut r = Reader(&p[8..]);
    let (node, core, epoch) = (r.u16()?, r.u16()?, r.u64()?);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(r.bytes(NONCE_LEN)?);
    Ok(Hello { node, core, epoch, nonce })
}

/// HMAC-SHA256 over a role label, both nonces and both node ids.
fn mac(secret: &[u8], role: &[u8], first: &[u8], second: &[u8], nodes: (u16, u16)) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(role);
    mac.update(first);
    mac.update(second);
    mac.update(&nodes.0.to_le_bytes());
    mac.update(&nodes.1.to_le_bytes());
    mac
}

pub fn proof(secret: &[u8], role: &[u8], first: &[u8], second: &[u8], nodes: (u16, u16)) -> [u8; PROOF_LEN] {
    mac(secret, role, first, second, nodes).finalize().into_bytes().into()
}

/// Compare a received proof with the expected one in constant time.
pub fn proof_ok(secret: &[u8], role: &[u8], first: &[u8], second: &[u8], nodes: (u16, u16), got: &[u8]) -> bool {
    mac(secret, role, first, second, nodes).verify_slice(got).is_ok()
}

pub const ROLE_ACCEPTOR: &[u8] = b"memcore-repl acceptor";
pub const ROLE_LINKER: &[u8] = b"memcore-repl linker";
// Versioned: the keys of an MCREPL03 session serve ChaCha20-Poly1305
// only, never the HMAC tags of MCREPL02.
const SESSION_LABEL: &[u8] = b"memcore-repl/3 session";
const TO_ACCEPTOR: &[u8] = b"memcore-repl/3 linker to acceptor";
const TO_LINKER: &[u8] = b"memcore-repl/3 acceptor to linker";

/// The two directions' keys of the session that a handshake over these
/// nonces opened: (linker → acceptor, acceptor → linker). An
/// HKDF-style extract (under the secret) then expand (per direction).
pub fn session_keys(secret: &[u8], nonce_l: &[u8], nonce_a: &[u8], nodes: (u16, u16)) -> ([u8; 32], [u8; 32]) {
    let prk: [u8; 32] = mac(secret, SESSION_LABEL, nonce_l, nonce_a, nodes).finalize().into_bytes().into();
    let expand = |label: &[u8]| -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&prk).expect("HMAC takes keys of any length");
        m.update(label);
        m.finalize().into_bytes().into()
    };
    (expand(TO_ACCEPTOR), expand(TO_LINKER))
}

/// One direction of a session: seals the frames sent (or opens those
/// received) in order. Without a key (`--repl-insecure`), frames go as
/// they are.
///
/// Sealed, a frame is its length (in clear: the receiver must find the
/// frame's end; it is the associated data, so it cannot be changed) then
/// its type and payload encrypted with ChaCha20-Poly1305 (ring's) under
/// the direction's key, then the 16-byte Poly1305 tag. The nonce is the
/// frame's number in this direction of this session (u64, little-endian,
/// then 4 zero bytes): never reused under one key, and a frame replayed,
/// dropped or moved is opened under another number and fails. The keys
/// are new for each session (both sides' nonces go into them), so a frame
/// recorded from another session fails too. Not `Clone`: two copies of a
/// sending side would seal two frames under one nonce.
pub struct Session {
    aead: Option<LessSafeKey>,
    seq: u64,
}

impl Session {
    /// No tags, no encryption (before the handshake, and with
    /// `--repl-insecure`).
    pub fn plain() -> Self {
        Session { aead: None, seq: 0 }
    }

    pub fn keyed(key: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key).expect("ChaCha20-Poly1305 takes a 32-byte key");
        Session { aead: Some(LessSafeKey::new(key)), seq: 0 }
    }

    /// With a secret, keyed; without one, plain.
    pub fn for_secret(secret: &[u8], key: &[u8; 32]) -> Self {
        if secret.is_empty() { Session::plain() } else { Session::keyed(key) }
    }

    pub fn tag_len(&self) -> usize {
        if self.aead.is_some() { TAG_LEN } else { 0 }
    }

    /// Append `frame` (one whole frame: length, type, payload) to `out` as
    /// it goes on the wire: sealed when keyed, as it is when plain. False
    /// (nothing appended) only when the session used up its nonces.
    #[must_use]
    pub fn seal(&mut self, frame: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(aead) = &self.aead else {
            out.extend_from_slice(frame);
            return true;
        };
        let Some(nonce) = next_nonce(&mut self.seq) else { return false };
        let at = out.len();
        out.extend_from_slice(frame);
        let (head, body) = out[at..].split_at_mut(4);
        match aead.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&*head), body) {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                true
            }
            Err(_) => {
                out.truncate(at);
                false
            }
        }
    }

    /// Open `frame` (as received: length, then the sealed type and
    /// payload), the next frame of this direction, whose tag is `tag`:
    /// decrypted in place and its tag compared in constant time. True: the
    /// frame now holds its type and payload. False: changed, replayed,
    /// reordered or foreign; what was decrypted is zeroed (ring does so)
    /// and nothing of the frame is to be read. Plain: `tag` must be empty.
    #[must_use]
    pub fn open(&mut self, frame: &mut [u8], tag: &[u8]) -> bool {
        let Some(aead) = &self.aead else { return tag.is_empty() };
        let (Ok(tag), true) = (Tag::try_from(tag), frame.len() >= 4) else { return false };
        let Some(nonce) = next_nonce(&mut self.seq) else { return false };
        let (head, body) = frame.split_at_mut(4);
        let nonce = Nonce::assume_unique_for_key(nonce);
        aead.open_in_place_separate_tag(nonce, Aad::from(&*head), tag, body, 0..).is_ok()
    }
}

/// The nonce of a direction's next frame, counting it. A session never
/// wraps its count (2^64 frames): it fails instead, and the link starts a
/// new session.
fn next_nonce(seq: &mut u64) -> Option<[u8; 12]> {
    if *seq == u64::MAX {
        return None;
    }
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&seq.to_le_bytes());
    *seq += 1;
    Some(n)
}

/// Is this HELLO payload one of another version of this protocol (an
/// older or newer node), rather than no replication at all? Its magic.
pub fn other_version(p: &[u8]) -> Option<&[u8]> {
    (p.len() >= MAGIC.len() && p.starts_with(MAGIC_FAMILY) && &p[..MAGIC.len()] != MAGIC).then(|| &p[..MAGIC.len()])
}

/// One replicated operation, borrowed from a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// `packed`: the value is a compressed frame of this many bytes
    /// unpacked; None: the value as clients see it.
    Set {
        key: &'a [u8],
        version: u64,
        flags: u32,
        exp: u64,
        value: &'a [u8],
        packed: Option<u32>,
    },
    Del {
        key: &'a [u8],
        version: u64,
    },
    Flush {
        at: u64,
        version: u64,
    },
    /// A SET whose value follows in PARTs, `total` bytes in all (a
    /// compressed frame when `packed`).
    SetBegin {
        key: &'a [u8],
        version: u64,
        flags: u32,
        exp: u64,
        packed: Option<u32>,
        total: u64,
    },
    Part {
        bytes: &'a [u8],
    },
    /// The meta state of the item just SET at `version` (see OP_STATE).
    State {
        key: &'a [u8],
        version: u64,
        state: u8,
    },
}

impl<'a> Op<'a> {
    pub fn key(&self) -> Option<&'a [u8]> {
        match *self {
            Op::Set { key, .. } | Op::Del { key, .. } | Op::SetBegin { key, .. } | Op::State { key, .. } => Some(key),
            Op::Flush { .. } | Op::Part { .. } => None,
        }
    }

    /// Does this op count as an item (a PART or a STATE is a piece of one)?
    pub fn is_item(&self) -> bool {
        !matches!(self, Op::Part { .. } | Op::State { .. })
    }
}

/// Append the ops that carry a SET of `value` (a compressed frame of
/// `packed` bytes unpacked, when given): one SET op when the value fits in
/// a `CHUNK`, else a BEGIN and its PARTs.
pub fn encode_value(
    out: &mut Vec<u8>,
    key: &[u8],
    version: u64,
    flags: u32,
    exp: u64,
    value: &[u8],
    packed: Option<u32>,
) {
    if value.len() <= CHUNK {
        // At most CHUNK: fits the u32.
        encode_set(out, key, version, flags, exp, value.len() as u32, packed);
        out.extend_from_slice(value);
        return;
    }
    encode_op(out, &Op::SetBegin { key, version, flags, exp, packed, total: value.len() as u64 });
    for bytes in value.chunks(CHUNK) {
        encode_op(out, &Op::Part { bytes });
    }
}

/// `encode_value`, then the item's meta state when it has any.
#[allow(clippy::too_many_arguments)]
pub fn encode_item(
    out: &mut Vec<u8>,
    key: &[u8],
    version: u64,
    flags: u32,
    exp: u64,
    value: &[u8],
    packed: Option<u32>,
    state: u8,
) {
    encode_value(out, key, version, flags, exp, value, packed);
    if state != 0 {
        encode_op(out, &Op::State { key, version, state });
    }
}

/// Append a SET op whose value (`vlen` bytes, a frame when `packed`) the
/// caller appends next. On the wire a value longer than `CHUNK` goes in
/// PARTs (`encode_value`); a longer SET op only travels between the
/// cores of a node, once reassembled.
pub fn encode_set(out: &mut Vec<u8>, key: &[u8], version: u64, flags: u32, exp: u64, vlen: u32, packed: Option<u32>) {
    out.push(if packed.is_some() { OP_SET_PACKED } else { OP_SET });
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&exp.to_le_bytes());
    if let Some(n) = packed {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&vlen.to_le_bytes());
}

pub fn encode_op(out: &mut Vec<u8>, op: &Op<'_>) {
    match *op {
        // As it travels: in parts when longer than a chunk.
        Op::Set { key, version, flags, exp, value, packed } => {
            encode_value(out, key, version, flags, exp, value, packed)
        }
        Op::Del { key, version } => {
            out.push(OP_DEL);
            out.push(key.len() as u8);
            out.extend_from_slice(key);
            out.extend_from_slice(&version.to_le_bytes());
        }
        Op::Flush { at, version } => {
            out.push(OP_FLUSH);
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&version.to_le_bytes());
        }
        Op::SetBegin { key, version, flags, exp, packed, total } => {
            out.push(OP_SET_BEGIN);
            out.push(key.len() as u8);
            out.extend_from_slice(key);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&exp.to_le_bytes());
            out.extend_from_slice(&packed.unwrap_or(0).to_le_bytes());
            out.extend_from_slice(&total.to_le_bytes());
        }
        Op::State { key, version, state } => {
            out.push(OP_STATE);
            out.push(key.len() as u8);
            out.extend_from_slice(key);
            out.extend_from_slice(&version.to_le_bytes());
            out.push(state);
        }
        Op::Part { bytes } => {
            debug_assert!(!bytes.is_empty() && bytes.len() <= CHUNK);
            out.push(OP_SET_PART);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// Parse the next op; keys must be 1 to 250 bytes, a PART 1 to `CHUNK`
/// bytes, a BEGIN's total not 0. A SET's value is bounded by the frame it
/// came in (or, reassembled from PARTs, by the receiver's `-I`).
pub fn next_op<'a>(r: &mut Reader<'a>) -> Result<Op<'a>, WireError> {
    match r.u8()? {
        kind @ (OP_SET | OP_SET_PACKED) => {
            let key = key(r)?;
            let (version, flags, exp) = (r.u64()?, r.u32()?, r.u64()?);
            let packed = if kind == OP_SET_PACKED { Some(r.u32()?) } else { None };
            let vlen = r.u32()? as usize;
            Ok(Op::Set { key, version, flags, exp, value: r.bytes(vlen)?, packed })
        }
        OP_SET_BEGIN => {
            let key = key(r)?;
            let (version, flags, exp) = (r.u64()?, r.u32()?, r.u64()?);
            let packed = Some(r.u32()?).filter(|&n| n != 0);
            let total = r.u64()?;
            if total == 0 {
                return Err(WireError::Malformed);
            }
            Ok(Op::SetBegin { key, version, flags, exp, packed, total })
        }
        OP_SET_PART => {
            let n = r.u32()? as usize;
            if n == 0 || n > CHUNK {
                return Err(WireError::Malformed);
            }
            Ok(Op::Part { bytes: r.bytes(n)? })
        }
        OP_DEL => {
            let key = key(r)?;
            Ok(Op::Del { key, version: r.u64()? })
        }
        OP_FLUSH => Ok(Op::Flush { at: r.u64()?, version: r.u64()? }),
        OP_STATE => {
            let key = key(r)?;
            Ok(Op::State { key, version: r.u64()?, state: r.u8()? })
        }
        _ => Err(WireError::Malformed),
    }
}

fn key<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], WireError> {
    let n = r.u8()? as usize;
    if n == 0 || n > KEY_MAX {
        return Err(WireError::Malformed);
    }
    r.bytes(n)
}

/// Check that a run of ops parses to its end; the items it holds.
pub fn validate_ops(mut b: &[u8]) -> Result<usize, WireError> {
    let mut n = 0;
    while !b.is_empty() {
        let mut r = Reader(b);
        n += usize::from(next_op(&mut r)?.is_item());
        b = r.0;
    }
    Ok(n)
}

/// Cut a run of ops (encoded here, so they parse) into pieces of at most
/// `max` bytes at op boundaries, each with the items it holds: the
/// payloads of bounded frames. An op longer than `max` (none is, with
/// `max` = `BATCH_MAX`) gets a piece of its own.
pub fn split_ops(ops: &[u8], max: usize) -> Vec<(std::ops::Range<usize>, u32)> {
    let mut pieces = Vec::new();
    let (mut start, mut at, mut items) = (0, 0, 0u32);
    while at < ops.len() {
        let mut r = Reader(&ops[at..]);
        let Ok(op) = next_op(&mut r) else {
            debug_assert!(false, "split_ops over ops that do not parse");
            at = ops.len();
            break;
        };
        let end = ops.len() - r.0.len();
        if end - start > max && at > start {
            pieces.push((start..at, items));
            (start, items) = (at, 0);
        }
        items += u32::from(op.is_item());
        at = end;
    }
    if at > start {
        pieces.push((start..at, items));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_truncation_is_malformed() {
        let ops = [
            Op::Set { key: b"k1", version: 99, flags: 7, exp: 1_900_000_000, value: b"hello", packed: None },
            Op::Del { key: b"k2", version: 100 },
            Op::State { key: b"k2", version: 101, state: 3 },
            Op::Flush { at: 0, version: 101 },
            Op::Set { key: b"k3", version: 1, flags: 0, exp: 0, value: b"", packed: None },
            Op::Set { key: b"k4", version: 2, flags: 1, exp: 0, value: b"frame", packed: Some(4000) },
        ];
        let mut b = Vec::new();
        for op in &ops {
            encode_op(&mut b, op);
        }
        assert_eq!(validate_ops(&b), Ok(5));
        let mut r = Reader(&b);
        for op in &ops {
            assert_eq!(next_op(&mut r).unwrap(), *op);
        }
        assert!(r.is_empty());
        for cut in 1..b.len() {
            let whole_ops = [33, 33 + 12, 33 + 12 + 13, 33 + 12 + 13 + 17, 33 + 12 + 13 + 17 + 28];
            if !whole_ops.contains(&cut) {
                assert!(validate_ops(&b[..cut]).is_err(), "cut at {cut}");
            }
        }
        assert!(validate_ops(&[OP_DEL, 0, 1, 2, 3, 4, 5, 6, 7, 8]).is_err(), "empty key");
        assert!(validate_ops(&[42]).is_err());
    }

    #[test]
    fn frames_split_at_their_length_and_refuse_oversize_or_empty() {
        let mut b = Vec::new();
        frame(&mut b, ACK, &5u64.to_le_bytes());
        frame(&mut b, SNAP_BEGIN, &[]);
        for cut in 0..13 {
            assert_eq!(split_frame(&b[..cut], 100), Ok(None));
        }
        let (kind, range, used) = split_frame(&b, 100).unwrap().unwrap();
        assert_eq!((kind, &b[range], used), (ACK, &5u64.to_le_bytes()[..], 13));
        assert_eq!(split_frame(&b[13..], 100).unwrap().unwrap().0, SNAP_BEGIN);
        assert_eq!(split_frame(b"GET ", 100), Err(WireError::TooLong(u32::from_le_bytes(*b"GET ") as usize)));
        assert_eq!(split_frame(&[0, 0, 0, 0, 1], 100), Err(WireError::Malformed));
    }

    #[test]
    fn hello_needs_the_magic_and_proofs_need_the_secret() {
        let h = Hello { node: 2, core: 1, epoch: 77, nonce: [9; NONCE_LEN] };
        let mut b = Vec::new();
        encode_hello(&mut b, &h);
        let (kind, range, _) = split_frame(&b, 1000).unwrap().unwrap();
        assert_eq!(parse_hello(kind, &b[range.clone()]), Ok(h));
        let mut bad = b[range].to_vec();
        bad[0] = b'X';
        assert!(parse_hello(HELLO, &bad).is_err());
        let p = proof(b"s3cret", ROLE_ACCEPTOR, &[1; 16], &[2; 16], (1, 2));
        assert!(proof_ok(b"s3cret", ROLE_ACCEPTOR, &[1; 16], &[2; 16], (1, 2), &p));
        assert!(!proof_ok(b"other", ROLE_ACCEPTOR, &[1; 16], &[2; 16], (1, 2), &p));
        assert!(!proof_ok(b"s3cret", ROLE_LINKER, &[1; 16], &[2; 16], (1, 2), &p), "a reflected proof fails");
        assert!(!proof_ok(b"s3cret", ROLE_ACCEPTOR, &[2; 16], &[1; 16], (1, 2), &p));
    }

    fn sealed(s: &mut Session, frames: &[(u8, &[u8])]) -> Vec<Vec<u8>> {
        frames
            .iter()
            .map(|&(kind, p)| {
                let mut f = Vec::new();
                frame(&mut f, kind, p);
                let mut b = Vec::new();
                assert!(s.seal(&f, &mut b));
                b
            })
            .collect()
    }

    /// Open a sealed frame: its type and payload when it passes.
    fn opened(s: &mut Session, sealed: &[u8]) -> Option<(u8, Vec<u8>)> {
        let (_, range, used) = split_frame(sealed, 1000).ok().flatten()?;
        let mut f = sealed[..used].to_vec();
        s.open(&mut f, &sealed[used..]).then(|| (f[4], f[range].to_vec()))
    }

    fn opens(s: &mut Session, sealed: &[u8]) -> bool {
        opened(s, sealed).is_some()
    }

    #[test]
    fn sealed_frames_hide_their_bytes_and_open_to_what_was_sealed() {
        let (la, _) = session_keys(b"s3cret", &[1; 16], &[2; 16], (1, 2));
        let value = b"a value nobody on the wire may read";
        let sent = sealed(&mut Session::keyed(&la), &[(BATCH, value), (BATCH, value)]);
        for f in &sent {
            assert!(!f.windows(8).any(|w| value.windows(8).any(|v| v == w)), "no 8 bytes of the value in clear");
            assert_eq!(&f[..4], &(1 + value.len() as u32).to_le_bytes(), "the length stays in clear");
        }
        assert_ne!(sent[0], sent[1], "one nonce per frame: the same frame seals differently");
        let mut rx = Session::keyed(&la);
        assert_eq!(opened(&mut rx, &sent[0]), Some((BATCH, value.to_vec())));
        assert_eq!(opened(&mut rx, &sent[1]), Some((BATCH, value.to_vec())));
        let mut exhausted = Session::keyed(&la);
        exhausted.seq = u64::MAX;
        assert!(!exhausted.seal(b"\x01\0\0\0\x08", &mut Vec::new()), "no nonce is ever reused");
        assert!(other_version(b"MCREPL02rest").is_some() && other_version(MAGIC).is_none());
        assert!(other_version(b"GET foo\r\n").is_none());
    }

    #[test]
    fn session_tags_refuse_tampered_replayed_reordered_and_foreign_frames() {
        let (la, al) = session_keys(b"s3cret", &[1; 16], &[2; 16], (1, 2));
        assert_ne!(la, al, "each direction has its own key");
        let msgs: [(u8, &[u8]); 3] = [(BATCH, b"one"), (ACK, b"two"), (HEARTBEAT, b"three")];
        let sent = sealed(&mut Session::keyed(&la), &msgs);
        assert!(sent.iter().all(|f| f.len() == 5 + 3 + TAG_LEN || f.len() == 5 + 5 + TAG_LEN));
        let mut rx = Session::keyed(&la);
        assert!(sent.iter().all(|f| opens(&mut rx, f)), "in order, untouched: all pass");
        let mut rx = Session::keyed(&la);
        assert!(opens(&mut rx, &sent[0]));
        assert!(!opens(&mut rx, &sent[0]), "a replay fails");
        let mut rx = Session::keyed(&la);
        assert!(!opens(&mut rx, &sent[1]), "a frame out of order fails");
        for i in 0..sent[0].len() {
            let mut bad = sent[0].clone();
            bad[i] ^= 0x40;
            assert!(!opens(&mut Session::keyed(&la), &bad), "a flipped bit at {i} fails");
        }
        let (other, _) = session_keys(b"s3cret", &[1; 16], &[3; 16], (1, 2));
        assert!(!opens(&mut Session::keyed(&other), &sent[0]), "a frame from another session fails");
        assert!(!opens(&mut Session::keyed(&al), &sent[0]), "a frame reflected back fails");
        let plain = sealed(&mut Session::plain(), &msgs);
        assert_eq!(plain[0].len(), 5 + 3, "no tag without a secret");
        assert!(opens(&mut Session::plain(), &plain[0]));
    }

    #[test]
    fn a_value_longer_than_a_chunk_goes_in_parts_and_every_piece_fits_a_frame() {
        let value: Vec<u8> = (0..3 * CHUNK + 5).map(|i| i as u8).collect();
        let mut b = Vec::new();
        encode_value(&mut b, b"big", 9, 1, 0, &value, Some(4_000_000));
        encode_op(&mut b, &Op::Del { key: b"d", version: 10 });
        let mut r = Reader(&b);
        assert_eq!(
            next_op(&mut r).unwrap(),
            Op::SetBegin {
                key: b"big",
                version: 9,
                flags: 1,
                exp: 0,
                packed: Some(4_000_000),
                total: value.len() as u64
            }
        );
        let mut got = Vec::new();
        for _ in 0..4 {
            let Op::Part { bytes } = next_op(&mut r).unwrap() else { panic!("a part") };
            assert!(bytes.len() <= CHUNK);
            got.extend_from_slice(bytes);
        }
        assert_eq!(got, value);
        assert_eq!(next_op(&mut r).unwrap(), Op::Del { key: b"d", version: 10 });
        assert_eq!(validate_ops(&b), Ok(2), "a value and a delete");
        let pieces = split_ops(&b, BATCH_MAX);
        assert_eq!(pieces.iter().map(|p| p.1).sum::<u32>(), 2);
        assert_eq!(pieces.first().unwrap().0.start, 0);
        assert_eq!(pieces.last().unwrap().0.end, b.len());
        for w in pieces.windows(2) {
            assert_eq!(w[0].0.end, w[1].0.start);
        }
        assert!(pieces.iter().all(|(r, _)| r.len() <= BATCH_MAX));
        assert!(pieces.len() >= 2);
        let short = encode_value_len(CHUNK);
        assert_eq!(short[0], OP_SET, "a value of exactly a chunk goes whole");
    }

    fn encode_value_len(n: usize) -> Vec<u8> {
        let mut b = Vec::new();
        encode_value(&mut b, b"k", 1, 0, 0, &vec![0; n], None);
        b
    }

    #[test]
    fn parts_that_are_empty_or_too_long_and_an_empty_begin_are_malformed() {
        let mut part = vec![OP_SET_PART];
        part.extend_from_slice(&0u32.to_le_bytes());
        assert!(validate_ops(&part).is_err());
        let mut part = vec![OP_SET_PART];
        part.extend_from_slice(&(CHUNK as u32 + 1).to_le_bytes());
        part.resize(part.len() + CHUNK + 1, 0);
        assert!(validate_ops(&part).is_err());
        let mut b = Vec::new();
        encode_op(&mut b, &Op::SetBegin { key: b"k", version: 1, flags: 0, exp: 0, packed: None, total: 1 });
        assert_eq!(validate_ops(&b), Ok(1));
        let n = b.len();
        b[n - 8..].copy_from_slice(&0u64.to_le_bytes());
        assert!(validate_ops(&b).is_err());
    }

    #[test]
    fn a_frame_past_max_frame_is_never_given_a_length() {
        let mut b = Vec::new();
        let at = begin_frame(&mut b, BATCH);
        b.resize(at + 5 + MAX_FRAME, 0);
        assert_eq!(try_end_frame(&mut b, at), Err(WireError::TooLong(MAX_FRAME + 1)));
        assert_eq!(&b[..4], &[0; 4]);
        b.pop();
        assert_eq!(try_end_frame(&mut b, at), Ok(()));
        assert_eq!(split_frame(&b, MAX_FRAME).unwrap().unwrap().2, b.len());
    }
}
