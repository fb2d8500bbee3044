//! What memcached counts for an item against `-I`, shared by the two rooms
//! that refuse an item for its size: the parser (a storage command whose
//! item is too large, before its data arrives) and the store (an append or
//! prepend whose result is too large). A leaf: imports nothing of memcore's.

/// Per-item header memcached counts against `-I` (its 48-byte item struct
/// plus the 8-byte CAS). Counting the same keeps the same values acceptable.
pub const ITEM_HEADER_SIZE: usize = 56;

/// Size memcached charges an item against `-I`: header, key and its NUL,
/// the flags suffix when flags are non-zero, the value and its CRLF.
pub fn item_total_size(key_len: usize, flags: u32, value_len: usize) -> usize {
    ITEM_HEADER_SIZE + key_len + 1 + if flags != 0 { 4 } else { 0 } + value_len + 2
}
