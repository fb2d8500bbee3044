//! Arbitrary bytes through the `-Y` authentication gate, as an
//! unauthenticated connection receives them (memcore_fuzz::check_gate):
//! no panic, consumed and need in range, the same verdicts whole and a
//! byte at a time.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    memcore_fuzz::check_gate(data);
});
