//! Keys and values chosen to hurt the server (issue 17, points 2 and 4):
//! keys solved against the index hash that memcore once used with a fixed,
//! public seed, and appends that would build an item past `-I`.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

const K: u64 = 0x9E37_79B9_7F4A_7C15;
const C1: u64 = 0xff51_afd7_ed55_8ccd;
const C2: u64 = 0xc4ce_b9fe_1a85_ec53;
/// The index's seed up to fc6ff6e (src/storage/mod.rs, INDEX_SEED).
const OLD_INDEX_SEED: u64 = 0x5851_F42D_4C95_7F2D;

/// The index hash up to fc6ff6e, for a 16-byte key.
fn old_hash(key: &[u8; 16], seed: u64) -> u64 {
    let w0 = u64::from_le_bytes(key[..8].try_into().unwrap());
    let w1 = u64::from_le_bytes(key[8..].try_into().unwrap());
    let mut h = seed ^ 16u64.wrapping_mul(K);
    h = (h ^ w0).wrapping_mul(K).rotate_left(29);
    h = (h ^ w1).wrapping_mul(K).rotate_left(29);
    h ^= h >> 33;
    h = h.wrapping_mul(C1);
    h ^= h >> 33;
    h = h.wrapping_mul(C2);
    h ^ (h >> 33)
}

/// The inverse of an odd number modulo 2^64 (Newton's iteration).
fn inverse(c: u64) -> u64 {
    let mut x = c;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
    }
    x
}

/// `count` printable 16-byte keys whose old hash is `target`: the first 8
/// bytes are free, the last 8 solved (every step of the old hash is
/// invertible), kept when they are printable too.
fn keys_with_old_hash(target: u64, count: usize) -> Vec<String> {
    let mut h = target;
    h ^= h >> 33;
    h = h.wrapping_mul(inverse(C2));
    h ^= h >> 33;
    h = h.wrapping_mul(inverse(C1));
    h ^= h >> 33;
    let before_w1 = h.rotate_right(29).wrapping_mul(inverse(K));
    let printable = |b: &[u8]| b.iter().all(|&c| (b'!'..=b'~').contains(&c));
    let mut rng = Rng::new(17);
    let mut keys = Vec::new();
    while keys.len() < count {
        let head: [u8; 8] = std::array::from_fn(|_| b'a' + rng.below(26) as u8);
        let h1 = (OLD_INDEX_SEED ^ 16u64.wrapping_mul(K) ^ u64::from_le_bytes(head)).wrapping_mul(K).rotate_left(29);
        let tail = (before_w1 ^ h1).to_le_bytes();
        if printable(&tail) {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&head);
            key[8..].copy_from_slice(&tail);
            assert_eq!(old_hash(&key, OLD_INDEX_SEED), target, "the solver is wrong");
            keys.push(String::from_utf8(key.to_vec()).unwrap());
        }
    }
    keys
}

/// Up to fc6ff6e, the 17th of these keys made the index grow until the
/// process ran out of memory (1.29 GiB in 16 s on `-m 64`). Now each core
/// hashes with a secret key of its own: they are ordinary keys.
fn keys_solved_against_the_old_index_hash_cost_nothing(threads: usize) {
    let Some(s) = Server::start_custom_or_skip("keys_solved_against_the_old_index_hash", threads, &["-m", "64"]) else {
        return;
    };
    let pid = s.pid();
    let rss_before = pid.map(rss_bytes);
    let keys = keys_with_old_hash(0x0123_4567_89AB_CDEF, 200);
    let mut c = s.conn();
    for (i, k) in keys.iter().enumerate() {
        let reply = c.request(&store_cmd("set", k, 0, 0, format!("v{i}").as_bytes()));
        assert_bytes!(reply, b"STORED\r\n");
    }
    for (i, k) in keys.iter().enumerate() {
        let want = [value(k, 0, format!("v{i}").as_bytes()), b"END\r\n".to_vec()].concat();
        assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), want);
    }
    let all = format!("get {}\r\n", keys.join(" "));
    let reply = c.request(all.as_bytes());
    assert_eq!(reply.windows(6).filter(|w| w == b"VALUE ").count(), keys.len());
    if let (Some(pid), Some(before)) = (pid, rss_before) {
        let after = rss_bytes(pid);
        assert!(after < before + (16 << 20), "RSS grew from {before} to {after} bytes");
    }
}

#[test]
fn keys_solved_against_the_old_index_hash_cost_nothing_on_one_core() {
    keys_solved_against_the_old_index_hash_cost_nothing(1);
}

#[test]
fn keys_solved_against_the_old_index_hash_cost_nothing_on_two_cores() {
    keys_solved_against_the_old_index_hash_cost_nothing(2);
}

/// -I 1m (the default): memcached 1.6.18 answers NOT_STORED to an append or
/// prepend whose result would be too large, and keeps the item; memcore
/// does the same, compressing or not (the limit is on the value clients see).
fn appends_past_the_item_size_limit_are_not_stored(threads: usize, args: &[&str]) {
    let Some(s) = Server::start_custom_or_skip("appends_past_the_item_size_limit", threads, args) else {
        return;
    };
    let mut c = s.conn();
    let k = uniq("nearly-full");
    let base = vec![b'0'; (1 << 20) - 2000];
    assert_bytes!(c.request(&store_cmd("set", &k, 3, 0, &base)), b"STORED\r\n");
    assert_bytes!(c.request(&store_cmd("append", &k, 0, 0, &[b'a'; 1000])), b"STORED\r\n");
    assert_bytes!(c.request(&store_cmd("prepend", &k, 0, 0, &[b'p'; 500])), b"STORED\r\n");
    let want = [&[b'p'; 500][..], &base, &[b'a'; 1000]].concat();
    for (cmd, chunk) in [("append", 1000), ("prepend", 1000), ("append", 1 << 19)] {
        assert_bytes!(c.request(&store_cmd(cmd, &k, 0, 0, &vec![b'x'; chunk])), b"NOT_STORED\r\n");
    }
    // noreply: nothing said, nothing changed.
    c.send(&[format!("append {k} 0 0 1000 noreply\r\n").as_bytes(), &[b'y'; 1000], b"\r\n"].concat());
    let got = c.request(format!("get {k}\r\n").as_bytes());
    assert_bytes!(got, [value(&k, 3, &want), b"END\r\n".to_vec()].concat());
}

/// Flags memcached does not know, given only to memcore.
fn memcore_only<'a>(args: &'a [&'a str]) -> &'a [&'a str] {
    if Server::custom_bin().is_some_and(|(_, k)| k == Kind::Memcore) { args } else { &[] }
}

#[test]
fn appends_past_the_item_size_limit_are_not_stored_on_one_core() {
    appends_past_the_item_size_limit_are_not_stored(1, memcore_only(&["--compress", "off"]));
}

#[test]
fn appends_past_the_item_size_limit_are_not_stored_on_two_cores_compressing() {
    appends_past_the_item_size_limit_are_not_stored(2, memcore_only(&["--compress", "on", "--compress-min", "1"]));
}

/// Zeros compress a thousandfold: before the check on the result, appends
/// of 1 MB of zeros built values of hundreds of MB for ~1 KB of -m each.
#[test]
fn an_append_chain_cannot_build_an_item_above_the_item_size_limit() {
    let Some(s) = Server::start_custom_or_skip("an_append_chain", 2, &[]) else {
        return;
    };
    let mut c = s.conn();
    let k = uniq("zeros");
    let chunk = vec![b'0'; 100_000];
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, &chunk)), b"STORED\r\n");
    let mut stored = 1;
    for _ in 0..30 {
        let reply = c.request(&store_cmd("append", &k, 0, 0, &chunk));
        match &reply[..] {
            b"STORED\r\n" => stored += 1,
            b"NOT_STORED\r\n" => {}
            _ => panic!("append: {}", show(&reply)),
        }
    }
    assert_eq!(stored, 10, "ten chunks of 100,000 bytes fit in -I 1m, the eleventh does not");
    let head = c.request(format!("get {k}\r\n").as_bytes());
    assert!(head.starts_with(format!("VALUE {k} 0 1000000\r\n").as_bytes()), "{}", show(&head[..head.len().min(64)]));
    // A server that stalled on a huge value would miss this deadline.
    assert!(poll_until(Duration::from_secs(2), || c.request(b"version\r\n").starts_with(b"VERSION ")));
}
