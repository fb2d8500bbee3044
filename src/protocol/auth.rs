//! memcached's ASCII authentication (`-Y FILE`): what a connection may say
//! before it has authenticated. Pure: bytes in, a verdict out; the
//! credentials and the connection's state are the server's.
//!
//! ```text
//! set <key> <flags> <exptime> <bytes> [anything]\r\n   (\n alone ends it too)
//! <user> <password> [anything]\r\n                      (<bytes> bytes, then \r\n)
//! ```
//!
//! As memcached 1.6.18's `try_read_command_asciiauth`: the line is split on
//! spaces (runs of them count as one); it must have at least five words, the
//! first exactly `set`, the fifth a number (strtoul's: an optional `+`,
//! digits, then a space, a control character or the end). Anything else,
//! `quit` and garbage included, is answered `CLIENT_ERROR unauthenticated`
//! and the connection stays open. Key, flags, exptime and `noreply` are
//! ignored; the data block must end in `\r\n` (else `bad command line
//! termination`) and hold at least two space-separated words (else `bad
//! authentication token format`): the user and the password.
//!
//! Bounds (hostile input): a line longer than `MAX_LINE` bytes closes the
//! connection (memcached closes when 1 KiB came without a newline; memcore
//! also when the newline came in the same read, so that the verdict does
//! not depend on how the bytes were cut); a data block longer than
//! `MAX_TOKEN` closes it too (memcached waits for it in a fixed buffer and
//! drops the connection when it cannot fit).
//!
//! Imports nothing of memcore's.

/// Bytes of a line without a newline before the connection is closed.
pub const MAX_LINE: usize = 1024;
/// Largest `<bytes>` an authentication `set` may announce.
pub const MAX_TOKEN: usize = 8192;

pub const UNAUTHENTICATED: &str = "CLIENT_ERROR unauthenticated";
pub const BAD_TERMINATION: &str = "CLIENT_ERROR bad command line termination";
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad authentication token format";
pub const FAILURE: &str = "CLIENT_ERROR authentication failure";

/// What the buffered bytes say, before authentication.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate<'a> {
    /// Not enough bytes yet: the buffer must reach `need` bytes (0: unknown,
    /// read what comes).
    Incomplete { need: usize },
    /// Answer this line and drop `consumed` bytes; still unauthenticated.
    Refuse { msg: &'static str, consumed: usize },
    /// Check these credentials, then drop `consumed` bytes.
    Attempt { user: &'a [u8], password: &'a [u8], consumed: usize },
    /// Hostile or hopeless input: close the connection.
    Close,
}

/// Read what an unauthenticated connection sent (`buf` starts at a command).
pub fn parse_gate(buf: &[u8]) -> Gate<'_> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE { Gate::Close } else { Gate::Incomplete { need: 0 } };
    };
    if nl > MAX_LINE {
        // Closed whether or not its newline came in the same read, so that
        // the verdict does not depend on how the bytes were cut.
        return Gate::Close;
    }
    let line = &buf[..nl];
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').filter(|w| !w.is_empty()).take(5).collect();
    let size = match words.as_slice() {
        [b"set", _, _, _, n] => strtoul(n),
        _ => None,
    };
    let Some(size) = size else {
        return Gate::Refuse { msg: UNAUTHENTICATED, consumed: nl + 1 };
    };
    if size > MAX_TOKEN {
        return Gate::Close;
    }
    let start = nl + 1;
    let end = start + size + 2;
    if buf.len() < end {
        return Gate::Incomplete { need: end };
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Gate::Refuse { msg: BAD_TERMINATION, consumed: end };
    }
    let mut words = buf[start..end - 2].split(|&b| b == b' ').filter(|w| !w.is_empty());
    match (words.next(), words.next()) {
        (Some(user), Some(password)) => Gate::Attempt { user, password, consumed: end },
        _ => Gate::Refuse { msg: BAD_FORMAT, consumed: end },
    }
}

/// C's strtoul as memcached's `safe_strtoul` uses it on one word: optional
/// `+`, decimal digits, then whitespace or the end (the word may carry the
/// line's `\r`). The result is truncated to 32 bits, as memcached stores it.
fn strtoul(word: &[u8]) -> Option<usize> {
    let digits = word.strip_prefix(b"+").unwrap_or(word);
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || !digits[n..].first().is_none_or(|&b| b.is_ascii_whitespace()) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in &digits[..n] {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((v & 0xffff_ffff) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_with_user_and_password_is_an_attempt() {
        let req = b"set foo 0 0 13\r\nalice secret1\r\nget a\r\n";
        assert_eq!(parse_gate(req), Gate::Attempt { user: b"alice", password: b"secret1", consumed: 31 });
        // Extra words, runs of spaces, \n alone and noreply are as memcached.
        let req = b"set  foo 0 0 +20 noreply\nbob  pw2 extra words\r\n";
        assert_eq!(parse_gate(req), Gate::Attempt { user: b"bob", password: b"pw2", consumed: req.len() });
    }

    #[test]
    fn every_other_command_is_unauthenticated() {
        for line in [&b"get foo\r\n"[..], b"quit\r\n", b"set foo 0 0\r\n", b"add a 0 0 3\r\n", b"set a 0 0 -1\r\n"] {
            assert_eq!(parse_gate(line), Gate::Refuse { msg: UNAUTHENTICATED, consumed: line.len() });
        }
        assert_eq!(parse_gate(b"SET a 0 0 1\r\n"), Gate::Refuse { msg: UNAUTHENTICATED, consumed: 13 });
    }

    #[test]
    fn bad_blocks_are_answered_as_memcached() {
        assert_eq!(parse_gate(b"set a 0 0 5\r\nhello\r\n"), Gate::Refuse { msg: BAD_FORMAT, consumed: 20 });
        assert_eq!(parse_gate(b"set a 0 0 6\r\nalice \r\n"), Gate::Refuse { msg: BAD_FORMAT, consumed: 21 });
        assert_eq!(parse_gate(b"set a 0 0 3\r\nab cXX"), Gate::Refuse { msg: BAD_TERMINATION, consumed: 18 });
    }

    #[test]
    fn cut_at_every_byte_waits_for_the_rest() {
        let req = b"set foo 0 0 13\r\nalice secret1\r\n";
        for cut in 0..req.len() {
            assert!(matches!(parse_gate(&req[..cut]), Gate::Incomplete { .. }), "cut at {cut}");
        }
    }

    #[test]
    fn hostile_lengths_close() {
        assert_eq!(parse_gate(&[b'a'; MAX_LINE + 1]), Gate::Close);
        let mut long = vec![b'a'; MAX_LINE + 1];
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_gate(&long), Gate::Close);
        assert_eq!(parse_gate(b"set a 0 0 100000\r\n"), Gate::Close);
        assert_eq!(
            parse_gate(b"set a 0 0 99999999999999999999999\r\n"),
            Gate::Refuse { msg: UNAUTHENTICATED, consumed: 35 }
        );
    }
}
