//! Incremental parser for memcached text-protocol requests.
//!
//! Wire grammar (tokens are separated by one or more spaces; a line ends in
//! `\n`, optionally preceded by `\r`; data blocks must end in `\r\n`):
//!
//! ```text
//! set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]\r\n<data>\r\n
//! cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]\r\n<data>\r\n
//! get|gets <key>+                    gat|gats <exptime> <key>*
//! delete <key> [0] [noreply]         incr|decr <key> <delta> [noreply]
//! touch <key> <exptime> [noreply]    flush_all [delay] [noreply]
//! verbosity <level> [noreply]        version | quit | stats [<args>]
//! cache_memlimit <megabytes> [noreply]
//! bget <key>+ (= get)                mg|ms|md|ma|me|mn ... (meta.rs)
//! ```
//!
//! Replies for malformed input follow memcached 1.6.18 byte for byte
//! (checked against the real server), except where memcached is unsafe:
//! flags of 2^32 or more are refused instead of truncated; and a get line
//! longer than `READ_BUFFER` is answered as its keys arrive
//! (`GetPart`, `parse_get_rest`) instead of being buffered whole.
//!
//! Pure (byte slices in, requests out): imports only the shared `item`
//! sizes and its sibling `meta`; must not import storage, route, repl,
//! server, stats or config.

use super::meta::MetaRequest;
use super::{KEY_MAX_LENGTH, MAX_LINE_WITHOUT_NEWLINE, READ_BUFFER};
use crate::item::{c_number, c_strtoull, item_total_size};

/// Limits the parser needs to know to decide between buffering a data block
/// and swallowing it.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `-I`: largest item (header, key, value) that can be stored.
    pub item_size_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { item_size_max: 1 << 20 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetKind {
    Get,
    Gets,
    Gat,
    Gats,
}

impl GetKind {
    pub fn with_cas(self) -> bool {
        matches!(self, GetKind::Gets | GetKind::Gats)
    }
    pub fn touches(self) -> bool {
        matches!(self, GetKind::Gat | GetKind::Gats)
    }
    pub fn name(self) -> &'static str {
        match self {
            GetKind::Get => "get",
            GetKind::Gets => "gets",
            GetKind::Gat => "gat",
            GetKind::Gats => "gats",
        }
    }
}

/// The keys of a retrieval line, kept as the raw space-separated slice so
/// that a 10 000-key multiget costs no allocation to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a>(pub &'a [u8]);

impl<'a> Keys<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Get {
        kind: GetKind,
        exptime: i64,
        keys: Keys<'a>,
    },
    /// The keys so far of a get line longer than `READ_BUFFER`
    /// whose newline has not come: answered at once, without END; the
    /// line's rest is read with `parse_get_rest`, so a line of any length
    /// is answered key by key in bounded memory.
    GetPart {
        kind: GetKind,
        exptime: i64,
        keys: Keys<'a>,
    },
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        data: &'a [u8],
        cas: u64,
        noreply: bool,
    },
    /// A storage command whose item exceeds `-I`: the data block is being
    /// swallowed, and for `set` the old item under the key is removed so
    /// that stale data does not outlive a failed update (as memcached does).
    TooLarge {
        mode: StoreMode,
        key: &'a [u8],
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    CacheMemlimit {
        megabytes: u64,
        noreply: bool,
    },
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Version,
    Quit,
    Shutdown,
    /// `stats` with its arguments, still space-separated.
    Stats {
        args: &'a [u8],
    },
    /// mg, ms, md, ma, me (`protocol::meta`).
    Meta(MetaRequest<'a>),
    /// mn: answered MN in order, the end of a quiet pipeline.
    MetaNoop,
    /// A request refused after its data block's length was known: `msg`
    /// goes out whatever the quiet flag, and the data is swallowed.
    Refused {
        msg: &'static str,
    },
    /// `lru_crawler` with its arguments, still space-separated.
    LruCrawler {
        args: &'a [u8],
    },
    /// `watch [streams]`: memcached's log streams, still space-separated.
    Watch {
        args: &'a [u8],
    },
}

impl<'a> Request<'a> {
    /// Whether the request may change the item under its key: the requests
    /// that replicate, and whose reply waits for the peers in `sync` mode.
    /// The requests with a `key` but the meta commands that only read
    /// (`MetaRequest::may_write`); gat/gats touch, but travel as retrievals.
    pub fn is_write(&self) -> bool {
        match self {
            Request::Meta(m) => m.may_write(),
            _ => self.key().is_some(),
        }
    }

    /// The key of a request that runs on the core owning it: the writes
    /// (see `is_write`) and the meta commands, whose key is as sent (base64
    /// with the `b` flag; `route_key` decodes it).
    pub fn key(&self) -> Option<&'a [u8]> {
        match *self {
            Request::Store { key, .. }
            | Request::TooLarge { key, .. }
            | Request::Delete { key, .. }
            | Request::Arith { key, .. }
            | Request::Touch { key, .. } => Some(key),
            Request::Meta(m) => Some(m.key),
            _ => None,
        }
    }

    /// The key as stored, which decides the owning core: `key`, with a
    /// meta command's base64 key decoded into `scratch`.
    pub fn route_key<'s>(&self, scratch: &'s mut [u8; KEY_MAX_LENGTH]) -> Option<&'s [u8]>
    where
        'a: 's,
    {
        match *self {
            Request::Meta(m) => Some(m.stored_key(scratch)),
            _ => self.key(),
        }
    }

    /// Whether the client asked for no reply (`noreply`).
    pub fn noreply(&self) -> bool {
        match *self {
            Request::Store { noreply, .. }
            | Request::TooLarge { noreply, .. }
            | Request::Delete { noreply, .. }
            | Request::Arith { noreply, .. }
            | Request::Touch { noreply, .. }
            | Request::FlushAll { noreply, .. }
            | Request::CacheMemlimit { noreply, .. }
            | Request::Verbosity { noreply, .. } => noreply,
            Request::Meta(m) => m.flags.quiet,
            Request::Get { .. }
            | Request::GetPart { .. }
            | Request::Version
            | Request::Quit
            | Request::Shutdown
            | Request::Stats { .. }
            | Request::MetaNoop
            | Request::Refused { .. }
            | Request::LruCrawler { .. }
            | Request::Watch { .. } => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole request. `consumed` bytes of input belong to it; a further
    /// `swallow` bytes (the data of a refused item) must be discarded even
    /// if they have not arrived yet.
    Request { req: Request<'a>, consumed: usize, swallow: usize },
    /// The input ends inside a request. `need` is the total buffer length
    /// that will complete it when known (a data block), else 0.
    Incomplete { need: usize },
    /// Reply `msg` (unless `noreply`) and drop `consumed` bytes.
    Error { msg: &'static str, consumed: usize, noreply: bool },
    /// Close the connection, after sending `msg` if there is one.
    Close { msg: Option<&'static str> },
}

pub const ERROR: &str = "ERROR";
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const BAD_CHUNK: &str = "CLIENT_ERROR bad data chunk";
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
pub const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
pub const DELETE_USAGE: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
pub const MEMLIMIT_TOO_SMALL: &str = "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m";

/// Most tokens any fixed-arity command has (`cas` with noreply has 7).
const MAX_TOKENS: usize = 8;

struct Tokens<'a> {
    tok: [&'a [u8]; MAX_TOKENS],
    /// How many tokens the line has (may exceed MAX_TOKENS; only the first
    /// MAX_TOKENS are kept).
    n: usize,
}

impl<'a> Tokens<'a> {
    fn split(line: &'a [u8]) -> Self {
        let mut t = Tokens { tok: [&[][..]; MAX_TOKENS], n: 0 };
        for part in line.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
            if t.n < MAX_TOKENS {
                t.tok[t.n] = part;
            }
            t.n += 1;
        }
        t
    }
    /// memcached's `set_noreply_maybe`: the last token is `noreply`.
    fn noreply(&self) -> bool {
        self.n > 1 && self.n <= MAX_TOKENS && self.tok[self.n - 1] == b"noreply"
    }
}

/// Parse one request from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    let Some(nl) = memchr(b'\n', buf) else {
        return incomplete_line(buf);
    };
    if nl >= READ_BUFFER && !is_get_line(buf) {
        // memcached's read buffer could not have held this line.
        return Parsed::Close { msg: None };
    }
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    // memcached reads the line as a C string: it ends at its first NUL.
    let line = &buf[..memchr(0, &buf[..line_end]).unwrap_or(line_end)];
    let consumed = nl + 1;
    let t = Tokens::split(line);
    let error = |msg| Parsed::Error { msg, consumed, noreply: false };
    let quiet_error = |msg| Parsed::Error { msg, consumed, noreply: t.noreply() };
    if t.n == 0 {
        return error(ERROR);
    }
    if t.tok[0].len() == 2 && t.tok[0][0] == b'm' {
        return super::meta::parse_meta(buf, line, consumed, limits);
    }
    let req = match t.tok[0] {
        // memcached takes "bget" (a binary-protocol-era spelling) as get.
        b"get" | b"gets" | b"bget" => {
            if t.n < 2 {
                return error(ERROR);
            }
            let kind = if t.tok[0] == b"gets" { GetKind::Gets } else { GetKind::Get };
            let keys = Keys(rest_after_tokens(line, 1));
            if keys.iter().any(|k| k.len() > KEY_MAX_LENGTH) {
                return error(BAD_FORMAT);
            }
            Request::Get { kind, exptime: 0, keys }
        }
        b"gat" | b"gats" => {
            if t.n < 2 {
                return error(ERROR);
            }
            let kind = if t.tok[0] == b"gat" { GetKind::Gat } else { GetKind::Gats };
            let Some(exptime) = parse_i32(t.tok[1]) else {
                return error(BAD_EXPTIME);
            };
            let keys = Keys(rest_after_tokens(line, 2));
            if keys.iter().any(|k| k.len() > KEY_MAX_LENGTH) {
                return error(BAD_FORMAT);
            }
            Request::Get { kind, exptime, keys }
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            return parse_storage(buf, consumed, &t, limits);
        }
        b"delete" => {
            if !(2..=4).contains(&t.n) {
                return error(ERROR);
            }
            // "delete noreply" deletes the key named noreply, and answers.
            let noreply = t.n > 2 && t.noreply();
            if t.n > 2 {
                let hold_is_zero = t.tok[2] == b"0";
                let valid = (t.n == 3 && (hold_is_zero || noreply)) || (t.n == 4 && hold_is_zero && noreply);
                if !valid {
                    return Parsed::Error { msg: DELETE_USAGE, consumed, noreply };
                }
            }
            if t.tok[1].len() > KEY_MAX_LENGTH {
                return quiet_error(BAD_FORMAT);
            }
            Request::Delete { key: t.tok[1], noreply }
        }
        b"incr" | b"decr" => {
            if !(3..=4).contains(&t.n) {
                return error(ERROR);
            }
            if t.tok[1].len() > KEY_MAX_LENGTH {
                return quiet_error(BAD_FORMAT);
            }
            let Some(delta) = parse_u64(t.tok[2]) else {
                return quiet_error(BAD_DELTA);
            };
            Request::Arith { incr: t.tok[0] == b"incr", key: t.tok[1], delta, noreply: t.noreply() }
        }
        b"touch" => {
            if !(3..=4).contains(&t.n) {
                return error(ERROR);
            }
            if t.tok[1].len() > KEY_MAX_LENGTH {
                return quiet_error(BAD_FORMAT);
            }
            let Some(exptime) = parse_i32(t.tok[2]) else {
                return quiet_error(BAD_EXPTIME);
            };
            Request::Touch { key: t.tok[1], exptime, noreply: t.noreply() }
        }
        b"flush_all" => {
            if t.n > 3 {
                return error(ERROR);
            }
            let noreply = t.noreply();
            let delay = if t.n == if noreply { 2 } else { 1 } {
                0
            } else {
                match parse_i32(t.tok[1]) {
                    Some(d) => d,
                    None => return Parsed::Error { msg: BAD_EXPTIME, consumed, noreply },
                }
            };
            Request::FlushAll { delay, noreply }
        }
        b"cache_memlimit" => {
            if !(2..=3).contains(&t.n) {
                return error(ERROR);
            }
            match parse_u64(t.tok[1]) {
                Some(megabytes) if megabytes < 8 => return quiet_error(MEMLIMIT_TOO_SMALL),
                Some(megabytes) => Request::CacheMemlimit { megabytes, noreply: t.noreply() },
                None => return quiet_error(ERROR),
            }
        }
        b"verbosity" => {
            if !(2..=3).contains(&t.n) {
                return error(ERROR);
            }
            let noreply = t.noreply();
            if noreply && t.n == 2 {
                // "verbosity noreply" lacks the level; memcached answers
                // nothing at all for it.
                return Parsed::Error { msg: ERROR, consumed, noreply: true };
            }
            match parse_u64(t.tok[1]) {
                Some(level) => Request::Verbosity { level: level.min(u32::MAX as u64) as u32, noreply },
                None => return quiet_error(BAD_FORMAT),
            }
        }
        b"version" => Request::Version,
        b"quit" => Request::Quit,
        b"shutdown" => Request::Shutdown,
        b"stats" => Request::Stats { args: rest_after_tokens(line, 1) },
        b"lru_crawler" => Request::LruCrawler { args: rest_after_tokens(line, 1) },
        b"watch" => Request::Watch { args: rest_after_tokens(line, 1) },
        _ => {
            // memcached drops connections that speak HTTP to it.
            if t.n >= 2 && t.n <= MAX_TOKENS && t.tok[t.n - 1].starts_with(b"HTTP/") {
                return Parsed::Close { msg: None };
            }
            return error(ERROR);
        }
    };
    Parsed::Request { req, consumed, swallow: 0 }
}

fn parse_storage<'a>(buf: &'a [u8], line_len: usize, t: &Tokens<'a>, limits: &Limits) -> Parsed<'a> {
    let mode = match t.tok[0] {
        b"set" => StoreMode::Set,
        b"add" => StoreMode::Add,
        b"replace" => StoreMode::Replace,
        b"append" => StoreMode::Append,
        b"prepend" => StoreMode::Prepend,
        _ => StoreMode::Cas,
    };
    let arity = if mode == StoreMode::Cas { 6 } else { 5 };
    if t.n != arity && t.n != arity + 1 {
        return Parsed::Error { msg: ERROR, consumed: line_len, noreply: false };
    }
    let noreply = t.noreply();
    let bad = Parsed::Error { msg: BAD_FORMAT, consumed: line_len, noreply };
    let key = t.tok[1];
    if key.len() > KEY_MAX_LENGTH {
        return bad;
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (parse_u32(t.tok[2]), parse_i32(t.tok[3]), parse_i32(t.tok[4]))
    else {
        return bad;
    };
    if vlen < 0 || vlen > i32::MAX as i64 - 2 {
        return bad;
    }
    let cas = if mode == StoreMode::Cas {
        match parse_u64(t.tok[5]) {
            Some(c) => c,
            None => return bad,
        }
    } else {
        0
    };
    let vlen = vlen as usize;
    if item_total_size(key.len(), flags, vlen) > limits.item_size_max {
        return Parsed::Request {
            req: Request::TooLarge { mode, key, noreply },
            consumed: line_len,
            swallow: vlen + 2,
        };
    }
    let total = line_len + vlen + 2;
    if buf.len() < total {
        return Parsed::Incomplete { need: total };
    }
    if &buf[line_len + vlen..total] != b"\r\n" {
        return Parsed::Error { msg: BAD_CHUNK, consumed: total, noreply };
    }
    let data = &buf[line_len..line_len + vlen];
    Parsed::Request {
        req: Request::Store { mode, key, flags, exptime, data, cas, noreply },
        consumed: total,
        swallow: 0,
    }
}

/// memcached's test for a line that may grow without bound: a get or gets
/// after at most 100 spaces.
fn is_get_line(buf: &[u8]) -> bool {
    let lead = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[lead..];
    lead <= 100 && (rest.starts_with(b"get ") || rest.starts_with(b"gets "))
}

/// No newline yet: wait, give up on a line that cannot be a request, or
/// answer the complete keys of a long get line so far.
fn incomplete_line(buf: &[u8]) -> Parsed<'_> {
    if buf.len() <= MAX_LINE_WITHOUT_NEWLINE {
        return Parsed::Incomplete { need: 0 };
    }
    if !is_get_line(buf) {
        return Parsed::Close { msg: None };
    }
    if buf.len() < READ_BUFFER {
        return Parsed::Incomplete { need: 0 };
    }
    let lead = buf.iter().take_while(|&&b| b == b' ').count();
    let kind = if buf[lead..].starts_with(b"gets ") { GetKind::Gets } else { GetKind::Get };
    get_part(buf, kind, 0, lead + kind.name().len())
}

/// The complete keys of `buf[from..]` (those followed by a space), as a
/// `GetPart` that consumes them; a key longer than memcached's limit
/// closes the connection after the error (the keys before it were answered).
fn get_part(buf: &[u8], kind: GetKind, exptime: i64, from: usize) -> Parsed<'_> {
    let Some(last_space) = buf[from..].iter().rposition(|&b| b == b' ').map(|p| from + p) else {
        return Parsed::Close { msg: Some(BAD_FORMAT) };
    };
    let keys = Keys(&buf[from..last_space]);
    if keys.iter().any(|k| k.len() > KEY_MAX_LENGTH) || buf.len() - last_space > KEY_MAX_LENGTH + 1 {
        return Parsed::Close { msg: Some(BAD_FORMAT) };
    }
    Parsed::Request { req: Request::GetPart { kind, exptime, keys }, consumed: last_space + 1, swallow: 0 }
}

/// The rest of a get line after a `GetPart` (a connection keeps `kind` and
/// `exptime` between them): more keys, and the END once its newline comes.
pub fn parse_get_rest(buf: &[u8], kind: GetKind, exptime: i64) -> Parsed<'_> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() < READ_BUFFER / 4 {
            return Parsed::Incomplete { need: 0 };
        }
        return get_part(buf, kind, exptime, 0);
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    let keys = Keys(&buf[..line_end]);
    if keys.iter().any(|k| k.len() > KEY_MAX_LENGTH) {
        return Parsed::Close { msg: Some(BAD_FORMAT) };
    }
    Parsed::Request { req: Request::Get { kind, exptime, keys }, consumed: nl + 1, swallow: 0 }
}

/// The part of `line` after its first `n` tokens, leading spaces removed.
fn rest_after_tokens(line: &[u8], n: usize) -> &[u8] {
    let mut i = 0;
    for _ in 0..n {
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
    }
    while i < line.len() && line[i] == b' ' {
        i += 1;
    }
    &line[i..]
}

pub(super) fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// memcached's `safe_strtoull` (a delta, a CAS value): see `c_strtoull`.
/// `+`, `-0`, leading zeros and whitespace inside the token are accepted
/// as memcached accepts them.
pub fn parse_u64(tok: &[u8]) -> Option<u64> {
    c_strtoull(tok)
}

/// memcached's `safe_strtoul` (flags): as `parse_u64`, but memcore refuses
/// what does not fit 32 bits where memcached truncates it.
pub(super) fn parse_u32(tok: &[u8]) -> Option<u32> {
    parse_u64(tok).and_then(|v| u32::try_from(v).ok())
}

/// A data length (memcached's 32-bit safe_strtol), an exptime or a delay.
/// memcached 1.6.18 reads them with strtol (64-bit) and then truncates them
/// to 32 bits, so 2147483648 becomes a time in the past and the item
/// silently vanishes; memcore refuses what does not fit instead.
pub(super) fn parse_i32(tok: &[u8]) -> Option<i64> {
    let (neg, v) = c_number(tok)?;
    let v = if neg { -(v as i128) } else { v as i128 };
    (i32::MIN as i128..=i32::MAX as i128).contains(&v).then_some(v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(buf: &[u8]) -> Parsed<'_> {
        parse(buf, &Limits::default())
    }

    fn req(buf: &[u8]) -> Request<'_> {
        match p(buf) {
            Parsed::Request { req, consumed, swallow: 0 } => {
                assert_eq!(consumed, buf.len(), "whole buffer is one request");
                req
            }
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn err(buf: &[u8]) -> (&'static str, usize, bool) {
        match p(buf) {
            Parsed::Error { msg, consumed, noreply } => (msg, consumed, noreply),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Every valid request, used for the cut-at-every-byte tests.
    const SAMPLES: &[&[u8]] = &[
        b"set foo 5 0 3\r\nbar\r\n",
        b"add foo 0 100 0 noreply\r\n\r\n",
        b"replace k 4294967295 -1 2\r\n\r\n\r\n",
        b"append k 0 0 1\r\nx\r\n",
        b"prepend k 0 0 1\r\ny\r\n",
        b"cas k 0 0 1 12345 noreply\r\nz\r\n",
        b"get a b c\r\n",
        b"gets a\r\n",
        b"gat 10 a b\r\n",
        b"gats -1 a\r\n",
        b"delete k\r\n",
        b"delete k 0 noreply\r\n",
        b"incr k 1\r\n",
        b"decr k 18446744073709551615 noreply\r\n",
        b"touch k 10\r\n",
        b"flush_all\r\n",
        b"flush_all 10 noreply\r\n",
        b"verbosity 1\r\n",
        b"version\r\n",
        b"quit\r\n",
        b"stats\r\n",
        b"stats items\r\n",
        b"cache_memlimit 100\r\n",
        b"get k\n",
    ];

    #[test]
    fn every_request_cut_at_every_byte_needs_more_then_parses_whole() {
        for sample in SAMPLES {
            let whole = req(sample);
            for cut in 0..sample.len() {
                match p(&sample[..cut]) {
                    Parsed::Incomplete { need } => assert!(need == 0 || need == sample.len(), "{sample:?} cut {cut}"),
                    other => panic!("{:?} cut at {cut} gave {other:?}", String::from_utf8_lossy(sample)),
                }
            }
            assert_eq!(req(sample), whole);
        }
    }

    #[test]
    fn many_requests_in_one_buffer_parse_in_order() {
        let all: Vec<u8> = SAMPLES.concat();
        let mut off = 0;
        for sample in SAMPLES {
            match p(&all[off..]) {
                Parsed::Request { req, consumed, .. } => {
                    assert_eq!(consumed, sample.len());
                    assert_eq!(req, super::parse(sample, &Limits::default()).request().unwrap());
                    off += consumed;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(off, all.len());
    }

    impl<'a> Parsed<'a> {
        fn request(self) -> Option<Request<'a>> {
            match self {
                Parsed::Request { req, .. } => Some(req),
                _ => None,
            }
        }
    }

    #[test]
    fn storage_fields_are_decoded() {
        assert_eq!(
            req(b"cas k 7 -1 3 99 noreply\r\nabc\r\n"),
            Request::Store {
                mode: StoreMode::Cas,
                key: b"k",
                flags: 7,
                exptime: -1,
                data: b"abc",
                cas: 99,
                noreply: true
            }
        );
        // A sixth token that is not "noreply" is ignored, as memcached does.
        assert!(matches!(req(b"set k 0 0 1 bogus\r\na\r\n"), Request::Store { noreply: false, .. }));
        assert!(matches!(req(b"set  k  0 0 1\r\na\r\n"), Request::Store { key: b"k", .. }));
    }

    #[test]
    fn storage_errors_match_memcached() {
        assert_eq!(err(b"set k 0 0\r\n"), (ERROR, 11, false));
        assert_eq!(err(b"cas k 0 0 1\r\n").0, ERROR);
        assert_eq!(err(b"set k 0 0 -1\r\n").0, BAD_FORMAT);
        assert_eq!(err(b"set k 0 0 abc\r\n").0, BAD_FORMAT);
        assert_eq!(err(b"set k x 0 1\r\n").0, BAD_FORMAT);
        assert_eq!(err(b"set k 0 x 1\r\n").0, BAD_FORMAT);
        assert_eq!(err(b"cas k 0 0 1 abc\r\n").0, BAD_FORMAT);
        // Stricter than memcached, which truncates these flags to 0.
        assert_eq!(err(b"set k 4294967296 0 1\r\n").0, BAD_FORMAT);
        assert_eq!(err(b"set k -1 0 1\r\n").0, BAD_FORMAT);
        // Also stricter: memcached truncates this exptime to a past time.
        assert_eq!(err(b"set k 0 2147483648 1\r\n").0, BAD_FORMAT);
        assert_eq!(err(b"touch k 2147483648\r\n").0, BAD_EXPTIME);
        let long_key = [b'k'; 251];
        let line = [b"set ".as_slice(), &long_key, b" 0 0 1 noreply\r\n"].concat();
        assert_eq!(err(&line), (BAD_FORMAT, line.len(), true));
    }

    #[test]
    fn bad_data_chunk_consumes_length_plus_two() {
        // memcached reads "abc" + "de", rejects it, then sees an empty line.
        let buf = b"set k 0 0 3\r\nabcde\r\n";
        assert_eq!(err(buf), (BAD_CHUNK, 18, false));
        assert_eq!(err(&buf[18..]), (ERROR, 2, false));
        assert_eq!(err(b"set k 0 0 1 noreply\r\nab\r\n"), (BAD_CHUNK, 24, true));
    }

    #[test]
    fn too_large_item_is_swallowed_without_buffering() {
        let limits = Limits { item_size_max: 1024 };
        match parse(b"set k 0 0 5000\r\n", &limits) {
            Parsed::Request {
                req: Request::TooLarge { mode: StoreMode::Set, key: b"k", noreply: false },
                consumed: 16,
                swallow: 5002,
            } => {}
            other => panic!("{other:?}"),
        }
        // The size counts header, key and value, like memcached's -I.
        let fits = 1024 - item_total_size(1, 0, 0);
        let line = format!("set k 0 0 {fits}\r\n");
        assert!(matches!(parse(line.as_bytes(), &limits), Parsed::Incomplete { .. }));
        let line = format!("set k 0 0 {}\r\n", fits + 1);
        assert!(matches!(parse(line.as_bytes(), &limits), Parsed::Request { req: Request::TooLarge { .. }, .. }));
    }

    #[test]
    fn default_item_limit_refuses_one_mebibyte_and_takes_one_less_a_kibibyte() {
        let l = Limits::default();
        assert!(matches!(parse(b"set k 0 0 1048576\r\n", &l), Parsed::Request { req: Request::TooLarge { .. }, .. }));
        assert!(matches!(parse(b"set k 0 0 1047552\r\n", &l), Parsed::Incomplete { need: 1047573 }));
    }

    #[test]
    fn writes_and_noreply_are_known_from_the_request() {
        for (line, write, noreply) in [
            (&b"set k 0 0 1\r\nx\r\n"[..], true, false),
            (b"add k 0 0 1 noreply\r\nx\r\n", true, true),
            (b"delete k noreply\r\n", true, true),
            (b"incr k 1\r\n", true, false),
            (b"touch k 10 noreply\r\n", true, true),
            (b"get k\r\n", false, false),
            (b"gat 10 k\r\n", false, false),
            (b"flush_all noreply\r\n", false, true),
            (b"verbosity 1 noreply\r\n", false, true),
            (b"version\r\n", false, false),
        ] {
            let r = req(line);
            assert_eq!((r.is_write(), r.noreply()), (write, noreply), "{}", String::from_utf8_lossy(line));
            assert_eq!(r.key().is_some(), write);
        }
        let Parsed::Request { req: r @ Request::TooLarge { .. }, .. } = p(b"set k 0 0 2000000 noreply\r\n") else {
            panic!("a set over -I is TooLarge")
        };
        assert!(r.is_write() && r.noreply());
    }

    #[test]
    fn retrieval_lines() {
        let Request::Get { kind, keys, .. } = req(b"get a  b c\r\n") else { panic!() };
        assert_eq!(kind, GetKind::Get);
        assert_eq!(keys.iter().collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(err(b"get\r\n").0, ERROR);
        assert_eq!(err(b"gat\r\n").0, ERROR);
        assert_eq!(err(b"gat x a\r\n").0, BAD_EXPTIME);
        // memcached answers a bare "gat 1" with END.
        let Request::Get { keys, exptime: 1, .. } = req(b"gat 1\r\n") else { panic!() };
        assert_eq!(keys.iter().count(), 0);
        let long = [b"get a ".as_slice(), &[b'k'; 251], b" b\r\n"].concat();
        assert_eq!(err(&long).0, BAD_FORMAT);
        assert_eq!(err(b"get\tx\r\n").0, ERROR);
    }

    #[test]
    fn other_command_errors_match_memcached() {
        assert_eq!(err(b"\r\n"), (ERROR, 2, false));
        assert_eq!(err(b"GET a\r\n").0, ERROR);
        assert_eq!(err(b"delete\r\n").0, ERROR);
        assert_eq!(err(b"delete a 1\r\n").0, DELETE_USAGE);
        assert_eq!(err(b"incr a\r\n").0, ERROR);
        assert_eq!(err(b"incr a abc\r\n").0, BAD_DELTA);
        assert_eq!(err(b"incr a -1\r\n").0, BAD_DELTA);
        assert_eq!(err(b"incr a 18446744073709551616\r\n").0, BAD_DELTA);
        assert_eq!(err(b"touch a\r\n").0, ERROR);
        assert_eq!(err(b"touch a x\r\n").0, BAD_EXPTIME);
        assert_eq!(err(b"flush_all x\r\n").0, BAD_EXPTIME);
        assert_eq!(err(b"verbosity\r\n").0, ERROR);
        assert_eq!(err(b"verbosity x\r\n").0, BAD_FORMAT);
        assert_eq!(err(b"verbosity noreply\r\n"), (ERROR, 19, true));
        assert_eq!(req(b"flush_all 0 foo\r\n"), Request::FlushAll { delay: 0, noreply: false });
        assert_eq!(req(b"flush_all -1\r\n"), Request::FlushAll { delay: -1, noreply: false });
        assert_eq!(req(b"flush_all noreply\r\n"), Request::FlushAll { delay: 0, noreply: true });
        assert_eq!(req(b"delete a 0 noreply\r\n"), Request::Delete { key: b"a", noreply: true });
        assert_eq!(req(b"delete a noreply\r\n"), Request::Delete { key: b"a", noreply: true });
    }

    #[test]
    fn framing_follows_memcached() {
        // "delete noreply" names the key noreply and is answered.
        assert_eq!(req(b"delete noreply\r\n"), Request::Delete { key: b"noreply", noreply: false });
        assert_eq!(req(b"delete noreply noreply\r\n"), Request::Delete { key: b"noreply", noreply: true });
        // bget is get.
        let Request::Get { kind: GetKind::Get, keys, .. } = req(b"bget k\r\n") else { panic!() };
        assert_eq!(keys.iter().collect::<Vec<_>>(), vec![&b"k"[..]]);
        assert_eq!(err(b"bget\r\n").0, ERROR);
    }

    /// A line longer than 2,048 bytes that ends in a newline is answered,
    /// wherever the reads that bring it are cut, when the rest is already
    /// there: the parser's Close on a long partial line is a close only if
    /// nothing more has arrived (the connection checks), as memcached
    /// answers `ERROR ERROR END` when it all arrives in one read.
    #[test]
    fn long_lines_are_answered_however_they_arrive() {
        let stream = [vec![b'x'; 2000], b"\r\n".to_vec(), vec![b'y'; 2100], b"\r\nget k\r\n".to_vec()].concat();
        for cut in 0..stream.len() {
            let mut got = Vec::new();
            let mut off = 0;
            for end in [cut, stream.len()] {
                loop {
                    match p(&stream[off..end]) {
                        Parsed::Incomplete { .. } => break,
                        Parsed::Error { msg, consumed, .. } => {
                            got.push(msg.to_string());
                            off += consumed;
                        }
                        Parsed::Request { req, consumed, .. } => {
                            got.push(format!("{req:?}"));
                            off += consumed;
                        }
                        Parsed::Close { msg: None } if end < stream.len() => {
                            assert!(!stream[off..end].contains(&b'\n'));
                            assert!(end - off > MAX_LINE_WITHOUT_NEWLINE && end - off < READ_BUFFER);
                            break;
                        }
                        Parsed::Close { .. } => panic!("closed at cut {cut}"),
                    }
                    if off == end {
                        break;
                    }
                }
            }
            assert_eq!(got.len(), 3, "cut {cut}: {got:?}");
            assert_eq!(&got[..2], &[ERROR, ERROR]);
        }
        // A non-get line whose newline lies past memcached's 16 KiB read
        // buffer closes the connection, whole or in pieces.
        let long = [vec![b'y'; READ_BUFFER], b"\r\n".to_vec()].concat();
        assert_eq!(p(&long), Parsed::Close { msg: None });
        assert_eq!(p(&long[..READ_BUFFER - 1]), Parsed::Close { msg: None });
        assert_eq!(p(&long[..MAX_LINE_WITHOUT_NEWLINE]), Parsed::Incomplete { need: 0 });
    }

    /// 10,000 keys of 250 bytes (2.5 MB, as memcached answers): answered
    /// in parts as the line arrives, whatever the reads; the keys come out
    /// all and in order, and no part needs more than a 16 KiB buffer.
    #[test]
    fn a_get_line_of_any_length_is_answered_key_by_key() {
        let keys: Vec<Vec<u8>> = (0..10_000).map(|i| format!("{i:0>250}").into_bytes()).collect();
        let mut line = b"get".to_vec();
        for k in &keys {
            line.push(b' ');
            line.extend_from_slice(k);
        }
        line.extend_from_slice(b"\r\nversion\r\n");
        for read in [1000usize, 4096, 16384, 65536] {
            let (mut buf, mut fed, mut got) = (Vec::new(), 0, Vec::new());
            let mut rest: Option<(GetKind, i64)> = None;
            let mut ends = 0;
            loop {
                let r = match rest {
                    Some((kind, exptime)) => parse_get_rest(&buf, kind, exptime),
                    None => p(&buf),
                };
                match r {
                    Parsed::Incomplete { .. } => {
                        assert!(fed < line.len(), "stuck");
                        let n = read.min(line.len() - fed);
                        buf.extend_from_slice(&line[fed..fed + n]);
                        fed += n;
                        assert!(buf.len() <= READ_BUFFER + read, "buffer of {}", buf.len());
                    }
                    Parsed::Request { req, consumed, .. } => {
                        match req {
                            Request::GetPart { kind, exptime, keys } => {
                                got.extend(keys.iter().map(<[u8]>::to_vec));
                                rest = Some((kind, exptime));
                            }
                            Request::Get { keys, .. } => {
                                got.extend(keys.iter().map(<[u8]>::to_vec));
                                rest = None;
                                ends += 1;
                            }
                            Request::Version => {
                                buf.drain(..consumed);
                                break;
                            }
                            other => panic!("{other:?}"),
                        }
                        buf.drain(..consumed);
                    }
                    other => panic!("read {read}: {other:?}"),
                }
            }
            assert_eq!(ends, 1);
            assert!(got == keys, "read {read}: {} keys", got.len());
        }
        // A key over 250 bytes in a long line: the error, then a close.
        let mut bad = b"get a ".to_vec();
        bad.resize(READ_BUFFER + 300, b'k');
        bad.push(b' ');
        assert_eq!(p(&bad), Parsed::Close { msg: Some(BAD_FORMAT) });
    }

    #[test]
    fn http_requests_close_the_connection() {
        assert_eq!(p(b"GET / HTTP/1.1\r\n"), Parsed::Close { msg: None });
        // A get of a key named like an HTTP version is still a get.
        assert!(matches!(p(b"get x HTTP/1.1\r\n"), Parsed::Request { .. }));
    }

    #[test]
    fn long_lines_without_newline() {
        let junk = vec![b'x'; MAX_LINE_WITHOUT_NEWLINE + 1];
        assert_eq!(p(&junk), Parsed::Close { msg: None });
        let mut get = b"get ".to_vec();
        get.resize(MAX_LINE_WITHOUT_NEWLINE + 10, b'k');
        assert_eq!(p(&get), Parsed::Incomplete { need: 0 });
        get.resize(READ_BUFFER + 10, b'k');
        assert_eq!(p(&get), Parsed::Close { msg: Some(BAD_FORMAT) }, "one key of 16 KiB");
        // A long line that arrives whole is parsed like any other.
        let mut set = b"set ".to_vec();
        set.resize(3000, b'k');
        set.extend_from_slice(b" 0 0 1\r\n");
        assert_eq!(err(&set).0, BAD_FORMAT);
    }
}
