//! The meta commands of memcached 1.6 (doc/protocol.txt, "Meta Commands"):
//! parsing their lines and flags into a `MetaRequest`, and the reply words.
//!
//! Wire grammar (a flag is one character, some followed by a token):
//!
//! ```text
//! mg <key> <flag>*                 flags b c f h k l O q s t u v E N R T
//! ms <key> <datalen> <flag>*\r\n<data>\r\n   flags b c C E F I k O q s T M(E|A|P|R|S)
//! md <key> <flag>*                 flags b C E F I k O q T x
//! ma <key> <flag>*                 flags b c C D E J k N O q t T v M(I|+|D|-)
//! me <key> [b]                     mn
//! ```
//!
//! Checks and error strings follow memcached 1.6.18's proto_text.c in its
//! order (`_meta_flag_preparse` and the per-command checks), so a bad line
//! gets the same reply. Where 1.6.18 acts before it finds an error (an
//! over-long opaque token met after `ma` applied its delta), memcore
//! refuses the request before acting. Flags that 1.6.18 does not know yet
//! follow memcached's later protocol.txt: `E` (the new CAS value), `x` (md
//! empties the item instead of removing it) and `s` in an ms reply; `N` on
//! ms (append vivify) is refused as 1.6.18 refuses it.
//!
//! Pure: no store, no clock. The semantics live in `route::shard` (which
//! walks the flag tokens in order to build the reply, as memcached does)
//! and the per-item state in `storage`.

use super::KEY_MAX_LENGTH;
use super::base64;
use super::parse::{BAD_CHUNK, BAD_FORMAT, ERROR, Limits, Parsed, Request, parse_i32, parse_u32, parse_u64};
use crate::item::item_total_size;

/// memcached's `MFLAG_MAX_OPT_LENGTH`: a meta line with this many tokens
/// or more (command and key included) is refused.
pub const MAX_META_TOKENS: usize = 20;
/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`, the `O` flag included.
pub const MAX_OPAQUE: usize = 32;

pub const DUPLICATE_FLAG: &str = "CLIENT_ERROR duplicate flag";
pub const DECODE_KEY: &str = "CLIENT_ERROR error decoding key";
pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
pub const M_LENGTH: &str = "CLIENT_ERROR incorrect length for M token";
pub const BAD_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value";
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta value";
pub const INVALID_FLAG: &str = "CLIENT_ERROR invalid flag";
pub const MG_TOO_MANY: &str = "CLIENT_ERROR options flags are too long";
pub const TOO_MANY: &str = "CLIENT_ERROR options flags too long";
pub const INVALID_OR_DUPLICATE: &str = "CLIENT_ERROR invalid or duplicate flag";
pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
pub const MS_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
pub const MA_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCmd {
    Get,
    Set,
    Delete,
    Arith,
    Debug,
}

/// What the flags of a meta line ask for. Flags that only shape the reply
/// (c f h k l O s t) are read from `MetaRequest::tokens` in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaFlags {
    /// b: the key is base64.
    pub base64: bool,
    /// q: leave out the nominal reply (a miss for mg, HD for the others).
    pub quiet: bool,
    /// v: return the value.
    pub value: bool,
    /// u: do not count the access (no bump, fetched bit, last access).
    pub no_update: bool,
    /// I: invalidate (md: mark stale; ms: a lower CAS stores a stale item).
    pub invalidate: bool,
    /// x: md empties the item (value, client flags `F`, TTL `T`) and keeps it.
    pub remove_value: bool,
    /// T: a new TTL (wire exptime).
    pub ttl: Option<i64>,
    /// N: vivify on a miss with this TTL.
    pub vivify: Option<i64>,
    /// R: win the recache when the TTL left is below this.
    pub recache: Option<i64>,
    /// F: client flags for ms.
    pub client_flags: u32,
    /// C: compare this CAS.
    pub compare_cas: Option<u64>,
    /// E: the CAS value the changed item takes.
    pub new_cas: Option<u64>,
    /// M: the mode character, 0 when not given.
    pub mode: u8,
    /// D: ma's delta (default 1).
    pub delta: u64,
    /// J: ma's initial value on vivify.
    pub initial: u64,
    /// ma in decrement mode (M D or M -).
    pub decr: bool,
}

impl Default for MetaFlags {
    fn default() -> Self {
        MetaFlags {
            base64: false,
            quiet: false,
            value: false,
            no_update: false,
            invalidate: false,
            remove_value: false,
            ttl: None,
            vivify: None,
            recache: None,
            client_flags: 0,
            compare_cas: None,
            new_cas: None,
            mode: 0,
            delta: 1,
            initial: 0,
            decr: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    pub cmd: MetaCmd,
    /// The key as sent: base64 when `flags.base64` (`stored_key` decodes).
    pub key: &'a [u8],
    /// The flag tokens as sent, space-separated; the reply echoes some of
    /// them in this order.
    pub tokens: &'a [u8],
    pub flags: MetaFlags,
    /// ms: the data block.
    pub data: &'a [u8],
    /// ms whose item is larger than -I: its data is swallowed, the old item
    /// under the key removed, and the reply is SERVER_ERROR.
    pub too_large: bool,
}

impl<'a> MetaRequest<'a> {
    pub fn flag_tokens(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.tokens.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }

    /// The key as stored: decoded into `scratch` when it is base64 (the
    /// parser checked that it decodes).
    pub fn stored_key<'s>(&self, scratch: &'s mut [u8; KEY_MAX_LENGTH]) -> &'s [u8]
    where
        'a: 's,
    {
        if self.flags.base64 {
            let n = base64::decode(self.key, scratch).unwrap_or(0);
            &scratch[..n]
        } else {
            self.key
        }
    }

    /// Whether the request may change the item: what replicates and what
    /// waits for the peers in `sync` mode.
    pub fn may_write(&self) -> bool {
        match self.cmd {
            MetaCmd::Set | MetaCmd::Delete | MetaCmd::Arith => true,
            MetaCmd::Get => self.flags.ttl.is_some() || self.flags.vivify.is_some() || self.flags.recache.is_some(),
            MetaCmd::Debug => false,
        }
    }
}

/// memcached's `_meta_flag_preparse` over the flag tokens: the flags, or
/// the error it would answer (for md and ma the caller replaces it).
fn preparse(tokens: &[&[u8]], key: &[u8]) -> Result<MetaFlags, &'static str> {
    let mut f = MetaFlags::default();
    let mut seen = [false; 127];
    let mut error: Option<&'static str> = None;
    let mut failed = false;
    let mut fail = |msg: Option<&'static str>| {
        failed = true;
        if msg.is_some() {
            error = msg;
        }
    };
    for tok in tokens {
        let o = tok[0];
        if o >= 127 || seen[o as usize] {
            return Err(DUPLICATE_FLAG);
        }
        seen[o as usize] = true;
        let arg = &tok[1..];
        match o {
            b'b' => {
                let mut scratch = [0u8; KEY_MAX_LENGTH];
                if base64::decode(key, &mut scratch).is_none() {
                    fail(Some(DECODE_KEY));
                }
                f.base64 = true;
            }
            b'N' | b'T' | b'R' => match parse_i32(arg) {
                Some(v) if o == b'N' => f.vivify = Some(v),
                Some(v) if o == b'T' => f.ttl = Some(v),
                Some(v) => f.recache = Some(v),
                None => fail(Some(BAD_TOKEN)),
            },
            b'l' | b'h' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' => {}
            b'v' => f.value = true,
            b'u' => f.no_update = true,
            b'q' => f.quiet = true,
            b'F' => match parse_u32(arg) {
                Some(v) => f.client_flags = v,
                None => fail(None),
            },
            b'C' | b'E' => match parse_u64(arg) {
                Some(v) if o == b'C' => f.compare_cas = Some(v),
                Some(v) => f.new_cas = Some(v),
                None => fail(Some(BAD_TOKEN)),
            },
            b'M' => {
                if tok.len() != 2 {
                    fail(Some(M_LENGTH));
                } else {
                    f.mode = tok[1];
                }
            }
            b'J' => match parse_u64(arg) {
                Some(v) => f.initial = v,
                None => fail(Some(BAD_INITIAL)),
            },
            b'D' => match parse_u64(arg) {
                Some(v) => f.delta = v,
                None => fail(Some(BAD_DELTA)),
            },
            b'I' => f.invalidate = true,
            b'x' => f.remove_value = true,
            _ => return Err(INVALID_FLAG),
        }
    }
    if failed { Err(error.unwrap_or(BAD_FORMAT)) } else { Ok(f) }
}

fn opaque_too_long(tokens: &[&[u8]]) -> bool {
    tokens.iter().any(|t| t[0] == b'O' && t.len() > MAX_OPAQUE)
}

/// The part of `line` from the start of `tok` (a subslice of it) on.
fn from_token<'a>(line: &'a [u8], tok: Option<&&'a [u8]>) -> &'a [u8] {
    match tok {
        Some(t) => &line[t.as_ptr() as usize - line.as_ptr() as usize..],
        None => &[],
    }
}

/// Parse a line whose command is `m` and one more byte. `consumed` is the
/// line with its newline; `buf` holds it and whatever follows (ms data).
pub(super) fn parse_meta<'a>(buf: &'a [u8], line: &'a [u8], consumed: usize, limits: &Limits) -> Parsed<'a> {
    let err = |msg| Parsed::Error { msg, consumed, noreply: false };
    let mut tok: [&[u8]; MAX_META_TOKENS] = [&[]; MAX_META_TOKENS];
    let mut n = 0;
    for part in line.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        if n < MAX_META_TOKENS {
            tok[n] = part;
        }
        n += 1;
    }
    let cmd = match tok[0][1] {
        b'g' => MetaCmd::Get,
        b's' => MetaCmd::Set,
        b'd' => MetaCmd::Delete,
        b'a' => MetaCmd::Arith,
        b'e' => MetaCmd::Debug,
        b'n' => return Parsed::Request { req: Request::MetaNoop, consumed, swallow: 0 },
        _ => return err(ERROR),
    };
    if cmd == MetaCmd::Debug {
        if n < 2 || tok[1].len() > KEY_MAX_LENGTH {
            return err(BAD_FORMAT);
        }
        let mut flags = MetaFlags::default();
        if n >= 3 && tok[2] == b"b" {
            let mut scratch = [0u8; KEY_MAX_LENGTH];
            if base64::decode(tok[1], &mut scratch).is_none() {
                return err(BAD_FORMAT);
            }
            flags.base64 = true;
        }
        let req = MetaRequest { cmd, key: tok[1], tokens: &[], flags, data: &[], too_large: false };
        return Parsed::Request { req: Request::Meta(req), consumed, swallow: 0 };
    }
    if n < 2 {
        return err(ERROR);
    }
    let key = tok[1];
    if key.len() > KEY_MAX_LENGTH {
        return err(BAD_FORMAT);
    }
    if cmd == MetaCmd::Set {
        return parse_ms(buf, line, consumed, &tok[..n.min(MAX_META_TOKENS)], n, limits);
    }
    if n >= MAX_META_TOKENS {
        return err(if cmd == MetaCmd::Get { MG_TOO_MANY } else { TOO_MANY });
    }
    let flag_toks = &tok[2..n];
    let mut flags = match preparse(flag_toks, key) {
        Ok(f) => f,
        Err(msg) if cmd == MetaCmd::Get => return err(msg),
        Err(_) => return err(INVALID_OR_DUPLICATE),
    };
    if cmd == MetaCmd::Arith {
        match flags.mode {
            0 | b'I' | b'+' => {}
            b'D' | b'-' => flags.decr = true,
            _ => return err(MA_MODE),
        }
    }
    if opaque_too_long(flag_toks) {
        return err(OPAQUE_TOO_LONG);
    }
    let req = MetaRequest { cmd, key, tokens: from_token(line, flag_toks.first()), flags, data: &[], too_large: false };
    Parsed::Request { req: Request::Meta(req), consumed, swallow: 0 }
}

/// ms: the line checks that come before the data length is known answer
/// at once; those after it swallow the data block, as memcached does.
fn parse_ms<'a>(
    buf: &'a [u8],
    line: &'a [u8],
    line_len: usize,
    tok: &[&'a [u8]],
    n: usize,
    limits: &Limits,
) -> Parsed<'a> {
    let err = |msg| Parsed::Error { msg, consumed: line_len, noreply: false };
    if n == 2 {
        return err(BAD_FORMAT);
    }
    if n >= MAX_META_TOKENS {
        return err(TOO_MANY);
    }
    let vlen = match parse_i32(tok[2]) {
        Some(v) if (0..=i32::MAX as i64 - 2).contains(&v) => v as usize,
        _ => return err(BAD_FORMAT),
    };
    let refuse = |msg| Parsed::Request { req: Request::Refused { msg }, consumed: line_len, swallow: vlen + 2 };
    let key = tok[1];
    let flag_toks = &tok[3..n];
    let flags = match preparse(flag_toks, key) {
        Ok(f) => f,
        Err(msg) => return refuse(msg),
    };
    if opaque_too_long(flag_toks) {
        return refuse(OPAQUE_TOO_LONG);
    }
    if !matches!(flags.mode, 0 | b'E' | b'A' | b'P' | b'R' | b'S') {
        return refuse(MS_MODE);
    }
    let mut req = MetaRequest {
        cmd: MetaCmd::Set,
        key,
        tokens: from_token(line, flag_toks.first()),
        flags,
        data: &[],
        too_large: false,
    };
    let mut scratch = [0u8; KEY_MAX_LENGTH];
    let key_len = req.stored_key(&mut scratch).len();
    if item_total_size(key_len, flags.client_flags, vlen) > limits.item_size_max {
        req.too_large = true;
        return Parsed::Request { req: Request::Meta(req), consumed: line_len, swallow: vlen + 2 };
    }
    let total = line_len + vlen + 2;
    if buf.len() < total {
        return Parsed::Incomplete { need: total };
    }
    if &buf[line_len + vlen..total] != b"\r\n" {
        return Parsed::Error { msg: BAD_CHUNK, consumed: total, noreply: false };
    }
    req.data = &buf[line_len..line_len + vlen];
    Parsed::Request { req: Request::Meta(req), consumed: total, swallow: 0 }
}

// Reply words.
pub const HD: &[u8] = b"HD";
pub const VA: &[u8] = b"VA ";
pub const EN: &[u8] = b"EN\r\n";
pub const NF: &[u8] = b"NF";
pub const NS: &[u8] = b"NS";
pub const EX: &[u8] = b"EX";
pub const MN: &[u8] = b"MN\r\n";

/// ` k<key>`, base64 with a trailing ` b` when the key is binary, as
/// memcached's META_KEY writes it.
pub fn encode_key_flag(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        base64::encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(buf: &[u8]) -> Parsed<'_> {
        super::super::parse(buf, &Limits::default())
    }

    fn meta(buf: &[u8]) -> MetaRequest<'_> {
        match p(buf) {
            Parsed::Request { req: Request::Meta(m), consumed, swallow: 0 } => {
                assert_eq!(consumed, buf.len());
                m
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn err(buf: &[u8]) -> &'static str {
        match p(buf) {
            Parsed::Error { msg, consumed, noreply: false } => {
                assert_eq!(consumed, buf.len(), "{}", String::from_utf8_lossy(buf));
                msg
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// Every meta request shape, for the cut-at-every-byte test.
    pub const SAMPLES: &[&[u8]] = &[
        b"mg foo v\r\n",
        b"mg foo s v c f t h l k Oabc q u\r\n",
        b"mg Zm9v b k v\r\n",
        b"mg foo N30 R10 T60 E77 v\r\n",
        b"mg foo\r\n",
        b"ms foo 3\r\nbar\r\n",
        b"ms foo 2 T90 F5 C12 I q k c O1 MS s\r\nhi\r\n",
        b"ms Zm9v 0 b ME\r\n\r\n",
        b"ms foo 1 MA C9 E10 s\r\nx\r\n",
        b"md foo\r\n",
        b"md foo I T30 C5 q k O9 x F3 E4\r\n",
        b"ma foo\r\n",
        b"ma foo N0 J13 D5 MD T10 t c v k Oz q\r\n",
        b"me foo\r\n",
        b"me Zm9v b\r\n",
        b"mn\r\n",
    ];

    #[test]
    fn every_meta_request_cut_at_every_byte_needs_more_then_parses_whole() {
        for sample in SAMPLES {
            let whole = p(sample);
            assert!(matches!(whole, Parsed::Request { consumed, .. } if consumed == sample.len()), "{whole:?}");
            for cut in 0..sample.len() {
                match p(&sample[..cut]) {
                    Parsed::Incomplete { need } => assert!(need == 0 || need == sample.len()),
                    other => panic!("{:?} cut at {cut}: {other:?}", String::from_utf8_lossy(sample)),
                }
            }
        }
        // And packed in one buffer, in order.
        let all = SAMPLES.concat();
        let mut off = 0;
        for sample in SAMPLES {
            match p(&all[off..]) {
                Parsed::Request { consumed, .. } => assert_eq!(consumed, sample.len()),
                other => panic!("{other:?}"),
            }
            off += sample.len();
        }
    }

    #[test]
    fn flags_are_decoded() {
        let m = meta(b"mg foo s v N30 R10 T-1 q u\r\n");
        assert_eq!(m.cmd, MetaCmd::Get);
        assert_eq!(m.key, b"foo");
        assert_eq!(m.tokens, b"s v N30 R10 T-1 q u");
        let f = m.flags;
        assert!(f.value && f.quiet && f.no_update && !f.base64);
        assert_eq!((f.vivify, f.recache, f.ttl), (Some(30), Some(10), Some(-1)));
        let m = meta(b"ms k 2 F7 C9 E11 I MA\r\nab\r\n");
        assert_eq!(m.data, b"ab");
        assert_eq!((m.flags.client_flags, m.flags.compare_cas, m.flags.new_cas), (7, Some(9), Some(11)));
        assert!(meta(b"md k x\r\n").flags.remove_value);
        assert!(m.flags.invalidate);
        assert_eq!(m.flags.mode, b'A');
        let m = meta(b"ma k MD D5 J3\r\n");
        assert!(m.flags.decr);
        assert_eq!((m.flags.delta, m.flags.initial), (5, 3));
        assert_eq!(meta(b"ma k\r\n").flags.delta, 1);
        let m = meta(b"mg Zm9v b\r\n");
        let mut scratch = [0u8; KEY_MAX_LENGTH];
        assert_eq!(m.stored_key(&mut scratch), b"foo");
        assert_eq!(p(b"mn extra\r\n"), Parsed::Request { req: Request::MetaNoop, consumed: 10, swallow: 0 });
    }

    #[test]
    fn errors_match_memcached() {
        assert_eq!(err(b"mg\r\n"), ERROR);
        assert_eq!(err(b"mz foo\r\n"), ERROR);
        assert_eq!(err(b"me\r\n"), BAD_FORMAT);
        assert_eq!(err(b"me !!!! b\r\n"), BAD_FORMAT);
        let long = [b"mg ".as_slice(), &[b'k'; 251], b" v\r\n"].concat();
        assert_eq!(err(&long), BAD_FORMAT);
        assert_eq!(err(b"mg foo m o o o o o o o o o\r\n"), INVALID_FLAG);
        assert_eq!(err(b"mg foo v v\r\n"), DUPLICATE_FLAG);
        assert_eq!(err(b"mg foo T\r\n"), BAD_TOKEN);
        assert_eq!(err(b"mg foo Tx\r\n"), BAD_TOKEN);
        assert_eq!(err(b"mg foo b\r\n"), DECODE_KEY);
        assert_eq!(err(b"mg foo Fx\r\n"), BAD_FORMAT);
        assert_eq!(err(b"mg foo MXY\r\n"), M_LENGTH);
        assert_eq!(err(b"mg foo Jx\r\n"), BAD_INITIAL);
        assert_eq!(err(b"mg foo Dx\r\n"), BAD_DELTA);
        assert_eq!(err(b"mg foo Ex\r\n"), BAD_TOKEN);
        assert_eq!(err(b"md foo Ex\r\n"), INVALID_OR_DUPLICATE);
        assert_eq!(err(b"mg foo a b c d e f g h i j k l m n o p q r\r\n"), MG_TOO_MANY);
        assert_eq!(err(b"md foo a b c d e f g h i j k l m n o p q r\r\n"), TOO_MANY);
        assert_eq!(err(b"md foo v v\r\n"), INVALID_OR_DUPLICATE);
        assert_eq!(err(b"ma foo Dx\r\n"), INVALID_OR_DUPLICATE);
        assert_eq!(err(b"ma foo MX\r\n"), MA_MODE);
        let opaque = [b"md foo O".as_slice(), &[b'o'; 32], b"\r\n"].concat();
        assert_eq!(err(&opaque), OPAQUE_TOO_LONG);
        let opaque = [b"md foo O".as_slice(), &[b'o'; 31], b"\r\n"].concat();
        assert!(matches!(p(&opaque), Parsed::Request { .. }));
        assert_eq!(err(b"ms foo\r\n"), BAD_FORMAT);
        assert_eq!(err(b"ms\r\n"), ERROR);
        assert_eq!(err(b"ms foo x\r\n"), BAD_FORMAT);
        assert_eq!(err(b"ms foo -1\r\n"), BAD_FORMAT);
        assert_eq!(err(b"ms foo 2 a b c d e f g h i j k l m n o p q\r\n"), TOO_MANY);
        assert_eq!(err(b"ms foo 2\r\nabcd"), BAD_CHUNK);
    }

    #[test]
    fn ms_errors_after_the_length_swallow_the_data() {
        for (line, msg) in [
            (&b"ms foo 5 MZ\r\n"[..], MS_MODE),
            (b"ms foo 5 v v\r\n", DUPLICATE_FLAG),
            (b"ms foo 5 Tx\r\n", BAD_TOKEN),
            (b"ms foo 5 zz\r\n", INVALID_FLAG),
        ] {
            match p(line) {
                Parsed::Request { req: Request::Refused { msg: m }, consumed, swallow: 7 } => {
                    assert_eq!((m, consumed), (msg, line.len()));
                }
                other => panic!("{other:?}"),
            }
        }
        let limits = Limits { item_size_max: 1024 };
        match super::super::parse(b"ms foo 5000 q\r\n", &limits) {
            Parsed::Request { req: Request::Meta(m), consumed: 15, swallow: 5002 } => assert!(m.too_large),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writes_and_keys() {
        assert!(meta(b"ms k 1\r\nx\r\n").may_write());
        assert!(meta(b"md k\r\n").may_write());
        assert!(meta(b"ma k\r\n").may_write());
        assert!(meta(b"mg k T10\r\n").may_write());
        assert!(!meta(b"mg k v\r\n").may_write());
        assert!(!meta(b"me k\r\n").may_write());
        let r = Request::Meta(meta(b"mg Zm9v b q\r\n"));
        assert_eq!(r.key(), Some(&b"Zm9v"[..]));
        let mut scratch = [0u8; KEY_MAX_LENGTH];
        assert_eq!(r.route_key(&mut scratch), Some(&b"foo"[..]));
        assert!(r.noreply());
    }

    #[test]
    fn keys_come_back_as_they_went() {
        let mut out = Vec::new();
        encode_key_flag(&mut out, "テスト".as_bytes(), true);
        encode_key_flag(&mut out, b"foo", false);
        assert_eq!(out, b" k44OG44K544OI b kfoo");
    }
}
