//! memcore: a memcached-compatible, thread-per-core cache server.
//!
//! Rooms, from the sockets inwards; a room imports only rooms after it in
//! this list, and no two rooms import each other, however indirectly (the
//! `arrows` tests below check both): `server` (glommio executors,
//! listeners, connections, signals, startup I/O), `route` (run here or
//! forward: key to core, the cross-core mesh, ordered replies, the
//! multi-get split, a request run on its owning core's `Shard`, and the
//! narrow handle replication is given), `repl` (replication between nodes:
//! storage and its `Host` handle only, never route or server), `stats`
//! (counters with memcached's names), then `protocol` (pure parsing and
//! encoding, what a request is) and `storage` (one core's items,
//! runtime-free), which do not know each other, and the leaves `item`
//! (what `-I` counts) and `wake` (a task wake-up flag). `latency` (per-core
//! histograms), `hotkeys` (per-core top-k sketches), `detail` (per-prefix
//! counters) and `watch` (log streams) sit beside `stats`, and `exporter`
//! (the Prometheus text of both) above them. `config` (the command line,
//! pure) is read by all. `top` (`memcore top` and `memcore stat`) is a
//! client of the text protocol and imports no room of the server. See
//! docs/architecture.md.

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
pub mod wake;
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
        ("wake.rs", &["server", "route", "repl", "stats", "config", "protocol", "storage", "item"]),
        // Replication depends on storage and the handle it is given
        // (repl/host.rs), which route implements.
        ("repl", &["server", "route", "stats", "config", "protocol"]),
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

    /// Every room (a folder or a file of `src/`) and the rooms it names.
    fn imports() -> Vec<(String, Vec<String>)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut rooms = Vec::new();
        for e in std::fs::read_dir(&src).expect("read src dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "lib.rs" || name == "main.rs" {
                continue;
            }
            let room = name.strip_suffix(".rs").unwrap_or(&name).to_string();
            let mut paths = Vec::new();
            files(&e.path(), &mut paths);
            let mut named = Vec::new();
            for path in paths {
                let text = std::fs::read_to_string(&path).expect("read source");
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    named.extend(rooms_named(line).into_iter().filter(|n| *n != room && !n.is_empty()));
                }
            }
            named.sort();
            named.dedup();
            rooms.push((room, named));
        }
        rooms
    }

    /// A cycle of rooms, each importing the next (the last the first), if
    /// there is one.
    fn find_cycle(graph: &[(String, Vec<String>)]) -> Option<Vec<String>> {
        fn visit(
            graph: &[(String, Vec<String>)],
            room: &str,
            path: &mut Vec<String>,
            done: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|r| r == room) {
                return Some(path[i..].to_vec());
            }
            if done.iter().any(|r| r == room) {
                return None;
            }
            path.push(room.to_string());
            let next = graph.iter().find(|(r, _)| r == room).map(|(_, n)| n.as_slice()).unwrap_or(&[]);
            for n in next {
                if let Some(c) = visit(graph, n, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.push(room.to_string());
            None
        }
        let mut done = Vec::new();
        graph.iter().find_map(|(room, _)| visit(graph, room, &mut Vec::new(), &mut done))
    }

    /// No module cycle among the rooms, whichever rooms it goes through.
    #[test]
    fn rooms_form_no_cycle() {
        let graph = imports();
        assert!(graph.iter().any(|(r, n)| r == "server" && n.iter().any(|n| n == "route")), "imports not read");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("rooms import each other: {} -> {}", cycle.join(" -> "), cycle[0]);
        }
    }

    #[test]
    fn a_cycle_through_three_rooms_is_found() {
        let g = |edges: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
            edges.iter().map(|(r, n)| (r.to_string(), n.iter().map(|s| s.to_string()).collect())).collect()
        };
        let acyclic = g(&[("server", &["route", "repl"]), ("route", &["repl", "storage"]), ("repl", &["storage"])]);
        assert_eq!(find_cycle(&acyclic), None);
        let cyclic = g(&[("server", &["route"]), ("route", &["repl"]), ("repl", &["stats"]), ("stats", &["route"])]);
        assert_eq!(find_cycle(&cyclic), Some(vec!["route".into(), "repl".into(), "stats".into()]));
    }

    #[test]
    fn a_path_names_its_room_and_a_group_names_each() {
        assert_eq!(rooms_named("use crate::server::conn;"), ["server"]);
        assert_eq!(rooms_named("use crate::{route::Core, stats};"), ["route", "stats"]);
        assert_eq!(rooms_named("let x = crate::repl::unix_ms() + crate::route::f();"), ["repl", "route"]);
    }
}
