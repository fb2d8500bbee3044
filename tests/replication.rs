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
fn poll(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
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

#[test]
fn a_write_on_any_node_is_readable_on_the_others_within_100ms() {
    let nodes = group(3, 2, &[]);
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
    for r in 1..3 {
        let ok = poll(Duration::from_millis(500), || {
            get(&mut conns[r], "n") == [value("n", 0, b"42x"), b"END\r\n".to_vec()].concat()
                && get(&mut conns[r], "gone") == b"END\r\n"
        });
        assert!(
            ok,
            "node {r}: n={} gone={}",
            common::show(&get(&mut conns[r], "n")),
            common::show(&get(&mut conns[r], "gone"))
        );
    }
    assert!(converged(&nodes, Duration::from_secs(2)), "digests differ");
    let s = repl_stats(&mut conns[1]);
    assert_eq!(s["repl_node_id"], "2");
    assert_eq!(s["repl_state"], "ok");
    assert_ne!(s["repl_digest"], "0000000000000000");
    assert!(s["peer0_items_received"].parse::<u64>().unwrap() > 0, "{s:?}");
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
    // A small backlog, so the restarted node cannot catch up from it alone.
    let extra = ["--repl-backlog", "1"];
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
    std::thread::sleep(Duration::from_millis(300));
    nodes[2].srv.signal(libc::SIGKILL);
    nodes[2].srv.wait_exit(Duration::from_secs(5)).expect("killed node exits");
    // The others keep serving meanwhile.
    let mut c1 = nodes[1].srv.conn();
    assert_eq!(c1.request(&store_cmd("set", "during", 0, 0, b"x")), b"STORED\r\n");
    std::thread::sleep(Duration::from_millis(300));
    nodes[2] = start_node(2, &ports, 2, &extra);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = load.join().unwrap();
    assert!(converged(&nodes, Duration::from_secs(10)), "digests: {:?}", nodes.iter().map(digest).collect::<Vec<_>>());
    let mut c2 = nodes[2].srv.conn();
    assert_eq!(get(&mut c2, "during"), [value("during", 0, b"x"), b"END\r\n".to_vec()].concat());
    let s = repl_stats(&mut c2);
    assert_eq!(s["repl_items"], repl_stats(&mut c1)["repl_items"]);
    assert_eq!(s["repl_items"], (written.min(5000) + 1).to_string(), "{s:?}");
    assert!(s["peer0_resyncs_received"].parse::<u64>().unwrap() >= 1, "{s:?}");
    assert_eq!(s["repl_state"], "ok");
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
    // Each side proves the secret; the linker checks the acceptor's proof
    // first, so with different secrets both refuse and log it.
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
