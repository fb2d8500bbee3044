//! Stress: 200 connections doing mixed set/get/delete/incr/decr/append on
//! their own keys against a -t 2 server, each checking that its keys read
//! back exactly what it last wrote. Duration: MEMCORE_STRESS_SECS (default
//! 20).

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

const CONNS: usize = 200;
const THREADS: usize = 8;
const KEYS: usize = 12; // per connection; keys 0..4 are counters

#[derive(Clone)]
enum Val {
    Missing,
    Num(u64),
    Bytes(Vec<u8>),
}

struct Client {
    id: usize,
    conn: Conn,
    prefix: String,
    model: Vec<Val>,
    rng: Rng,
    ops: u64,
}

/// Expected reply description for the request just sent.
enum Expect {
    Exact(Vec<u8>),
    /// get of a counter: memcached may space-pad numbers in place
    Counter(String, u64),
}

impl Client {
    fn key(&self, j: usize) -> String {
        format!("{}c{}k{}", self.prefix, self.id, j)
    }

    /// Build one request and update the model; return the expected reply.
    fn next_request(&mut self) -> (Vec<u8>, Expect) {
        let j = self.rng.below(KEYS as u64) as usize;
        let k = self.key(j);
        let op = self.rng.below(100);
        if j < 4 {
            // counter key
            return match op {
                0..=24 => {
                    let v = self.rng.below(1_000_000);
                    self.model[j] = Val::Num(v);
                    (store_cmd("set", &k, 0, 0, v.to_string().as_bytes()), Expect::Exact(b"STORED\r\n".to_vec()))
                }
                25..=49 => {
                    let d = self.rng.below(1000);
                    let exp = match &mut self.model[j] {
                        Val::Num(n) => {
                            *n += d;
                            format!("{n}\r\n").into_bytes()
                        }
                        _ => b"NOT_FOUND\r\n".to_vec(),
                    };
                    (format!("incr {k} {d}\r\n").into_bytes(), Expect::Exact(exp))
                }
                50..=64 => {
                    let d = self.rng.below(2000);
                    let exp = match &mut self.model[j] {
                        Val::Num(n) => {
                            *n = n.saturating_sub(d);
                            format!("{n}\r\n").into_bytes()
                        }
                        _ => b"NOT_FOUND\r\n".to_vec(),
                    };
                    (format!("decr {k} {d}\r\n").into_bytes(), Expect::Exact(exp))
                }
                65..=69 => {
                    let exp = match self.model[j] {
                        Val::Missing => b"NOT_FOUND\r\n".to_vec(),
                        _ => b"DELETED\r\n".to_vec(),
                    };
                    self.model[j] = Val::Missing;
                    (format!("delete {k}\r\n").into_bytes(), Expect::Exact(exp))
                }
                _ => {
                    let e = match self.model[j] {
                        Val::Num(n) => Expect::Counter(k.clone(), n),
                        _ => Expect::Exact(b"END\r\n".to_vec()),
                    };
                    (format!("get {k}\r\n").into_bytes(), e)
                }
            };
        }
        match op {
            0..=29 => {
                let len = match self.rng.below(10) {
                    0 => 0,
                    1..=6 => self.rng.below(100) as usize,
                    7 | 8 => self.rng.below(4000) as usize,
                    _ => self.rng.below(40000) as usize,
                };
                let mut d = self.rng.bytes(len);
                // non-counter values always start with a letter, so they are
                // surely non-numeric for incr
                if let Some(b) = d.first_mut() {
                    *b = b'v';
                }
                let req = store_cmd("set", &k, j as u32, 0, &d);
                self.model[j] = Val::Bytes(d);
                (req, Expect::Exact(b"STORED\r\n".to_vec()))
            }
            30..=44 => {
                let n = self.rng.below(50) as usize;
                let mut d = self.rng.bytes(n);
                if let Some(b) = d.first_mut() {
                    *b = b'a';
                }
                let too_big = matches!(&self.model[j], Val::Bytes(v) if v.len() + d.len() >= 100_000);
                if too_big {
                    // keep values bounded: reset instead
                    self.model[j] = Val::Bytes(d.clone());
                    return (store_cmd("set", &k, j as u32, 0, &d), Expect::Exact(b"STORED\r\n".to_vec()));
                }
                let exp = match &mut self.model[j] {
                    Val::Bytes(v) => {
                        v.extend_from_slice(&d);
                        b"STORED\r\n".to_vec()
                    }
                    _ => b"NOT_STORED\r\n".to_vec(),
                };
                (store_cmd("append", &k, 0, 0, &d), Expect::Exact(exp))
            }
            45..=49 => {
                let exp = match self.model[j] {
                    Val::Missing => b"NOT_FOUND\r\n".to_vec(),
                    _ => b"DELETED\r\n".to_vec(),
                };
                self.model[j] = Val::Missing;
                (format!("delete {k}\r\n").into_bytes(), Expect::Exact(exp))
            }
            50..=54 => {
                let exp = match self.model[j] {
                    Val::Missing => b"NOT_FOUND\r\n".to_vec(),
                    _ => b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n".to_vec(),
                };
                (format!("incr {k} 1\r\n").into_bytes(), Expect::Exact(exp))
            }
            _ => {
                // multi-get of two of our keys
                let j2 = self.rng.below(KEYS as u64) as usize;
                let j2 = if j2 < 4 { 4 + j2 } else { j2 };
                let k2 = self.key(j2);
                let mut exp = Vec::new();
                for (jj, kk) in [(j, &k), (j2, &k2)] {
                    if let Val::Bytes(v) = &self.model[jj] {
                        exp.extend(value(kk, jj as u32, v));
                    }
                }
                exp.extend(b"END\r\n");
                (format!("get {k} {k2}\r\n").into_bytes(), Expect::Exact(exp))
            }
        }
    }
}

fn check(got: &[u8], exp: &Expect, who: &str) {
    match exp {
        Expect::Exact(e) => assert_bytes!(got, e, "{who}"),
        Expect::Counter(k, n) => {
            let s = n.to_string();
            let head = format!("VALUE {k} 0 ");
            assert!(got.starts_with(head.as_bytes()) && got.ends_with(b"\r\nEND\r\n"), "{who}: {}", show(got));
            let body_start = find(got, b"\r\n").unwrap() + 2;
            let body = &got[body_start..got.len() - 7];
            let trimmed: &[u8] = {
                let mut e = body.len();
                while e > 0 && body[e - 1] == b' ' {
                    e -= 1;
                }
                &body[..e]
            };
            assert_bytes!(trimmed, s.as_bytes(), "{who}: counter {k}");
        }
    }
}

#[test]
fn stress_200_connections() {
    let s = Server::start(2, &[]);
    let secs: u64 = std::env::var("MEMCORE_STRESS_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let p = uniq("stress");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let addr = s.addr.clone();
        let p = p.clone();
        handles.push(std::thread::spawn(move || {
            let mut clients: Vec<Client> = (0..CONNS / THREADS)
                .map(|i| {
                    let id = t * (CONNS / THREADS) + i;
                    Client {
                        id,
                        conn: Conn::connect(&addr),
                        prefix: p.clone(),
                        model: vec![Val::Missing; KEYS],
                        rng: Rng::new(id as u64 * 7919 + 13),
                        ops: 0,
                    }
                })
                .collect();
            let mut rounds = 0u64;
            while Instant::now() < deadline {
                // each client sends 1-3 requests, then all replies are read
                let mut expects: Vec<Vec<Expect>> = Vec::with_capacity(clients.len());
                for c in clients.iter_mut() {
                    let n = 1 + c.rng.below(3) as usize;
                    let mut req = Vec::new();
                    let mut ex = Vec::new();
                    for _ in 0..n {
                        let (r, e) = c.next_request();
                        req.extend(r);
                        ex.push(e);
                    }
                    c.conn.send(&req);
                    expects.push(ex);
                }
                for (c, ex) in clients.iter_mut().zip(expects) {
                    for e in ex {
                        let got = c.conn.read_reply();
                        check(&got, &e, &format!("conn {} op {}", c.id, c.ops));
                        c.ops += 1;
                    }
                }
                rounds += 1;
            }
            // final verification of every key
            for c in clients.iter_mut() {
                for j in 0..KEYS {
                    let k = c.key(j);
                    let got = c.conn.request(format!("get {k}\r\n").as_bytes());
                    let e = match &c.model[j] {
                        Val::Missing => Expect::Exact(b"END\r\n".to_vec()),
                        Val::Num(n) => Expect::Counter(k.clone(), *n),
                        Val::Bytes(v) => Expect::Exact([value(&k, j as u32, v), b"END\r\n".to_vec()].concat()),
                    };
                    check(&got, &e, &format!("final conn {} key {j}", c.id));
                }
            }
            (rounds, clients.iter().map(|c| c.ops).sum::<u64>())
        }));
    }
    let mut ops = 0;
    for h in handles {
        let (_r, o) = h.join().expect("stress thread failed");
        ops += o;
    }
    eprintln!("stress: {ops} requests over {CONNS} connections in {secs} s");
    assert!(ops > CONNS as u64, "too few requests completed: {ops}");
    let mut c = s.conn();
    c.version_check();
}
