//! Replication between real memcore processes on loopback ports
//! (docs/replication.md): read-after-write on peers, convergence of
//! conflicting writes, resync of a node killed with SIGKILL and restarted
//! empty, refused links, and the sync/majority modes.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Conn, Server, free_port, parse_stats, show, stat_u64, store_cmd, value};

struct Node {
    srv: Server,
    repl_port: u16,
}

/// Start `n` nodes (ids 1..=n) that all peer with each other.
fn group(n: usize, threads: usize, extra: &[&str]) -> Vec<Node> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    (0..n).map(|i| start_node(i, &ports, threads, extra)).collect()
}

fn start_node(i: usize, ports: &[u16], threads: usize, extra: &[&str]) -> Node {
    let listen = format!("127.0.0.1:{}", ports[i]);
    let peers: Vec<String> =
        ports.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, p)| format!("127.0.0.1:{p}")).collect();
    let id = (i + 1).to_string();
    let peers = peers.join(",");
    let mut args = vec!["--repl-listen", &listen, "--peers", &peers, "--node-id", &id];
    if !extra.contains(&"--repl-secret") {
        args.push("--repl-insecure");
    }
    args.extend_from_slice(extra);
    Node { srv: Server::spawn(common::memcore_bin(), common::Kind::Memcore, threads, &args), repl_port: ports[i] }
}

fn repl_stats(c: &mut Conn) -> HashMap<String, String> {
    parse_stats(&c.request(b"stats repl\r\n"))
}

fn digest(n: &Node) -> String {
    repl_stats(&mut n.srv.conn()).get("repl_digest").cloned().unwrap_or_default()
}

/// Poll every millisecond (the read-after-write bound is 100 ms).
fn poll(limit: Duration, f: impl FnMut() -> bool) -> bool {
    common::poll_every(limit, Duration::from_millis(1), f)
}

/// Storage commands `c`'s node has run.
fn sets(c: &mut Conn) -> u64 {
    stat_u64(&c.stats("stats"), "cmd_set")
}

/// Wait until `c`'s node has run `more` storage commands beyond what it
/// had (a load running on it made progress).
fn wait_for_sets(c: &mut Conn, more: u64) {
    let start = sets(c);
    assert!(poll(Duration::from_secs(10), || sets(c) >= start + more), "the load made no progress");
}

fn all_linked(nodes: &[Node]) {
    for n in nodes {
        let ok = poll(Duration::from_secs(10), || {
            let s = repl_stats(&mut n.srv.conn());
            (0..nodes.len() - 1).all(|p| s.get(&format!("peer{p}_state")).map(String::as_str) == Some("connected"))
        });
        assert!(ok, "links not up: {:?}\nlog: {}", repl_stats(&mut n.srv.conn()), n.srv.log());
    }
}

fn get(c: &mut Conn, key: &str) -> Vec<u8> {
    c.request(format!("get {key}\r\n").as_bytes())
}

fn converged(nodes: &[Node], limit: Duration) -> bool {
    poll(limit, || {
        let d: Vec<String> = nodes.iter().map(digest).collect();
        d.iter().all(|x| *x == d[0])
    })
}

/// With a secret (links sealed), as a group should run.
#[test]
fn a_write_on_any_node_is_readable_on_the_others_within_100ms() {
    let path = secret_file("100ms", b"three nodes");
    let nodes = group(3, 2, &["--repl-secret", path.to_str().unwrap()]);
    all_linked(&nodes);
    let mut conns: Vec<Conn> = nodes.iter().map(|n| n.srv.conn()).collect();
    let mut worst = Duration::ZERO;
    for round in 0..30 {
        let w = round % 3;
        let key = format!("raw:{round}");
        let data = format!("value-{round}");
        assert_eq!(conns[w].request(&store_cmd("set", &key, 7, 0, data.as_bytes())), b"STORED\r\n");
        let t = Instant::now();
        for r in (0..3).filter(|&r| r != w) {
            let want = value(&key, 7, data.as_bytes());
            let mut last = Vec::new();
            let ok = poll(Duration::from_millis(100), || {
                last = get(&mut conns[r], &key);
                last.starts_with(&want)
            });
            assert!(ok, "node {r} lacks {key} 100 ms after the write on node {w}: {}", common::show(&last));
        }
        worst = worst.max(t.elapsed());
    }
    eprintln!("worst read-after-write delay on the two peers: {worst:?}");
    // Every kind of write travels as its result.
    let c = &mut conns[0];
    assert_eq!(c.request(&store_cmd("set", "n", 0, 0, b"41")), b"STORED\r\n");
    assert_eq!(c.request(b"incr n 1\r\n"), b"42\r\n");
    assert_eq!(c.request(&store_cmd("append", "n", 0, 0, b"x")), b"STORED\r\n");
    assert_eq!(c.request(&store_cmd("set", "gone", 0, 0, b"v")), b"STORED\r\n");
    assert_eq!(c.request(b"delete gone\r\n"), b"DELETED\r\n");
    assert_eq!(c.request(b"touch n 1000\r\n"), b"TOUCHED\r\n");
    for (r, conn) in conns.iter_mut().enumerate().skip(1) {
        let ok = poll(Duration::from_millis(500), || {
            get(conn, "n") == [value("n", 0, b"42x"), b"END\r\n".to_vec()].concat() && get(conn, "gone") == b"END\r\n"
        });
        assert!(ok, "node {r}: n={} gone={}", common::show(&get(conn, "n")), common::show(&get(conn, "gone")));
    }
    assert!(converged(&nodes, Duration::from_secs(2)), "digests differ");
    let s = repl_stats(&mut conns[1]);
    assert_eq!(s["repl_node_id"], "2");
    assert_eq!(s["repl_state"], "ok");
    assert_ne!(s["repl_digest"], "0000000000000000");
    assert!(s["peer0_items_received"].parse::<u64>().unwrap() > 0, "{s:?}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn conflicting_writes_on_all_nodes_converge() {
    let nodes = group(3, 2, &[]);
    all_linked(&nodes);
    let addrs: Vec<String> = nodes.iter().map(|n| n.srv.addr.clone()).collect();
    let writers: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(&addr);
                for round in 0..20 {
                    let mut batch = Vec::new();
                    for k in 0..50 {
                        batch.extend_from_slice(&store_cmd(
                            "set",
                            &format!("c:{k}"),
                            i as u32,
                            0,
                            format!("n{i}r{round}").as_bytes(),
                        ));
                    }
                    batch.extend_from_slice(format!("delete c:{}\r\n", round % 50).as_bytes());
                    let r = c.request_n(&batch, 51);
                    assert!(r.starts_with(b"STORED\r\n"), "{}", common::show(&r));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(converged(&nodes, Duration::from_secs(5)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    let mut conns: Vec<Conn> = nodes.iter().map(|n| n.srv.conn()).collect();
    for k in 0..50 {
        let key = format!("c:{k}");
        let a = get(&mut conns[0], &key);
        for c in conns.iter_mut().skip(1) {
            assert_eq!(common::show(&get(c, &key)), common::show(&a), "{key}");
        }
    }
    let conflicts: u64 =
        conns.iter_mut().map(|c| repl_stats(c)["repl_conflicts_resolved"].parse::<u64>().unwrap()).sum();
    assert!(conflicts > 0, "three nodes writing the same keys must have had conflicts");
}

#[test]
fn a_node_killed_mid_load_and_restarted_empty_resyncs() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // A small backlog, so the restarted node cannot catch up from it alone;
    // sealed links, so the resync after a kill -9 goes sealed too.
    let path = secret_file("kill", b"survives a kill");
    let extra = ["--repl-backlog", "1", "--repl-secret", path.to_str().unwrap()];
    let mut nodes: Vec<Node> = (0..3).map(|i| start_node(i, &ports, 2, &extra)).collect();
    all_linked(&nodes);
    let addr = nodes[0].srv.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Conn::connect(&addr);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut batch = Vec::new();
                for _ in 0..20 {
                    batch.extend_from_slice(&store_cmd("set", &format!("k:{}", i % 5000), 0, 0, &[b'v'; 200]));
                    i += 1;
                }
                let r = c.request_n(&batch, 20);
                assert_eq!(r.len(), 20 * 8, "{}", common::show(&r));
            }
            i
        })
    };
    let mut c0 = nodes[0].srv.conn();
    wait_for_sets(&mut c0, 2000);
    nodes[2].srv.signal(libc::SIGKILL);
    nodes[2].srv.wait_exit(Duration::from_secs(5)).expect("killed node exits");
    // The others keep serving meanwhile.
    let mut c1 = nodes[1].srv.conn();
    assert_eq!(c1.request(&store_cmd("set", "during", 0, 0, b"x")), b"STORED\r\n");
    wait_for_sets(&mut c0, 2000);
    nodes[2] = start_node(2, &ports, 2, &extra);
    // The load goes on while the restarted node links and resyncs.
    wait_for_sets(&mut c0, 2000);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = load.join().unwrap();
    assert!(converged(&nodes, Duration::from_secs(10)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    let mut c2 = nodes[2].srv.conn();
    assert_eq!(get(&mut c2, "during"), [value("during", 0, b"x"), b"END\r\n".to_vec()].concat());
    let s = repl_stats(&mut c2);
    assert_eq!(s["repl_items"], repl_stats(&mut c1)["repl_items"]);
    assert_eq!(s["repl_items"], (written.min(5000) + 1).to_string(), "{s:?}");
    assert!(s["peer0_resyncs_received"].parse::<u64>().unwrap() >= 1, "{s:?}");
    // The digests can agree a moment before the last snapshot's end is
    // processed: the state must reach ok soon after.
    let ok = poll(Duration::from_secs(10), || repl_stats(&mut c2)["repl_state"] == "ok");
    assert!(ok, "still {:?}", repl_stats(&mut c2)["repl_state"]);
    let _ = std::fs::remove_file(path);
}

#[test]
fn wrong_secret_and_garbage_are_refused_and_nothing_is_applied() {
    let dir = std::env::temp_dir();
    let good = dir.join(format!("memcore-secret-{}-a", std::process::id()));
    let bad = dir.join(format!("memcore-secret-{}-b", std::process::id()));
    std::fs::write(&good, "correct horse\n").unwrap();
    std::fs::write(&bad, "battery staple\n").unwrap();
    let ports = [free_port(), free_port()];
    let a = start_node(0, &ports, 1, &["--repl-secret", good.to_str().unwrap()]);
    let b = start_node(1, &ports, 1, &["--repl-secret", bad.to_str().unwrap()]);
    let mut cb = b.srv.conn();
    assert_eq!(cb.request(&store_cmd("set", "intruder", 0, 0, b"x")), b"STORED\r\n");
    // Garbage on the replication port: closed without an answer.
    let mut g = std::net::TcpStream::connect(("127.0.0.1", a.repl_port)).unwrap();
    use std::io::{Read, Write};
    g.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    g.write_all(b"get intruder\r\nset x 0 0 1\r\nx\r\n").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(g.read(&mut buf).unwrap_or(0), 0, "garbage gets no answer");
    // Each side proves the secret, the linker first: with different
    // secrets each node, as the acceptor, refuses the other and logs it.
    let refused = poll(Duration::from_secs(5), || {
        let log = a.srv.log();
        log.contains("failed the secret check") && log.contains("not a memcore replication link")
    });
    assert!(refused, "log of node 1: {}", a.srv.log());
    assert!(poll(Duration::from_secs(5), || b.srv.log().contains("failed the secret check")), "{}", b.srv.log());
    let mut ca = a.srv.conn();
    assert_eq!(get(&mut ca, "intruder"), b"END\r\n");
    assert_eq!(get(&mut ca, "x"), b"END\r\n");
    let s = repl_stats(&mut ca);
    assert_eq!((s["repl_items"].as_str(), s["repl_items_received"].as_str()), ("0", "0"));
    assert_eq!(s["peer0_state"], "down", "{s:?}");
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
}

#[test]
fn sync_mode_acknowledged_writes_survive_a_crash_of_the_node_that_took_them() {
    let ports = [free_port(), free_port()];
    let mut nodes: Vec<Node> = (0..2).map(|i| start_node(i, &ports, 2, &["--repl-mode", "sync"])).collect();
    all_linked(&nodes);
    let mut ca = nodes[0].srv.conn();
    let mut cb = nodes[1].srv.conn();
    for i in 0..100 {
        let key = format!("s:{i}");
        assert_eq!(ca.request(&store_cmd("set", &key, 0, 0, key.as_bytes())), b"STORED\r\n");
        // No polling: an acknowledged write is already on the live peer.
        assert_eq!(get(&mut cb, &key), [value(&key, 0, key.as_bytes()), b"END\r\n".to_vec()].concat());
    }
    assert_eq!(ca.request(b"delete s:0\r\n"), b"DELETED\r\n");
    assert_eq!(get(&mut cb, "s:0"), b"END\r\n");
    assert_eq!(ca.request(b"incr s:1 1\r\n"), b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    nodes[0].srv.signal(libc::SIGKILL);
    nodes[0].srv.wait_exit(Duration::from_secs(5)).expect("killed node exits");
    for i in 1..100 {
        let key = format!("s:{i}");
        assert_eq!(get(&mut cb, &key), [value(&key, 0, key.as_bytes()), b"END\r\n".to_vec()].concat());
    }
}

#[test]
fn majority_mode_reports_a_write_no_peer_could_take_and_keeps_it_locally() {
    let ports = [free_port(), free_port()];
    let extra = ["--repl-mode", "majority", "--repl-timeout", "300"];
    let mut nodes: Vec<Node> = (0..2).map(|i| start_node(i, &ports, 1, &extra)).collect();
    all_linked(&nodes);
    let mut ca = nodes[0].srv.conn();
    assert_eq!(ca.request(&store_cmd("set", "m1", 0, 0, b"a")), b"STORED\r\n");
    nodes[1].srv.signal(libc::SIGKILL);
    nodes[1].srv.wait_exit(Duration::from_secs(5)).expect("killed node exits");
    let t = Instant::now();
    let r = ca.request(&store_cmd("set", "m2", 0, 0, b"b"));
    assert!(r.starts_with(b"SERVER_ERROR replication timeout: 0 of 1 peers"), "{}", common::show(&r));
    assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(get(&mut ca, "m2"), [value("m2", 0, b"b"), b"END\r\n".to_vec()].concat(), "applied locally");
    // noreply writes do not wait and stay silent.
    ca.send(b"set m3 0 0 1 noreply\r\nc\r\n");
    assert_eq!(ca.request(b"get m3\r\n"), [value("m3", 0, b"c"), b"END\r\n".to_vec()].concat());
    assert_eq!(repl_stats(&mut ca)["repl_write_timeouts"], "1");
    // The peer comes back empty, resyncs, and writes are acknowledged again.
    nodes[1] = start_node(1, &ports, 1, &extra);
    all_linked(&nodes);
    let mut cb = nodes[1].srv.conn();
    assert_eq!(ca.request(&store_cmd("set", "m4", 0, 0, b"d")), b"STORED\r\n");
    assert!(converged(&nodes, Duration::from_secs(5)));
    assert_eq!(get(&mut cb, "m2"), [value("m2", 0, b"b"), b"END\r\n".to_vec()].concat());
}

/// A sync write waits for the peers only when it changed something, on
/// whichever core owns its key (the owner says so with the reply, typed):
/// with no peer reachable, a set, touch or incr that wrote times out, and
/// a delete, add or incr that changed nothing answers at once.
#[test]
fn only_writes_that_changed_something_wait_for_the_peers_on_any_core() {
    let ports = [free_port(), free_port()];
    // The second node never starts: no ACK ever comes.
    let node = start_node(0, &ports, 2, &["--repl-mode", "majority", "--repl-timeout", "100"]);
    let mut c = node.srv.conn();
    let keys: Vec<String> = (0..12).map(|i| format!("w{i}")).collect();
    for key in &keys {
        let t = Instant::now();
        let r = c.request(&store_cmd("set", key, 0, 0, b"1"));
        assert!(r.starts_with(b"SERVER_ERROR replication timeout: 0 of 1 peers"), "{key}: {}", show(&r));
        assert!(t.elapsed() >= Duration::from_millis(100), "{key} did not wait: {:?}", t.elapsed());
        // Had these waited, they would answer the timeout's SERVER_ERROR.
        assert_bytes!(c.request(format!("delete {key}-missing\r\n").as_bytes()), b"NOT_FOUND\r\n");
        assert_bytes!(c.request(&store_cmd("add", key, 0, 0, b"2")), b"NOT_STORED\r\n");
        assert_bytes!(c.request(format!("incr {key}-missing 1\r\n").as_bytes()), b"NOT_FOUND\r\n");
    }
    let r = c.request(format!("incr {} 1\r\n", keys[0]).as_bytes());
    assert!(r.starts_with(b"SERVER_ERROR replication timeout"), "{}", show(&r));
    let r = c.request(format!("touch {} 0\r\n", keys[1]).as_bytes());
    assert!(r.starts_with(b"SERVER_ERROR replication timeout"), "{}", show(&r));
    assert_eq!(repl_stats(&mut c)["repl_write_timeouts"], "14");
    let forwarded = stat_u64(&c.stats("stats"), "forwarded_requests");
    assert!(forwarded > 0, "no key was owned by the other core");
}

/// Values the sender stores compressed travel as they are stored (no
/// decompression and recompression on the peer): a peer running with
/// --compress off holds them compressed too, serves them as clients wrote
/// them, and the digests agree.
#[test]
fn compressed_values_replicate_as_clients_see_them() {
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let a = start_node(0, &ports, 2, &["--compress-min", "64"]);
    let b = start_node(1, &ports, 1, &["--compress", "off"]);
    let nodes = [a, b];
    all_linked(&nodes);
    let mut ca = nodes[0].srv.conn();
    let json: Vec<u8> =
        (0..200).flat_map(|i| format!(r#"{{"id":{i},"name":"user{i}","plan":"pro"}},"#).into_bytes()).collect();
    for i in 0..20 {
        let key = format!("doc{i}");
        assert_bytes!(ca.request(&store_cmd("set", &key, 7, 0, &json)), b"STORED\r\n");
    }
    assert_bytes!(ca.request(&store_cmd("append", "doc0", 0, 0, b"]")), b"STORED\r\n");
    let want = [value("doc0", 7, &[&json[..], b"]"].concat()), b"END\r\n".to_vec()].concat();
    let mut cb = nodes[1].srv.conn();
    assert!(
        poll(Duration::from_secs(2), || get(&mut cb, "doc0") == want),
        "doc0 on b: {:?}",
        show(&get(&mut cb, "doc0"))
    );
    assert!(converged(&nodes, Duration::from_secs(2)), "digests differ");
    let st = ca.stats("stats");
    assert!(stat_u64(&st, "compress_items") >= 10, "a stores them compressed");
    assert!(stat_u64(&cb.stats("stats"), "compress_items") >= 10, "b keeps the frames a sent");
    assert_bytes!(cb.request(b"get doc5\r\n"), [value("doc5", 7, &json), b"END\r\n".to_vec()].concat());
}

/// A peer that stops answering without closing anything (SIGSTOP: its
/// kernel still takes bytes, so TCP sees nothing wrong) is noticed by the
/// heartbeats within about a second; `sync` writes then time out or stop
/// waiting for it, and the link comes back by itself when the peer does.
#[test]
fn a_silent_peer_is_dropped_within_seconds_and_sync_writes_stop_waiting_for_it() {
    let ports = [free_port(), free_port()];
    let extra = ["--repl-mode", "sync", "--repl-timeout", "300"];
    let nodes: Vec<Node> = (0..2).map(|i| start_node(i, &ports, 1, &extra)).collect();
    all_linked(&nodes);
    let mut ca = nodes[0].srv.conn();
    assert_eq!(ca.request(&store_cmd("set", "q0", 0, 0, b"a")), b"STORED\r\n");
    nodes[1].srv.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    // Every thread of the peer stopped, so none of them acknowledges the
    // next write.
    wait_stopped(&nodes[1]);
    // The link still looks up: this write waits for the silent peer.
    let r = ca.request(&store_cmd("set", "q1", 0, 0, b"b"));
    assert!(
        r.starts_with(b"SERVER_ERROR replication timeout: 0 of 1 peers"),
        "{} after {:?}; {:?}\nlog: {}",
        show(&r),
        stopped.elapsed(),
        repl_stats(&mut ca),
        nodes[0].srv.log()
    );
    let down = poll(Duration::from_secs(5), || repl_stats(&mut ca)["peer0_state"] != "connected");
    let noticed = stopped.elapsed();
    assert!(down, "link to a stopped peer still up after {noticed:?}: {:?}", repl_stats(&mut ca));
    eprintln!("a silent peer was noticed after {noticed:?}");
    assert!(noticed < Duration::from_secs(3), "noticed only after {noticed:?}");
    assert!(nodes[0].srv.log().contains("no traffic from the peer"), "{}", nodes[0].srv.log());
    // A peer whose link is down does not count in sync mode.
    let t = Instant::now();
    assert_eq!(ca.request(&store_cmd("set", "q2", 0, 0, b"c")), b"STORED\r\n");
    assert!(t.elapsed() < Duration::from_millis(250), "waited {:?}", t.elapsed());
    nodes[1].srv.signal(libc::SIGCONT);
    all_linked(&nodes);
    assert!(converged(&nodes, Duration::from_secs(10)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    let mut cb = nodes[1].srv.conn();
    for (k, v) in [("q0", b"a"), ("q1", b"b"), ("q2", b"c")] {
        assert_eq!(get(&mut cb, k), [value(k, 0, v), b"END\r\n".to_vec()].concat(), "{k} on the resumed peer");
    }
}

/// A fake peer that speaks the replication wire from docs/replication.md
/// in raw bytes: the handshake either way, with proofs of our choosing,
/// then frames tagged under the session's keys (when it has a secret).
struct FakePeer {
    s: std::net::TcpStream,
    buf: Vec<u8>,
    tx: Option<wire::Session>,
    rx: Option<wire::Session>,
}

use memcore::repl::wire;

const FAKE_NODE: u16 = 9;

impl FakePeer {
    fn connect(port: u16) -> FakePeer {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        FakePeer::over(s)
    }

    fn over(s: std::net::TcpStream) -> FakePeer {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        FakePeer { s, buf: Vec::new(), tx: None, rx: None }
    }

    fn send(&mut self, b: &[u8]) {
        use std::io::Write;
        // The other side may already have closed: that is an answer too.
        let _ = self.s.write_all(b);
    }

    /// One frame, sealed when the session is keyed.
    fn sealed(&mut self, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        wire::frame(&mut f, kind, payload);
        let Some(tx) = &mut self.tx else { return f };
        let mut out = Vec::new();
        assert!(tx.seal(&f, &mut out));
        out
    }

    fn send_frame(&mut self, kind: u8, payload: &[u8]) {
        let b = self.sealed(kind, payload);
        self.send(&b);
    }

    /// The next frame (opened when keyed), or None at the end of the
    /// stream.
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use std::io::Read;
        loop {
            let tag = self.rx.as_ref().map_or(0, wire::Session::tag_len);
            if let Some((_, range, used)) = wire::split_frame(&self.buf, 64 << 20).unwrap()
                && self.buf.len() >= used + tag
            {
                if let Some(rx) = &mut self.rx {
                    let (frame, tag) = self.buf[..used + tag].split_at_mut(used);
                    assert!(rx.open(frame, tag), "a frame from memcore fails its tag");
                }
                let (kind, p) = (self.buf[4], self.buf[range].to_vec());
                self.buf.drain(..used + tag);
                return Some((kind, p));
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Frames until one of `kind` (heartbeats and others skipped).
    fn frame_of(&mut self, kind: u8) -> Option<Vec<u8>> {
        loop {
            match self.frame()? {
                (k, p) if k == kind => return Some(p),
                _ => {}
            }
        }
    }

    /// Until the other side closes, skipping its frames: true if it does
    /// within 5 s.
    fn closed(&mut self) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if self.frame().is_none() {
                return true;
            }
        }
        false
    }

    /// Link to node `port` as node 9 with `secret` (empty: none) and
    /// expect the resume point.
    fn linked(port: u16, secret: &[u8]) -> FakePeer {
        let mut p = FakePeer::connect(port);
        let nonce_l = memcore::repl::random_bytes::<{ wire::NONCE_LEN }>();
        let mut out = Vec::new();
        wire::encode_hello(&mut out, &wire::Hello { node: FAKE_NODE, core: 0, epoch: 0xfeed, nonce: nonce_l });
        p.send(&out);
        let (kind, ch) = p.frame().expect("a challenge");
        assert_eq!((kind, ch.len()), (wire::CHALLENGE, 2 + wire::NONCE_LEN));
        let (their, nonce_a) = (u16::from_le_bytes([ch[0], ch[1]]), &ch[2..]);
        let nodes = (FAKE_NODE, their);
        p.send_frame(wire::AUTH, &wire::proof(secret, wire::ROLE_LINKER, nonce_a, &nonce_l, nodes));
        let (kind, proof) = p.frame().expect("the acceptor's proof");
        assert_eq!(kind, wire::AUTH);
        assert!(wire::proof_ok(secret, wire::ROLE_ACCEPTOR, &nonce_l, nonce_a, nodes, &proof));
        let (to_acceptor, to_linker) = wire::session_keys(secret, &nonce_l, nonce_a, nodes);
        p.tx = Some(wire::Session::for_secret(secret, &to_acceptor));
        p.rx = Some(wire::Session::for_secret(secret, &to_linker));
        assert_eq!(p.frame().map(|f| f.0), Some(wire::RESUME));
        p
    }

    /// Send one batch of `ops` as seq `seq`; returns the bytes sent.
    fn batch(&mut self, seq: u64, ops: &[wire::Op<'_>]) -> Vec<u8> {
        let mut payload = seq.to_le_bytes().to_vec();
        for op in ops {
            wire::encode_op(&mut payload, op);
        }
        let b = self.sealed(wire::BATCH, &payload);
        self.send(&b);
        b
    }
}

fn secret_file(label: &str, secret: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("memcore-secret-{}-{label}", std::process::id()));
    std::fs::write(&path, [secret, b"\n"].concat()).unwrap();
    path
}

fn fake_version(ahead_ms: u64) -> u64 {
    ((memcore::repl::unix_ms() + ahead_ms) << 12) << 8 | u64::from(FAKE_NODE)
}

fn set_op<'a>(key: &'a str, value: &'a [u8], version: u64) -> wire::Op<'a> {
    wire::Op::Set { key: key.as_bytes(), version, flags: 0, exp: 0, value, packed: None }
}

/// The accepting side checks the linker's AUTH before it proves anything
/// itself (its CHALLENGE holds only a nonce): a proof made with another
/// secret, with the acceptor's role, over the nonces in the wrong order,
/// or a truncated one are refused and logged, and a batch sent after it is
/// not applied; the same fake peer with the right proof gets the
/// acceptor's proof and a resume point, and its batch is applied (so the
/// refusals are about the proof alone).
#[test]
fn the_acceptor_refuses_a_wrong_auth_answer_and_applies_nothing() {
    let secret = b"correct horse";
    let path = secret_file("auth", secret);
    let ports = [free_port(), free_port()];
    let a = start_node(0, &ports, 2, &["--repl-secret", path.to_str().unwrap()]);
    let version = fake_version(0);
    // (secret, nonce_l, nonce_a) → the AUTH payload.
    type MakeAuth = fn(&[u8], &[u8], &[u8]) -> Vec<u8>;
    let cases: [(&str, MakeAuth); 5] = [
        ("other-secret", |_, nl, na| wire::proof(b"battery staple", wire::ROLE_LINKER, na, nl, (9, 1)).to_vec()),
        ("acceptor-role", |s, nl, na| wire::proof(s, wire::ROLE_ACCEPTOR, nl, na, (9, 1)).to_vec()),
        ("nonces-swapped", |s, nl, na| wire::proof(s, wire::ROLE_LINKER, nl, na, (9, 1)).to_vec()),
        ("truncated", |s, nl, na| wire::proof(s, wire::ROLE_LINKER, na, nl, (9, 1))[..31].to_vec()),
        ("right", |s, nl, na| wire::proof(s, wire::ROLE_LINKER, na, nl, (9, 1)).to_vec()),
    ];
    for (label, make_auth) in cases {
        let mut p = FakePeer::connect(a.repl_port);
        let nonce_l = [label.len() as u8; wire::NONCE_LEN];
        let mut out = Vec::new();
        let epoch = 0xfeed_0000 + label.len() as u64;
        wire::encode_hello(&mut out, &wire::Hello { node: FAKE_NODE, core: 0, epoch, nonce: nonce_l });
        p.send(&out);
        let (kind, ch) = p.frame().expect("a challenge");
        assert_eq!(kind, wire::CHALLENGE, "{label}");
        assert_eq!(ch.len(), 2 + wire::NONCE_LEN, "{label}: no proof before the linker's");
        assert_eq!(u16::from_le_bytes([ch[0], ch[1]]), 1, "the acceptor's node id");
        let nonce_a = &ch[2..];
        let (to_acceptor, to_linker) = wire::session_keys(secret, &nonce_l, nonce_a, (9, 1));
        out.clear();
        wire::frame(&mut out, wire::AUTH, &make_auth(secret, &nonce_l, nonce_a));
        // A batch right behind the answer, as an intruder would send it
        // (tagged as the right session would tag it).
        let key = format!("fake:{label}");
        p.send(&out);
        p.tx = Some(wire::Session::keyed(&to_acceptor));
        p.batch(1, &[set_op(&key, label.as_bytes(), version)]);
        let mut conn = a.srv.conn();
        if label == "right" {
            let (kind, proof) = p.frame().expect("the acceptor's proof");
            assert_eq!(kind, wire::AUTH);
            assert!(wire::proof_ok(secret, wire::ROLE_ACCEPTOR, &nonce_l, nonce_a, (9, 1), &proof));
            p.rx = Some(wire::Session::keyed(&to_linker));
            assert_eq!(p.frame().map(|f| f.0), Some(wire::RESUME), "{label}");
            assert_eq!(p.frame_of(wire::ACK), Some(1u64.to_le_bytes().to_vec()), "{label}");
            assert_eq!(get(&mut conn, &key), [value(&key, 0, label.as_bytes()), b"END\r\n".to_vec()].concat());
        } else {
            assert_eq!(p.frame(), Some((wire::REFUSE, b"wrong secret".to_vec())), "{label}");
            assert_eq!(p.frame(), None, "{label}: the acceptor closes after refusing");
            assert_eq!(get(&mut conn, &key), b"END\r\n", "{label}: nothing applied");
        }
    }
    let log = a.srv.log();
    assert_eq!(log.matches("node 9 failed the secret check").count(), 4, "{log}");
    let s = repl_stats(&mut a.srv.conn());
    assert_eq!((s["repl_items"].as_str(), s["repl_items_received"].as_str()), ("1", "1"), "{s:?}");
    let _ = std::fs::remove_file(path);
}

/// After the handshake every frame is tagged for its session and its
/// place in it: a frame with one byte changed, the same frame sent twice,
/// frames out of order, or a frame recorded from an earlier session each
/// drop the link, and none of them is applied.
#[test]
fn a_tampered_replayed_reordered_or_foreign_frame_drops_the_link() {
    let secret = b"tag every frame";
    let path = secret_file("tags", secret);
    let ports = [free_port(), free_port()];
    let a = start_node(0, &ports, 1, &["--repl-secret", path.to_str().unwrap()]);
    let mut conn = a.srv.conn();
    let v = fake_version(0);
    let has = |conn: &mut Conn, key: &str| get(conn, key) != b"END\r\n";

    let mut p = FakePeer::linked(a.repl_port, secret);
    let first = p.batch(1, &[set_op("t:first", b"1", v)]);
    assert_eq!(p.frame_of(wire::ACK), Some(1u64.to_le_bytes().to_vec()));
    assert!(has(&mut conn, "t:first"), "a well-tagged batch is applied");
    p.send(&first);
    assert!(p.closed(), "a replayed frame drops the link");

    let mut p = FakePeer::linked(a.repl_port, secret);
    let mut b = p.sealed(wire::BATCH, &[&2u64.to_le_bytes()[..], &op_bytes(&set_op("t:tampered", b"2", v))].concat());
    let at = b.len() - wire::TAG_LEN - 1;
    b[at] ^= 1;
    p.send(&b);
    assert!(p.closed(), "a changed byte drops the link");

    let mut p = FakePeer::linked(a.repl_port, secret);
    let one = p.sealed(wire::BATCH, &[&3u64.to_le_bytes()[..], &op_bytes(&set_op("t:one", b"3", v))].concat());
    let two = p.sealed(wire::BATCH, &[&4u64.to_le_bytes()[..], &op_bytes(&set_op("t:two", b"4", v))].concat());
    p.send(&two);
    p.send(&one);
    assert!(p.closed(), "frames out of order drop the link");

    let mut p = FakePeer::linked(a.repl_port, secret);
    p.send(&first);
    assert!(p.closed(), "a frame from an earlier session drops the link");

    for key in ["t:tampered", "t:one", "t:two"] {
        assert!(!has(&mut conn, key), "{key} applied");
    }
    assert_eq!(a.srv.log().matches("failed its tag check").count(), 4, "{}", a.srv.log());
    let s = repl_stats(&mut conn);
    assert_eq!((s["repl_frames_rejected"].as_str(), s["repl_encrypted"].as_str()), ("4", "yes"), "{s:?}");
    let _ = std::fs::remove_file(path);
}

/// A node of another version of the protocol (MCREPL02: frames in clear,
/// HMAC-tagged) is refused at its HELLO with a REFUSE that names both
/// versions, and the refusal is logged and counted. The other way round,
/// an old node closes on our MCREPL03 HELLO (played here by a listener
/// that reads it and hangs up), and the linking node's log says why.
#[test]
fn a_peer_of_the_previous_protocol_version_is_refused_clearly() {
    let path = secret_file("version", b"same secret");
    let old = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = [free_port(), old.local_addr().unwrap().port()];
    let a = start_node(0, &ports, 1, &["--repl-secret", path.to_str().unwrap()]);
    {
        use std::io::Read;
        let (mut s, _) = old.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The whole HELLO, as an old node reads it before it gives up.
        let mut hello = [0u8; 5 + wire::HELLO_LEN];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[5..13], wire::MAGIC);
        assert_eq!(wire::MAGIC, b"MCREPL03");
    }
    let said = poll(Duration::from_secs(5), || {
        a.srv.log().contains("closed before challenge (a node of an older replication protocol")
    });
    assert!(said, "{}", a.srv.log());
    let mut p = FakePeer::connect(a.repl_port);
    let mut out = Vec::new();
    wire::encode_hello(&mut out, &wire::Hello { node: FAKE_NODE, core: 0, epoch: 1, nonce: [7; wire::NONCE_LEN] });
    // After the length (4) and the type (1), the magic.
    out[5..13].copy_from_slice(b"MCREPL02");
    p.send(&out);
    let (kind, why) = p.frame().expect("an answer");
    let why = String::from_utf8_lossy(&why).into_owned();
    assert_eq!(kind, wire::REFUSE, "{why}");
    assert!(why.contains("MCREPL02") && why.contains("MCREPL03"), "{why}");
    assert!(p.closed());
    assert!(poll(Duration::from_secs(5), || a.srv.log().contains("upgrade every node")), "{}", a.srv.log());
    assert_eq!(repl_stats(&mut a.srv.conn())["repl_links_refused"], "1");
    let _ = std::fs::remove_file(path);
}

/// A TCP relay on a loopback port that forwards every connection to
/// `to` and records the bytes that pass either way.
fn recording_relay(to: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::sync::{Arc, Mutex};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let rec = seen.clone();
    std::thread::spawn(move || {
        for a in l.incoming().flatten() {
            let Ok(b) = std::net::TcpStream::connect(("127.0.0.1", to)) else { continue };
            for (mut from, mut into) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = into.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (port, seen)
}

/// Node 1 replicates to node 2 through a relay that records the wire:
/// with a secret, the keys and values written (and the items sent in the
/// resync) are nowhere in the recorded bytes, and node 2 has them all;
/// with `--repl-insecure` the same capture shows them (so the capture
/// would see them).
#[test]
fn a_wire_capture_between_two_nodes_shows_no_key_or_value_in_clear() {
    let path = secret_file("capture", b"keep it quiet");
    for secure in [true, false] {
        let (p1, p2) = (free_port(), free_port());
        let (relay, seen) = recording_relay(p2);
        let mut sec = vec!["--compress", "off"];
        let secret = path.to_str().unwrap();
        sec.extend(if secure { vec!["--repl-secret", secret] } else { vec!["--repl-insecure"] });
        let spawn = |id: &str, listen: u16, peer: u16| {
            let (listen, peer) = (format!("127.0.0.1:{listen}"), format!("127.0.0.1:{peer}"));
            let mut args = vec!["--repl-listen", &listen, "--peers", &peer, "--node-id", id];
            args.extend_from_slice(&sec);
            common::Server::spawn(common::memcore_bin(), common::Kind::Memcore, 1, &args)
        };
        // Node 1 reaches node 2 through the relay; node 2 reaches node 1
        // directly.
        let n1 = spawn("1", p1, relay);
        let mut c1 = n1.conn();
        // Written before node 2 is up: it gets these in a resync.
        let val = |i: usize| format!("canary-value-{i:04}-{:x}", i * 0x9e37_79b9).repeat(3);
        for i in 0..20 {
            let key = format!("canary-key-{i:04}");
            assert_eq!(c1.request(&store_cmd("set", &key, 0, 0, val(i).as_bytes())), b"STORED\r\n");
        }
        let n2 = spawn("2", p2, p1);
        let mut c2 = n2.conn();
        for i in 20..40 {
            let key = format!("canary-key-{i:04}");
            assert_eq!(c1.request(&store_cmd("set", &key, 0, 0, val(i).as_bytes())), b"STORED\r\n");
        }
        let all = poll(Duration::from_secs(10), || {
            (0..40).all(|i| get(&mut c2, &format!("canary-key-{i:04}")) != b"END\r\n")
        });
        assert!(all, "node 2 did not get every item (secure: {secure})\n{}\n{}", n1.log(), n2.log());
        let got = get(&mut c2, "canary-key-0031");
        assert_eq!(got, [value("canary-key-0031", 0, val(31).as_bytes()), b"END\r\n".to_vec()].concat());
        let wire = seen.lock().unwrap().clone();
        assert!(wire.len() > 40 * 20, "the relay saw {} bytes", wire.len());
        let shows = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
        let in_clear = (0..40).filter(|&i| shows(format!("canary-key-{i:04}").as_bytes())).count()
            + (0..40).filter(|&i| shows(val(i).as_bytes())).count();
        if secure {
            assert_eq!(in_clear, 0, "key or value bytes in clear on an encrypted link");
            assert!(!shows(b"canary"), "any part of a key or value in clear");
        } else {
            assert_eq!(in_clear, 80, "the capture sees a plaintext link's keys and values");
        }
    }
    let _ = std::fs::remove_file(path);
}

fn op_bytes(op: &wire::Op<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    wire::encode_op(&mut b, op);
    b
}

/// A peer's version more than the allowed drift ahead of this node's
/// clock is refused and logged (u64::MAX would pin the key forever and
/// wrap the clock), and so is a value that claims to unpack to more than
/// `-I`; ops beside them are applied, and local writes keep winning.
#[test]
fn a_version_from_the_future_and_an_oversize_unpacked_value_are_refused() {
    let ports = [free_port(), free_port()];
    let a = start_node(0, &ports, 2, &["-I", "1m"]);
    let mut p = FakePeer::linked(a.repl_port, b"");
    let drift = memcore::repl::hlc::MAX_DRIFT_MS;
    let big = wire::Op::Set {
        key: b"f:big",
        version: fake_version(0),
        flags: 0,
        exp: 0,
        value: b"x",
        packed: Some(u32::MAX),
    };
    let just_over = wire::Op::Set {
        key: b"f:over",
        version: fake_version(0),
        flags: 0,
        exp: 0,
        value: b"x",
        packed: Some((1 << 20) + 1),
    };
    p.batch(
        1,
        &[
            set_op("f:max", b"pinned", u64::MAX),
            set_op("f:ahead", b"late", fake_version(drift + 600_000)),
            wire::Op::Del { key: b"f:del", version: u64::MAX },
            big,
            just_over,
            set_op("f:ok", b"fine", fake_version(0)),
        ],
    );
    assert_eq!(p.frame_of(wire::ACK), Some(1u64.to_le_bytes().to_vec()));
    let mut c = a.srv.conn();
    assert_eq!(get(&mut c, "f:ok"), [value("f:ok", 0, b"fine"), b"END\r\n".to_vec()].concat());
    for key in ["f:max", "f:ahead", "f:big", "f:over"] {
        assert_eq!(get(&mut c, key), b"END\r\n", "{key}");
    }
    let s = repl_stats(&mut c);
    assert_eq!(s["repl_ops_refused"], "5", "{s:?}");
    assert_eq!(s["repl_tombstones"], "0", "the refused delete left no tombstone");
    // The clock was not dragged: a local write, then a peer's write
    // stamped now, and the later one wins.
    assert_eq!(c.request(&store_cmd("set", "f:max", 0, 0, b"local")), b"STORED\r\n");
    assert_eq!(get(&mut c, "f:max"), [value("f:max", 0, b"local"), b"END\r\n".to_vec()].concat());
    // A version stamped from here on is later than the local write's.
    let local_ms = memcore::repl::unix_ms();
    assert!(poll(Duration::from_secs(1), || memcore::repl::unix_ms() > local_ms + 4));
    p.batch(2, &[set_op("f:max", b"newer", fake_version(0))]);
    assert_eq!(p.frame_of(wire::ACK), Some(2u64.to_le_bytes().to_vec()));
    assert_eq!(get(&mut c, "f:max"), [value("f:max", 0, b"newer"), b"END\r\n".to_vec()].concat());
    let log = a.srv.log();
    assert!(log.contains("ahead of this node's clock"), "{log}");
}

/// A snapshot end without its beginning, or a snapshot inside a
/// snapshot, is a protocol error: the link drops and the node's resync
/// count stays whole.
#[test]
fn an_unpaired_snapshot_frame_drops_the_link() {
    let ports = [free_port(), free_port()];
    let a = start_node(0, &ports, 1, &[]);
    let mut p = FakePeer::linked(a.repl_port, b"");
    p.send_frame(wire::SNAP_END, &0u64.to_le_bytes());
    assert!(p.closed(), "an unpaired snapshot end was taken");
    let mut p = FakePeer::linked(a.repl_port, b"");
    p.send_frame(wire::SNAP_BEGIN, &[]);
    p.send_frame(wire::SNAP_BEGIN, &[]);
    assert!(p.closed(), "a snapshot inside a snapshot was taken");
    let log = a.srv.log();
    assert!(log.contains("a snapshot end without its beginning"), "{log}");
    assert!(poll(Duration::from_secs(5), || repl_stats(&mut a.srv.conn())["repl_state"] == "ok"));
}

/// A node that links to a fake acceptor streams to it; an ACK for a batch
/// it never sent drops the link with a protocol error in the log.
#[test]
fn an_ack_beyond_what_was_sent_drops_the_link() {
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let ports = [free_port(), fake_port];
    let a = start_node(0, &ports, 1, &[]);
    let (s, _) = fake.accept().unwrap();
    let mut p = FakePeer::over(s);
    let (kind, hello) = p.frame().expect("a hello");
    let hello = wire::parse_hello(kind, &hello).unwrap();
    let nonce_a = [7u8; wire::NONCE_LEN];
    let nodes = (hello.node, FAKE_NODE);
    p.send_frame(wire::CHALLENGE, &[&FAKE_NODE.to_le_bytes()[..], &nonce_a].concat());
    let (kind, proof) = p.frame().expect("the linker's proof");
    assert_eq!(kind, wire::AUTH);
    assert!(wire::proof_ok(b"", wire::ROLE_LINKER, &nonce_a, &hello.nonce, nodes, &proof));
    p.send_frame(wire::AUTH, &wire::proof(b"", wire::ROLE_ACCEPTOR, &hello.nonce, &nonce_a, nodes));
    p.send_frame(wire::RESUME, &[0u8; 16]);
    // A full resync of the empty node, then a write goes out as a batch.
    p.frame_of(wire::SNAP_END).expect("the snapshot's end");
    let mut c = a.srv.conn();
    assert_eq!(c.request(&store_cmd("set", "k", 0, 0, b"v")), b"STORED\r\n");
    let seq = loop {
        let (kind, b) = p.frame().expect("a batch");
        if kind == wire::BATCH && b[..8] != [0; 8] {
            break u64::from_le_bytes(b[..8].try_into().unwrap());
        }
    };
    p.send_frame(wire::ACK, &(seq + 1).to_le_bytes());
    assert!(p.closed(), "the link stays up after an ACK past what was sent");
    let want = format!("the peer acknowledged seq {}, past the {seq} sent", seq + 1);
    assert!(poll(Duration::from_secs(5), || a.srv.log().contains(&want)), "{}", a.srv.log());
}

/// Strangers holding many replication connections open without a word
/// neither keep clients out nor hold descriptors for long: inbound links
/// are capped apart from `-c`, and each must finish its handshake in time.
/// The server starts with a soft open-files limit of 64, so without the
/// cap the half-open connections would take every descriptor.
#[test]
fn many_half_open_replication_connections_do_not_stop_clients() {
    let wrapper = std::env::temp_dir().join(format!("memcore-lowfd-{}.sh", std::process::id()));
    std::fs::write(&wrapper, format!("#!/bin/sh\nulimit -S -n 64\nexec {} \"$@\"\n", common::memcore_bin())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ports = [free_port(), free_port()];
    let (listen, peer) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let args = [
        "--repl-listen",
        &listen,
        "--peers",
        &peer,
        "--node-id",
        "1",
        "--repl-insecure",
        "-c",
        "40",
        "--repl-max-links",
        "8",
    ];
    let srv = common::Server::spawn(wrapper.to_str().unwrap(), common::Kind::Memcore, 2, &args);
    let strangers: Vec<std::net::TcpStream> =
        (0..300).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", ports[0])).ok()).collect();
    assert!(strangers.len() >= 100, "only {} connections", strangers.len());
    let mut clients: Vec<Conn> = (0..30).map(|_| srv.conn()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let key = format!("c{i}");
        assert_eq!(c.request(&store_cmd("set", &key, 0, 0, b"v")), b"STORED\r\n", "client {i}");
    }
    let s = repl_stats(&mut clients[0]);
    assert!(s["repl_links_refused"].parse::<u64>().unwrap() > 0, "{s:?}");
    assert!(srv.log().contains("--repl-max-links"), "{}", srv.log());
    // The ones let in must finish a handshake within 2 s, or be closed.
    let mut first = &strangers[0];
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    use std::io::Read;
    assert_eq!(first.read(&mut [0u8; 16]).unwrap_or(0), 0, "a silent connection was answered");
    assert!(t.elapsed() < Duration::from_secs(3), "a silent connection held for {:?}", t.elapsed());
    drop(strangers);
    let _ = std::fs::remove_file(wrapper);
}

/// A peer given by name is resolved off the core (on a helper thread) and
/// links like one given by address.
#[test]
fn a_peer_given_by_name_links() {
    let ports = [free_port(), free_port()];
    let named = |p: u16| format!("localhost:{p}");
    let nodes: Vec<Node> = (0..2)
        .map(|i| {
            let (listen, peer, id) = (format!("127.0.0.1:{}", ports[i]), named(ports[1 - i]), (i + 1).to_string());
            let args = ["--repl-listen", &listen, "--peers", &peer, "--node-id", &id, "--repl-insecure"];
            Node {
                srv: common::Server::spawn(common::memcore_bin(), common::Kind::Memcore, 1, &args),
                repl_port: ports[i],
            }
        })
        .collect();
    all_linked(&nodes);
    assert_eq!(nodes[0].srv.conn().request(&store_cmd("set", "n", 0, 0, b"v")), b"STORED\r\n");
    let mut c = nodes[1].srv.conn();
    assert!(poll(Duration::from_secs(2), || get(&mut c, "n") != b"END\r\n"));
}

/// Replication without a secret must be asked for: `--peers` or
/// `--repl-listen` alone is a bad command line (exit status 64, one line
/// on stderr), and `--repl-insecure` starts with a warning.
#[test]
fn replication_without_a_secret_refuses_to_start() {
    for args in [&["--peers", "127.0.0.1:1", "--node-id", "1"][..], &["--repl-listen", "127.0.0.1:1", "--node-id", "1"]]
    {
        let out = std::process::Command::new(common::memcore_bin()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--repl-secret") && err.contains("--repl-insecure"), "{err}");
    }
    let ports = [free_port(), free_port()];
    let n = start_node(0, &ports, 1, &[]);
    assert!(n.srv.log().contains("without a secret (--repl-insecure)"), "{}", n.srv.log());
}

/// Tombstones count against the core's memory: a peer's flood of deletes
/// takes at most a share of `-m` (the oldest are forgotten early past
/// it), the crawler drops them after their TTL with no write coming by,
/// and a set refused under `-M` leaves none.
#[test]
fn tombstones_are_bounded_by_memory_and_reclaimed_by_the_crawler() {
    let ports = [free_port(), free_port()];
    let a = start_node(0, &ports, 1, &["-m", "8", "-I", "1m", "--repl-tombstone-ttl", "2", "-M", "--compress", "off"]);
    let mut c = a.srv.conn();
    let mut p = FakePeer::linked(a.repl_port, b"");
    let key_of = |i: usize| format!("{i:0>200}");
    let keys: Vec<String> = (0..40_000).map(key_of).collect();
    let v = fake_version(0);
    for (n, chunk) in keys.chunks(2_000).enumerate() {
        let ops: Vec<wire::Op<'_>> = chunk.iter().map(|k| wire::Op::Del { key: k.as_bytes(), version: v }).collect();
        p.batch(n as u64 + 1, &ops);
    }
    assert_eq!(p.frame_of(wire::ACK).map(|b| b.len()), Some(8));
    let applied =
        poll(Duration::from_secs(10), || repl_stats(&mut c)["repl_items_received"].parse::<u64>().unwrap() >= 40_000);
    assert!(applied, "{:?}", repl_stats(&mut c));
    let tombs: u64 = repl_stats(&mut c)["repl_tombstones"].parse().unwrap();
    // 8 MiB / 4 over ~500 bytes each: about 4,000 of the 40,000.
    assert!(tombs > 1_000 && tombs < 10_000, "{tombs} tombstones");
    let gone = poll(Duration::from_secs(10), || repl_stats(&mut c)["repl_tombstones"] == "0");
    assert!(gone, "tombstones outlive their TTL without writes: {:?}", repl_stats(&mut c));
    // Under -M, fill the core, then a refused set leaves no tombstone.
    let big = vec![b'x'; 500_000];
    let mut refused = 0;
    for i in 0..40 {
        let r = c.request(&store_cmd("set", &format!("big{i}"), 0, 0, &big));
        if r.starts_with(b"SERVER_ERROR out of memory") {
            refused += 1;
        }
    }
    assert!(refused > 0, "no set was refused");
    assert_eq!(repl_stats(&mut c)["repl_tombstones"], "0");
}

// ---- a network split, with network namespaces made by the test ---------

/// Two network namespaces joined by a veth pair: nodes 1 and 2 run in the
/// first, node 3 in the second. Dropping it (also when a test fails)
/// kills the nodes it started, by PID, then deletes both namespaces (the
/// veth pair goes with them).
struct NetLab {
    ns: [String; 2],
    nodes: Vec<std::process::Child>,
    logs: Vec<std::path::PathBuf>,
}

const LAB_ADDR: [&str; 2] = ["10.231.77.1", "10.231.77.2"];
const LAB_VETH: [&str; 2] = ["mc-split-a", "mc-split-b"];

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("`ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}`: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl NetLab {
    /// None (after saying why) when this machine does not let the test
    /// make network namespaces (not root, no iproute2, a sandbox).
    fn new() -> Option<NetLab> {
        let tag = format!("{}-{}", std::process::id(), common::now_unix() % 100_000);
        let mut lab =
            NetLab { ns: [format!("memcore-t{tag}-a"), format!("memcore-t{tag}-b")], nodes: vec![], logs: vec![] };
        if let Err(e) = ip(&["netns", "add", &lab.ns[0]]) {
            lab.ns = [String::new(), String::new()];
            eprintln!(
                "SKIP network split test: `ip netns` is not permitted here ({e}); it needs root (CAP_SYS_ADMIN) and iproute2"
            );
            return None;
        }
        let setup = || -> Result<(), String> {
            let [a, b] = [lab.ns[0].as_str(), lab.ns[1].as_str()];
            ip(&["netns", "add", b])?;
            ip(&["-n", a, "link", "add", LAB_VETH[0], "type", "veth", "peer", "name", LAB_VETH[1], "netns", b])?;
            for (i, ns) in [a, b].into_iter().enumerate() {
                ip(&["-n", ns, "addr", "add", &format!("{}/24", LAB_ADDR[i]), "dev", LAB_VETH[i]])?;
                ip(&["-n", ns, "link", "set", LAB_VETH[i], "up"])?;
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            panic!("network namespaces: {e}");
        }
        Some(lab)
    }

    /// Start a memcore node inside namespace `ns` (`ip netns exec` execs
    /// it, so the child's PID is the node's), its client port on the
    /// namespace's loopback.
    fn start(&mut self, ns: usize, port: u16, args: &[&str]) {
        let log = std::env::temp_dir().join(format!("memcore-split-{}-{}-{port}.log", std::process::id(), ns));
        let f = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns[ns], common::memcore_bin()])
            .args(["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0", "-t", "2", "-u", "root"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawn ip netns exec memcore");
        self.nodes.push(child);
        self.logs.push(log);
    }

    /// A client connection to `port` inside namespace `ns` (made on a
    /// thread that entered the namespace; the socket stays in it).
    fn conn(&self, ns: usize, port: u16) -> Conn {
        let path = format!("/var/run/netns/{}", self.ns[ns]);
        let stream = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on this thread only, with a namespace fd we hold open.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => panic!("connect to 127.0.0.1:{port} in {path}: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .join()
        .expect("connect thread");
        Conn::from_stream(stream)
    }

    /// Cut (or restore) the second namespace's side of the veth pair:
    /// no reset reaches either side, packets just stop.
    fn set_link(&self, up: bool) {
        ip(&["-n", &self.ns[1], "link", "set", LAB_VETH[1], if up { "up" } else { "down" }]).unwrap();
    }

    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.display(), std::fs::read_to_string(p).unwrap_or_default()))
            .collect()
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.ns.iter().filter(|n| !n.is_empty()) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
        for p in &self.logs {
            if std::thread::panicking() {
                eprintln!("node log kept at {}", p.display());
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Node 3 is cut off from nodes 1 and 2 for 10 seconds while clients write
/// on both sides (the same keys, and keys of their own); the heartbeats
/// notice the split within seconds on both sides, and after the heal the
/// links come back by themselves and all three nodes converge.
#[test]
fn a_ten_second_split_of_one_node_heals_and_all_converge() {
    const SPLIT: Duration = Duration::from_secs(10);
    let Some(mut lab) = NetLab::new() else { return };
    let secret = std::env::temp_dir().join(format!("memcore-secret-{}-split", std::process::id()));
    std::fs::write(&secret, "split brain\n").unwrap();
    let secret_arg = secret.to_str().unwrap().to_string();
    let (c1, c2, c3) = (11211u16, 11212u16, 11211u16);
    let repl = |i: usize| format!("0.0.0.0:{}", 7001 + i);
    let b_peer = format!("{}:7003", LAB_ADDR[1]);
    let peers = [
        format!("127.0.0.1:7002,{b_peer}"),
        format!("127.0.0.1:7001,{b_peer}"),
        format!("{0}:7001,{0}:7002", LAB_ADDR[0]),
    ];
    for (i, (ns, port)) in [(0, c1), (0, c2), (1, c3)].into_iter().enumerate() {
        let id = (i + 1).to_string();
        let args = ["--repl-listen", &repl(i), "--peers", &peers[i], "--node-id", &id, "--repl-secret", &secret_arg];
        lab.start(ns, port, &args);
    }
    let mut conns = [lab.conn(0, c1), lab.conn(0, c2), lab.conn(1, c3)];
    // The nodes read it at start (their client ports answer): not needed
    // any more, and not left behind if an assertion below fails.
    let _ = std::fs::remove_file(&secret);
    let state = |c: &mut Conn, p: usize| repl_stats(c).get(&format!("peer{p}_state")).cloned().unwrap_or_default();
    let all_up = |conns: &mut [Conn; 3]| conns.iter_mut().all(|c| (0..2).all(|p| state(c, p) == "connected"));
    assert!(poll(Duration::from_secs(10), || all_up(&mut conns)), "links not up\n{}", lab.logs());
    let digests =
        |conns: &mut [Conn; 3]| conns.iter_mut().map(|c| repl_stats(c)["repl_digest"].clone()).collect::<Vec<_>>();
    let same = |d: &[String]| d.iter().all(|x| *x == d[0]);

    // Writers on node 1 (majority side) and node 3 (the one cut off).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = [(lab.conn(0, c1), "a"), (lab.conn(1, c3), "b")]
        .into_iter()
        .map(|(mut c, side)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut batch = Vec::new();
                    for j in 0..10 {
                        let v = format!("{side}{i}-{j}");
                        batch.extend_from_slice(&store_cmd(
                            "set",
                            &format!("both:{}", (i * 10 + j) % 300),
                            0,
                            0,
                            v.as_bytes(),
                        ));
                        batch.extend_from_slice(&store_cmd(
                            "set",
                            &format!("{side}:{}", (i * 10 + j) % 1000),
                            0,
                            0,
                            v.as_bytes(),
                        ));
                    }
                    batch.extend_from_slice(format!("delete both:{}\r\n", (i * 7) % 300).as_bytes());
                    let r = c.request_n(&batch, 21);
                    assert!(r.starts_with(&b"STORED\r\n".repeat(20)), "side {side}: {}", show(&r));
                    i += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                i
            })
        })
        .collect();
    // Both writers are writing (and their nodes replicating) before the cut.
    wait_for_sets(&mut conns[0], 200);
    wait_for_sets(&mut conns[2], 200);

    lab.set_link(false);
    let split = Instant::now();
    // Both sides notice within seconds (without heartbeats, the links
    // would look up until TCP gives up, many minutes later).
    let noticed = poll(Duration::from_secs(5), || {
        state(&mut conns[2], 0) != "connected"
            && state(&mut conns[2], 1) != "connected"
            && state(&mut conns[0], 1) != "connected"
            && state(&mut conns[1], 1) != "connected"
    });
    let took = split.elapsed();
    assert!(noticed, "split not noticed after {took:?}\n{}", lab.logs());
    eprintln!("split noticed on both sides after {took:?}");
    assert_eq!(state(&mut conns[0], 0), "connected", "nodes 1 and 2 stay linked");
    let d = digests(&mut conns);
    std::thread::sleep(SPLIT.saturating_sub(split.elapsed()));
    let d2 = digests(&mut conns);
    assert_ne!(d[2], d2[2], "node 3 took writes during the split");
    assert_ne!(d[0], d2[0], "node 1 took writes during the split");
    assert_ne!(d2[0], d2[2], "the sides differ during the split");

    lab.set_link(true);
    let healed = Instant::now();
    assert!(poll(Duration::from_secs(10), || all_up(&mut conns)), "links not back after the heal\n{}", lab.logs());
    eprintln!("links back {:?} after the heal", healed.elapsed());
    // Writes go on across the heal on both sides.
    wait_for_sets(&mut conns[0], 200);
    wait_for_sets(&mut conns[2], 200);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    eprintln!("write batches of 21 commands: node 1 {}, node 3 {}", batches[0], batches[1]);
    let mut last = Vec::new();
    let ok = poll(Duration::from_secs(10), || {
        last = digests(&mut conns);
        same(&last)
    });
    assert!(ok, "digests after the heal: {last:?}\n{}", lab.logs());
    eprintln!("converged {:?} after the heal", healed.elapsed());
    for k in (0..300).map(|k| format!("both:{k}")).chain(["a:0".into(), "b:0".into(), "a:999".into(), "b:999".into()]) {
        let want = get(&mut conns[0], &k);
        for c in conns.iter_mut().skip(1) {
            assert_eq!(show(&get(c, &k)), show(&want), "{k}");
        }
    }
    for side in ["a", "b"] {
        assert_ne!(get(&mut conns[1], &format!("{side}:0")), b"END\r\n", "node 2 has side {side}'s keys");
    }
    let items: Vec<String> = conns.iter_mut().map(|c| repl_stats(c)["repl_items"].clone()).collect();
    assert!(items.iter().all(|x| *x == items[0]), "{items:?}");
}

/// A connection whose replies may take longer than the usual bound (a
/// 100 MiB value through a `sync` write).
fn patient_conn(n: &Node) -> Conn {
    let c = n.srv.conn();
    c.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.stream.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    c
}

fn stored_value(c: &mut Conn, key: &str, flags: u32, data: &[u8]) -> bool {
    get(c, key) == [value(key, flags, data), b"END\r\n".to_vec()].concat()
}

/// A group stop takes effect thread by thread: wait until every thread of
/// the node is stopped.
fn wait_stopped(n: &Node) {
    let pid = n.srv.pid().unwrap();
    let all_stopped = poll(Duration::from_secs(5), || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('T'))
        })
    });
    assert!(all_stopped, "the peer did not stop");
}

/// Frames are bounded whatever the values (docs/replication.md, wire
/// format). With the default `-I 1m`, three pipelined sets of 1,000,000
/// bytes are acknowledged in `sync` mode (so they are on the peer when
/// STORED comes back), and with ten more such values the peer, killed
/// with SIGKILL and restarted empty, gets them all back through a full
/// resync.
#[test]
fn megabyte_values_replicate_in_sync_mode_and_through_a_resync_with_the_default_item_size() {
    let ports = [free_port(), free_port()];
    let extra = ["--repl-mode", "sync", "--repl-timeout", "10000"];
    let mut nodes: Vec<Node> = (0..2).map(|i| start_node(i, &ports, 2, &extra)).collect();
    all_linked(&nodes);
    let mut rng = common::Rng::new(5);
    let (mut ca, mut cb) = (patient_conn(&nodes[0]), patient_conn(&nodes[1]));
    let values: Vec<Vec<u8>> = (0..13).map(|_| rng.bytes(1_000_000)).collect();
    let mut batch = Vec::new();
    for (i, v) in values[..3].iter().enumerate() {
        batch.extend_from_slice(&store_cmd("set", &format!("mb{i}"), i as u32, 0, v));
    }
    assert_eq!(ca.request_n(&batch, 3), b"STORED\r\n".repeat(3), "log: {}", nodes[1].srv.log());
    for (i, v) in values.iter().enumerate().skip(3) {
        assert_eq!(ca.request(&store_cmd("set", &format!("mb{i}"), i as u32, 0, v)), b"STORED\r\n");
    }
    for (i, v) in values.iter().enumerate() {
        assert!(stored_value(&mut cb, &format!("mb{i}"), i as u32, v), "mb{i} not on the peer when acknowledged");
    }
    drop(cb);
    nodes[1].srv.signal(libc::SIGKILL);
    nodes[1].srv.wait_exit(Duration::from_secs(5)).expect("killed node exits");
    nodes[1] = start_node(1, &ports, 2, &extra);
    assert!(converged(&nodes, Duration::from_secs(20)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    let mut cb = patient_conn(&nodes[1]);
    for (i, v) in values.iter().enumerate() {
        assert!(stored_value(&mut cb, &format!("mb{i}"), i as u32, v), "mb{i} after the resync");
    }
    let s = repl_stats(&mut cb);
    assert_eq!(s["repl_items"], "13", "{s:?}");
    assert!(s["peer0_resyncs_received"].parse::<u64>().unwrap() >= 1, "{s:?}");
    for n in &nodes {
        assert!(!n.srv.log().contains("bad frame"), "{}", n.srv.log());
    }
}

/// With `-I 128m`, a 100 MiB value and forty of 1 MiB are acknowledged in
/// `sync` mode, and the node holding them, killed with SIGKILL and
/// restarted empty, gets them back through a full resync.
#[test]
fn values_of_100_mib_replicate_in_sync_mode_and_through_a_resync() {
    let ports = [free_port(), free_port()];
    let extra = ["-I", "128m", "-m", "1024", "--repl-mode", "sync", "--repl-timeout", "30000", "--repl-backlog", "512"];
    let mut nodes: Vec<Node> = (0..2).map(|i| start_node(i, &ports, 1, &extra)).collect();
    all_linked(&nodes);
    let mut rng = common::Rng::new(6);
    let (mut ca, mut cb) = (patient_conn(&nodes[0]), patient_conn(&nodes[1]));
    let mib = rng.bytes(1 << 20);
    for i in 0..40 {
        assert_eq!(cb.request(&store_cmd("set", &format!("mib{i}"), 0, 0, &mib)), b"STORED\r\n");
    }
    let huge = rng.bytes(100 << 20);
    let t = Instant::now();
    assert_eq!(cb.request(&store_cmd("set", "huge", 9, 0, &huge)), b"STORED\r\n");
    eprintln!("a 100 MiB sync write took {:?}", t.elapsed());
    assert!(stored_value(&mut ca, "huge", 9, &huge), "huge not on the peer when acknowledged");
    assert!(stored_value(&mut ca, "mib39", 0, &mib));
    assert!(converged(&nodes, Duration::from_secs(10)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    drop(cb);
    nodes[1].srv.signal(libc::SIGKILL);
    nodes[1].srv.wait_exit(Duration::from_secs(5)).expect("killed node exits");
    nodes[1] = start_node(1, &ports, 1, &extra);
    let t = Instant::now();
    assert!(converged(&nodes, Duration::from_secs(60)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    eprintln!("the resync of 140 MiB took {:?}", t.elapsed());
    let mut cb = patient_conn(&nodes[1]);
    assert!(stored_value(&mut cb, "huge", 9, &huge), "huge after the resync");
    assert!(stored_value(&mut cb, "mib0", 0, &mib), "mib0 after the resync");
    let s = repl_stats(&mut cb);
    assert_eq!(s["repl_items"], "41", "{s:?}");
    assert!(s["peer0_resyncs_received"].parse::<u64>().unwrap() >= 1, "{s:?}");
    for n in &nodes {
        assert!(!n.srv.log().contains("bad frame"), "{}", n.srv.log());
    }
}

/// A full resync carries every tombstone: 20,000 deletes of 200-byte keys
/// (about 4 MiB of DEL ops on one core) reach a node that joins later, in
/// bounded frames, and the live stream goes on after them.
#[test]
fn a_resync_carries_twenty_thousand_tombstones_of_long_keys() {
    let ports = [free_port(), free_port()];
    let a = start_node(0, &ports, 1, &[]);
    let mut ca = a.srv.conn();
    let key = |i: u32| format!("{i:0>200}");
    for start in (0..20_000).step_by(500) {
        let mut batch = Vec::new();
        for i in start..start + 500 {
            batch.extend_from_slice(&store_cmd("set", &key(i), 0, 0, b"v"));
            batch.extend_from_slice(format!("delete {}\r\n", key(i)).as_bytes());
        }
        assert_eq!(ca.request_n(&batch, 1000), b"STORED\r\nDELETED\r\n".repeat(500));
    }
    assert_eq!(repl_stats(&mut ca)["repl_tombstones"], "20000");
    let b = start_node(1, &ports, 2, &[]);
    let nodes = [a, b];
    all_linked(&nodes);
    let mut cb = nodes[1].srv.conn();
    let all = poll(Duration::from_secs(20), || repl_stats(&mut cb)["repl_tombstones"] == "20000");
    assert!(all, "{:?}\nlog: {}", repl_stats(&mut cb), nodes[1].srv.log());
    assert_eq!(ca.request(&store_cmd("set", "after", 0, 0, b"x")), b"STORED\r\n");
    assert!(poll(Duration::from_secs(5), || stored_value(&mut cb, "after", 0, b"x")), "the live stream goes on");
    assert_eq!(get(&mut cb, &key(7)), b"END\r\n");
    assert!(!nodes[1].srv.log().contains("bad frame"), "{}", nodes[1].srv.log());
}

/// Values compressed with a core's own dictionary cannot travel as they
/// are stored; a resync sends them as clients see them, cut into bounded
/// frames: all 20,000 JSON documents of about 2 KB reach a node that joins
/// later.
#[test]
fn a_resync_sends_dictionary_compressed_values_whole() {
    let ports = [free_port(), free_port()];
    let extra = ["-m", "256"];
    let a = start_node(0, &ports, 1, &extra);
    let mut ca = a.srv.conn();
    let doc = |i: u32| {
        let tags: String = (0..40).map(|t| format!(r#""tag-{}","#, (i * 7 + t) % 97)).collect();
        format!(
            r#"{{"id":{i},"name":"user{i}","email":"user{i}@example.com","plan":"pro","tags":[{tags}"end"],"bio":"{}"}}"#,
            "lorem ipsum dolor sit amet ".repeat(40 + (i % 7) as usize)
        )
        .into_bytes()
    };
    let write = |c: &mut Conn, range: std::ops::Range<u32>| {
        for start in range.step_by(500) {
            let mut batch = Vec::new();
            for i in start..start + 500 {
                batch.extend_from_slice(&store_cmd("set", &format!("doc{i}"), 3, 0, &doc(i)));
            }
            assert_eq!(c.request_n(&batch, 500), b"STORED\r\n".repeat(500));
        }
    };
    write(&mut ca, 0..2_000);
    let trained = poll(Duration::from_secs(20), || stat_u64(&ca.stats("stats"), "compress_dictionaries") >= 1);
    assert!(trained, "no dictionary: {:?}", ca.stats("stats"));
    write(&mut ca, 2_000..20_000);
    let b = start_node(1, &ports, 2, &extra);
    let nodes = [a, b];
    assert!(converged(&nodes, Duration::from_secs(30)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    let mut cb = nodes[1].srv.conn();
    assert_eq!(repl_stats(&mut cb)["repl_items"], "20000");
    for i in [0, 1_999, 2_000, 12_345, 19_999] {
        assert!(stored_value(&mut cb, &format!("doc{i}"), 3, &doc(i)), "doc{i}");
    }
    assert!(!nodes[1].srv.log().contains("bad frame"), "{}", nodes[1].srv.log());
}

/// A flush_all a stopped peer missed, with more writes after it than the
/// backlog holds, reaches that peer through the full resync it gets when
/// it comes back: the item written before the flush is gone there too.
#[test]
fn a_flush_all_reaches_a_peer_that_comes_back_through_a_full_resync() {
    let ports = [free_port(), free_port()];
    let extra = ["--repl-backlog", "1"];
    let nodes: Vec<Node> = (0..2).map(|i| start_node(i, &ports, 2, &extra)).collect();
    all_linked(&nodes);
    let (mut ca, mut cb) = (nodes[0].srv.conn(), nodes[1].srv.conn());
    assert_eq!(ca.request(&store_cmd("set", "old", 0, 0, b"before")), b"STORED\r\n");
    assert!(poll(Duration::from_secs(5), || stored_value(&mut cb, "old", 0, b"before")));
    nodes[1].srv.signal(libc::SIGSTOP);
    wait_stopped(&nodes[1]);
    // Until the link is seen down, writes may still sit in the stopped
    // peer's socket and arrive without a resync.
    let down = poll(Duration::from_secs(5), || repl_stats(&mut ca)["peer0_state"] != "connected");
    assert!(down, "{:?}", repl_stats(&mut ca));
    assert_eq!(ca.request(b"flush_all\r\n"), b"OK\r\n");
    let mut rng = common::Rng::new(9);
    for start in (0..1_500).step_by(100) {
        let mut batch = Vec::new();
        for i in start..start + 100 {
            batch.extend_from_slice(&store_cmd("set", &format!("new{i}"), 0, 0, &rng.bytes(1000)));
        }
        assert_eq!(ca.request_n(&batch, 100), b"STORED\r\n".repeat(100));
    }
    nodes[1].srv.signal(libc::SIGCONT);
    let ok = converged(&nodes, Duration::from_secs(20));
    let mut cb = nodes[1].srv.conn();
    assert!(
        ok,
        "old on b: {}\na: {:?}\nb: {:?}\nlog a: {}\nlog b: {}",
        show(&get(&mut cb, "old")),
        repl_stats(&mut ca),
        repl_stats(&mut cb),
        nodes[0].srv.log(),
        nodes[1].srv.log()
    );
    assert_eq!(get(&mut cb, "old"), b"END\r\n");
    let s = repl_stats(&mut cb);
    assert_eq!(s["repl_items"], "1500", "{s:?}");
    assert!(s["peer0_resyncs_received"].parse::<u64>().unwrap() >= 1, "the backlog was outrun: {s:?}");
}

/// Forwards replication connections to `to`; the first one only for
/// `cut` bytes from the linking side, after which the peer sees a clean
/// end of stream (everything forwarded arrives) and the linker a reset.
fn cutting_proxy(to: u16, cut: usize) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, from) in l.incoming().flatten().enumerate() {
            let Ok(back) = std::net::TcpStream::connect(("127.0.0.1", to)) else { continue };
            let (mut up_r, mut up_w) = (from.try_clone().unwrap(), back.try_clone().unwrap());
            let (mut down_r, mut down_w) = (back, from);
            let limit = if n == 0 { cut } else { usize::MAX };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0;
                while sent < limit {
                    let want = buf.len().min(limit - sent);
                    match up_r.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) if up_w.write_all(&buf[..k]).is_ok() => sent += k,
                        Ok(_) => break,
                    }
                }
                let _ = up_w.shutdown(std::net::Shutdown::Write);
                let _ = up_r.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut down_r, &mut down_w);
            });
        }
    });
    port
}

/// A link cut in the middle of a long value resumes from the backlog, not
/// through a resync, and at the value's first part: the peer acknowledges
/// (and resumes after) only batches that end between values. The link from
/// node 1 to node 2 goes through a proxy that cuts it 2.5 MB into a 4 MB
/// value, after the peer applied the batches of a small write before it.
#[test]
fn a_link_cut_inside_a_long_value_resumes_from_the_backlog_at_the_value() {
    let ports = [free_port(), free_port()];
    let extra = ["-I", "8m", "-m", "256", "--repl-backlog", "128"];
    let b = start_node(1, &ports, 1, &extra);
    let proxy = cutting_proxy(ports[1], 2_500_000);
    let listen = format!("127.0.0.1:{}", ports[0]);
    let via = format!("127.0.0.1:{proxy}");
    let mut args = vec!["--repl-listen", &listen, "--peers", &via, "--node-id", "1", "--repl-insecure"];
    args.extend_from_slice(&extra);
    let a = Node { srv: Server::spawn(common::memcore_bin(), common::Kind::Memcore, 1, &args), repl_port: ports[0] };
    let nodes = [a, b];
    all_linked(&nodes);
    let (mut ca, mut cb) = (nodes[0].srv.conn(), nodes[1].srv.conn());
    let resyncs = |c: &mut Conn| repl_stats(c)["peer0_resyncs_sent"].parse::<u64>().unwrap();
    let before = resyncs(&mut ca);
    assert_eq!(ca.request(&store_cmd("set", "first", 0, 0, b"x")), b"STORED\r\n");
    assert!(poll(Duration::from_secs(5), || stored_value(&mut cb, "first", 0, b"x")));
    let mut rng = common::Rng::new(11);
    let values: Vec<Vec<u8>> = (0..2).map(|_| rng.bytes(4 << 20)).collect();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(ca.request(&store_cmd("set", &format!("long{i}"), 0, 0, v)), b"STORED\r\n");
    }
    assert!(converged(&nodes, Duration::from_secs(20)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    for (i, v) in values.iter().enumerate() {
        assert!(stored_value(&mut cb, &format!("long{i}"), 0, v), "long{i}");
    }
    let log = nodes[1].srv.log();
    assert_eq!(resyncs(&mut ca), before, "resumed from the backlog\nlog: {log}");
    let accepted: Vec<&str> = log.lines().filter(|l| l.contains("accepted (resume at ")).collect();
    assert!(accepted.len() >= 2, "the link was cut and came back: {log}");
    assert!(!accepted[accepted.len() - 1].ends_with("resume at 0)"), "resumed after the small write: {log}");
}

/// Meta writes in `sync` mode: once answered, what they changed (a value,
/// the stale mark, a TTL, an `ma` result, a vivified lease) is on the peer.
#[test]
fn sync_mode_meta_writes_are_on_the_peer_when_answered() {
    let ports = [free_port(), free_port()];
    let nodes: Vec<Node> = (0..2).map(|i| start_node(i, &ports, 2, &["--repl-mode", "sync"])).collect();
    all_linked(&nodes);
    let mut ca = nodes[0].srv.conn();
    let mut cb = nodes[1].srv.conn();
    let line = |c: &mut Conn, req: &[u8]| {
        c.send(req);
        let mut out = c.read_line();
        if out.starts_with(b"VA ") {
            out.extend(c.read_line());
        }
        out
    };
    for i in 0..20 {
        let k = format!("m:{i}");
        assert_eq!(line(&mut ca, format!("ms {k} 2 T100\r\nv{}\r\n", i % 10).as_bytes()), b"HD\r\n");
        // No polling: an answered write is already on the live peer.
        assert_eq!(line(&mut cb, format!("mg {k} v u\r\n").as_bytes()), format!("VA 2\r\nv{}\r\n", i % 10).as_bytes());
        assert_eq!(line(&mut ca, format!("md {k} I\r\n").as_bytes()), b"HD\r\n");
        assert_eq!(line(&mut cb, format!("mg {k} u\r\n").as_bytes()), b"HD X W\r\n");
        assert_eq!(line(&mut ca, format!("ma {k}n N0 J3 D4 v\r\n").as_bytes()), b"VA 1\r\n3\r\n");
        assert_eq!(line(&mut ca, format!("ma {k}n D4 v\r\n").as_bytes()), b"VA 1\r\n7\r\n");
        assert_eq!(line(&mut cb, format!("mg {k}n v\r\n").as_bytes()), b"VA 1\r\n7\r\n");
        assert_eq!(line(&mut ca, format!("mg {k}lease N30\r\n").as_bytes()), b"HD W\r\n");
        assert_eq!(line(&mut cb, format!("mg {k}lease N30\r\n").as_bytes()), b"HD Z\r\n");
    }
}
