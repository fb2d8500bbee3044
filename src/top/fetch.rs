//! One look at one server over the text protocol: `stats`, `stats conns`
//! and, from memcore, `stats cores`, `stats repl`, `stats latency` and
//! `stats hotkeys`. Plain blocking sockets with timeouts; a server that
//! does not answer in time is shown as down, never waited on forever.
//!
//! Knows nothing of the server's code: only its replies.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long one server may take to connect or to answer one request.
pub const TIMEOUT: Duration = Duration::from_millis(900);
/// A `stats` reply larger than this is not a stats reply (`stats conns`
/// of a server with many connections is the largest one).
const MAX_REPLY: usize = 16 << 20;

/// The `STAT name value` lines of one reply, in the server's order.
#[derive(Clone, Debug, Default)]
pub struct Stats(pub Vec<(String, String)>);

impl Stats {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A figure as a number; 0 when absent or not a number.
    pub fn num(&self, name: &str) -> u64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn parse(reply: &str) -> Stats {
        let lines = reply.lines().filter_map(|l| l.strip_prefix("STAT "));
        Stats(
            lines.map(|l| l.split_once(' ').unwrap_or((l, ""))).map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        )
    }
}

/// What one look at a server found.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub general: Stats,
    /// Connections per client address (from `stats conns`), most first.
    pub clients: Vec<(String, u64)>,
    /// memcore only: `stats cores`, one `Stats` per core with the `coreN:`
    /// prefix taken off.
    pub cores: Vec<Stats>,
    pub repl: Stats,
    pub latency: Stats,
    pub hotkeys: Stats,
}

impl Sample {
    pub fn is_memcore(&self) -> bool {
        self.general.get("version").is_some_and(|v| v.contains("memcore"))
    }
}

/// Look at the server at `addr` (HOST:PORT) once.
pub fn sample(addr: &str) -> Result<Sample, String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut s = TcpStream::connect_timeout(&sock, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let at = Instant::now();
    let general = Stats::parse(&request(&mut s, "stats")?);
    let conns = Stats::parse(&request(&mut s, "stats conns")?);
    let mut sample = Sample {
        at,
        general,
        clients: clients(&conns),
        cores: Vec::new(),
        repl: Stats::default(),
        latency: Stats::default(),
        hotkeys: Stats::default(),
    };
    if sample.is_memcore() {
        sample.cores = cores(&Stats::parse(&request(&mut s, "stats cores")?));
        sample.repl = Stats::parse(&request(&mut s, "stats repl")?);
        // Older memcore answers ERROR to these: then there is nothing to show.
        sample.latency = Stats::parse(&request(&mut s, "stats latency")?);
        sample.hotkeys = Stats::parse(&request(&mut s, "stats hotkeys")?);
    }
    Ok(sample)
}

/// Send one command; its reply up to END (or an error line).
fn request(s: &mut TcpStream, cmd: &str) -> Result<String, String> {
    s.write_all(format!("{cmd}\r\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if buf.ends_with(b"END\r\n") || (buf.ends_with(b"\r\n") && is_error_line(&buf)) {
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > MAX_REPLY {
            return Err(format!("{cmd}: reply over {MAX_REPLY} bytes"));
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err(format!("{cmd}: connection closed")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{cmd}: {e}")),
        }
    }
}

/// A reply that is one error line (ERROR, CLIENT_ERROR, SERVER_ERROR).
fn is_error_line(buf: &[u8]) -> bool {
    let first = buf.split(|&b| b == b'\n').next().unwrap_or(b"");
    first.starts_with(b"ERROR") || first.starts_with(b"CLIENT_ERROR") || first.starts_with(b"SERVER_ERROR")
}

/// Client connections per address: `N:addr tcp:IP:PORT` lines, less the
/// listening sockets memcached lists too.
fn clients(conns: &Stats) -> Vec<(String, u64)> {
    let mut by_addr: Vec<(String, u64)> = Vec::new();
    for (name, value) in &conns.0 {
        let Some(id) = name.strip_suffix(":addr") else { continue };
        let state = conns.get(&format!("{id}:state")).unwrap_or("");
        if state == "conn_listening" || !value.starts_with("tcp:") {
            continue;
        }
        let hostport = &value["tcp:".len()..];
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).to_string();
        match by_addr.iter_mut().find(|(h, _)| *h == host) {
            Some((_, n)) => *n += 1,
            None => by_addr.push((host, 1)),
        }
    }
    by_addr.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_addr
}

/// `coreN:name value` lines into one `Stats` per core, in core order.
fn cores(s: &Stats) -> Vec<Stats> {
    let mut out: Vec<Stats> = Vec::new();
    for (name, value) in &s.0 {
        let Some((core, field)) = name.strip_prefix("core").and_then(|r| r.split_once(':')) else { continue };
        let Ok(i) = core.parse::<usize>() else { continue };
        if i > 4096 {
            continue;
        }
        if out.len() <= i {
            out.resize(i + 1, Stats::default());
        }
        out[i].0.push((field.to_string(), value.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_address_without_listeners() {
        let conns = Stats::parse(
            "STAT 26:addr tcp:0.0.0.0:11211\r\nSTAT 26:state conn_listening\r\n\
             STAT 27:addr tcp:10.0.0.2:5000\r\nSTAT 27:state conn_parse_cmd\r\n\
             STAT 0.1:addr tcp:10.0.0.2:5001\r\nSTAT 0.1:state conn_parse_cmd\r\n\
             STAT 1.1:addr tcp:[::1]:5002\r\nSTAT 1.1:state conn_parse_cmd\r\nEND\r\n",
        );
        assert_eq!(clients(&conns), vec![("10.0.0.2".to_string(), 2), ("[::1]".to_string(), 1)]);
    }

    #[test]
    fn core_lines_split_by_core() {
        let s = Stats::parse("STAT core0:curr_items 3\r\nSTAT core1:curr_items 4\r\nSTAT core1:bytes 9\r\nEND\r\n");
        let c = cores(&s);
        assert_eq!((c.len(), c[0].num("curr_items"), c[1].num("bytes")), (2, 3, 9));
    }
}
