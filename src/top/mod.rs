//! `memcore top` and `memcore stat`: a live view of one or many servers
//! (memcore or memcached 1.6) and the same figures once, for scripts.
//!
//! ```text
//!  memcore top [--interval SECS] [HOST:PORT ...]   redraw every interval; q quits
//!  memcore stat [--json] [--interval SECS] HOST:PORT ...
//! ```
//!
//! A client of the text protocol only (`fetch`): it imports nothing of the
//! server, so it works against any memcached. `view` turns two looks at a
//! server into rates and ratios and lays them out; `term` draws them.

pub mod fetch;
pub mod term;
pub mod view;

use std::time::Duration;

use view::Server;

const USAGE: &str = "usage: memcore top [--interval SECS] [HOST:PORT ...]\n       \
                     memcore stat [--json] [--interval SECS] HOST:PORT ...\n\
                     (HOST alone means port 11211; top with no server watches 127.0.0.1:11211)\n";

/// What the command line of `top` or `stat` asks for.
#[derive(Debug, PartialEq)]
pub struct Options {
    pub servers: Vec<String>,
    pub interval: Duration,
    pub json: bool,
    /// `top` only: stop after this many frames (tests; 0 = until q).
    pub frames: u64,
}

/// Whether `args` (the whole command line) asks for `top` or `stat`
/// rather than the server: the first argument names the subcommand.
/// memcached's flags all start with '-', so `memcore -p 11211` is never
/// read as one.
pub fn subcommand(args: &[String]) -> Option<&str> {
    args.get(1).map(String::as_str).filter(|a| matches!(*a, "top" | "stat"))
}

/// Parse the arguments after the subcommand.
pub fn parse(stat: bool, args: &[String]) -> Result<Options, String> {
    let mut o = Options { servers: Vec::new(), interval: Duration::from_secs(1), json: false, frames: 0 };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" if stat => o.json = true,
            "--interval" | "-i" | "--frames" => {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                if a == "--frames" {
                    o.frames = v.parse().map_err(|_| format!("bad {a}: {v}"))?;
                } else {
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| (0.0..=3600.0).contains(s))
                        .ok_or_else(|| format!("bad {a}: {v}"))?;
                    o.interval = Duration::from_secs_f64(secs);
                }
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => o.servers.push(with_port(s)),
        }
    }
    if o.servers.is_empty() {
        if stat {
            return Err("stat needs at least one HOST:PORT".into());
        }
        o.servers.push("127.0.0.1:11211".into());
    }
    Ok(o)
}

/// HOST, HOST:PORT, [V6]:PORT or a bare V6 address; the port defaults to 11211.
fn with_port(s: &str) -> String {
    let has_port = if s.starts_with('[') { s.contains("]:") } else { s.matches(':').count() == 1 };
    if has_port {
        s.to_string()
    } else if s.contains(':') && !s.starts_with('[') {
        format!("[{s}]:11211")
    } else {
        format!("{s}:11211")
    }
}

/// Run `memcore top` or `memcore stat` with the whole command line; the
/// process's exit code.
pub fn main(args: &[String]) -> u8 {
    let stat = subcommand(args) == Some("stat");
    let o = match parse(stat, &args[2..]) {
        Ok(o) => o,
        Err(e) => {
            if e.is_empty() {
                print!("{USAGE}");
                return 0;
            }
            eprint!("memcore: {e}\n{USAGE}");
            return 64;
        }
    };
    let mut servers: Vec<Server> = o.servers.iter().map(|a| Server::new(a)).collect();
    if stat { run_stat(&mut servers, &o) } else { run_top(&mut servers, &o) }
}

/// Look at every server at once (one thread each, each bounded by
/// `fetch::TIMEOUT`).
fn refresh(servers: &mut [Server]) {
    let samples: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = servers.iter().map(|srv| s.spawn(|| fetch::sample(&srv.addr))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("look failed".into()))).collect()
    });
    for (srv, sample) in servers.iter_mut().zip(samples) {
        srv.update(sample);
    }
}

fn run_top(servers: &mut [Server], o: &Options) -> u8 {
    let screen = term::Screen::enter();
    let mut frames = 0;
    loop {
        refresh(servers);
        let now = utc_clock();
        let title = format!(
            "memcore top - {} server(s) - {now} UTC - every {:.1}s - q quits",
            servers.len(),
            o.interval.as_secs_f64()
        );
        screen.draw(&view::frame(servers, &title));
        frames += 1;
        if o.frames > 0 && frames >= o.frames {
            break;
        }
        if term::wait_quit(o.interval) {
            break;
        }
    }
    0
}

/// Two looks `--interval` apart (so that rates are there), then print.
/// Exit 1 when a server did not answer.
fn run_stat(servers: &mut [Server], o: &Options) -> u8 {
    refresh(servers);
    if !o.interval.is_zero() {
        std::thread::sleep(o.interval);
        refresh(servers);
    }
    if o.json {
        print!("{}", view::json(servers));
    } else {
        for line in view::frame(servers, "memcore stat") {
            println!("{line}");
        }
    }
    if servers.iter().any(|s| s.error().is_some()) { 1 } else { 0 }
}

/// HH:MM:SS of the wall clock, UTC.
fn utc_clock() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn memcached_flags_are_not_a_subcommand() {
        assert_eq!(subcommand(&args("memcore -p 11211 -m 64")), None);
        assert_eq!(subcommand(&args("memcore")), None);
        assert_eq!(subcommand(&args("memcore top a:1")), Some("top"));
        assert_eq!(subcommand(&args("memcore stat --json a:1")), Some("stat"));
    }

    #[test]
    fn servers_default_to_port_11211() {
        let o = parse(true, &args("--json h1 h2:7000 ::1 [::1]:5 --interval 0")).unwrap();
        assert_eq!(o.servers, ["h1:11211", "h2:7000", "[::1]:11211", "[::1]:5"]);
        assert!(o.json && o.interval.is_zero());
        assert_eq!(parse(false, &[]).unwrap().servers, ["127.0.0.1:11211"]);
        assert!(parse(true, &[]).is_err());
        assert!(parse(false, &args("--json")).is_err(), "--json is stat's");
        assert!(parse(false, &args("--interval -1")).is_err());
    }
}
