//! The memcached text protocol as pure functions over byte slices.
//!
//! `parse` turns the front of a read buffer into one `Request` (borrowing
//! key and data bytes from the buffer), says it needs more bytes, or names
//! the error reply and how much input to skip. `encode` writes replies.
//! Nothing here touches sockets, the runtime, the clock or the store, so
//! every rule can be tested by cutting requests at every byte.

pub mod encode;
pub mod parse;

pub use parse::{GetKind, Limits, Parsed, Request, StoreMode, parse};

/// Longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const KEY_MAX_LENGTH: usize = 250;

/// A command line this long without a newline closes the connection, unless
/// it is a get/gets (memcached's rule: such a line must be a large multiget).
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;

/// memcore's cap on a get/gets line. memcached buffers them without bound;
/// past this the connection gets an error and is closed.
pub const MAX_GET_LINE: usize = 1 << 20;

/// Largest relative expiry; anything above is an absolute Unix time.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// Per-item header memcached counts against `-I` (its 48-byte item struct
/// plus the 8-byte CAS). Counting the same keeps the same values acceptable.
pub const ITEM_HEADER_SIZE: usize = 56;

/// Size memcached charges an item against `-I`: header, key and its NUL,
/// the flags suffix when flags are non-zero, the value and its CRLF.
pub fn item_total_size(key_len: usize, flags: u32, value_len: usize) -> usize {
    ITEM_HEADER_SIZE + key_len + 1 + if flags != 0 { 4 } else { 0 } + value_len + 2
}
