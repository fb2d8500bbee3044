//! What memcached counts for an item against `-I`, shared by the two rooms
//! that refuse an item for its size: the parser (a storage command whose
//! item is too large, before its data arrives) and the store (an append or
//! prepend whose result is too large). Also how memcached reads a number,
//! shared by the same two: the parser's numeric tokens and the store's
//! `incr`/`decr` on a stored value. A leaf: imports nothing of memcore's.

/// Per-item header memcached counts against `-I` (its 48-byte item struct
/// plus the 8-byte CAS). Counting the same keeps the same values acceptable.
pub const ITEM_HEADER_SIZE: usize = 56;

/// Size memcached charges an item against `-I`: header, key and its NUL,
/// the flags suffix when flags are non-zero, the value and its CRLF.
pub fn item_total_size(key_len: usize, flags: u32, value_len: usize) -> usize {
    ITEM_HEADER_SIZE + key_len + 1 + if flags != 0 { 4 } else { 0 } + value_len + 2
}

/// C's `isspace` in the "C" locale.
pub fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// memcached's `safe_strtoull` (glibc `strtoull`, base 10) on `s` read as
/// a C string, so `s` ends at its first NUL. Leading whitespace and one
/// `+` or `-` are skipped; at least one digit; the digits may be followed
/// only by the end or a whitespace byte (then anything). Past 2^64-1 is
/// refused (`ERANGE`). A negative number wraps modulo 2^64 (so `-0` is 0,
/// and `-18446744073709551615` is 1), and is refused only when the result is
/// 2^63 or more and `s` has a `-`.
pub fn c_strtoull(s: &[u8]) -> Option<u64> {
    let (neg, v) = c_number(s)?;
    let v = if neg { v.wrapping_neg() } else { v };
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    ((v as i64) >= 0 || !s.contains(&b'-')).then_some(v)
}

/// The sign and magnitude `strtoull`/`strtol` read from `s` (see
/// `c_strtoull`), before memcached's checks of the sign.
pub fn c_number(s: &[u8]) -> Option<(bool, u64)> {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    let mut i = s.iter().take_while(|&&b| c_space(b)).count();
    let neg = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while let Some(&b) = s.get(i).filter(|b| b.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
        i += 1;
    }
    if i == start || s.get(i).is_some_and(|&b| !c_space(b)) {
        return None;
    }
    Some((neg, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against memcached 1.6.18 (incr deltas, and incr on stored
    /// values).
    #[test]
    fn numbers_read_as_memcached_reads_them() {
        for (s, want) in [
            (&b"123"[..], Some(123)),
            (b"+5", Some(5)),
            (b"-0", Some(0)),
            (b"-1", None),
            (b"-18446744073709551615", Some(1)),
            (b"-9223372036854775809", Some(9223372036854775807)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"0000000000000000000000009", Some(9)),
            (b"\t7", Some(7)),
            (b"\x0b7", Some(7)),
            (b"7\tx", Some(7)),
            (b"7 -", Some(7)),
            (b"9223372036854775808 -", None),
            (b"0\0b", Some(0)),
            (b"12abc", None),
            (b"+-1", None),
            (b"-", None),
            (b"", None),
            (b" ", None),
        ] {
            assert_eq!(c_strtoull(s), want, "{:?}", String::from_utf8_lossy(s));
        }
    }
}
