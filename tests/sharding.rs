//! Multi-core (sharded) behaviour. Run at -t 2 so that keys land on both
//! cores and cores forward requests to each other. Tests that need memcore's
//! `stats cores` are skipped against anything but a spawned memcore.

#[macro_use]
mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn server() -> Server {
    Server::start(2, &[])
}

#[test]
fn thousand_keys_roundtrip() {
    let s = server();
    let p = uniq("k1000");
    let mut c = s.conn();
    let mut req = Vec::new();
    for i in 0..1000 {
        req.extend(store_cmd(
            "set",
            &format!("{p}{i}"),
            i,
            0,
            format!("value-{i}").repeat(i as usize % 7 + 1).as_bytes(),
        ));
    }
    let want: Vec<u8> = b"STORED\r\n".repeat(1000);
    assert_bytes!(c.request_n(&req, 1000), want);
    for i in 0..1000u32 {
        let k = format!("{p}{i}");
        let d = format!("value-{i}").repeat(i as usize % 7 + 1);
        assert_bytes!(
            c.request(format!("get {k}\r\n").as_bytes()),
            [value(&k, i, d.as_bytes()), b"END\r\n".to_vec()].concat()
        );
    }
}

#[test]
fn cross_core_pipeline_keeps_order() {
    let s = server();
    let p = uniq("xpipe");
    let mut c = s.conn();
    let mut req = Vec::new();
    let mut want = Vec::new();
    let mut n = 0;
    for round in 0..3 {
        for i in 0..300 {
            let k = format!("{p}{i}");
            let d = format!("r{round}i{i}");
            req.extend(store_cmd("set", &k, round, 0, d.as_bytes()));
            want.extend(b"STORED\r\n");
            // a get of this key and of a neighbour (likely the other core)
            let k2 = format!("{p}{}", (i + 151) % 300);
            req.extend(format!("get {k} {k2}\r\n").as_bytes());
            want.extend(value(&k, round, d.as_bytes()));
            if (i + 151) % 300 < i {
                want.extend(value(&k2, round, format!("r{round}i{}", (i + 151) % 300).as_bytes()));
            } else if round > 0 {
                want.extend(value(&k2, round - 1, format!("r{}i{}", round - 1, (i + 151) % 300).as_bytes()));
            }
            want.extend(b"END\r\n");
            req.extend(format!("incr {p}ctr{} 1\r\n", i % 10).as_bytes());
            if round == 0 {
                want.extend(b"NOT_FOUND\r\n");
            } else {
                want.extend(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
            }
            n += 3;
        }
        for i in 0..10 {
            req.extend(store_cmd("set", &format!("{p}ctr{i}"), 0, 0, b"x"));
            want.extend(b"STORED\r\n");
            n += 1;
        }
    }
    c.send(&req);
    assert_bytes!(c.read_replies(n), want);
    c.expect_silence(Duration::from_millis(100));
}

#[test]
fn multiget_200_keys_in_order() {
    let s = server();
    let p = uniq("mg200");
    let mut c = s.conn();
    let keys: Vec<String> = (0..200).map(|i| format!("{p}{i}")).collect();
    let mut req = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if i % 10 != 9 {
            req.extend(store_cmd("set", k, i as u32, 0, format!("{i}").as_bytes()));
        }
    }
    c.request_n(&req, 180);
    for order in [keys.clone(), keys.iter().rev().cloned().collect::<Vec<_>>()] {
        let mut want = Vec::new();
        for k in &order {
            let i: usize = k[p.len()..].parse().unwrap();
            if i % 10 != 9 {
                want.extend(value(k, i as u32, format!("{i}").as_bytes()));
            }
        }
        want.extend(b"END\r\n");
        assert_bytes!(c.request(format!("get {}\r\n", order.join(" ")).as_bytes()), want);
        // gets: same keys in the same order
        let r = c.request(format!("gets {}\r\n", order.join(" ")).as_bytes());
        let got: Vec<String> = String::from_utf8_lossy(&r)
            .split("\r\n")
            .filter(|l| l.starts_with("VALUE "))
            .map(|l| l.split(' ').nth(1).unwrap().to_string())
            .collect();
        let exp: Vec<String> =
            order.iter().filter(|k| k[p.len()..].parse::<usize>().unwrap() % 10 != 9).cloned().collect();
        assert_eq!(got, exp);
    }
}

#[test]
fn cas_unique_across_cores() {
    let s = server();
    let p = uniq("casu");
    let mut c = s.conn();
    let mut req = Vec::new();
    for i in 0..1000 {
        req.extend(store_cmd("set", &format!("{p}{i}"), 0, 0, b"v"));
    }
    c.request_n(&req, 1000);
    let mut seen = HashSet::new();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(100) {
        let line = format!("gets {}\r\n", chunk.iter().map(|i| format!("{p}{i}")).collect::<Vec<_>>().join(" "));
        let r = c.request(line.as_bytes());
        let txt = String::from_utf8_lossy(&r).into_owned();
        let mut count = 0;
        for l in txt.split("\r\n").filter(|l| l.starts_with("VALUE ")) {
            let cas: u64 = l.split(' ').nth(4).expect("cas field").parse().unwrap();
            assert!(cas != 0, "cas 0 without -C");
            assert!(seen.insert(cas), "duplicate cas {cas}");
            count += 1;
        }
        assert_eq!(count, chunk.len());
    }
    assert_eq!(seen.len(), 1000);
}

#[test]
fn stats_curr_items_is_sum_of_cores() {
    if is_external() {
        eprintln!("SKIP stats_curr_items_is_sum_of_cores: needs memcore's `stats cores`");
        return;
    }
    let s = Server::start(2, &[]);
    let mut c = s.conn();
    let mut req = Vec::new();
    for i in 0..1000 {
        req.extend(store_cmd("set", &format!("sum:{i}"), 0, 0, b"v"));
    }
    c.request_n(&req, 1000);
    let st = c.stats("stats");
    assert_eq!(stat_u64(&st, "curr_items"), 1000);
    assert_eq!(stat_u64(&st, "threads"), 2);
    let cores = c.stats("stats cores");
    let mut per_core: HashMap<String, u64> = HashMap::new();
    for (k, v) in &cores {
        if let Some(rest) = k.strip_prefix("core")
            && let Some((id, field)) = rest.split_once(':')
            && field == "curr_items"
        {
            per_core.insert(id.to_string(), v.parse().unwrap());
        }
    }
    assert_eq!(per_core.len(), 2, "expected core0/core1 curr_items in `stats cores`: {cores:?}");
    assert_eq!(per_core.values().sum::<u64>(), 1000);
    for (id, n) in &per_core {
        assert!(*n > 200, "core {id} holds only {n} of 1000 keys: sharding looks broken");
    }
}

/// 64 connections, each pipelining 200 requests over keys on both cores, for
/// ~5 s: any cross-core forwarding deadlock shows up as a read timeout.
#[test]
fn no_deadlock_under_cross_core_load() {
    let s = server();
    let p = uniq("dl");
    let secs: u64 = std::env::var("MEMCORE_DEADLOCK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for t in 0..64u64 {
        let addr = s.addr.clone();
        let p = p.clone();
        handles.push(std::thread::spawn(move || {
            let mut c = Conn::connect(&addr);
            let mut rng = Rng::new(t + 1);
            let mut model: HashMap<usize, Vec<u8>> = HashMap::new();
            let mut rounds = 0u64;
            while Instant::now() < deadline {
                let mut req = Vec::new();
                let mut want = Vec::new();
                for _ in 0..200 {
                    let j = rng.below(64) as usize;
                    let k = format!("{p}t{t}k{j}");
                    if rng.below(2) == 0 {
                        let d = format!("{t}-{rounds}-{}", rng.below(1_000_000)).into_bytes();
                        req.extend(store_cmd("set", &k, 0, 0, &d));
                        want.extend(b"STORED\r\n");
                        model.insert(j, d);
                    } else {
                        req.extend(format!("get {k}\r\n").as_bytes());
                        if let Some(d) = model.get(&j) {
                            want.extend(value(&k, 0, d));
                        }
                        want.extend(b"END\r\n");
                    }
                }
                c.send(&req);
                let got = c.read_replies(200);
                assert_bytes!(got, want, "conn {t} round {rounds}");
                rounds += 1;
            }
            rounds
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.join().expect("client thread failed");
    }
    assert!(total >= 64, "only {total} pipelines completed");
    let mut c = s.conn();
    c.version_check();
}

/// A multi-get whose reply would pass 64 MiB answers memcached's
/// out-of-memory error instead of copying without bound, on one core and
/// across cores; the connection keeps working.
#[test]
fn oversized_multiget_reply_is_refused() {
    if is_external() {
        eprintln!("SKIP oversized_multiget_reply_is_refused: memcore's reply cap");
        return;
    }
    for threads in [1, 2] {
        let s = Server::start(threads, &["-m", "256"]);
        let mut c = s.conn();
        let p = uniq("big");
        let value = vec![b'v'; 1000 * 1024];
        for i in 0..80 {
            assert_bytes!(c.request(&store_cmd("set", &format!("{p}{i}"), 0, 0, &value)), b"STORED\r\n");
        }
        let keys: Vec<String> = (0..80).map(|i| format!("{p}{i}")).collect();
        let line = format!("get {}\r\nversion\r\n", keys.join(" "));
        c.send(line.as_bytes());
        assert_bytes!(c.read_line(), b"SERVER_ERROR out of memory writing get response\r\n");
        assert!(c.read_line().starts_with(b"VERSION "), "connection still in sync at -t {threads}");
        // A smaller multi-get of the same items still works.
        let small = format!("get {}\r\n", keys[..10].join(" "));
        let reply = c.request(small.as_bytes());
        assert_eq!(reply.windows(6).filter(|w| w == b"VALUE ").count(), 10);
    }
}
