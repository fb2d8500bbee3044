//! Seeing inside a running server: `memcore top` and `memcore stat`
//! against memcore and memcached, `stats latency`, `stats hotkeys`,
//! `/metrics`, and memcached's own diagnostics.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// memcached to hold the client against, when installed.
fn memcached() -> Option<Server> {
    let bin = memcached_bin().unwrap_or_else(|| "/usr/bin/memcached".into());
    if !std::path::Path::new(&bin).exists() {
        eprintln!("SKIP memcached half: no memcached at {bin}");
        return None;
    }
    Some(Server::spawn(&bin, Kind::Memcached, 1, &[]))
}

/// memcore on 2 cores and, when installed, memcached, each having seen
/// `traffic`; None (with a note) under MEMCORE_TEST_ADDR.
fn both_with_traffic() -> Option<(Server, Option<Server>)> {
    if is_external() {
        eprintln!("SKIP: spawns its own servers");
        return None;
    }
    let mc = Server::start(2, &[]);
    traffic(&mc);
    let md = memcached();
    if let Some(md) = &md {
        traffic(md);
    }
    Some((mc, md))
}

/// Some traffic: two sets, a hit and a miss.
fn traffic(srv: &Server) {
    let mut c = srv.conn();
    c.request(&store_cmd("set", "mon:a", 0, 0, b"hello"));
    c.request(&store_cmd("set", "mon:b", 0, 0, b"world"));
    c.request(b"get mon:a\r\n");
    c.request(b"get mon:nothing\r\n");
}

/// Run `memcore args` to completion within `limit`: (exit code, stdout).
fn run_client(args: &[&str], limit: Duration) -> (i32, String) {
    let o = run_to_exit(memcore_bin(), args, limit);
    (o.code().unwrap_or(-1), o.stdout)
}

#[test]
fn stat_json_reads_memcore_and_memcached_and_says_which_is_down() {
    let Some((mc, md)) = both_with_traffic() else { return };
    let mut args = vec!["stat", "--json", "--interval", "0.2", mc.addr.as_str()];
    if let Some(md) = &md {
        args.push(md.addr.as_str());
    }
    let (code, out) = run_client(&args, Duration::from_secs(10));
    assert_eq!(code, 0, "{out}");
    let servers: Vec<&str> = out.split("{\"addr\":").skip(1).collect();
    assert_eq!(servers.len(), 1 + md.is_some() as usize, "{out}");
    let memcore = servers[0];
    for want in ["\"up\":true", "\"memcore\":true", "\"curr_items\":2", "\"hit_ratio\":0.500", "\"cores\":[{"] {
        assert!(memcore.contains(want), "memcore: no {want} in {memcore}");
    }
    assert_eq!(memcore.matches("\"curr_items\":\"").count(), 1 + 2, "stats and two cores: {memcore}");
    if md.is_some() {
        let memcached = servers[1];
        for want in ["\"up\":true", "\"memcore\":false", "\"curr_items\":2", "\"hit_ratio\":0.500", "\"cores\":[]"] {
            assert!(memcached.contains(want), "memcached: no {want} in {memcached}");
        }
    }
    // A server that does not answer: shown as down, exit status 1.
    let (code, out) = run_client(&["stat", "--interval", "0", "127.0.0.1:1", &mc.addr], Duration::from_secs(10));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("127.0.0.1:1") && out.contains("DOWN"), "{out}");
    assert!(out.contains("TOTAL"), "{out}");
}

#[test]
fn top_draws_over_its_last_frame_and_quits_on_q() {
    let Some((mc, md)) = both_with_traffic() else { return };
    let mut args = vec!["top", "--interval", "0.2", mc.addr.as_str()];
    if let Some(md) = &md {
        args.push(md.addr.as_str());
    }
    let mut child = Command::new(memcore_bin())
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn memcore top");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        all
    });
    // Let it draw a few frames, then press q.
    std::thread::sleep(Duration::from_millis(700));
    child.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let quit = poll_until(Duration::from_secs(5), || child.try_wait().unwrap().is_some());
    if !quit {
        let _ = child.kill();
    }
    assert!(quit, "top did not quit on q");
    let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    // Alternate screen in and out, frames drawn from the cursor home with
    // each line cleared to its end: no full clear between frames.
    assert!(out.starts_with("\x1b[?1049h"), "{out:?}");
    assert!(out.ends_with("\x1b[?1049l"), "{out:?}");
    assert!(out.matches("\x1b[H").count() >= 3, "several frames: {out:?}");
    assert_eq!(out.matches("\x1b[2J").count(), 1, "the screen is cleared once only");
    assert!(out.contains(&mc.addr) && out.contains("CORE") && out.contains("memcore"), "{out}");
    if let Some(md) = &md {
        assert!(out.contains(&md.addr) && out.contains("memcached 1.6"), "{out}");
        assert!(out.contains("TOTAL"), "{out}");
    }
}

#[test]
fn server_flags_are_not_taken_for_a_subcommand() {
    let (code, out) = run_client(&["top", "--bogus"], Duration::from_secs(5));
    assert_eq!(code, 64, "{out}");
    let (code, out) = run_client(&["stat"], Duration::from_secs(5));
    assert_eq!(code, 64, "{out}");
    // The server's own flags still parse (-h prints them and exits 0).
    let (code, out) = run_client(&["-p", "11211", "-h"], Duration::from_secs(5));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("--port"), "{out}");
}

#[test]
fn stats_latency_shows_percentiles_per_command_and_for_hops() {
    let Some(srv) = Server::start_custom_or_skip("stats latency", 2, &[]) else { return };
    if !srv.is_memcore() {
        return;
    }
    let mut c = srv.conn();
    for i in 0..200 {
        c.request(&store_cmd("set", &format!("lat:{i}"), 0, 0, b"v"));
        c.request(format!("get lat:{i}\r\n").as_bytes());
    }
    c.request(b"delete lat:0\r\n");
    let s = c.stats("stats latency");
    assert_eq!(stat_u64(&s, "get:count"), 200, "{s:?}");
    assert_eq!(stat_u64(&s, "set:count"), 200, "{s:?}");
    assert_eq!(stat_u64(&s, "delete:count"), 1, "{s:?}");
    // With two cores about half the keys live on the other one.
    assert!(stat_u64(&s, "hop:count") > 20, "{s:?}");
    let q = |name: &str| -> f64 { s[name].parse().unwrap() };
    assert!(q("get:p50") > 0.0 && q("get:p50") <= q("get:p90"), "{s:?}");
    assert!(q("get:p90") <= q("get:p99") && q("get:p99") <= q("get:p99.9") && q("get:p99.9") <= q("get:max"));
    // Each request took more than nothing and less than a second here.
    assert!(q("get:max") < 1e6, "{s:?}");
    assert!(!s.contains_key("touch:p50"), "kinds never seen show their count only");
    c.request(b"stats reset\r\n");
    let s = c.stats("stats latency");
    assert_eq!(stat_u64(&s, "get:count"), 0, "{s:?}");
}

fn reply_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `GET path` over HTTP/1.1: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).expect("read the reply to its close");
    let (head, body) = all.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

#[test]
fn metrics_serve_the_stats_table_in_prometheus_format() {
    if !matches!(Server::custom_bin(), Some((_, Kind::Memcore))) {
        eprintln!("SKIP metrics: memcore's flag");
        return;
    }
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let Some(srv) = Server::start_custom_or_skip("metrics", 2, &["--metrics-listen", &listen]) else { return };
    if !srv.is_memcore() {
        return;
    }
    traffic(&srv);
    assert!(srv.log().contains(&format!("metrics at http://{listen}/metrics")), "{}", srv.log());
    let (status, body) = http_get(&listen, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    for want in [
        "memcached_up 1\n",
        "memcached_current_items 2\n",
        "memcached_commands_total{command=\"get\",status=\"hit\"} 1\n",
        "memcached_commands_total{command=\"get\",status=\"miss\"} 1\n",
        "memcached_commands_total{command=\"set\",status=\"hit\"} 2\n",
        "memcore_engine_memory{core=\"1\"} ",
        "memcore_forwarded_out_total{core=\"0\"} ",
        "memcore_request_duration_seconds_count{command=\"get\"} 2\n",
        "memcore_request_duration_seconds_count{command=\"set\"} 2\n",
        "# TYPE memcore_hop_duration_seconds histogram\n",
        "memcore_repl_enabled 0\n",
    ] {
        assert!(body.contains(want), "no {want:?} in\n{body}");
    }
    assert_eq!(http_get(&listen, "/nothing").0, "HTTP/1.1 404 Not Found");
    // A request head that never ends is cut off, and the server still serves.
    let mut s = std::net::TcpStream::connect(&listen).unwrap();
    s.write_all(&vec![b'a'; 64 * 1024]).ok();
    assert_eq!(http_get(&listen, "/metrics").0, "HTTP/1.1 200 OK");
    // A client that stalls mid-request holds the endpoint only until its
    // read times out (2 s).
    let mut stall = std::net::TcpStream::connect(&listen).unwrap();
    stall.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    assert_eq!(http_get(&listen, "/metrics").0, "HTTP/1.1 200 OK");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    srv.conn().version_check();

    // promtool, from Debian's prometheus package, checks the format.
    let Some(promtool) = promtool() else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "promtool check metrics:\n{text}");
}

#[test]
fn metrics_are_off_by_default() {
    let Some(srv) = Server::start_custom_or_skip("metrics off", 1, &[]) else { return };
    if !srv.is_memcore() {
        return;
    }
    assert!(!srv.log().contains("metrics at"), "{}", srv.log());
}

#[test]
fn hot_keys_are_counted_once_turned_on() {
    let Some(srv) = Server::start_custom_or_skip("hot keys", 2, &[]) else { return };
    if !srv.is_memcore() {
        return;
    }
    let mut c = srv.conn();
    assert_eq!(reply_text(&c.request(b"stats hotkeys\r\n")), "STAT hotkeys off\r\nEND\r\n");
    c.request(b"get before\r\n");
    assert_eq!(reply_text(&c.request(b"stats hotkeys on\r\n")), "OK\r\n");
    for i in 0..300 {
        c.request(format!("get hot:r other:{i}\r\n").as_bytes());
        if i % 3 == 0 {
            c.request(&store_cmd("set", "hot:w", 0, 0, b"v"));
        }
    }
    let s = c.stats("stats hotkeys");
    assert_eq!(s["hotkeys"], "on");
    assert_eq!(s["read:0:key"], "hot:r", "{s:?}");
    assert_eq!(stat_u64(&s, "read:0:count"), 300, "{s:?}");
    assert_eq!(s["write:0:key"], "hot:w", "{s:?}");
    assert_eq!(stat_u64(&s, "write:0:count"), 100, "{s:?}");
    assert!(!s.values().any(|v| v == "before"), "counting starts when turned on");
    assert_eq!(reply_text(&c.request(b"stats hotkeys off\r\n")), "OK\r\n");
    c.request(b"get hot:r\r\n");
    let s = c.stats("stats hotkeys");
    assert_eq!((s["hotkeys"].as_str(), stat_u64(&s, "read:0:count")), ("off", 300), "off keeps the last counts");
    assert_eq!(reply_text(&c.request(b"stats hotkeys maybe\r\n")), "CLIENT_ERROR usage: stats hotkeys [on|off]\r\n");
}

/// Lines of `lru_crawler metadump all` up to END.
fn metadump(c: &mut Conn) -> Vec<String> {
    c.send(b"lru_crawler metadump all\r\n");
    let raw = c.read_until(b"END\r\n");
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.lines().take_while(|l| *l != "END").map(String::from).collect()
}

#[test]
fn metadump_lists_every_item_in_memcacheds_format() {
    let Some(srv) = Server::start_custom_or_skip("metadump", 2, &[]) else { return };
    let mut c = srv.conn();
    let n = 3000;
    for i in 0..n {
        c.request(&store_cmd("set", &format!("md:{i}"), 7, 0, &[b'x'; 200]));
    }
    c.request(&store_cmd("set", "md:exp", 0, 1000, b"v"));
    c.request(b"get md:exp\r\n");
    let lines = metadump(&mut c);
    let shape = |l: &str| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() == 7
            && f[0].starts_with("key=")
            && f[1].strip_prefix("exp=").is_some_and(|v| v.parse::<i64>().is_ok())
            && f[2].strip_prefix("la=").is_some_and(|v| v.parse::<u64>().is_ok())
            && f[3].strip_prefix("cas=").is_some_and(|v| v.parse::<u64>().is_ok())
            && (f[4] == "fetch=yes" || f[4] == "fetch=no")
            && f[5].starts_with("cls=")
            && f[6].strip_prefix("size=").is_some_and(|v| v.parse::<u64>().is_ok())
    };
    assert!(lines.iter().all(|l| shape(l)), "{:?}", lines.iter().find(|l| !shape(l)));
    let keys: std::collections::HashSet<&str> =
        lines.iter().map(|l| l.split(' ').next().unwrap().strip_prefix("key=").unwrap()).collect();
    // Keys are URI-encoded (':' is %3A), as memcached writes them.
    assert!(keys.contains("md%3A0") && keys.contains(&*format!("md%3A{}", n - 1)), "{keys:?}");
    assert_eq!(keys.len(), n + 1, "every key once");
    let exp = lines.iter().find(|l| l.starts_with("key=md%3Aexp ")).unwrap();
    assert!(exp.contains(" fetch=yes ") && !exp.contains(" exp=-1 "), "{exp}");
    assert!(lines.iter().find(|l| l.starts_with("key=md%3A5 ")).unwrap().contains(" exp=-1 "));
    assert_eq!(reply_text(&c.request(b"lru_crawler metadump 99\r\n")), "BADCLASS invalid class id\r\n");
    assert_eq!(reply_text(&c.request(b"lru_crawler metadump\r\n")), "ERROR\r\n");
    assert_eq!(reply_text(&c.request(b"lru_crawler crawl all\r\n")), "OK\r\n");
    c.version_check();

    // memcached-tool (memcached's own script) reads it.
    let tool = "/usr/share/memcached/scripts/memcached-tool";
    if !std::path::Path::new(tool).exists() || Command::new("perl").arg("-v").output().is_err() {
        eprintln!("SKIP memcached-tool half: no {tool} or perl");
        return;
    }
    let run_tool = |mode: &str| {
        let out = Command::new("perl").args([tool, &srv.addr, mode]).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "memcached-tool {mode}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = run_tool("keys");
    assert_eq!(listed.lines().filter(|l| l.starts_with("key=")).count(), n + 1);
    let dump = run_tool("dump");
    assert_eq!(dump.matches("add md:").count(), n + 1, "{}", &dump[..dump.len().min(500)]);
    assert!(dump.contains(&format!("add md:17 7 0 200\r\n{}\r\n", "x".repeat(200))));
}

/// A log line without its time, id and client fd, which differ run to run.
fn watch_fields(line: &str) -> String {
    line.split(' ')
        .filter(|f| !f.starts_with("ts=") && !f.starts_with("gid=") && !f.starts_with("cfd="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn watch_streams_fetchers_and_mutations_as_memcached_does() {
    let srv = Server::start(2, &[]);
    let mut w = std::net::TcpStream::connect(&srv.addr).unwrap();
    w.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    w.write_all(b"watch fetchers mutations\r\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    assert!(poll_until(IO_TIMEOUT, || {
        if let Ok(n) = w.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.starts_with("OK\r\n")
    }));
    let mut c = srv.conn();
    c.request(&store_cmd("set", "wk:1", 0, 0, b"hello"));
    c.request(b"get wk:1\r\n");
    c.request(b"get nokey\r\n");
    c.request(&store_cmd("replace", "zz", 0, 0, b"x"));
    let want = [
        "type=item_store key=wk%3A1 status=stored cmd=set ttl=0 clsid=1 size=5",
        "type=item_get key=wk%3A1 status=found clsid=1 size=5",
        "type=item_get key=nokey status=not_found clsid=0 size=0",
        "type=item_store key=zz status=not_stored cmd=replace ttl=0 clsid=1 size=1",
    ];
    let all_seen = |seen: &str| {
        let got: Vec<String> = seen.lines().map(watch_fields).collect();
        // In order; memcached adds lines for its own lookups in between.
        let mut at = 0;
        want.iter().all(|w| match got[at..].iter().position(|g| g == w) {
            Some(i) => {
                at += i + 1;
                true
            }
            None => false,
        })
    };
    let ok = poll_until(IO_TIMEOUT, || {
        if let Ok(n) = w.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        all_seen(&seen)
    });
    assert!(ok, "{seen}");
    assert!(seen.lines().skip(1).all(|l| l.starts_with("ts=") && l.contains(" gid=")), "{seen}");
    assert_eq!(reply_text(&c.request(b"watch bogus\r\n")), "ERROR\r\n");
    if srv.is_memcore() {
        assert_eq!(
            reply_text(&c.request(b"watch evictions\r\n")),
            "SERVER_ERROR watch evictions is not supported by memcore (fetchers and mutations are)\r\n"
        );
    }
    c.version_check();
}

#[test]
fn a_watcher_that_does_not_read_holds_a_bounded_buffer() {
    let Some(srv) = Server::start_custom_or_skip("watch slow", 1, &[]) else { return };
    if !srv.is_memcore() {
        return;
    }
    let mut w = srv.conn();
    assert_eq!(reply_text(&w.request(b"watch fetchers\r\n")), "OK\r\n");
    // A multi-get line of 500 keys, 1000 times: 500,000 lines (about 40 MB)
    // that the watcher never reads.
    let line = format!("get {}\r\n", (0..500).map(|i| format!("slowwatch:{i}")).collect::<Vec<_>>().join(" "));
    let mut c = srv.conn();
    c.request(line.as_bytes());
    let before = rss_bytes(srv.pid().unwrap());
    for _ in 0..1000 {
        c.request(line.as_bytes());
    }
    let grown = rss_bytes(srv.pid().unwrap()).saturating_sub(before);
    assert!(grown < 16 << 20, "RSS grew by {grown} bytes");
    c.version_check();
}

fn detail_dump(c: &mut Conn) -> String {
    c.send(b"stats detail dump\r\n");
    reply_text(&c.read_until(b"END\r\n"))
}

#[test]
fn stats_detail_counts_per_prefix_as_memcached_does() {
    let Some(srv) = Server::start_custom_or_skip("stats detail", 2, &[]) else { return };
    let mut c = srv.conn();
    assert_eq!(detail_dump(&mut c), "END\r\n");
    c.request(&store_cmd("set", "dt:0", 0, 0, b"x"));
    assert_eq!(c.stats("stats settings")["detail_enabled"], "no");
    assert_eq!(reply_text(&c.request(b"stats detail on\r\n")), "OK\r\n");
    assert_eq!(c.stats("stats settings")["detail_enabled"], "yes");
    c.request(&store_cmd("set", "dt:1", 0, 0, b"x"));
    c.request(b"get dt:1\r\n");
    c.request(b"get dt:2 dt:3\r\n");
    c.request(b"delete dt:1\r\n");
    c.request(b"delete dt:9\r\n");
    c.request(&store_cmd("set", "nodelim", 0, 0, b"x"));
    c.request(b"get nodelim\r\n");
    c.request(&store_cmd("add", "dt:1", 0, 0, b"x"));
    c.request(&store_cmd("add", "dt:1", 0, 0, b"x"));
    c.request(b"gat 10 dt:1\r\n");
    c.request(&store_cmd("set", "dt:big", 0, 0, &vec![b'x'; 2 << 20]));
    assert_eq!(detail_dump(&mut c), "PREFIX dt get 4 hit 2 set 4 del 2\r\nEND\r\n");
    assert_eq!(reply_text(&c.request(b"stats detail off\r\n")), "OK\r\n");
    c.request(b"get dt:1\r\n");
    assert_eq!(detail_dump(&mut c), "PREFIX dt get 4 hit 2 set 4 del 2\r\nEND\r\n");
    assert_eq!(reply_text(&c.request(b"stats detail\r\n")), "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
    c.request(b"stats reset\r\n");
    assert_eq!(detail_dump(&mut c), "END\r\n");
}

#[test]
fn stats_detail_ends_prefixes_at_the_d_delimiter() {
    let Some(srv) = Server::start_custom_or_skip("stats detail -D", 1, &["-D", "/"]) else { return };
    let mut c = srv.conn();
    c.request(b"stats detail on\r\n");
    assert_eq!(c.stats("stats settings")["stat_key_prefix"], "/");
    c.request(&store_cmd("set", "a/b:c", 0, 0, b"x"));
    c.request(&store_cmd("set", "a:b", 0, 0, b"x"));
    assert_eq!(detail_dump(&mut c), "PREFIX a get 0 hit 0 set 1 del 0\r\nEND\r\n");
}

/// promtool's path, or None (then the caller skips, except in CI).
fn promtool() -> Option<&'static str> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some("promtool");
    }
    assert!(std::env::var_os("MEMCORE_CI").is_none(), "promtool is missing in CI (.ci/run installs prometheus)");
    eprintln!("SKIP: promtool not installed (apt-get install prometheus)");
    None
}

#[test]
fn the_documented_alert_rules_pass_promtool() {
    let Some(promtool) = promtool() else { return };
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    // The rules are the yaml block that starts with `groups:` (the page
    // has other yaml, such as Kubernetes settings).
    let rules = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|r| r.split("```").next())
        .find(|r| r.starts_with("groups:"))
        .expect("a yaml block of rules");
    let path = temp_path("rules.yml");
    std::fs::write(&path, rules).unwrap();
    let out = Command::new(promtool).arg("check").arg("rules").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_real_prometheus_scrapes_it() {
    if !matches!(Server::custom_bin(), Some((_, Kind::Memcore))) {
        return;
    }
    if Command::new("prometheus").arg("--version").output().is_err() {
        assert!(std::env::var_os("MEMCORE_CI").is_none(), "prometheus is missing in CI (.ci/run installs it)");
        eprintln!("SKIP: prometheus not installed");
        return;
    }
    let metrics = format!("127.0.0.1:{}", free_port());
    let srv = Server::start(2, &["--metrics-listen", &metrics]);
    traffic(&srv);
    let dir = temp_path("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: memcore\n  static_configs:\n  - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    // Prometheus has scraped it once the query answers with the server's figure.
    let query = "/api/v1/query?query=memcached_current_items";
    let mut last = String::new();
    let scraped = poll_every(Duration::from_secs(30), Duration::from_millis(250), || {
        if let Ok(mut s) = std::net::TcpStream::connect(&web) {
            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            let _ = s.write_all(format!("GET {query} HTTP/1.0\r\nHost: {web}\r\n\r\n").as_bytes());
            last.clear();
            let _ = s.read_to_string(&mut last);
        }
        last.contains(r#""status":"success""#) && last.contains(r#","2"]"#)
    });
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(scraped, "prometheus did not report memcached_current_items 2: {last}");
}

/// `-X` and `-W` refuse the dumps and `watch` with memcached's words.
#[test]
fn dumping_and_watch_can_be_disabled_as_memcached_does() {
    let Some(srv) = Server::start_custom_or_skip("disabled_dumps", 2, &["-X", "-W"]) else { return };
    let mut c = srv.conn();
    assert_bytes!(c.request(b"lru_crawler metadump all\r\n"), b"ERROR metadump not allowed\r\n");
    assert_bytes!(c.request(b"stats cachedump 1 1\r\n"), b"CLIENT_ERROR stats cachedump not allowed\r\n");
    assert_bytes!(c.request(b"watch fetchers\r\n"), b"CLIENT_ERROR watch commands not allowed\r\n");
    c.version_check();
}
