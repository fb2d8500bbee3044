//! A peer's bytes on a replication link after the handshake: cut into
//! frames whole and a byte at a time, batches' ops decoded, re-encoded and
//! applied to a small store. No panic, the same frames either way, nothing
//! from beyond the allowed clock drift or over `-I` applied, memory
//! (tombstones included) within the limit, the local clock not dragged,
//! and sealed frames (ChaCha20-Poly1305, the framing of a keyed
//! session) that open to themselves in order and fail on any changed
//! byte, a replay or a swap, while the raw bytes never open. See
//! memcore_fuzz::check_repl.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    memcore_fuzz::check_repl(data);
});
