//! Replies in memcached's text protocol, written straight into an output
//! buffer so that a batch of pipelined requests becomes one write.
//!
//! Pure: imports nothing of memcore's; must not import storage, route,
//! repl, server, stats or config.

pub const STORED: &[u8] = b"STORED\r\n";
pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
pub const EXISTS: &[u8] = b"EXISTS\r\n";
pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
pub const DELETED: &[u8] = b"DELETED\r\n";
pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
pub const END: &[u8] = b"END\r\n";
pub const OK: &[u8] = b"OK\r\n";
pub const RESET: &[u8] = b"RESET\r\n";
pub const ERROR: &[u8] = b"ERROR\r\n";
pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
pub const NO_MEMORY: &[u8] = b"SERVER_ERROR out of memory storing object\r\n";
pub const ARITH_NO_MEMORY: &[u8] = b"SERVER_ERROR out of memory\r\n";
pub const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
pub const FLUSH_DISABLED: &[u8] = b"CLIENT_ERROR flush_all not allowed\r\n";
pub const SHUTDOWN_DISABLED: &[u8] = b"ERROR: shutdown not enabled\r\n";
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// The `VALUE <key> <flags> <bytes> [<cas>]` line; the caller appends the
/// data and its CRLF.
pub fn encode_value_head(out: &mut Vec<u8>, key: &[u8], flags: u32, len: usize, cas: Option<u64>) {
    out.reserve(key.len() + len + 48);
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    encode_u64(out, flags as u64);
    out.push(b' ');
    encode_u64(out, len as u64);
    if let Some(cas) = cas {
        out.push(b' ');
        encode_u64(out, cas);
    }
    out.extend_from_slice(b"\r\n");
}

/// A reply line: the text and CRLF.
pub fn encode_line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The decimal result of incr/decr.
pub fn encode_number_line(out: &mut Vec<u8>, v: u64) {
    encode_u64(out, v);
    out.extend_from_slice(b"\r\n");
}

/// `STAT <name> <value>\r\n`
pub fn encode_stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "STAT {name} {value}\r\n");
}

pub fn encode_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A key as memcached's metadump writes it: letters, digits and `-._~`
/// as they are, every other byte as `%XX`.
pub fn encode_uri(out: &mut Vec<u8>, key: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines_match_memcached() {
        let mut out = Vec::new();
        encode_value_head(&mut out, b"k", 0, 3, None);
        encode_value_head(&mut out, b"k", 4294967295, 0, Some(18446744073709551615));
        assert_eq!(out, b"VALUE k 0 3\r\nVALUE k 4294967295 0 18446744073709551615\r\n".to_vec());
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        for v in [0, 9, 10, 1234567890, u64::MAX] {
            out.clear();
            encode_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }

    #[test]
    fn metadump_keys_are_uri_encoded_as_memcached_does() {
        let mut out = Vec::new();
        encode_uri(&mut out, b"a-Z.9_~:/%\xff");
        assert_eq!(out, b"a-Z.9_~%3A%2F%25%FF");
    }
}
