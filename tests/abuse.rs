//! Misbehaving clients: each test abuses one server and then checks that
//! it still answers everybody else correctly and has forgotten the abusers.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn wait_for_connections(s: &Server, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = stat_u64(&s.conn().stats("stats"), "curr_connections");
        // The connection asking counts itself.
        if n == want + 1 {
            return;
        }
        assert!(Instant::now() < deadline, "curr_connections stuck at {n}, want {}", want + 1);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn still_serves(s: &Server) {
    let mut c = s.conn();
    let k = uniq("alive");
    assert_bytes!(c.request(&store_cmd("set", &k, 7, 0, b"ok")), b"STORED\r\n");
    assert_bytes!(
        c.request(format!("get {k}\r\n").as_bytes()),
        value(&k, 7, b"ok").into_iter().chain(b"END\r\n".iter().copied()).collect::<Vec<u8>>()
    );
}

#[test]
fn clients_vanishing_mid_request_leave_no_trace() {
    if is_external() {
        eprintln!("SKIP clients_vanishing_mid_request_leave_no_trace: needs its own server");
        return;
    }
    let s = Server::start(2, &[]);
    let addr = s.addr.clone();
    let p = uniq("vanish");
    let keys: Vec<String> = (0..64).map(|i| format!("{p}{i}")).collect();
    let mut c = s.conn();
    for k in &keys {
        assert_bytes!(c.request(&store_cmd("set", k, 0, 0, &[b'x'; 2000])), b"STORED\r\n");
    }
    drop(c);
    let cuts: Vec<Vec<u8>> = vec![
        b"set half 0 0 100\r\nonly-some-of-the-data".to_vec(),
        b"get ".to_vec(),
        format!("get {}\r\n", keys.join(" ")).into_bytes(),
        b"incr".to_vec(),
        [format!("get {}\r\n", keys.join(" ")).repeat(50).as_bytes(), b"set x 0 0 5\r\nab"].concat(),
    ];
    for round in 0..40 {
        for cut in &cuts {
            let mut t = TcpStream::connect(&addr).unwrap();
            let _ = t.write_all(cut);
            if round % 2 == 0 {
                // Reset instead of a clean close: SO_LINGER with a zero timeout.
                use std::os::fd::AsRawFd;
                let lin = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: setsockopt reads the struct we pass, on our own socket.
                unsafe {
                    libc::setsockopt(
                        t.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &lin as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as u32,
                    );
                }
            }
            drop(t);
        }
    }
    wait_for_connections(&s, 0);
    still_serves(&s);
}

#[test]
fn garbage_bytes_get_errors_or_a_close_never_a_crash() {
    if is_external() {
        eprintln!("SKIP garbage_bytes_get_errors_or_a_close_never_a_crash: needs its own server");
        return;
    }
    let s = Server::start(2, &[]);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..50 {
        let mut t = TcpStream::connect(&s.addr).unwrap();
        t.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut junk = vec![0u8; 5000];
        for b in junk.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = rng as u8;
        }
        let _ = t.write_all(&junk);
        let mut sink = [0u8; 65536];
        let _ = t.read(&mut sink);
    }
    // A binary-protocol header (memcached's 0x80 magic) is not understood,
    // but must not hurt anyone else either.
    let mut t = TcpStream::connect(&s.addr).unwrap();
    let _ = t.write_all(&[0x80, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'k']);
    drop(t);
    wait_for_connections(&s, 0);
    still_serves(&s);
}

#[test]
fn connections_over_the_limit_are_refused_and_the_rest_keep_working() {
    if is_external() {
        eprintln!("SKIP connections_over_the_limit_are_refused_and_the_rest_keep_working: needs its own server");
        return;
    }
    let s = Server::start(2, &["-c", "20"]);
    // Fill the limit. The harness's readiness probe may still be counted for
    // a moment after it closed, so a refused filler is retried.
    let mut held: Vec<Conn> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.len() < 20 {
        let mut c = s.conn();
        c.send(b"version\r\n");
        if c.read_line().starts_with(b"VERSION ") {
            held.push(c);
        } else {
            assert!(Instant::now() < deadline, "could not open 20 connections under -c 20");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for _ in 0..30 {
        let mut t = TcpStream::connect(&s.addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = t.read_to_end(&mut got);
        assert_eq!(show(&got), show(b"ERROR Too many open connections\r\n"));
    }
    for c in held.iter_mut() {
        c.version_check();
    }
    assert!(stat_u64(&held[0].stats("stats"), "rejected_connections") >= 30);
    drop(held);
    wait_for_connections_after_limit(&s);
}

/// With the limit freed again, new clients are served.
fn wait_for_connections_after_limit(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(t) = TcpStream::connect(&s.addr) {
            let mut c = Conn::from_stream(t);
            c.send(b"version\r\n");
            let line = c.read_line();
            if line.starts_with(b"VERSION ") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server did not accept clients after the limit freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    still_serves(s);
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    if is_external() {
        eprintln!("SKIP a_client_that_never_reads_does_not_stall_others: needs its own server");
        return;
    }
    let s = Server::start(2, &[]);
    let p = uniq("hog");
    let mut c = s.conn();
    let keys: Vec<String> = (0..16).map(|i| format!("{p}{i}")).collect();
    for k in &keys {
        assert_bytes!(c.request(&store_cmd("set", k, 0, 0, &[b'v'; 100_000])), b"STORED\r\n");
    }
    // The hog asks for far more than socket buffers hold and never reads.
    let mut hog = TcpStream::connect(&s.addr).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let line = format!("get {}\r\n", keys.join(" ")).repeat(200);
    let _ = hog.write_all(line.as_bytes());
    // Everyone else, on both cores, is served promptly meanwhile.
    for _ in 0..20 {
        let start = Instant::now();
        still_serves(&s);
        assert!(start.elapsed() < Duration::from_secs(1), "others stalled behind a client that does not read");
    }
    drop(hog);
    wait_for_connections(&s, 1);
}
