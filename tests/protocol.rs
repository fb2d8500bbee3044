//! Text-protocol conformance tests. Every expected byte string below was
//! checked against memcached 1.6.18.
//!
//! Run against an external server with MEMCORE_TEST_ADDR=127.0.0.1:PORT.

#[macro_use]
mod common;

use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

/// Every case also runs over a UNIX socket (`-s`, 2 cores), one server
/// for the whole list.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        both_threads!($($name),*);

        #[test]
        fn suite_over_a_unix_socket() {
            if is_external() {
                eprintln!("SKIP suite_over_a_unix_socket: memcore-specific (MEMCORE_TEST_ADDR is set)");
                return;
            }
            let s = Server::start_unix(2, &[]);
            $( $name(&s); )*
        }
    };
}

suite!(
    storage_replies,
    cas_replies,
    append_prepend,
    get_many_keys,
    gat_gats,
    touch_replies,
    delete_replies,
    incr_decr,
    incr_decr_errors,
    flags_range,
    exptime_negative_and_absolute,
    exptime_expires,
    noreply_all,
    unknown_command,
    key_length,
    bad_data_chunk,
    value_too_large,
    bad_length,
    long_line_closes,
    long_get_line,
    get_line_of_ten_thousand_long_keys,
    framing_found_by_random_input,
    meta_commands,
    meta_cas_agrees_with_gets,
    meta_flags_of_later_memcached,
    version_verbosity_quit,
    stats_misc,
    split_requests,
    pipeline_100,
    binary_values,
);

fn storage_replies(s: &Server) {
    let p = uniq("store");
    let mut c = s.conn();
    let k = format!("{p}a");
    assert_bytes!(c.request(&store_cmd("add", &k, 1, 0, b"one")), b"STORED\r\n");
    assert_bytes!(c.request(&store_cmd("add", &k, 2, 0, b"two")), b"NOT_STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 1, b"one"), b"END\r\n".to_vec()].concat());
    assert_bytes!(c.request(&store_cmd("replace", &k, 3, 0, b"three")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 3, b"three"), b"END\r\n".to_vec()].concat());
    let m = format!("{p}missing");
    assert_bytes!(c.request(&store_cmd("replace", &m, 0, 0, b"x")), b"NOT_STORED\r\n");
    assert_bytes!(c.request(format!("get {m}\r\n").as_bytes()), b"END\r\n");
    assert_bytes!(c.request(&store_cmd("set", &k, 4, 0, b"")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), format!("VALUE {k} 4 0\r\n\r\nEND\r\n").as_bytes());
    assert_bytes!(c.request(&store_cmd("set", &k, 5, 0, b"four")), b"STORED\r\n");
    assert_bytes!(c.request(format!("gets {k}\r\n").as_bytes())[..], c.request(format!("gets {k}\r\n").as_bytes())[..]);
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 5, b"four"), b"END\r\n".to_vec()].concat());
}

fn gets_cas(c: &mut Conn, k: &str) -> u64 {
    let r = c.request(format!("gets {k}\r\n").as_bytes());
    let line = String::from_utf8_lossy(&r[..find(&r, b"\r\n").unwrap()]).into_owned();
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 5, "gets header {line:?}");
    assert_eq!(parts[0], "VALUE");
    assert_eq!(parts[1], k);
    parts[4].parse().unwrap_or_else(|_| panic!("bad cas in {line:?}"))
}

fn cas_replies(s: &Server) {
    let p = uniq("cas");
    let mut c = s.conn();
    let k = format!("{p}k");
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"a")), b"STORED\r\n");
    let cas1 = gets_cas(&mut c, &k);
    let r = c.request(format!("gets {k}\r\n").as_bytes());
    assert_bytes!(r, format!("VALUE {k} 0 1 {cas1}\r\na\r\nEND\r\n").as_bytes());
    // wrong cas
    let bad = cas1.wrapping_add(1_000_000);
    assert_bytes!(c.request(format!("cas {k} 0 0 1 {bad}\r\nb\r\n").as_bytes()), b"EXISTS\r\n");
    // missing key
    assert_bytes!(c.request(format!("cas {p}nokey 0 0 1 {cas1}\r\nb\r\n").as_bytes()), b"NOT_FOUND\r\n");
    // right cas
    assert_bytes!(c.request(format!("cas {k} 7 0 1 {cas1}\r\nc\r\n").as_bytes()), b"STORED\r\n");
    let cas2 = gets_cas(&mut c, &k);
    assert_ne!(cas1, cas2, "cas must change after a store");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 7, b"c"), b"END\r\n".to_vec()].concat());
    // stale cas now
    assert_bytes!(c.request(format!("cas {k} 0 0 1 {cas1}\r\nd\r\n").as_bytes()), b"EXISTS\r\n");
    // any store changes the cas: set, append, incr, touch does not
    assert_bytes!(c.request(format!("touch {k} 0\r\n").as_bytes()), b"TOUCHED\r\n");
    assert_eq!(gets_cas(&mut c, &k), cas2, "touch must not change cas");
    assert_bytes!(c.request(&store_cmd("append", &k, 0, 0, b"x")), b"STORED\r\n");
    let cas3 = gets_cas(&mut c, &k);
    assert_ne!(cas3, cas2);
    assert_bytes!(c.request(format!("cas {k} 0 0 1 {cas2}\r\nd\r\n").as_bytes()), b"EXISTS\r\n");
    // missing cas argument: too few tokens for cas -> ERROR, then the data
    // line is parsed as a command -> ERROR
    assert_bytes!(c.request_n(format!("cas {k} 0 0 1\r\nb\r\n").as_bytes(), 2), b"ERROR\r\nERROR\r\n");
    // non-numeric cas
    assert_bytes!(
        c.request_n(format!("cas {k} 0 0 1 abc\r\nb\r\n").as_bytes(), 2),
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n"
    );
    // deleted key: NOT_FOUND
    assert_bytes!(c.request(format!("delete {k}\r\n").as_bytes()), b"DELETED\r\n");
    assert_bytes!(c.request(format!("cas {k} 0 0 1 {cas3}\r\nd\r\n").as_bytes()), b"NOT_FOUND\r\n");
}

fn append_prepend(s: &Server) {
    let p = uniq("app");
    let mut c = s.conn();
    let k = format!("{p}k");
    assert_bytes!(c.request(&store_cmd("append", &k, 0, 0, b"x")), b"NOT_STORED\r\n");
    assert_bytes!(c.request(&store_cmd("prepend", &k, 0, 0, b"x")), b"NOT_STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), b"END\r\n");
    assert_bytes!(c.request(&store_cmd("set", &k, 7, 0, b"bb")), b"STORED\r\n");
    // flags of append/prepend are ignored; the item keeps its flags
    assert_bytes!(c.request(&store_cmd("append", &k, 9, 0, b"cc")), b"STORED\r\n");
    assert_bytes!(c.request(&store_cmd("prepend", &k, 9, 0, b"aa")), b"STORED\r\n");
    assert_bytes!(
        c.request(format!("get {k}\r\n").as_bytes()),
        [value(&k, 7, b"aabbcc"), b"END\r\n".to_vec()].concat()
    );
    assert_bytes!(c.request(&store_cmd("append", &k, 0, 0, b"")), b"STORED\r\n");
    assert_bytes!(c.request(&store_cmd("append", &k, 0, 0, b"\r\n\0")), b"STORED\r\n");
    assert_bytes!(
        c.request(format!("get {k}\r\n").as_bytes()),
        [value(&k, 7, b"aabbcc\r\n\0"), b"END\r\n".to_vec()].concat()
    );
}

fn get_many_keys(s: &Server) {
    let p = uniq("many");
    let mut c = s.conn();
    let mut want = Vec::new();
    let mut keys = Vec::new();
    for i in 0..40 {
        let k = format!("{p}{i}");
        keys.push(k.clone());
        if i % 3 != 0 {
            let data = format!("v{i}").repeat(i % 5);
            assert_bytes!(c.request(&store_cmd("set", &k, i as u32, 0, data.as_bytes())), b"STORED\r\n");
            want.push((k, i as u32, data));
        }
    }
    // request in a scrambled order with repeats; order of the request is kept
    let mut order: Vec<usize> = (0..40).rev().collect();
    order.extend([1, 1, 2, 0, 39]);
    let mut line = String::from("get");
    let mut expect = Vec::new();
    for &i in &order {
        line.push(' ');
        line.push_str(&keys[i]);
        if let Some((k, f, d)) = want.iter().find(|w| w.0 == keys[i]) {
            expect.extend(value(k, *f, d.as_bytes()));
        }
    }
    line.push_str("\r\n");
    expect.extend(b"END\r\n");
    assert_bytes!(c.request(line.as_bytes()), expect);
    // gets: same order, with cas
    let r = c.request(line.replacen("get", "gets", 1).as_bytes());
    let txt = String::from_utf8_lossy(&r);
    let headers: Vec<&str> = txt.split("\r\n").filter(|l| l.starts_with("VALUE ")).collect();
    let expect_keys: Vec<&String> =
        order.iter().map(|&i| &keys[i]).filter(|k| want.iter().any(|w| &w.0 == *k)).collect();
    assert_eq!(headers.len(), expect_keys.len(), "gets reply {}", show(&r));
    for (h, k) in headers.iter().zip(expect_keys) {
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 5, "{h}");
        assert_eq!(parts[1], k.as_str());
        parts[4].parse::<u64>().unwrap();
    }
    assert!(r.ends_with(b"END\r\n"));
    // all misses
    assert_bytes!(c.request(format!("get {p}x {p}y {p}z\r\n").as_bytes()), b"END\r\n");
    // get with no key is an error
    assert_bytes!(c.request(b"get\r\n"), b"ERROR\r\n");
    assert_bytes!(c.request(b"gets\r\n"), b"ERROR\r\n");
}

fn gat_gats(s: &Server) {
    let p = uniq("gat");
    let mut c = s.conn();
    let k = format!("{p}g");
    assert_bytes!(c.request(&store_cmd("set", &k, 3, 0, b"x")), b"STORED\r\n");
    assert_bytes!(
        c.request(format!("gat 100 {k} {p}miss {k}\r\n").as_bytes()),
        [value(&k, 3, b"x"), value(&k, 3, b"x"), b"END\r\n".to_vec()].concat()
    );
    let cas = gets_cas(&mut c, &k);
    assert_bytes!(
        c.request(format!("gats 100 {k}\r\n").as_bytes()),
        format!("VALUE {k} 3 1 {cas}\r\nx\r\nEND\r\n").as_bytes()
    );
    assert_bytes!(c.request(format!("gat 100 {p}miss\r\n").as_bytes()), b"END\r\n");
    assert_bytes!(c.request(format!("gat abc {k}\r\n").as_bytes()), b"CLIENT_ERROR invalid exptime argument\r\n");
    assert_bytes!(c.request(b"gat\r\n"), b"ERROR\r\n");
    // gat with a negative exptime returns the item, then it is gone
    assert_bytes!(c.request(format!("gat -1 {k}\r\n").as_bytes()), [value(&k, 3, b"x"), b"END\r\n".to_vec()].concat());
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), b"END\r\n");
    // gat sets a new exptime that really expires
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"y")), b"STORED\r\n");
    assert_bytes!(c.request(format!("gat 1 {k}\r\n").as_bytes()), [value(&k, 0, b"y"), b"END\r\n".to_vec()].concat());
    let gone = poll_until(Duration::from_secs(4), || c.request(format!("get {k}\r\n").as_bytes()) == b"END\r\n");
    assert!(gone, "item touched to 1 s by gat never expired");
}

fn touch_replies(s: &Server) {
    let p = uniq("touch");
    let mut c = s.conn();
    let k = format!("{p}t");
    assert_bytes!(c.request(format!("touch {k} 10\r\n").as_bytes()), b"NOT_FOUND\r\n");
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 1, b"x")), b"STORED\r\n");
    // Set after it with the same 1 s: once this one is gone, so is the
    // moment the first would have expired.
    let witness = format!("{p}w");
    assert_bytes!(c.request(&store_cmd("set", &witness, 0, 1, b"w")), b"STORED\r\n");
    assert_bytes!(c.request(format!("touch {k} 0\r\n").as_bytes()), b"TOUCHED\r\n");
    assert_bytes!(c.request(format!("touch {k} abc\r\n").as_bytes()), b"CLIENT_ERROR invalid exptime argument\r\n");
    assert_bytes!(c.request(format!("touch {k}\r\n").as_bytes()), b"ERROR\r\n");
    // touched to never expire: still there after the original 1 s
    let passed =
        poll_until(Duration::from_secs(5), || c.request(format!("get {witness}\r\n").as_bytes()) == b"END\r\n");
    assert!(passed, "an item set with exptime 1 never expired");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"x"), b"END\r\n".to_vec()].concat());
    assert_bytes!(c.request(format!("touch {k} -1\r\n").as_bytes()), b"TOUCHED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), b"END\r\n");
    assert_bytes!(c.request(format!("touch {k} 10\r\n").as_bytes()), b"NOT_FOUND\r\n");
}

fn delete_replies(s: &Server) {
    let p = uniq("del");
    let mut c = s.conn();
    let k = format!("{p}d");
    assert_bytes!(c.request(format!("delete {k}\r\n").as_bytes()), b"NOT_FOUND\r\n");
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"x")), b"STORED\r\n");
    assert_bytes!(c.request(format!("delete {k}\r\n").as_bytes()), b"DELETED\r\n");
    assert_bytes!(c.request(format!("delete {k}\r\n").as_bytes()), b"NOT_FOUND\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), b"END\r\n");
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"x")), b"STORED\r\n");
    // legacy "delete key 0" is accepted
    assert_bytes!(c.request(format!("delete {k} 0\r\n").as_bytes()), b"DELETED\r\n");
    // any other time argument is refused
    assert_bytes!(
        c.request(format!("delete {k} 5\r\n").as_bytes()),
        b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
    );
    assert_bytes!(c.request(b"delete\r\n"), b"ERROR\r\n");
}

fn incr_decr(s: &Server) {
    let p = uniq("incr");
    let mut c = s.conn();
    let k = format!("{p}n");
    assert_bytes!(c.request(format!("incr {k} 1\r\n").as_bytes()), b"NOT_FOUND\r\n");
    assert_bytes!(c.request(format!("decr {k} 1\r\n").as_bytes()), b"NOT_FOUND\r\n");
    assert_bytes!(c.request(&store_cmd("set", &k, 5, 0, b"1")), b"STORED\r\n");
    assert_bytes!(c.request(format!("incr {k} 1\r\n").as_bytes()), b"2\r\n");
    assert_bytes!(c.request(format!("incr {k} 98\r\n").as_bytes()), b"100\r\n");
    // flags are kept, value grows
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 5, b"100"), b"END\r\n".to_vec()].concat());
    assert_bytes!(c.request(format!("decr {k} 1\r\n").as_bytes()), b"99\r\n");
    // memcached may leave the shrunk number space-padded ("99 ") when it
    // updates in place; accept either representation.
    let r = c.request(format!("get {k}\r\n").as_bytes());
    let a = [value(&k, 5, b"99"), b"END\r\n".to_vec()].concat();
    let b = [value(&k, 5, b"99 "), b"END\r\n".to_vec()].concat();
    assert!(r == a || r == b, "after decr: {}", show(&r));
    // decr clamps at 0
    assert_bytes!(c.request(format!("decr {k} 1000\r\n").as_bytes()), b"0\r\n");
    assert_bytes!(c.request(format!("decr {k} 1\r\n").as_bytes()), b"0\r\n");
    // 64-bit: incr wraps at 2^64
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"18446744073709551614")), b"STORED\r\n");
    assert_bytes!(c.request(format!("incr {k} 1\r\n").as_bytes()), b"18446744073709551615\r\n");
    assert_bytes!(c.request(format!("incr {k} 1\r\n").as_bytes()), b"0\r\n");
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"18446744073709551614")), b"STORED\r\n");
    assert_bytes!(c.request(format!("incr {k} 3\r\n").as_bytes()), b"1\r\n");
    assert_bytes!(c.request(format!("incr {k} 18446744073709551615\r\n").as_bytes()), b"0\r\n");
    // large values and deltas
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"4294967296")), b"STORED\r\n");
    assert_bytes!(c.request(format!("incr {k} 4294967296\r\n").as_bytes()), b"8589934592\r\n");
    assert_bytes!(c.request(format!("decr {k} 8589934591\r\n").as_bytes()), b"1\r\n");
    // leading/trailing spaces in the stored number are tolerated
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"12 ")), b"STORED\r\n");
    assert_bytes!(c.request(format!("incr {k} 1\r\n").as_bytes()), b"13\r\n");
    // incr that makes the number longer
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"9")), b"STORED\r\n");
    assert_bytes!(c.request(format!("incr {k} 1\r\n").as_bytes()), b"10\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"10"), b"END\r\n".to_vec()].concat());
    // incr changes the cas
    let c1 = gets_cas(&mut c, &k);
    assert_bytes!(c.request(format!("incr {k} 1\r\n").as_bytes()), b"11\r\n");
    assert_ne!(gets_cas(&mut c, &k), c1);
}

fn incr_decr_errors(s: &Server) {
    let p = uniq("incre");
    let mut c = s.conn();
    let k = format!("{p}n");
    const NN: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
    const BD: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
    for v in [&b"abc"[..], b"-12", b"", b"184467440737095516150", b"1x"] {
        assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, v)), b"STORED\r\n");
        assert_bytes!(c.request(format!("incr {k} 1\r\n").as_bytes()), NN, "value {}", show(v));
        assert_bytes!(c.request(format!("decr {k} 1\r\n").as_bytes()), NN, "value {}", show(v));
    }
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"1")), b"STORED\r\n");
    for d in ["abc", "-1", "18446744073709551616", "1x"] {
        assert_bytes!(c.request(format!("incr {k} {d}\r\n").as_bytes()), BD, "delta {d}");
        assert_bytes!(c.request(format!("decr {k} {d}\r\n").as_bytes()), BD, "delta {d}");
    }
    // bad delta on a missing key: the delta is checked first
    assert_bytes!(c.request(format!("incr {p}missing abc\r\n").as_bytes()), BD);
    assert_bytes!(c.request(format!("incr {k}\r\n").as_bytes()), b"ERROR\r\n");
    assert_bytes!(c.request(b"incr\r\n"), b"ERROR\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"1"), b"END\r\n".to_vec()].concat());
}

fn flags_range(s: &Server) {
    let p = uniq("flags");
    let mut c = s.conn();
    let k = format!("{p}f");
    for f in [0u32, 1, 65535, 65536, 4294967295] {
        assert_bytes!(c.request(&store_cmd("set", &k, f, 0, b"v")), b"STORED\r\n");
        assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, f, b"v"), b"END\r\n".to_vec()].concat());
    }
    // negative / non-numeric flags: error, and the data line is then read as
    // a command (memcached does not swallow it) -> ERROR
    for f in ["-1", "abc"] {
        assert_bytes!(
            c.request_n(format!("set {k} {f} 0 1\r\nx\r\n").as_bytes(), 2),
            b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
            "flags {f}"
        );
    }
    // 2^32: memcore refuses it (memcached 1.6 on 64-bit accepts it).
    let r = c.request_n(format!("set {k} 4294967296 0 1\r\nx\r\n").as_bytes(), 1);
    if s.is_memcore() {
        assert_bytes!(r, b"CLIENT_ERROR bad command line format\r\n");
        // the data line is then parsed as a command, as for other bad lines
        assert_bytes!(c.read_reply(), b"ERROR\r\n");
    } else {
        assert!(r == b"STORED\r\n" || r == b"CLIENT_ERROR bad command line format\r\n", "flags 2^32: {}", show(&r));
        if r != b"STORED\r\n" {
            assert_bytes!(c.read_reply(), b"ERROR\r\n");
        }
    }
    c.version_check();
}

fn exptime_negative_and_absolute(s: &Server) {
    let p = uniq("exp");
    let mut c = s.conn();
    let k = format!("{p}e");
    let miss = b"END\r\n";
    assert_bytes!(c.request(&store_cmd("set", &k, 0, -1, b"x")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), miss);
    // relative
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 1000, b"x")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"x"), miss.to_vec()].concat());
    // > 30 days is an absolute unix time: in the past -> miss
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 2592001, b"x")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), miss);
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 1_000_000_000, b"x")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), miss);
    // exactly 30 days is still relative
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 2592000, b"x")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"x"), miss.to_vec()].concat());
    // absolute in the future -> hit
    let fut = now_unix() as i64 + 1000;
    assert_bytes!(c.request(&store_cmd("set", &k, 0, fut, b"y")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"y"), miss.to_vec()].concat());
    // add over an expired item works
    assert_bytes!(c.request(&store_cmd("set", &k, 0, -1, b"x")), b"STORED\r\n");
    assert_bytes!(c.request(&store_cmd("add", &k, 0, 0, b"z")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"z"), miss.to_vec()].concat());
    // non-numeric exptime
    assert_bytes!(
        c.request_n(format!("set {k} 0 abc 1\r\nx\r\n").as_bytes(), 2),
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n"
    );
}

fn exptime_expires(s: &Server) {
    let p = uniq("expire");
    let mut c = s.conn();
    let k1 = format!("{p}1");
    let k2 = format!("{p}2");
    let start = Instant::now();
    assert_bytes!(c.request(&store_cmd("set", &k1, 0, 1, b"a")), b"STORED\r\n");
    assert_bytes!(c.request(&store_cmd("set", &k2, 0, 2, b"b")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k1}\r\n").as_bytes()), [value(&k1, 0, b"a"), b"END\r\n".to_vec()].concat());
    let gone = poll_until(Duration::from_secs(5), || c.request(format!("get {k1}\r\n").as_bytes()) == b"END\r\n");
    assert!(gone, "1 s item did not expire");
    let el = start.elapsed();
    // memcached's clock has 1 s granularity: an item with exptime 1 may
    // vanish anywhere within (0, 2] s; it must not outlive ~2.x s.
    assert!(el < Duration::from_millis(3500), "expired too late: {el:?}");
    let gone = poll_until(Duration::from_secs(5), || c.request(format!("get {k2}\r\n").as_bytes()) == b"END\r\n");
    assert!(gone, "2 s item did not expire");
    assert!(start.elapsed() >= Duration::from_millis(900), "2 s item expired too early");
    assert_bytes!(c.request(format!("touch {k2} 10\r\n").as_bytes()), b"NOT_FOUND\r\n");
    assert_bytes!(c.request(format!("incr {k2} 1\r\n").as_bytes()), b"NOT_FOUND\r\n");
    assert_bytes!(c.request(&store_cmd("append", &k2, 0, 0, b"x")), b"NOT_STORED\r\n");
}

fn noreply_all(s: &Server) {
    let p = uniq("noreply");
    let mut c = s.conn();
    let k = format!("{p}k");
    let n = format!("{p}n");
    let ver = c.request(b"version\r\n");
    let mut req = Vec::new();
    req.extend(format!("set {k} 1 0 1 noreply\r\na\r\n").as_bytes());
    req.extend(format!("add {k} 2 0 1 noreply\r\nb\r\n").as_bytes()); // NOT_STORED, silent
    req.extend(format!("replace {k} 3 0 1 noreply\r\nc\r\n").as_bytes());
    req.extend(format!("append {k} 9 0 1 noreply\r\nd\r\n").as_bytes());
    req.extend(format!("prepend {k} 9 0 1 noreply\r\ne\r\n").as_bytes());
    req.extend(format!("cas {k} 0 0 1 1 noreply\r\nf\r\n").as_bytes()); // EXISTS, silent
    req.extend(format!("touch {k} 0 noreply\r\n").as_bytes());
    req.extend(b"verbosity 1 noreply\r\n");
    req.extend(format!("set {n} 0 0 2 noreply\r\n10\r\n").as_bytes());
    req.extend(format!("incr {n} 5 noreply\r\n").as_bytes());
    req.extend(format!("decr {n} 3 noreply\r\n").as_bytes());
    req.extend(format!("incr {p}missing 1 noreply\r\n").as_bytes());
    req.extend(format!("delete {p}missing noreply\r\n").as_bytes());
    req.extend(b"version\r\n");
    c.send(&req);
    assert_bytes!(c.read_reply(), ver, "noreply commands must produce no bytes");
    let r = c.request(format!("get {k} {n}\r\n").as_bytes());
    assert_bytes!(r, [value(&k, 3, b"ecd"), value(&n, 0, b"12"), b"END\r\n".to_vec()].concat());
    let cas = gets_cas(&mut c, &k);
    c.send(format!("cas {k} 0 0 1 {cas} noreply\r\ng\r\ndelete {n} noreply\r\nversion\r\n").as_bytes());
    assert_bytes!(c.read_reply(), ver);
    assert_bytes!(c.request(format!("get {k} {n}\r\n").as_bytes()), [value(&k, 0, b"g"), b"END\r\n".to_vec()].concat());
    c.expect_silence(Duration::from_millis(200));
}

fn unknown_command(s: &Server) {
    let mut c = s.conn();
    assert_bytes!(c.request(b"foo\r\n"), b"ERROR\r\n");
    assert_bytes!(c.request(b"GET x\r\n"), b"ERROR\r\n");
    assert_bytes!(c.request(b"\r\n"), b"ERROR\r\n");
    assert_bytes!(c.request(b"set\r\n"), b"ERROR\r\n");
    assert_bytes!(c.request(b"set k 0 0\r\n"), b"ERROR\r\n");
    // bare \n line endings are accepted
    let v = c.request(b"version\n");
    assert!(v.starts_with(b"VERSION "), "{}", show(&v));
    c.version_check();
}

fn key_length(s: &Server) {
    let p = uniq("kl");
    let mut c = s.conn();
    let k250 = format!("{p}{}", "k".repeat(250 - p.len()));
    let k251 = format!("{k250}x");
    assert_eq!(k250.len(), 250);
    assert_bytes!(c.request(&store_cmd("set", &k250, 0, 0, b"x")), b"STORED\r\n");
    assert_bytes!(
        c.request(format!("get {k250}\r\n").as_bytes()),
        [value(&k250, 0, b"x"), b"END\r\n".to_vec()].concat()
    );
    const BAD: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
    // storage command: error, then the data line is read as a command
    assert_bytes!(c.request_n(&store_cmd("set", &k251, 0, 0, b"x"), 2), [BAD, b"ERROR\r\n"].concat());
    assert_bytes!(c.request(format!("get {k251}\r\n").as_bytes()), BAD);
    // a bad key anywhere in a multi-get: memcached drops the hits already
    // collected and replies with the error alone
    assert_bytes!(c.request(format!("get {k250} {k251} {k250}\r\n").as_bytes()), BAD);
    assert_bytes!(c.request(format!("delete {k251}\r\n").as_bytes()), BAD);
    assert_bytes!(c.request(format!("incr {k251} 1\r\n").as_bytes()), BAD);
    assert_bytes!(c.request(format!("touch {k251} 1\r\n").as_bytes()), BAD);
    c.version_check();
}

fn bad_data_chunk(s: &Server) {
    let p = uniq("chunk");
    let mut c = s.conn();
    let k = format!("{p}k");
    // memcached reads exactly <len>+2 bytes; if they don't end in \r\n it
    // replies bad data chunk and parses whatever follows as new commands:
    // here the trailing "\r\n" is an empty command -> ERROR.
    assert_bytes!(
        c.request_n(format!("set {k} 0 0 3\r\nabcde\r\n").as_bytes(), 2),
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    );
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), b"END\r\n");
    // "abcXY" consumed as the 5 bytes, then "version" is a fresh command
    c.send(format!("set {k} 0 0 3\r\nabcXYversion\r\n").as_bytes());
    assert_bytes!(c.read_reply(), b"CLIENT_ERROR bad data chunk\r\n");
    let v = c.read_reply();
    assert!(v.starts_with(b"VERSION "), "{}", show(&v));
    // a bad chunk on set of an existing key leaves... the key is unlinked by
    // memcached for set; just check the connection still works
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"abc")), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"abc"), b"END\r\n".to_vec()].concat());
}

fn value_too_large(s: &Server) {
    let p = uniq("big");
    let mut c = s.conn();
    const TOO: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
    let big = vec![b'a'; 1048576];
    for cmd in ["set", "add", "replace", "append", "prepend"] {
        let k = format!("{p}{cmd}");
        assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"old")), b"STORED\r\n");
        assert_bytes!(c.request(&store_cmd(cmd, &k, 0, 0, &big)), TOO, "{cmd}");
        c.version_check(); // data swallowed
        let r = c.request(format!("get {k}\r\n").as_bytes());
        if cmd == "set" {
            // set removes the old value
            assert_bytes!(r, b"END\r\n", "{cmd}");
        } else {
            assert_bytes!(r, [value(&k, 0, b"old"), b"END\r\n".to_vec()].concat(), "{cmd}");
        }
    }
    let k = format!("{p}cas");
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"old")), b"STORED\r\n");
    let cas = gets_cas(&mut c, &k);
    let mut req = format!("cas {k} 0 0 {} {cas}\r\n", big.len()).into_bytes();
    req.extend(&big);
    req.extend(b"\r\n");
    assert_bytes!(c.request(&req), TOO);
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"old"), b"END\r\n".to_vec()].concat());
    // a value 1 KiB under the limit is fine
    let ok = vec![b'b'; 1048576 - 1024];
    let k = format!("{p}ok");
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, &ok)), b"STORED\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, &ok), b"END\r\n".to_vec()].concat());
    // the too-large request sent in small pieces is still swallowed
    let req = store_cmd("set", &k, 0, 0, &big);
    for chunk in req.chunks(100_003) {
        c.send(chunk);
        // Paced so that the server reads the pieces apart (the point).
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_bytes!(c.read_reply(), TOO);
    c.version_check();
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), b"END\r\n");
}

fn bad_length(s: &Server) {
    let p = uniq("blen");
    let mut c = s.conn();
    let k = format!("{p}k");
    const BAD: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
    assert_bytes!(c.request(format!("set {k} 0 0 -1\r\n").as_bytes()), BAD);
    c.version_check();
    assert_bytes!(c.request(format!("set {k} 0 0 abc\r\n").as_bytes()), BAD);
    c.version_check();
    assert_bytes!(c.request(format!("append {k} 0 0 -5\r\n").as_bytes()), BAD);
    c.version_check();
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), b"END\r\n");
}

fn long_line_closes(s: &Server) {
    let mut c = s.conn();
    c.version_check();
    // 3000 bytes with no newline that cannot be a get: connection closed
    c.send(&vec![b'x'; 3000]);
    let r = c.read_to_close();
    assert!(
        r.is_empty() || r == b"ERROR\r\n" || r.starts_with(b"CLIENT_ERROR") || r.starts_with(b"SERVER_ERROR"),
        "before close: {}",
        show(&r)
    );
    let mut c = s.conn();
    let mut req = b"set ".to_vec();
    req.extend(vec![b'k'; 3000]);
    c.send(&req);
    c.read_to_close();
    // a 3000-byte line WITH a newline is just an unknown command
    let mut c = s.conn();
    let mut req = vec![b'x'; 3000];
    req.extend(b"\r\n");
    assert_bytes!(c.request(&req), b"ERROR\r\n");
    c.version_check();
}

fn long_get_line(s: &Server) {
    let p = uniq("lg");
    let mut c = s.conn();
    let mut keys = Vec::new();
    for i in 0..600 {
        keys.push(format!("{p}{i:05}"));
    }
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 7 == 0) {
        assert_bytes!(c.request(&store_cmd("set", k, 0, 0, format!("{i}").as_bytes())), b"STORED\r\n");
    }
    let line = format!("get {}\r\n", keys.join(" "));
    assert!(line.len() > 8000);
    let mut want = Vec::new();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 7 == 0) {
        want.extend(value(k, 0, format!("{i}").as_bytes()));
    }
    want.extend(b"END\r\n");
    for chunk in line.as_bytes().chunks(1000) {
        c.send(chunk);
        // Paced so that the server reads the pieces apart (the point).
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_bytes!(c.read_reply(), want);
    // gets too
    let line = line.replacen("get ", "gets ", 1);
    for chunk in line.as_bytes().chunks(1500) {
        c.send(chunk);
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = c.read_reply();
    assert_eq!(r.windows(6).filter(|w| w == b"VALUE ").count(), keys.len().div_ceil(7));
    c.version_check();
}

fn version_verbosity_quit(s: &Server) {
    let mut c = s.conn();
    let v = c.request(b"version\r\n");
    assert!(v.starts_with(b"VERSION ") && v.ends_with(b"\r\n") && v.len() > 10, "{}", show(&v));
    assert!(!v[8..v.len() - 2].contains(&b'\r'));
    assert_bytes!(c.request(b"verbosity 1\r\n"), b"OK\r\n");
    assert_bytes!(c.request(b"verbosity 0\r\n"), b"OK\r\n");
    assert_bytes!(c.request(b"verbosity\r\n"), b"ERROR\r\n");
    c.send(b"quit\r\n");
    assert_bytes!(c.read_to_close(), b"");
    // pipelined: replies before quit are delivered, nothing after
    let mut c = s.conn();
    c.send(b"version\r\nquit\r\nversion\r\n");
    let r = c.read_to_close();
    assert_bytes!(r, v);
}

fn stats_misc(s: &Server) {
    let mut c = s.conn();
    let st = c.stats("stats");
    for f in [
        "pid",
        "uptime",
        "time",
        "version",
        "curr_connections",
        "total_connections",
        "cmd_get",
        "cmd_set",
        "cmd_flush",
        "cmd_touch",
        "get_hits",
        "get_misses",
        "delete_hits",
        "delete_misses",
        "incr_hits",
        "incr_misses",
        "decr_hits",
        "decr_misses",
        "cas_hits",
        "cas_misses",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "curr_items",
        "total_items",
        "bytes",
        "limit_maxbytes",
        "threads",
        "evictions",
        "bytes_read",
        "bytes_written",
    ] {
        assert!(st.contains_key(f), "stats lacks {f}");
    }
    for f in ["pid", "uptime", "curr_connections", "cmd_get", "curr_items", "limit_maxbytes", "threads", "time"] {
        stat_u64(&st, f);
    }
    assert!(stat_u64(&st, "curr_connections") >= 1);
    let t = stat_u64(&st, "time");
    assert!(t.abs_diff(now_unix()) <= 2, "stats time {t}");
    if s.owned() {
        assert_eq!(stat_u64(&st, "threads"), s.threads as u64);
        assert_eq!(stat_u64(&st, "limit_maxbytes"), 64 * 1024 * 1024);
    }
    let r = c.request(b"stats settings\r\n");
    assert!(r.ends_with(b"END\r\n") && r.starts_with(b"STAT "), "{}", show(&r));
    assert_bytes!(c.request(b"stats foo\r\n"), b"ERROR\r\n");
    c.version_check();
}

/// A pipeline exercising most commands; replies are deterministic given a
/// fresh prefix (no cas values printed).
fn mixed_pipeline(p: &str) -> (Vec<u8>, usize) {
    let mut v = Vec::new();
    let mut n = 0;
    let mut add = |b: &[u8]| {
        v.extend_from_slice(b);
        n += 1;
    };
    add(&store_cmd("set", &format!("{p}a"), 5, 0, b"hello\r\nworld"));
    add(&store_cmd("add", &format!("{p}a"), 0, 0, b"x"));
    add(&store_cmd("add", &format!("{p}b"), 1, 0, b""));
    add(format!("get {p}a {p}b {p}c\r\n").as_bytes());
    add(&store_cmd("append", &format!("{p}a"), 0, 0, b"!!"));
    add(&store_cmd("prepend", &format!("{p}b"), 0, 0, b"pre"));
    add(&store_cmd("set", &format!("{p}n"), 0, 0, b"41"));
    add(format!("incr {p}n 1\r\n").as_bytes());
    add(format!("decr {p}n 100\r\n").as_bytes());
    add(format!("incr {p}a 1\r\n").as_bytes());
    add(format!("touch {p}a 100\r\n").as_bytes());
    add(format!("gat 100 {p}b {p}a\r\n").as_bytes());
    add(format!("delete {p}b\r\n").as_bytes());
    add(format!("delete {p}b\r\n").as_bytes());
    add(b"bogus command\r\n");
    add(&store_cmd("replace", &format!("{p}z"), 0, 0, b"q"));
    add(format!("cas {p}z 0 0 1 5\r\nq\r\n").as_bytes());
    add(format!("set {p}q 0 0 1 noreply\r\nq\r\n").as_bytes());
    add(format!("get {p}q {p}n\r\n").as_bytes());
    add(b"version\r\n");
    (v, n - 1) // the noreply set has no reply
}

fn split_requests(s: &Server) {
    let base = uniq("split");
    let pa = format!("{base}A");
    let (req_a, n) = mixed_pipeline(&pa);
    let mut c = s.conn();
    let want_a = c.request_n(&req_a, n);
    c.expect_silence(Duration::from_millis(100));
    assert!(want_a.starts_with(b"STORED\r\nNOT_STORED\r\nSTORED\r\nVALUE "), "{}", show(&want_a));
    // one byte per write
    let pb = format!("{base}B");
    let (req_b, _) = mixed_pipeline(&pb);
    for (i, b) in req_b.iter().enumerate() {
        c.send(std::slice::from_ref(b));
        if i % 5 == 0 {
            // Paced so that the server reads the bytes apart (the point).
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let got = c.read_replies(n);
    assert_bytes!(got, replace_all(&want_a, pa.as_bytes(), pb.as_bytes()), "byte-at-a-time");
    // split once at every position
    let len = req_a.len();
    for cut in 1..len {
        let pc = format!("{base}{cut:05}");
        assert_eq!(pc.len(), pa.len() + 4);
        let pa4 = format!("{pa}0000");
        let (req_c, _) = mixed_pipeline(&pc);
        let cut2 = cut + (req_c.len() - req_a.len()) * cut / len; // roughly same spot
        let cut2 = cut2.min(req_c.len() - 1).max(1);
        c.send(&req_c[..cut2]);
        // Time for the first part to be read alone (the point of the cut).
        std::thread::sleep(Duration::from_micros(300));
        c.send(&req_c[cut2..]);
        let got = c.read_replies(n);
        let want = replace_all(&want_a, pa.as_bytes(), pc.as_bytes());
        let _ = pa4;
        assert_bytes!(got, want, "split at {cut2}");
    }
    c.expect_silence(Duration::from_millis(100));
}

fn pipeline_100(s: &Server) {
    let p = uniq("pipe");
    let mut c = s.conn();
    let mut req = Vec::new();
    let mut want = Vec::new();
    let ctr = format!("{p}ctr");
    req.extend(store_cmd("set", &ctr, 0, 0, b"0"));
    want.extend(b"STORED\r\n");
    let mut nreq = 1;
    let mut counter = 0u64;
    for i in 0..99 {
        let k = format!("{p}{i}");
        match i % 6 {
            0 => {
                let d = format!("data{i}").repeat(i % 4 + 1);
                req.extend(store_cmd("set", &k, i as u32, 0, d.as_bytes()));
                want.extend(b"STORED\r\n");
            }
            1 => {
                let k0 = format!("{p}{}", i - 1);
                req.extend(format!("get {k0} {k}\r\n").as_bytes());
                let d = format!("data{}", i - 1).repeat((i - 1) % 4 + 1);
                want.extend(value(&k0, (i - 1) as u32, d.as_bytes()));
                want.extend(b"END\r\n");
            }
            2 => {
                counter += i as u64;
                req.extend(format!("incr {ctr} {i}\r\n").as_bytes());
                want.extend(format!("{counter}\r\n").as_bytes());
            }
            3 => {
                let k0 = format!("{p}{}", i - 3);
                req.extend(store_cmd("append", &k0, 0, 0, b"+"));
                want.extend(b"STORED\r\n");
            }
            4 => {
                let k0 = format!("{p}{}", i - 4);
                req.extend(format!("delete {k0}\r\n").as_bytes());
                want.extend(b"DELETED\r\n");
            }
            _ => {
                let k0 = format!("{p}{}", i - 5);
                req.extend(format!("get {k0}\r\n").as_bytes());
                want.extend(b"END\r\n");
            }
        }
        nreq += 1;
    }
    assert_eq!(nreq, 100);
    c.send(&req);
    let got = c.read_replies(nreq);
    assert_bytes!(got, want);
    c.expect_silence(Duration::from_millis(100));
}

fn binary_values(s: &Server) {
    let p = uniq("bin");
    let mut c = s.conn();
    let mut rng = Rng::new(now_unix() ^ 77);
    for i in 0..50 {
        let k = format!("{p}{i}");
        let len = [0usize, 1, 2, 5, 100, 1000, 5000, 70000][i % 8];
        let mut d = rng.bytes(len);
        if len > 10 {
            d[3..8].copy_from_slice(b"\r\nEND");
        }
        assert_bytes!(c.request(&store_cmd("set", &k, i as u32, 0, &d)), b"STORED\r\n");
        assert_bytes!(
            c.request(format!("get {k}\r\n").as_bytes()),
            [value(&k, i as u32, &d), b"END\r\n".to_vec()].concat()
        );
    }
}

// ---------------------------------------------------------------------------
// Tests that need their own server (flush_all, exact stats counters).

fn flush_all_body(s: &Server) {
    let p = uniq("flush");
    let mut c = s.conn();
    for i in 0..20 {
        assert_bytes!(c.request(&store_cmd("set", &format!("{p}{i}"), 0, 0, b"x")), b"STORED\r\n");
    }
    assert_bytes!(c.request(b"flush_all\r\n"), b"OK\r\n");
    for i in 0..20 {
        assert_bytes!(c.request(format!("get {p}{i}\r\n").as_bytes()), b"END\r\n");
    }
    // storing after a flush works immediately
    assert_bytes!(c.request(&store_cmd("set", &format!("{p}new"), 0, 0, b"y")), b"STORED\r\n");
    assert_bytes!(
        c.request(format!("get {p}new\r\n").as_bytes()),
        [value(&format!("{p}new"), 0, b"y"), b"END\r\n".to_vec()].concat()
    );
    assert_bytes!(c.request(b"flush_all 0\r\n"), b"OK\r\n");
    assert_bytes!(c.request(format!("get {p}new\r\n").as_bytes()), b"END\r\n");
    assert_bytes!(c.request(b"flush_all abc\r\n"), b"CLIENT_ERROR invalid exptime argument\r\n");
    c.send(b"flush_all noreply\r\n");
    c.version_check();
    // delayed flush
    let k = format!("{p}delayed");
    assert_bytes!(c.request(&store_cmd("set", &k, 0, 0, b"z")), b"STORED\r\n");
    let t0 = Instant::now();
    assert_bytes!(c.request(b"flush_all 2\r\n"), b"OK\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"z"), b"END\r\n".to_vec()].concat());
    let gone = poll_until(Duration::from_secs(5), || c.request(format!("get {k}\r\n").as_bytes()) == b"END\r\n");
    assert!(gone, "delayed flush_all 2 never took effect");
    assert!(t0.elapsed() >= Duration::from_millis(900), "delayed flush took effect too early: {:?}", t0.elapsed());
    assert!(t0.elapsed() <= Duration::from_millis(3600), "delayed flush too late: {:?}", t0.elapsed());
}

#[test]
fn flush_all_t1() {
    if let Some(s) = Server::start_custom_or_skip("flush_all_t1", 1, &[]) {
        flush_all_body(&s);
    }
}

#[test]
fn flush_all_t2() {
    if let Some(s) = Server::start_custom_or_skip("flush_all_t2", 2, &[]) {
        flush_all_body(&s);
    }
}

fn stats_counters_body(s: &Server) {
    let mut c = s.conn();
    // the harness' readiness probe may not be reaped yet: poll
    let one = poll_until(Duration::from_secs(2), || stat_u64(&c.stats("stats"), "curr_connections") == 1);
    let st0 = c.stats("stats");
    assert!(one, "curr_connections with one client: {}", stat_u64(&st0, "curr_connections"));
    assert_eq!(stat_u64(&st0, "curr_items"), 0);
    assert_eq!(stat_u64(&st0, "cmd_get"), 0);
    assert_eq!(stat_u64(&st0, "total_items"), 0);
    let pid = stat_u64(&st0, "pid");
    assert_eq!(Some(pid as u32), s.pid());
    let mut req = Vec::new();
    for k in ["a", "b", "c"] {
        req.extend(store_cmd("set", k, 0, 0, b"0123456789"));
    }
    c.request_n(&req, 3);
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "curr_items"), 3);
    assert_eq!(stat_u64(&st, "total_items"), 3);
    assert_eq!(stat_u64(&st, "cmd_set"), 3);
    assert!(stat_u64(&st, "bytes") >= 30, "bytes counts at least the data");
    c.request(b"get a b zz a\r\n");
    c.request(b"gets c\r\n");
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "cmd_get"), 5, "multi-get counts each key");
    assert_eq!(stat_u64(&st, "get_hits"), 4);
    assert_eq!(stat_u64(&st, "get_misses"), 1);
    // gat counts as touch, not get
    c.request(b"gat 0 a zz\r\n");
    c.request(b"touch b 0\r\n");
    c.request(b"touch zz 0\r\n");
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "cmd_get"), 5);
    assert_eq!(stat_u64(&st, "cmd_touch"), 4);
    assert_eq!(stat_u64(&st, "touch_hits"), 2);
    assert_eq!(stat_u64(&st, "touch_misses"), 2);
    c.request(b"delete a\r\n");
    c.request(b"delete a\r\n");
    c.request(b"incr zz 1\r\n");
    c.request(b"decr zz 1\r\n");
    c.request(&store_cmd("set", "n", 0, 0, b"5"));
    c.request(b"incr n 1\r\n");
    c.request(b"decr n 1\r\n");
    c.request(b"cas zz 0 0 1 1\r\nx\r\n");
    c.request(b"cas n 0 0 1 1\r\nx\r\n");
    let st = c.stats("stats");
    for (f, v) in [
        ("delete_hits", 1),
        ("delete_misses", 1),
        ("incr_hits", 1),
        ("incr_misses", 1),
        ("decr_hits", 1),
        ("decr_misses", 1),
        ("cas_misses", 1),
        ("cas_badval", 1),
        ("cas_hits", 0),
        ("curr_items", 3),
        ("total_items", 4),
        ("cmd_set", 6),
        ("cmd_meta", 0),
    ] {
        assert_eq!(stat_u64(&st, f), v, "{f}");
    }
    // memcached counts only `me` in cmd_meta, found or not
    c.request(b"mg n\r\n");
    c.request(b"mn\r\n");
    c.request(b"me n\r\n");
    c.request(b"me zz\r\n");
    assert_eq!(stat_u64(&c.stats("stats"), "cmd_meta"), 2);
    let mut c2 = s.conn();
    c2.version_check();
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "curr_connections"), 2);
    drop(c2);
    assert!(poll_until(Duration::from_secs(2), || stat_u64(&c.stats("stats"), "curr_connections") == 1));
    assert_bytes!(c.request(b"stats reset\r\n"), b"RESET\r\n");
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "cmd_get"), 0);
    assert_eq!(stat_u64(&st, "get_hits"), 0);
    assert_eq!(stat_u64(&st, "total_items"), 0);
    assert_eq!(stat_u64(&st, "curr_items"), 3, "stats reset keeps curr_items");
    c.request(b"flush_all\r\n");
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "cmd_flush"), 1);
}

#[test]
fn stats_counters_t1() {
    if let Some(s) = Server::start_custom_or_skip("stats_counters_t1", 1, &[]) {
        stats_counters_body(&s);
    }
}

#[test]
fn stats_counters_t2() {
    if let Some(s) = Server::start_custom_or_skip("stats_counters_t2", 2, &[]) {
        stats_counters_body(&s);
    }
}

/// memcached answers a get of 10,000 keys of 250 bytes (a 2.5 MB line);
/// memcore answers it as the keys arrive, with the same bytes.
fn get_line_of_ten_thousand_long_keys(s: &Server) {
    let p = uniq("huge");
    let keys: Vec<String> = (0..10_000).map(|i| format!("{p}{i:0>w$}", w = 250 - p.len())).collect();
    let mut c = s.conn();
    let mut want = Vec::new();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 97 == 0) {
        assert_bytes!(c.request(&store_cmd("set", k, 0, 0, format!("{i}").as_bytes())), b"STORED\r\n");
        want.extend(value(k, 0, format!("{i}").as_bytes()));
    }
    want.extend(b"END\r\n");
    let line = format!("get {}\r\n", keys.join(" "));
    assert!(line.len() > 2_500_000);
    // Sent from another thread: the replies flow while the line does.
    let mut tx = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || tx.write_all(line.as_bytes()).unwrap());
    assert_bytes!(c.read_reply(), want);
    sender.join().unwrap();
    c.version_check();
}

/// Differences with memcached that random input found.
fn framing_found_by_random_input(s: &Server) {
    let mut c = s.conn();
    // A long line with its newline, cut across reads: answered, not closed.
    let mut req = vec![b'x'; 2000];
    req.extend(b"\r\n");
    req.extend(vec![b'y'; 2100]);
    req.extend(b"\r\nget nokey-framing\r\n");
    c.send(&req);
    assert_bytes!(c.read_until(b"END\r\n"), b"ERROR\r\nERROR\r\nEND\r\n");
    // "delete noreply" names the key noreply, and is answered.
    assert_bytes!(c.request(b"delete noreply\r\n"), b"NOT_FOUND\r\n");
    // bget is get.
    assert_bytes!(c.request(b"bget nokey-framing\r\n"), b"END\r\n");
    c.version_check();
}

/// The meta commands through the binary (memcached's t/metaget.t runs in
/// tests/python/test_memcached_t.py; these are the shapes it leaves out).
/// A meta request and its reply: the line, and after VA its data line.
fn meta_request(c: &mut Conn, req: &[u8]) -> Vec<u8> {
    c.send(req);
    let mut out = c.read_line();
    if out.starts_with(b"VA ") {
        out.extend(c.read_line());
    }
    out
}

fn meta_commands(s: &Server) {
    let p = uniq("meta");
    let mut c = s.conn();
    let k = format!("{p}k");
    assert_bytes!(c.request(format!("mg {k} v\r\n").as_bytes()), b"EN\r\n");
    assert_bytes!(c.request(format!("ms {k} 2 T0 F5 k\r\nhi\r\n").as_bytes()), format!("HD k{k}\r\n").as_bytes());
    c.send(format!("mg {k} s f v q\r\nmg {p}none v q\r\nmn\r\n").as_bytes());
    assert_bytes!(c.read_until(b"MN\r\n"), b"VA 2 s2 f5\r\nhi\r\nMN\r\n");
    assert_bytes!(c.request(format!("md {k} q\r\nmn\r\n").as_bytes()), b"MN\r\n");
    assert_bytes!(c.request(format!("md {k} Oxy\r\n").as_bytes()), b"NF Oxy\r\n");
    // Vivify: one client wins, the others are told.
    assert_bytes!(c.request(format!("mg {k} N30 s t\r\n").as_bytes()), b"HD s0 t30 W\r\n");
    assert_bytes!(c.request(format!("mg {k} N30 s\r\n").as_bytes()), b"HD s0 Z\r\n");
    assert_bytes!(c.request(format!("ms {k} 1 MA\r\nx\r\n").as_bytes()), b"HD\r\n");
    assert_bytes!(c.request(format!("get {k}\r\n").as_bytes()), [value(&k, 0, b"x"), b"END\r\n".to_vec()].concat());
    // Base64 keys are the same keys as text ones.
    let b64 = "bWV0YS1iNjQ="; // "meta-b64"
    assert_bytes!(c.request(format!("ms {b64} 1 b\r\nz\r\n").as_bytes()), b"HD\r\n");
    assert_bytes!(meta_request(&mut c, b"mg meta-b64 v k\r\n"), format!("VA 1 k{b64} b\r\nz\r\n").as_bytes());
    assert_bytes!(meta_request(&mut c, format!("ma {p}n N0 J5 v\r\n").as_bytes()), b"VA 1\r\n5\r\n");
    assert_bytes!(meta_request(&mut c, format!("ma {p}n MD D9 v\r\n").as_bytes()), b"VA 1\r\n0\r\n");
    assert_bytes!(
        c.request(format!("ms {k} 2 MZ\r\nhi\r\n").as_bytes()),
        b"CLIENT_ERROR invalid mode for ms M token\r\n"
    );
    c.version_check();
}

/// The CAS a meta command reports is the one gets shows, whichever core
/// owns the key.
fn meta_cas_agrees_with_gets(s: &Server) {
    let p = uniq("mcas");
    let mut c = s.conn();
    for i in 0..16 {
        let k = format!("{p}{i}");
        let r = c.request(format!("ms {k} 1 c\r\nx\r\n").as_bytes());
        let cas: u64 = String::from_utf8_lossy(&r[4..r.len() - 2]).parse().unwrap();
        assert_eq!(gets_cas(&mut c, &k), cas, "{k}");
        let r = c.request(format!("mg {k} c\r\n").as_bytes());
        assert_bytes!(r, format!("HD c{cas}\r\n").as_bytes());
        assert_bytes!(c.request(format!("md {k} C{cas} I\r\n").as_bytes()), b"HD\r\n");
        let bumped = gets_cas(&mut c, &k);
        assert_ne!(bumped, cas, "md I gives a new CAS");
        let got = meta_request(&mut c, format!("mg {k} c v\r\n").as_bytes());
        assert_bytes!(got, format!("VA 1 c{bumped} X W\r\nx\r\n").as_bytes());
    }
}

/// Flags memcached 1.6.18 does not know yet, as later memcached defines
/// them (protocol.txt): `E` sets the CAS value of the changed item, `md x`
/// empties the item and keeps it, `s` in an ms reply is the stored size.
/// memcore only: memcached 1.6.18 refuses them.
fn meta_flags_of_later_memcached(s: &Server) {
    if is_external() {
        eprintln!("SKIP meta_flags_of_later_memcached: memcached 1.6.18 refuses these flags");
        return;
    }
    let p = uniq("later");
    let mut c = s.conn();
    let k = format!("{p}k");
    assert_bytes!(c.request(format!("ms {k} 2 E500 c s\r\nhi\r\n").as_bytes()), b"HD c500 s2\r\n");
    assert_eq!(gets_cas(&mut c, &k), 500, "gets shows the CAS E gave");
    assert_bytes!(c.request(format!("ms {k} 2 C500 E600 c\r\nho\r\n").as_bytes()), b"HD c600\r\n");
    assert_bytes!(c.request(format!("ms {k} 3 MA s\r\nabc\r\n").as_bytes()), b"HD s5\r\n");
    assert_bytes!(c.request(format!("mg {p}viv N30 E7 c\r\n").as_bytes()), b"HD c7 W\r\n");
    assert_bytes!(meta_request(&mut c, format!("ma {p}n N0 E9 c v\r\n").as_bytes()), b"VA 1 c9\r\n0\r\n");
    assert_bytes!(meta_request(&mut c, format!("ma {p}n E11 c v\r\n").as_bytes()), b"VA 1 c11\r\n1\r\n");
    // x: emptied, with the flags and TTL given, its CAS kept.
    assert_bytes!(c.request(format!("md {p}n x F5 T100\r\n").as_bytes()), b"HD\r\n");
    let got = meta_request(&mut c, format!("mg {p}n v f c\r\n").as_bytes());
    assert_bytes!(got, b"VA 0 f5 c11\r\n\r\n");
    assert_bytes!(c.request(format!("md {p}n C11 I E42\r\n").as_bytes()), b"HD\r\n");
    assert_bytes!(c.request(format!("mg {p}n c\r\n").as_bytes()), b"HD c42 X W\r\n");
}
