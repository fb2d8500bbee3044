//! What the server asks of the system before it starts, for `config` to
//! stay pure: the CPUs this process may use (its affinity mask), the
//! addresses of the names in `-l` and `--repl-listen`, and the files
//! `--repl-secret` and `--compress-dict`. `main` runs this between
//! `config::parse_args` and `server::run`; its errors are one line, as
//! config's are, and end the process the same way (exit status 64).
//!
//! Imports `config` and storage's `DictMode`; nothing imports this but
//! `main`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::config::Config;
use crate::storage::DictMode;

/// Read and resolve what `cfg.unresolved` names into `cfg`.
pub fn prepare(cfg: &mut Config) -> Result<(), String> {
    let u = cfg.unresolved.clone();
    (cfg.listen, cfg.listen_plain) = parse_listen_tls(&u.listen, u.port)?;
    // Read now so that a bad file stops the start like a bad flag; the
    // server reads them again to use them (and on SIGHUP).
    if let Some(path) = &cfg.auth_file {
        super::auth::Credentials::load(path)?;
    }
    if let Some(t) = &cfg.tls {
        super::tls::server_config(t)?;
    }
    if let Some(path) = &u.compress_dict {
        let raw = std::fs::read(path).map_err(|e| format!("cannot read --compress-dict {path}: {e}"))?;
        if zstd::dict::DecoderDictionary::try_copy(&raw).is_err() || raw.len() < 8 {
            return Err(format!("--compress-dict {path} is not a zstd dictionary"));
        }
        cfg.compress.dict = DictMode::Loaded(std::sync::Arc::new(raw));
    }
    if let Some(r) = cfg.repl.as_mut() {
        if let Some(s) = &u.repl_listen {
            let addr = parse_listen(s, 0)?.into_iter().next().filter(|a| a.port() != 0);
            r.listen = Some(addr.ok_or("--repl-listen needs ADDR:PORT")?);
        }
        if let Some(path) = &u.repl_secret {
            let s = std::fs::read(path).map_err(|e| format!("cannot read --repl-secret {path}: {e}"))?;
            let s = s.trim_ascii().to_vec();
            if s.is_empty() {
                return Err(format!("--repl-secret {path} is empty"));
            }
            r.secret = Some(s);
        }
    }
    Ok(())
}

/// memcached's -l: comma-separated addresses, each optionally with a port
/// (`127.0.0.1`, `::1`, `[::1]:11212`, `localhost`).
pub fn parse_listen(spec: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let addrs: Vec<SocketAddr> = if let Ok(ip) = part.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else if let Ok(sa) = part.parse::<SocketAddr>() {
            vec![sa]
        } else if let Some(ip) =
            part.strip_prefix('[').and_then(|p| p.strip_suffix(']')).and_then(|p| p.parse::<IpAddr>().ok())
        {
            vec![SocketAddr::new(ip, port)]
        } else {
            let with_port = if part.contains(':') { part.to_string() } else { format!("{part}:{port}") };
            with_port
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve listen address {part:?}: {e}"))?
                .take(1)
                .collect()
        };
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no listen address in {spec:?}"));
    }
    Ok(out)
}

/// `-l` with memcached's `notls:` prefix on an address that stays plain
/// under `-Z` (`notls:127.0.0.1:11212`). Returns the addresses and, beside
/// each, whether it is plain. Port 0 entries are never merged: each takes
/// its own free port.
pub fn parse_listen_tls(spec: &str, port: u16) -> Result<(Vec<SocketAddr>, Vec<bool>), String> {
    let (mut addrs, mut plain) = (Vec::new(), Vec::new());
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (part, notls) = match part.strip_prefix("notls:") {
            Some(rest) => (rest, true),
            None => (part, false),
        };
        for a in parse_listen(part, port)? {
            if a.port() == 0 || !addrs.contains(&a) {
                addrs.push(a);
                plain.push(notls);
            }
        }
    }
    if addrs.is_empty() {
        return Err(format!("no listen address in {spec:?}"));
    }
    Ok((addrs, plain))
}

/// CPUs this process may run on (honours taskset and cgroup cpusets).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect();
            if !cpus.is_empty() {
                return cpus;
            }
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Command, parse_args};

    fn prepared(args: &[&str]) -> Result<Config, String> {
        let Command::Run(c) = parse_args(std::iter::once("memcore").chain(args.iter().copied()), &[0])? else {
            return Err("printed".into());
        };
        let mut c = *c;
        prepare(&mut c)?;
        Ok(c)
    }

    #[test]
    fn listen_addresses_keep_their_order_and_ports() {
        let c = prepared(&[]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:11211".parse().unwrap()]);
        let c = prepared(&["-p", "22122", "-l", "127.0.0.1,::1,[::1]:5000,127.0.0.1"]).unwrap();
        let want: Vec<SocketAddr> =
            ["127.0.0.1:22122", "[::1]:22122", "[::1]:5000"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(c.listen, want);
        assert_eq!(c.tcp_port(), 22122);
        assert!(prepared(&["-l", " , "]).unwrap_err().contains("no listen address"));
        let c = prepared(&["-p", "0", "-l", "127.0.0.1,notls:127.0.0.1,notls:127.0.0.1:5000"]).unwrap();
        assert_eq!(c.listen.len(), 3);
        assert_eq!(c.listen_plain, vec![false, true, true]);
    }

    #[test]
    fn replication_secret_and_listen_are_read_at_startup() {
        let dir = std::env::temp_dir().join(format!("memcore-startup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (secret, empty) = (dir.join("secret"), dir.join("empty"));
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::write(&empty, "\n").unwrap();
        let with = |path: &std::path::Path| {
            let path = path.to_str().unwrap().to_string();
            prepared(&[
                "--repl-listen",
                "127.0.0.1:7000",
                "--peers",
                "127.0.0.1:7001",
                "--node-id",
                "1",
                "--repl-secret",
                &path,
            ])
        };
        let r = with(&secret).unwrap().repl.unwrap();
        assert_eq!((r.listen, r.secret.as_deref()), (Some("127.0.0.1:7000".parse().unwrap()), Some(&b"s3cret"[..])));
        assert!(with(&empty).unwrap_err().contains("is empty"));
        assert!(with(&dir.join("missing")).unwrap_err().starts_with("cannot read --repl-secret"));
        let e = prepared(&["--compress-dict", secret.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("is not a zstd dictionary"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
