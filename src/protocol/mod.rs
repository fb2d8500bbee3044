//! The memcached text protocol as pure functions over byte slices.
//!
//! `parse` turns the front of a read buffer into one `Request` (borrowing
//! key and data bytes from the buffer), says it needs more bytes, or names
//! the error reply and how much input to skip. `encode` writes replies.
//! Nothing here touches sockets, the runtime, the clock or the store, so
//! every rule can be tested by cutting requests at every byte.
//!
//! Also what a request is (`Request::is_write`, `noreply`, `key`) and what
//! an exptime means (`absolute_expiry`). Imports only the shared `item`
//! sizes; must not import storage, route, repl, server, stats or config.

pub mod auth;
pub mod base64;
pub mod encode;
pub mod meta;
pub mod parse;

pub use meta::{MetaCmd, MetaFlags, MetaRequest};
pub use parse::{GetKind, Limits, Parsed, Request, StoreMode, parse, parse_get_rest};

/// Longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const KEY_MAX_LENGTH: usize = 250;

/// A command line this long without a newline closes the connection, unless
/// it is a get/gets (memcached's rule: such a line must be a large
/// multiget). memcached applies it to what one read brought; the parser
/// answers `Close` for it, and the connection closes only when the socket
/// has nothing more to give at once (`server::conn`), so a long line whose
/// newline is already on its way is answered however memcore's reads cut it.
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;

/// memcached's read buffer: a non-get line whose newline lies past it closes
/// the connection; a get line longer than this is answered in parts as its
/// keys arrive (`Request::GetPart`), so that no line is buffered whole.
pub const READ_BUFFER: usize = 16384;

/// Largest relative expiry; anything above is an absolute Unix time.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// Turn an exptime from the wire into an absolute Unix time (0 = never):
/// up to 30 days is relative, more is absolute, negative is already past.
pub fn absolute_expiry(exptime: i64, now: u64, started: u64) -> u64 {
    if exptime == 0 {
        0
    } else if exptime < 0 {
        1
    } else if exptime > REALTIME_MAXDELTA {
        if (exptime as u64) <= started { 1 } else { exptime as u64 }
    } else {
        now + exptime as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rules() {
        const NOW: u64 = 1_700_000_000;
        let started = NOW - 100;
        assert_eq!(absolute_expiry(0, NOW, started), 0);
        assert_eq!(absolute_expiry(-1, NOW, started), 1);
        assert_eq!(absolute_expiry(10, NOW, started), NOW + 10);
        assert_eq!(absolute_expiry(REALTIME_MAXDELTA, NOW, started), NOW + REALTIME_MAXDELTA as u64);
        assert_eq!(absolute_expiry(REALTIME_MAXDELTA + 1, NOW, started), 1, "absolute time before start");
        assert_eq!(absolute_expiry((NOW + 50) as i64, NOW, started), NOW + 50);
    }
}
