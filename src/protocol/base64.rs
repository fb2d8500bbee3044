//! Base64 as memcached 1.6 applies it to meta keys (its base64.c): the
//! standard alphabet with `=` padding, no line breaks. Decoding skips bytes
//! outside the alphabet, needs a multiple of four alphabet bytes, and stops
//! at the first padded block; an empty result is a failure.

const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decode `src` into `out`; the decoded length, or None where memcached's
/// `base64_decode` returns 0 (nothing decodable, a count of alphabet bytes
/// not a multiple of four, a result longer than `out`, bad padding).
pub fn decode(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let count = src.iter().filter(|&&b| value(b).is_some()).count();
    if count == 0 || count % 4 != 0 || count / 4 * 3 > out.len() {
        return None;
    }
    let (mut pos, mut n, mut pad) = (0usize, 0usize, 0usize);
    let mut block = [0u8; 4];
    for &b in src {
        let Some(v) = value(b) else { continue };
        if b == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            out[pos] = (block[0] << 2) | (block[1] >> 4);
            out[pos + 1] = (block[1] << 4) | (block[2] >> 2);
            out[pos + 2] = (block[2] << 6) | block[3];
            pos += 3;
            n = 0;
            if pad > 0 {
                match pad {
                    1 => pos -= 1,
                    2 => pos -= 2,
                    _ => return None,
                }
                break;
            }
        }
    }
    (pos > 0).then_some(pos)
}

/// Append the encoding of `src` to `out`.
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    let mut chunks = src.chunks_exact(3);
    for c in &mut chunks {
        out.extend_from_slice(&[
            TABLE[(c[0] >> 2) as usize],
            TABLE[(((c[0] & 3) << 4) | (c[1] >> 4)) as usize],
            TABLE[(((c[1] & 0x0f) << 2) | (c[2] >> 6)) as usize],
            TABLE[(c[2] & 0x3f) as usize],
        ]);
    }
    match *chunks.remainder() {
        [a] => out.extend_from_slice(&[TABLE[(a >> 2) as usize], TABLE[((a & 3) << 4) as usize], b'=', b'=']),
        [a, b] => out.extend_from_slice(&[
            TABLE[(a >> 2) as usize],
            TABLE[(((a & 3) << 4) | (b >> 4)) as usize],
            TABLE[((b & 0x0f) << 2) as usize],
            b'=',
        ]),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; 64];
        decode(s, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn round_trips_every_length() {
        for len in 1..40usize {
            let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let mut enc = Vec::new();
            encode(&src, &mut enc);
            assert_eq!(enc.len(), len.div_ceil(3) * 4);
            assert_eq!(dec(&enc).unwrap(), src);
        }
    }

    #[test]
    fn decoding_follows_memcached() {
        assert_eq!(dec(b"44OG44K544OI").unwrap(), "テスト".as_bytes());
        assert_eq!(dec(b"Zm9v").unwrap(), b"foo");
        assert_eq!(dec(b"Zm8="), Some(b"fo".to_vec()));
        assert_eq!(dec(b"Zg=="), Some(b"f".to_vec()));
        assert_eq!(dec(b"Zm9"), None, "not a multiple of four");
        assert_eq!(dec(b"!!!!"), None, "nothing decodable");
        assert_eq!(dec(b"===="), None, "bad padding");
        assert_eq!(dec(b"Zm!9v"), Some(b"foo".to_vec()), "bytes outside the alphabet are skipped");
        assert_eq!(dec(b"Zg==Zm9v"), Some(b"f".to_vec()), "stops at the first padded block");
    }
}
