//! memcore: a memcached-compatible, thread-per-core cache server.
//!
//! Rooms, from the sockets inwards; a room imports only rooms after it in
//! this list (the `arrows` test below checks it): `server` (glommio
//! executors, listeners, connections, signals, startup I/O), `route` (run
//! here or forward: key to core, the cross-core mesh, ordered replies, the
//! multi-get split, a request run on its owning core's `Shard`; it and
//! `repl` still use each other), `repl` (replication between nodes),
//! `stats` (counters with memcached's names), then `protocol` (pure parsing
//! and encoding, what a request is) and `storage` (one core's items,
//! runtime-free), which do not know each other, and `item` (what `-I`
//! counts) under both; `latency` (per-core histograms), `hotkeys` (per-core top-k
//! sketches) `detail` (per-prefix counters) and `watch` (log streams) sit beside `stats`, and `exporter`
//! (the Prometheus text of both) above them. `config` (the command line, pure) is read by all.
//! `top` (`memcore top` and `memcore stat`) is a client of the text
//! protocol and imports no room of the server.
//! See docs/architecture.md.

pub mod config;
pub mod detail;
pub mod exporter;
pub mod hotkeys;
pub mod item;
pub mod latency;
pub mod protocol;
pub mod repl;
pub mod route;
pub mod server;
pub mod stats;
pub mod storage;
pub mod top;
pub mod watch;

/// Arrows point one way: a room may import only the rooms below it
/// (docs/architecture.md, module map). A `crate::` path to a forbidden
/// room, outside comments, fails here.
#[cfg(test)]
mod arrows {
    /// Each room (a folder or a file of `src/`) and the rooms it must not name.
    const FORBIDDEN: &[(&str, &[&str])] = &[
        ("protocol", &["server", "route", "repl", "stats", "config", "storage"]),
        ("storage", &["server", "route", "repl", "stats", "config", "protocol"]),
        ("item.rs", &["server", "route", "repl", "stats", "config", "protocol", "storage"]),
        ("repl", &["server"]),
        ("route", &["server"]),
        ("stats.rs", &["server", "route", "repl", "config"]),
        ("config.rs", &["server", "route"]),
        ("exporter.rs", &["server", "route", "repl", "config", "storage", "protocol"]),
        ("watch.rs", &["server", "route", "repl", "stats", "config", "storage", "protocol"]),
        ("detail.rs", &["server", "route", "repl", "stats", "config", "storage", "protocol"]),
        ("hotkeys.rs", &["server", "route", "repl", "stats", "config", "storage"]),
        ("latency.rs", &["server", "route", "repl", "stats", "config", "storage"]),
        ("top", &["server", "route", "repl", "stats", "config", "protocol", "storage", "item"]),
    ];

    /// The rooms a line names through `crate::room` or `crate::{room, ...}`.
    fn rooms_named(line: &str) -> Vec<String> {
        let ident =
            |s: &str| -> String { s.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
        let mut out = Vec::new();
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            match rest.strip_prefix('{') {
                Some(group) => out.extend(group.split('}').next().unwrap_or("").split(',').map(ident)),
                None => out.push(ident(rest)),
            }
        }
        out
    }

    fn files(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            for e in std::fs::read_dir(path).expect("read src dir").flatten() {
                files(&e.path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
    }

    #[test]
    fn rooms_import_only_rooms_below_them() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        for (room, forbidden) in FORBIDDEN {
            let mut paths = Vec::new();
            files(&src.join(room), &mut paths);
            assert!(!paths.is_empty(), "no source for room {room}");
            for path in paths {
                let text = std::fs::read_to_string(&path).expect("read source");
                for (n, line) in text.lines().enumerate() {
                    if line.trim_start().starts_with("//") {
                        continue;
                    }
                    for name in rooms_named(line) {
                        if forbidden.contains(&name.as_str()) {
                            wrong.push(format!("{}:{}: {room} names crate::{name}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "arrows pointing up:\n{}", wrong.join("\n"));
    }

    /// Storage is runtime-free: it starts no threads and makes no system
    /// calls of its own (the server trains its dictionaries).
    #[test]
    fn storage_starts_no_threads() {
        let mut paths = Vec::new();
        files(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage"), &mut paths);
        let mut wrong = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("read source");
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if !code.starts_with("//") && (code.contains("thread::") || code.contains("libc::")) {
                    wrong.push(format!("{}:{}: {code}", path.display(), n + 1));
                }
            }
        }
        assert!(wrong.is_empty(), "storage uses threads or system calls:\n{}", wrong.join("\n"));
    }

    #[test]
    fn a_path_names_its_room_and_a_group_names_each() {
        assert_eq!(rooms_named("use crate::server::conn;"), ["server"]);
        assert_eq!(rooms_named("use crate::{route::Core, stats};"), ["route", "stats"]);
        assert_eq!(rooms_named("let x = crate::repl::unix_ms() + crate::route::f();"), ["repl", "route"]);
    }
}
