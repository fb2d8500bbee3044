//! Arbitrary bytes through the request parser, driven like a connection.
//!
//! Input layout: the first 8 bytes (when present) choose three cut points
//! and the item size limit; the rest is the byte stream a client sends.
//! Invariants (see memcore_fuzz::check_parse): no panic; Request/Error
//! consume 1..=len bytes; Incomplete's `need` is 0 or more than what is
//! buffered (and exact); keys are 1..=250 bytes without space/LF; a store's
//! data sits just before its CRLF; feeding the stream in pieces gives the
//! same requests, errors and leftovers as feeding it whole (a long get
//! line answered in parts reads the same as whole). The meta commands are
//! parsed like the rest; `fuzz/parse.dict` holds their tokens
//! (`cargo +nightly fuzz run -O parse -- -dict=fuzz/parse.dict`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcore::protocol::Limits;

fuzz_target!(|data: &[u8]| {
    let (head, body) = if data.len() >= 8 { data.split_at(8) } else { (&[][..], data) };
    let h = |i: usize| head.get(i).copied().unwrap_or(0) as usize;
    let cuts = [h(0) | h(1) << 8, h(2) | h(3) << 8, h(4) | h(5) << 8];
    // Small limits make TooLarge (swallowed data blocks) reachable.
    let item_size_max = match h(6) % 4 {
        0 => 1 << 20,
        1 => 64,
        2 => 100 + h(7),
        _ => 1024,
    };
    let limits = Limits { item_size_max };
    memcore_fuzz::check_parse(body, &limits, &cuts);
    if body.len() <= 512 {
        memcore_fuzz::check_parse_bytewise(body, &limits);
    }
});
