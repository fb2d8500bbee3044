//! Command line: memcached's flags (so init scripts and container commands
//! work unchanged) plus memcore's own long options, checked into a `Config`.
//!
//! Pure: parse and check. The CPUs the process may use come in as an
//! argument; files (the replication secret, the zstd dictionary) and names
//! (`-l`, `--repl-listen`) stay paths and strings in `Config::unresolved`,
//! which `server::startup` reads and resolves before the server starts.
//! Imports only the types it fills (storage's compression settings, repl's
//! `ReplConfig`); must not import `server` or `route`, nor do I/O.

use clap::{ArgAction, Parser};

use crate::storage::{CompressConfig, DictMode};
use std::net::SocketAddr;

pub const DEFAULT_PORT: u16 = 11211;
/// memcached listens on every address by default; memcore only on loopback,
/// so that a cache is never exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1";
pub const DEFAULT_MEMORY_MB: u64 = 64;
pub const DEFAULT_CONN_LIMIT: usize = 1024;
pub const DEFAULT_ITEM_SIZE_MAX: usize = 1 << 20;
pub const MIN_ITEM_SIZE_MAX: usize = 1024;
pub const MAX_ITEM_SIZE_MAX: usize = 1 << 30;
pub const DEFAULT_BACKLOG: i32 = 1024;
pub const DEFAULT_REQS_PER_EVENT: usize = 20;
/// The memcached version whose protocol memcore speaks.
pub const PROTOCOL_VERSION: &str = "1.6.18";

#[derive(Parser, Debug)]
#[command(name = "memcore", version = concat!(env!("CARGO_PKG_VERSION"), " (memcached 1.6 protocol)"),
    about = "A memcached-compatible, thread-per-core cache server", disable_help_flag = true)]
struct Args {
    /// TCP port to listen on (0: a free port, told in the log and --port-file;
    /// memcached's -p 0 turns TCP off instead, which memcore cannot do)
    #[arg(short = 'p', long = "port", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Interfaces to listen on, comma-separated (IPv4, IPv6, optional :port)
    #[arg(short = 'l', long = "listen", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Item memory in megabytes, split evenly over cores
    #[arg(short = 'm', long = "memory-limit", default_value_t = DEFAULT_MEMORY_MB)]
    memory_limit: u64,
    /// Item memory per core in megabytes (overrides the even split of -m)
    #[arg(long = "memory-per-core")]
    memory_per_core: Option<u64>,
    /// Maximum simultaneous connections
    #[arg(short = 'c', long = "conn-limit", default_value_t = DEFAULT_CONN_LIMIT)]
    conn_limit: usize,
    /// Cores to run on, one executor each (default: every CPU the process may use)
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Largest item, with k/m suffix (1k to 1g)
    #[arg(short = 'I', long = "max-item-size", default_value = "1m")]
    max_item_size: String,
    /// Listen backlog
    #[arg(short = 'b', long = "listen-backlog", default_value_t = DEFAULT_BACKLOG)]
    backlog: i32,
    /// UDP port; only 0 (off) is supported
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    udp_port: u16,
    /// User to run as after binding (required when started as root)
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Write the process id to this file
    #[arg(short = 'P', long = "pidfile")]
    pidfile: Option<String>,
    /// Once listening, write the ports to this file (as memcached does to
    /// MEMCACHED_PORT_FILENAME: "TCP INET: 11211"); with -p 0, the free port taken
    #[arg(long = "port-file", value_name = "FILE")]
    port_file: Option<String>,
    /// Disable CAS (gets reports 0)
    #[arg(short = 'C', long = "disable-cas", action = ArgAction::SetTrue)]
    disable_cas: bool,
    /// Disable flush_all
    #[arg(short = 'F', long = "disable-flush-all", action = ArgAction::SetTrue)]
    disable_flush_all: bool,
    /// Return an error instead of evicting when memory is full
    #[arg(short = 'M', long = "disable-evictions", action = ArgAction::SetTrue)]
    disable_evictions: bool,
    /// Requests handled per connection before yielding to others
    #[arg(short = 'R', long = "max-reqs-per-event", default_value_t = DEFAULT_REQS_PER_EVENT)]
    reqs_per_event: usize,
    /// Memory client connections may hold for input and replies, in MB over
    /// all cores (default: a tenth of -m, at least 32 MB and two items per core)
    #[arg(long = "conn-memory", value_name = "MB")]
    conn_memory: Option<u64>,
    /// Microseconds an idle core keeps polling before it sleeps (0: sleep at once).
    /// Cuts the cost of cross-core hops under load; an idle core still sleeps.
    #[arg(long = "spin-before-park", default_value_t = 0, value_name = "MICROSECONDS")]
    spin_before_park: u64,
    /// Fixed key (32 hex digits) for the key-to-core and index hashes instead
    /// of random ones, for benchmarks that must know which core owns a key.
    /// Whoever knows it can flood the index: never in production.
    #[arg(long = "hash-key", hide = true, value_name = "HEX")]
    hash_key: Option<String>,
    /// Compress values with zstd inside the server (clients see none of it)
    #[arg(long = "compress", default_value = "on", value_parser = ["on", "off"])]
    compress: String,
    /// Smallest value, in bytes, that is compressed
    #[arg(long = "compress-min", default_value_t = 64, value_name = "BYTES")]
    compress_min: usize,
    /// zstd level (negative: faster, 1-19: smaller)
    #[arg(long = "compress-level", default_value_t = 1, allow_negative_numbers = true)]
    compress_level: i32,
    /// Dictionary for small values: off, auto (trained per core from the values
    /// stored), or the path of a trained zstd dictionary
    #[arg(long = "compress-dict", default_value = "auto", value_name = "off|auto|FILE")]
    compress_dict: String,
    /// Replication: address this node accepts links from peers on
    #[arg(long = "repl-listen", value_name = "ADDR:PORT")]
    repl_listen: Option<String>,
    /// Replication: the other nodes' replication addresses, comma-separated
    #[arg(long = "peers", value_name = "ADDR:PORT,...")]
    peers: Option<String>,
    /// Replication: this node's id, unique in its group (0-255)
    #[arg(long = "node-id")]
    node_id: Option<u32>,
    /// Replication: file holding the group's shared secret
    #[arg(long = "repl-secret", value_name = "FILE")]
    repl_secret: Option<String>,
    /// Replication without a secret: anyone who reaches the replication
    /// port, or sits between two nodes, can read and write this cache
    #[arg(long = "repl-insecure")]
    repl_insecure: bool,
    /// Replication: most inbound replication connections at once (over all
    /// cores; handshakes in progress count), apart from -c
    #[arg(long = "repl-max-links", default_value_t = crate::repl::DEFAULT_MAX_LINKS, value_name = "N")]
    repl_max_links: usize,
    /// Replication: when a write is acknowledged (async, sync, majority)
    #[arg(long = "repl-mode", default_value = "async")]
    repl_mode: String,
    /// Replication: how long sync/majority writes wait for peers, in ms
    #[arg(long = "repl-timeout", default_value_t = crate::repl::DEFAULT_TIMEOUT_MS, value_name = "MS")]
    repl_timeout: u64,
    /// Replication: backlog kept for reconnecting peers, in MB (over all cores)
    #[arg(long = "repl-backlog", default_value_t = crate::repl::DEFAULT_BACKLOG_MB, value_name = "MB")]
    repl_backlog: usize,
    /// Replication: how long deletes are remembered, in seconds
    #[arg(long = "repl-tombstone-ttl", default_value_t = crate::repl::DEFAULT_TOMBSTONE_TTL_S, value_name = "SECONDS")]
    repl_tombstone_ttl: u64,
    /// Replication: heartbeat interval on idle links, in ms (a link silent
    /// for 4 intervals is dropped and reconnected)
    #[arg(long = "repl-heartbeat", default_value_t = crate::repl::DEFAULT_HEARTBEAT_MS, value_name = "MS")]
    repl_heartbeat: u64,
    /// ASCII authentication: a file of user:password lines; a connection's
    /// first command must be `set <any> 0 0 <n>` with "user password" as data
    #[arg(short = 'Y', long = "auth-file", value_name = "FILE")]
    auth_file: Option<String>,
    /// TLS on the client ports (-o ssl_chain_cert=,ssl_key= required;
    /// -l notls:ADDR:PORT keeps a port plain)
    #[arg(short = 'Z', long = "enable-ssl")]
    enable_ssl: bool,
    /// Verbose logging (-v, -vv, -vvv)
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    verbose: u8,
    /// memcached extended options (-o name=value,...): idle_timeout=SECONDS,
    /// ssl_chain_cert=, ssl_key=, ssl_ca_cert=, ssl_verify_mode=0..3 and
    /// ssl_min_version=tlsv1.2|tlsv1.3 are honoured; the others are accepted
    /// and ignored with a warning
    #[arg(short = 'o', long = "extended")]
    extended: Vec<String>,
    /// Print help
    #[arg(short = 'h', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Filled by `server::startup` from `unresolved.listen`; empty before.
    pub listen: Vec<SocketAddr>,
    pub memory_limit: usize,
    pub memory_per_core: Option<usize>,
    pub conn_limit: usize,
    pub threads: usize,
    /// CPUs the executors are pinned to, one per executor.
    pub cpus: Vec<usize>,
    pub item_size_max: usize,
    /// `--hash-key`: None (the default) draws random keys at start.
    pub hash_key: Option<crate::storage::HashKey>,
    pub backlog: i32,
    pub user: Option<String>,
    pub pidfile: Option<String>,
    /// `--port-file`: where to write the ports once listening.
    pub port_file: Option<String>,
    pub use_cas: bool,
    pub flush_enabled: bool,
    pub evict: bool,
    pub reqs_per_event: usize,
    /// Bytes client connections may hold over all cores (route/budget.rs).
    pub conn_memory: usize,
    /// `-o idle_timeout`: close a connection that sent nothing, or took
    /// none of its replies, for this long.
    pub idle_timeout: Option<std::time::Duration>,
    pub spin_before_park: std::time::Duration,
    pub compress: CompressConfig,
    pub verbosity: u8,
    pub warnings: Vec<String>,
    /// `listen` and `secret` are filled by `server::startup` from
    /// `unresolved`; None before.
    pub repl: Option<crate::repl::ReplConfig>,
    /// Paths and names as given, for `server::startup`.
    pub unresolved: Unresolved,
    /// `-Y FILE`: the auth file, read by the server at start and on SIGHUP.
    pub auth_file: Option<String>,
    /// `-Z`: TLS on the client ports not marked `notls:`.
    pub tls: Option<TlsSettings>,
    /// Filled by `server::startup` beside `listen`: whether each address
    /// was given as `notls:` (plain even with `-Z`).
    pub listen_plain: Vec<bool>,
}

/// `-Z` with `-o ssl_*`: paths as given (the server reads the files at
/// start and on SIGHUP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub chain_cert: String,
    pub key: String,
    pub ca_cert: Option<String>,
    /// memcached's ssl_verify_mode: 0 none, 1 verify a client certificate
    /// if one is given, 2 require one, 3 require one once (rustls never
    /// renegotiates, so 3 is 2).
    pub verify_mode: u8,
    pub min_version: TlsMinVersion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMinVersion {
    Tls12,
    Tls13,
}

/// What the command line names but only the running system can answer:
/// read and resolved by `server::startup` before the server starts.
#[derive(Clone, Debug, Default)]
pub struct Unresolved {
    /// `-l` as given (addresses or host names, comma-separated), and `-p`.
    pub listen: String,
    pub port: u16,
    /// `--repl-listen ADDR:PORT` as given.
    pub repl_listen: Option<String>,
    /// `--repl-secret FILE`.
    pub repl_secret: Option<String>,
    /// `--compress-dict FILE` (neither `off` nor `auto`).
    pub compress_dict: Option<String>,
}

impl Config {
    /// Bytes of item memory each core may hold.
    pub fn per_core_limit(&self) -> usize {
        self.memory_per_core.unwrap_or(self.memory_limit / self.threads.max(1))
    }

    pub fn tcp_port(&self) -> u16 {
        self.listen.first().map_or(DEFAULT_PORT, |a| a.port())
    }
}

/// What parsing the command line asks for.
pub enum Command {
    Run(Box<Config>),
    /// --help or --version: print this and exit 0.
    Print(String),
}

/// Parse and check the command line, for a process that may run on `cpus`
/// (`server::startup::allowed_cpus`). Errors are one line, meant for stderr.
pub fn parse_args<I, T>(args: I, cpus: &[usize]) -> Result<Command, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                return Ok(Command::Print(e.render().to_string()));
            }
            let text = e.render().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("bad command line").trim();
            return Err(first.to_string());
        }
    };
    check(args, cpus).map(|c| Command::Run(Box::new(c)))
}

fn check(a: Args, cpus: &[usize]) -> Result<Config, String> {
    let mut warnings = Vec::new();
    if a.udp_port != 0 {
        return Err(format!("UDP is not supported (-U {}); use -U 0", a.udp_port));
    }
    let item_size_max = parse_size(&a.max_item_size)
        .ok_or_else(|| format!("bad item size: {:?} (use e.g. 512k, 1m, 16m)", a.max_item_size))?;
    if item_size_max < MIN_ITEM_SIZE_MAX {
        return Err("item max size cannot be less than 1024 bytes (-I)".into());
    }
    if item_size_max > MAX_ITEM_SIZE_MAX {
        return Err("cannot set item size limit higher than 1 gigabyte (-I)".into());
    }
    let memory_limit = (a.memory_limit as usize).checked_mul(1 << 20).ok_or("memory limit too large (-m)")?;
    if a.memory_limit == 0 {
        return Err("memory limit must be at least 1 megabyte (-m)".into());
    }
    if item_size_max > memory_limit / 2 && a.memory_per_core.is_none() {
        return Err("cannot set item size limit higher than 1/2 of memory max (-I, -m)".into());
    }
    if a.conn_limit == 0 {
        return Err("connection limit must be at least 1 (-c)".into());
    }
    if a.backlog <= 0 {
        return Err("listen backlog must be positive (-b)".into());
    }
    if a.reqs_per_event == 0 {
        return Err("requests per event must be at least 1 (-R)".into());
    }
    let cpus: &[usize] = if cpus.is_empty() { &[0] } else { cpus };
    let threads = match a.threads {
        Some(0) => return Err("number of threads must be at least 1 (-t)".into()),
        Some(t) if t > cpus.len() => {
            warnings.push(format!(
                "-t {t} exceeds the {} CPUs this process may use; running {} executors",
                cpus.len(),
                cpus.len()
            ));
            cpus.len()
        }
        Some(t) => t,
        None => cpus.len(),
    };
    let memory_per_core = match a.memory_per_core {
        Some(0) => return Err("--memory-per-core must be at least 1 megabyte".into()),
        Some(mb) => Some((mb as usize).checked_mul(1 << 20).ok_or("--memory-per-core too large")?),
        None => None,
    };
    // Each item lives on one core, so it must fit in one core's memory.
    let per_core = memory_per_core.unwrap_or(memory_limit / threads);
    if item_size_max > per_core {
        return Err(format!(
            "item size limit {item_size_max} is larger than the {per_core} bytes each of the {threads} cores holds (-I, -m, -t, --memory-per-core)"
        ));
    }
    let mut idle_timeout = None;
    let (mut chain_cert, mut key, mut ca_cert, mut verify_mode, mut min_version) =
        (None, None, None, 0u8, TlsMinVersion::Tls12);
    for o in a.extended.iter().flat_map(|o| o.split(',')).map(str::trim).filter(|o| !o.is_empty()) {
        let (name, value) = o.split_once('=').unwrap_or((o, ""));
        match name {
            "idle_timeout" => {
                let secs: u64 =
                    value.parse().map_err(|_| format!("bad -o idle_timeout={value}: a number of seconds"))?;
                idle_timeout = (secs > 0).then(|| std::time::Duration::from_secs(secs));
            }
            "ssl_chain_cert" => chain_cert = Some(value.to_string()),
            "ssl_key" => key = Some(value.to_string()),
            "ssl_ca_cert" => ca_cert = Some(value.to_string()),
            "ssl_verify_mode" => {
                verify_mode = match value.parse::<u8>() {
                    Ok(m) if m <= 3 => m,
                    _ => return Err(format!("bad -o ssl_verify_mode={value}: 0, 1, 2 or 3")),
                }
            }
            "ssl_min_version" => {
                min_version = match value {
                    "tlsv1.2" => TlsMinVersion::Tls12,
                    "tlsv1.3" => TlsMinVersion::Tls13,
                    "tlsv1" | "tlsv1.0" | "tlsv1.1" => {
                        return Err(format!(
                            "-o ssl_min_version={value} is not supported: memcore speaks TLS 1.2 and 1.3 only"
                        ));
                    }
                    _ => return Err(format!("bad -o ssl_min_version={value}: tlsv1.2 or tlsv1.3")),
                }
            }
            _ => warnings.push(format!("extended option -o {o} is not supported and was ignored")),
        }
    }
    // A core's connections must be able to hold two of the largest items.
    let conn_memory_floor = (32usize << 20).max(item_size_max.saturating_mul(2).saturating_mul(threads));
    let conn_memory = match a.conn_memory {
        Some(0) => return Err("--conn-memory must be at least 1 megabyte".into()),
        Some(mb) => {
            let bytes = (mb as usize).checked_mul(1 << 20).ok_or("--conn-memory too large")?;
            if bytes / threads < item_size_max {
                warnings.push(format!(
                    "--conn-memory {mb} gives each core less than one item of -I {item_size_max} bytes: large items will be refused"
                ));
            }
            bytes
        }
        None => (memory_limit / 10).max(conn_memory_floor),
    };
    let level_range = zstd::compression_level_range();
    if !level_range.contains(&a.compress_level) {
        return Err(format!(
            "--compress-level {} is outside zstd's {}..={}",
            a.compress_level,
            level_range.start(),
            level_range.end()
        ));
    }
    // A dictionary file is read at startup; until then, none.
    let (dict, dict_file) = match a.compress_dict.as_str() {
        "off" => (DictMode::Off, None),
        "auto" => (DictMode::Auto, None),
        path => (DictMode::Off, Some(path.to_string())),
    };
    let compress =
        CompressConfig { enabled: a.compress == "on", min_size: a.compress_min.max(1), level: a.compress_level, dict };
    let repl = check_repl(&a, threads, &mut warnings)?;
    let tls = match (a.enable_ssl, chain_cert, key) {
        (false, ..) => None,
        (true, Some(chain_cert), Some(key)) if !chain_cert.is_empty() && !key.is_empty() => {
            Some(TlsSettings { chain_cert, key, ca_cert, verify_mode, min_version })
        }
        (true, ..) => return Err("-Z needs -o ssl_chain_cert=FILE,ssl_key=FILE".into()),
    };
    let unresolved = Unresolved {
        listen: a.listen.clone(),
        port: a.port,
        repl_listen: a.repl_listen.clone(),
        repl_secret: a.repl_secret.clone(),
        compress_dict: dict_file,
    };
    Ok(Config {
        listen: Vec::new(),
        memory_limit,
        memory_per_core,
        conn_limit: a.conn_limit,
        threads,
        cpus: cpus[..threads].to_vec(),
        item_size_max,
        hash_key: a.hash_key.as_deref().map(parse_hash_key).transpose()?,
        backlog: a.backlog,
        user: a.user,
        pidfile: a.pidfile,
        port_file: a.port_file,
        use_cas: !a.disable_cas,
        flush_enabled: !a.disable_flush_all,
        evict: !a.disable_evictions,
        reqs_per_event: a.reqs_per_event,
        conn_memory,
        idle_timeout,
        spin_before_park: std::time::Duration::from_micros(a.spin_before_park),
        compress,
        verbosity: a.verbose,
        warnings,
        repl,
        unresolved,
        auth_file: a.auth_file,
        tls,
        listen_plain: Vec::new(),
    })
}

fn parse_hash_key(hex: &str) -> Result<crate::storage::HashKey, String> {
    let bad = || format!("bad --hash-key {hex:?}: 32 hex digits");
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let half = |h: &str| u64::from_str_radix(h, 16).map_err(|_| bad());
    Ok(crate::storage::HashKey::new(half(&hex[..16])?, half(&hex[16..])?))
}

fn check_repl(a: &Args, threads: usize, warnings: &mut Vec<String>) -> Result<Option<crate::repl::ReplConfig>, String> {
    use crate::repl::{Mode, ReplConfig, hlc::MAX_NODE_ID};
    let peers: Vec<String> = a
        .peers
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    if a.repl_listen.is_none() && peers.is_empty() {
        if a.node_id.is_some() || a.repl_secret.is_some() || a.repl_insecure {
            return Err("--node-id, --repl-secret and --repl-insecure need --repl-listen or --peers".into());
        }
        return Ok(None);
    }
    let node_id = match a.node_id {
        None => return Err("replication needs --node-id (0-255, unique in the group)".into()),
        Some(n) if n > MAX_NODE_ID => return Err(format!("--node-id {n} is out of range (0-{MAX_NODE_ID})")),
        Some(n) => n as u8,
    };
    let mode = match a.repl_mode.as_str() {
        "async" => Mode::Async,
        "sync" => Mode::Sync,
        "majority" => Mode::Majority,
        m => return Err(format!("bad --repl-mode {m:?} (async, sync or majority)")),
    };
    for p in &peers {
        if !p.contains(':') {
            return Err(format!("peer {p:?} needs a port (ADDR:PORT)"));
        }
    }
    match (&a.repl_secret, a.repl_insecure) {
        (None, false) => {
            return Err("replication needs --repl-secret FILE (or --repl-insecure to run without one)".into());
        }
        (Some(_), true) => return Err("--repl-secret and --repl-insecure exclude each other".into()),
        (None, true) => warnings.push(
            "replication runs without a secret (--repl-insecure): anyone who can reach the replication port can write to this cache"
                .into(),
        ),
        (Some(_), false) => {}
    }
    if !(1..=65_536).contains(&a.repl_max_links) {
        return Err("--repl-max-links must be 1 to 65536".into());
    }
    if a.repl_timeout == 0 {
        return Err("--repl-timeout must be at least 1 ms".into());
    }
    if !(10..=60_000).contains(&a.repl_heartbeat) {
        return Err("--repl-heartbeat must be 10 to 60000 ms".into());
    }
    let backlog = a.repl_backlog.checked_mul(1 << 20).ok_or("--repl-backlog too large")?;
    // The listen address and the secret come at startup (`Unresolved`).
    Ok(Some(ReplConfig {
        listen: None,
        peers,
        node_id,
        secret: None,
        mode,
        timeout: std::time::Duration::from_millis(a.repl_timeout),
        backlog_bytes: (backlog / threads).max(64 * 1024),
        tombstone_ttl: std::time::Duration::from_secs(a.repl_tombstone_ttl),
        heartbeat: std::time::Duration::from_millis(a.repl_heartbeat),
        max_links: a.repl_max_links,
    }))
}

/// `1048576`, `1024k`, `1m`, `1g` (case-insensitive suffix).
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()?.to_ascii_lowercase() {
        'k' => (&s[..s.len() - 1], 1usize << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(std::iter::once("memcore").chain(args.iter().copied()), &[0, 1])? {
            Command::Run(c) => Ok(*c),
            Command::Print(_) => Err("printed".into()),
        }
    }

    #[test]
    fn memcached_defaults() {
        let c = run(&[]).unwrap();
        assert_eq!((c.unresolved.listen.as_str(), c.unresolved.port), ("127.0.0.1", 11211));
        assert_eq!(c.threads, 2, "one executor per allowed CPU");
        assert_eq!(c.memory_limit, 64 << 20);
        assert_eq!(c.conn_limit, 1024);
        assert_eq!(c.item_size_max, 1 << 20);
        assert!(c.use_cas && c.flush_enabled && c.evict);
    }

    #[test]
    fn hash_keys_are_random_unless_fixed_by_the_hidden_flag() {
        assert!(run(&[]).unwrap().hash_key.is_none());
        let key = run(&["--hash-key", "0123456789abcdeffedcba9876543210"]).unwrap().hash_key;
        assert_eq!(key, Some(crate::storage::HashKey::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)));
        let multibyte = "é".repeat(16);
        for bad in ["0123", "0123456789abcdeffedcba987654321g", "+123456789abcdeffedcba9876543210", &multibyte] {
            assert!(run(&["--hash-key", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn memcached_flags_are_accepted() {
        let c = run(&[
            "-p",
            "22122",
            "-l",
            "127.0.0.1,::1,[::1]:5000",
            "-m",
            "128",
            "-c",
            "10",
            "-t",
            "1",
            "-I",
            "2m",
            "-C",
            "-F",
            "-M",
            "-vv",
            "-U",
            "0",
            "-b",
            "64",
            "-R",
            "5",
        ])
        .unwrap();
        assert_eq!((c.unresolved.listen.as_str(), c.unresolved.port), ("127.0.0.1,::1,[::1]:5000", 22122));
        assert_eq!((c.memory_limit, c.item_size_max, c.threads, c.verbosity), (128 << 20, 2 << 20, 1, 2));
        assert!(!c.use_cas && !c.flush_enabled && !c.evict);
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for args in [
            &["-m", "abc"][..],
            &["--bogus"],
            &["-U", "1"],
            &["-p", "99999"],
            &["-I", "1t"],
            &["-I", "512"],
            &["-I", "2g"],
            &["-t", "0"],
            &["-I", "64m"],
        ] {
            let e = run(args).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{args:?}: {e}");
        }
    }

    #[test]
    fn auth_and_tls_flags_are_memcacheds() {
        let c = run(&["-Y", "/etc/auth"]).unwrap();
        assert_eq!((c.auth_file.as_deref(), c.tls.is_none()), (Some("/etc/auth"), true));
        let c = run(&["-Z", "-o", "ssl_chain_cert=c.pem,ssl_key=k.pem", "-o", "ssl_verify_mode=2,ssl_ca_cert=ca.pem"])
            .unwrap();
        let want = TlsSettings {
            chain_cert: "c.pem".into(),
            key: "k.pem".into(),
            ca_cert: Some("ca.pem".into()),
            verify_mode: 2,
            min_version: TlsMinVersion::Tls12,
        };
        assert_eq!(c.tls, Some(want));
        let c = run(&["--enable-ssl", "-o", "ssl_chain_cert=c,ssl_key=k,ssl_min_version=tlsv1.3"]).unwrap();
        assert_eq!(c.tls.unwrap().min_version, TlsMinVersion::Tls13);
        // ssl_* without -Z: accepted, TLS stays off (as memcached).
        assert!(run(&["-o", "ssl_chain_cert=c,ssl_key=k"]).unwrap().tls.is_none());
        for (args, want) in [
            (&["-Z"][..], "-Z needs"),
            (&["-Z", "-o", "ssl_chain_cert=c"], "-Z needs"),
            (&["-Z", "-o", "ssl_chain_cert=c,ssl_key=k,ssl_verify_mode=4"], "ssl_verify_mode"),
            (&["-Z", "-o", "ssl_chain_cert=c,ssl_key=k,ssl_min_version=tlsv1.1"], "not supported"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(want) && !e.contains('\n'), "{args:?}: {e}");
        }
    }

    #[test]
    fn replication_flags_are_checked() {
        assert!(run(&[]).unwrap().repl.is_none());
        let c = run(&[
            "--repl-listen",
            "127.0.0.1:7000",
            "--peers",
            "127.0.0.1:7001, 127.0.0.1:7002",
            "--node-id",
            "3",
            "--repl-insecure",
        ])
        .unwrap();
        let r = c.repl.unwrap();
        assert_eq!((r.node_id, r.peers.len(), r.mode.name()), (3, 2, "async"));
        assert_eq!(r.majority_peers(), 1);
        assert_eq!(r.heartbeat, std::time::Duration::from_millis(crate::repl::DEFAULT_HEARTBEAT_MS));
        assert_eq!(r.silence_limit(), 4 * r.heartbeat);
        for bad in [
            &["--peers", "127.0.0.1:7001"][..],
            &["--peers", "127.0.0.1:7001", "--node-id", "256"],
            &["--peers", "127.0.0.1", "--node-id", "1"],
            &["--peers", "127.0.0.1:7001", "--node-id", "1", "--repl-mode", "quorum"],
            &["--node-id", "1"],
            &["--peers", "127.0.0.1:7001", "--node-id", "1", "--repl-insecure", "--repl-heartbeat", "0"],
            &["--peers", "127.0.0.1:7001", "--node-id", "1", "--repl-insecure", "--repl-max-links", "0"],
            &["--repl-listen", "127.0.0.1:7000", "--node-id", "1"],
            &["--repl-insecure"],
        ] {
            let e = run(bad).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{bad:?}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
    }
}
