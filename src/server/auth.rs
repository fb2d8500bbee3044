//! The `-Y` credentials: memcached's auth file of `user:password` lines,
//! checked in constant time, reloaded on SIGHUP (a file that no longer
//! reads keeps the credentials in force and says why in the log).
//!
//! The file: one `user:password` per line, split at the first `:` (the
//! password may hold more); empty lines and a trailing `\r` are skipped;
//! a line without `:` or with an empty user makes the whole file refused,
//! as memcached refuses it. memcached takes at most 8 entries; memcore
//! takes up to `MAX_ENTRIES`, in a file of at most `MAX_FILE` bytes.
//!
//! Constant time: the user and the password given are hashed (SHA-256) and
//! compared with every entry's hashes with `subtle`, all entries visited, so
//! neither the time nor the branch taken tells which user exists or how
//! much of a password matched; nothing depends on the password's length
//! beyond one hash of it.
//!
//! Imports nothing of memcore's; `conn` and `server::run` use it.

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const MAX_ENTRIES: usize = 4096;
pub const MAX_FILE: u64 = 1 << 20;

struct Entry {
    user: [u8; 32],
    password: [u8; 32],
}

/// The credentials read from one version of the file.
pub struct Credentials {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} entries)", self.entries.len())
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Credentials {
    /// Parse the file's text. Errors name the line, never its password.
    pub fn parse(text: &[u8]) -> Result<Credentials, String> {
        let mut entries = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':').filter(|&c| c > 0) else {
                return Err(format!("line {} is malformed: should be 'user:password'", n + 1));
            };
            if entries.len() == MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} entries"));
            }
            entries.push(Entry { user: digest(&line[..colon]), password: digest(&line[colon + 1..]) });
        }
        if entries.is_empty() {
            return Err("no 'user:password' entries".into());
        }
        Ok(Credentials { entries })
    }

    /// Read and parse `path`. Errors are one line naming the file.
    pub fn load(path: &str) -> Result<Credentials, String> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|e| format!("cannot open auth file {path}: {e}"))?;
        let mut text = Vec::new();
        f.take(MAX_FILE + 1).read_to_end(&mut text).map_err(|e| format!("cannot read auth file {path}: {e}"))?;
        if text.len() as u64 > MAX_FILE {
            return Err(format!("auth file {path} is larger than {MAX_FILE} bytes"));
        }
        Credentials::parse(&text).map_err(|e| format!("auth file {path}: {e}"))
    }

    /// Whether `user` and `password` match an entry, in constant time.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let (u, p) = (digest(user), digest(password));
        let mut ok = subtle::Choice::from(0);
        for e in &self.entries {
            ok |= e.user.ct_eq(&u) & e.password.ct_eq(&p);
        }
        ok.into()
    }
}

/// The auth file in force and where it came from, shared by every core.
pub struct AuthFile {
    pub path: String,
    current: RwLock<Arc<Credentials>>,
}

impl AuthFile {
    pub fn load(path: &str) -> Result<AuthFile, String> {
        Ok(AuthFile { path: path.to_string(), current: RwLock::new(Arc::new(Credentials::load(path)?)) })
    }

    pub fn current(&self) -> Arc<Credentials> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Read the file again (SIGHUP); on failure the old credentials stay.
    pub fn reload(&self) -> Result<usize, String> {
        let c = Credentials::load(&self.path)?;
        let n = c.entries.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
        Ok(n)
    }
}

thread_local! {
    /// (second, lines logged in it, lines dropped) for `log_limited`.
    static LOG_RATE: std::cell::Cell<(u64, u32, u64)> = const { std::cell::Cell::new((0, 0, 0)) };
}
/// Lines about refused clients each core logs per second at most: a brute
/// force or a scan must not flood the log.
const LOG_PER_SECOND: u32 = 10;

/// Log with `f` unless this core logged `LOG_PER_SECOND` such lines in the
/// second `now` already; `f` is told how many were dropped since the last.
pub fn log_limited(now: u64, f: impl FnOnce(u64)) {
    LOG_RATE.with(|r| {
        let (sec, n, dropped) = r.get();
        let n = if sec == now { n } else { 0 };
        if n >= LOG_PER_SECOND {
            r.set((now, n, dropped + 1));
            return;
        }
        f(dropped);
        r.set((now, n + 1, 0));
    });
}

/// "(N more not logged)" after a line, when some were dropped before it.
pub fn dropped_note(dropped: u64) -> String {
    if dropped > 0 { format!(" ({dropped} similar lines not logged before this one)") } else { String::new() }
}

/// Log a failed attempt: who and from where, never the password.
pub fn log_failure(peer: Option<std::net::SocketAddr>, user: &[u8], now: u64) {
    log_limited(now, |dropped| {
        let peer = peer.map_or("?".to_string(), |p| p.to_string());
        let user: String = String::from_utf8_lossy(&user[..user.len().min(64)])
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        log::warn!("authentication failure for user {user:?} from {peer}{}", dropped_note(dropped));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_at_the_first_colon() {
        let c = Credentials::parse(b"alice:secret1\r\n\nbob:pw:with:colons\n").unwrap();
        assert!(c.check(b"alice", b"secret1"));
        assert!(c.check(b"bob", b"pw:with:colons"));
        assert!(!c.check(b"alice", b"secret"));
        assert!(!c.check(b"bob", b"secret1"));
        assert!(!c.check(b"carol", b""));
    }

    #[test]
    fn malformed_files_are_refused_without_their_passwords() {
        let e = Credentials::parse(b"alice:ok\nhunter2\n").unwrap_err();
        assert!(e.contains("line 2") && !e.contains("hunter2"), "{e}");
        assert!(Credentials::parse(b":nouser\n").is_err());
        assert!(Credentials::parse(b"\n\n").is_err());
        assert!(format!("{:?}", Credentials::parse(b"a:b").unwrap()).contains("1 entries"));
    }
}
