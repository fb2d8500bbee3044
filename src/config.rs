//! Command line: memcached's flags (so init scripts and container commands
//! work unchanged) plus memcore's own long options, checked into a `Config`.
//!
//! Pure: parse and check. The CPUs the process may use come in as an
//! argument; files (the replication secret, the zstd dictionary) and names
//! (`-l`, `--repl-listen`) stay paths and strings in `Config::unresolved`,
//! which `server::startup` reads and resolves before the server starts.
//! Imports only the types it fills (storage's compression settings, repl's
//! `ReplConfig`); must not import `server` or `route`, nor do I/O.

use clap::{ArgAction, CommandFactory, Parser};
use std::ffi::OsString;

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
/// Compression's contexts take a few hundred KiB per core: a core with
/// less than this much memory does not compress (it would lose more to the
/// contexts than compression wins back).
pub const COMPRESS_MIN_CORE_MEMORY: usize = 8 << 20;
/// `-i`: what memcached prints as its license.
const LICENSE: &str = include_str!("../LICENSE");
/// The memcached version whose protocol memcore speaks.
pub const PROTOCOL_VERSION: &str = "1.6.18";

/// `--help` lists memcached's flags first, in the order of `memcached -h`,
/// then memcore's own, grouped.
#[derive(Parser, Debug)]
#[command(name = "memcore", version = concat!(env!("CARGO_PKG_VERSION"), " (memcached 1.6 protocol)"),
    about = "A memcached-compatible, thread-per-core cache server", disable_help_flag = true,
    disable_version_flag = true, args_override_self = true, next_help_heading = "memcached flags (memcached -h order)")]
struct Args {
    /// TCP port to listen on (0: a free port, told in the log and --port-file;
    /// memcached's -p 0 turns TCP off instead: use -s for that)
    #[arg(short = 'p', long = "port", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// UDP port; only 0 (off) is supported
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    udp_port: u16,
    /// UNIX socket to listen on (turns TCP off, as memcached does)
    #[arg(short = 's', long = "unix-socket", value_name = "FILE")]
    unix_socket: Option<String>,
    /// Access mask for the UNIX socket, in octal
    #[arg(short = 'a', long = "unix-mask", default_value = "700", value_name = "MASK")]
    unix_mask: String,
    /// Enable the ascii "shutdown" command
    #[arg(short = 'A', long = "enable-shutdown")]
    enable_shutdown: bool,
    /// Interfaces to listen on, comma-separated (IPv4, IPv6, optional :port;
    /// memcached's default is every interface)
    #[arg(short = 'l', long = "listen", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Run as a daemon (the first process exits 0 once the server listens)
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Maximize the core file limit
    #[arg(short = 'r', long = "enable-coredumps")]
    enable_coredumps: bool,
    /// User to run as after binding (required when started as root)
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Item memory in megabytes, split evenly over cores
    #[arg(short = 'm', long = "memory-limit", default_value_t = DEFAULT_MEMORY_MB)]
    memory_limit: u64,
    /// Return an error instead of evicting when memory is full
    #[arg(short = 'M', long = "disable-evictions", action = ArgAction::SetTrue)]
    disable_evictions: bool,
    /// Maximum simultaneous connections
    #[arg(short = 'c', long = "conn-limit", default_value_t = DEFAULT_CONN_LIMIT)]
    conn_limit: usize,
    /// Lock all paged memory (mlockall)
    #[arg(short = 'k', long = "lock-memory")]
    lock_memory: bool,
    /// Verbose logging (-v, -vv, -vvv)
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    verbose: u8,
    /// Print help
    #[arg(short = 'h', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// Print memcore's license and exit
    #[arg(short = 'i', long = "license")]
    license: bool,
    /// Print version and exit
    #[arg(short = 'V', long = "version", action = ArgAction::Version)]
    version: Option<bool>,
    /// Write the process id to this file (with or without -d)
    #[arg(short = 'P', long = "pidfile")]
    pidfile: Option<String>,
    /// Slab growth factor: accepted, no effect (memcore has no slabs)
    #[arg(short = 'f', long = "slab-growth-factor", value_name = "NUM")]
    slab_growth_factor: Option<String>,
    /// Slab minimum size: accepted, no effect (memcore has no slabs)
    #[arg(short = 'n', long = "slab-min-size", value_name = "BYTES")]
    slab_min_size: Option<String>,
    /// Large memory pages: accepted, no effect
    #[arg(short = 'L', long = "enable-largepages")]
    enable_largepages: bool,
    /// Character that ends a key's prefix for `stats detail` (default :)
    #[arg(short = 'D', value_name = "CHAR")]
    prefix_delimiter: Option<String>,
    /// Cores to run on, one executor each (default: every CPU the process may
    /// use, fewer when -m is too small to give each core room for -I items and compression)
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Requests handled per connection before yielding to others
    #[arg(short = 'R', long = "max-reqs-per-event", default_value_t = DEFAULT_REQS_PER_EVENT)]
    reqs_per_event: usize,
    /// Disable CAS (gets reports 0)
    #[arg(short = 'C', long = "disable-cas", action = ArgAction::SetTrue)]
    disable_cas: bool,
    /// Listen backlog
    #[arg(short = 'b', long = "listen-backlog", default_value_t = DEFAULT_BACKLOG)]
    backlog: i32,
    /// Protocol: ascii or auto (both the text protocol); binary is not supported
    #[arg(short = 'B', long = "protocol", default_value = "auto", value_name = "NAME")]
    protocol: String,
    /// Largest item, with k/m suffix (1k to 1g)
    #[arg(short = 'I', long = "max-item-size", default_value = "1m")]
    max_item_size: String,
    /// SASL authentication: not supported
    #[arg(short = 'S', long = "enable-sasl")]
    enable_sasl: bool,
    /// Disable flush_all
    #[arg(short = 'F', long = "disable-flush-all", action = ArgAction::SetTrue)]
    disable_flush_all: bool,
    /// Disable stats cachedump and lru_crawler metadump
    #[arg(short = 'X', long = "disable-dumping")]
    disable_dumping: bool,
    /// Disable watch commands (live logging)
    #[arg(short = 'W', long = "disable-watch")]
    disable_watch: bool,
    /// ASCII authentication: a file of user:password lines; a connection's
    /// first command must be `set <any> 0 0 <n>` with "user password" as data
    #[arg(short = 'Y', long = "auth-file", value_name = "FILE")]
    auth_file: Option<String>,
    /// Restartable cache in a memory file: not supported
    #[arg(short = 'e', long = "memory-file", value_name = "FILE")]
    memory_file: Option<String>,
    /// TLS on the client ports (-o ssl_chain_cert=,ssl_key= required;
    /// -l notls:ADDR:PORT keeps a port plain)
    #[arg(short = 'Z', long = "enable-ssl")]
    enable_ssl: bool,
    /// Extended options, comma-separated: idle_timeout=SECONDS and
    /// read_buf_mem_limit=MB are honoured; slab, LRU, hash and logging tuning
    /// accepted with a warning; ext_*, ssl_* and proxy_* refused
    #[arg(short = 'o', long = "extended", value_name = "OPT,...")]
    extended: Vec<String>,
    /// NAPI ids: accepted, no effect
    #[arg(short = 'N', long = "napi_ids", value_name = "NUM")]
    napi_ids: Option<String>,

    /// Read options from this file first, in memcached.conf's format (one
    /// option per line as on the command line, # comments); the command line
    /// wins. SIGHUP re-reads it.
    #[arg(long = "config-file", value_name = "FILE", help_heading = "memcore: process")]
    config_file: Option<String>,
    /// Once serving, send the log (stderr) to this file, appended; SIGHUP
    /// reopens it. A config file's `logfile PATH` line sets it.
    #[arg(long = "log-file", value_name = "FILE", help_heading = "memcore: process")]
    log_file: Option<String>,
    /// Once listening, write the ports to this file (as memcached does to
    /// MEMCACHED_PORT_FILENAME: "TCP INET: 11211"); with -p 0, the free port taken
    #[arg(long = "port-file", value_name = "FILE", help_heading = "memcore: process")]
    port_file: Option<String>,

    /// Item memory per core in megabytes (overrides the even split of -m)
    #[arg(long = "memory-per-core", help_heading = "memcore: memory and cores")]
    memory_per_core: Option<u64>,
    /// Memory client connections may hold for input and replies, in MB over
    /// all cores (default: a tenth of -m, at least 32 MB and two items per core)
    #[arg(long = "conn-memory", value_name = "MB", help_heading = "memcore: memory and cores")]
    conn_memory: Option<u64>,
    /// Microseconds an idle core keeps polling before it sleeps (0: sleep at once).
    /// Cuts the cost of cross-core hops under load; an idle core still sleeps.
    #[arg(
        long = "spin-before-park",
        default_value_t = 0,
        value_name = "MICROSECONDS",
        help_heading = "memcore: memory and cores"
    )]
    spin_before_park: u64,
    /// Fixed key (32 hex digits) for the key-to-core and index hashes instead
    /// of random ones, for benchmarks that must know which core owns a key.
    /// Whoever knows it can flood the index: never in production.
    #[arg(long = "hash-key", hide = true, value_name = "HEX")]
    hash_key: Option<String>,
    /// Tests only: act as if the process could use this many CPUs (the real
    /// ones repeated), to try the core-count choice of a large host
    #[arg(long = "simulate-cpus", hide = true, value_name = "N")]
    simulate_cpus: Option<usize>,

    /// Compress values with zstd inside the server (clients see none of it)
    #[arg(long = "compress", default_value = "on", value_parser = ["on", "off"], help_heading = "memcore: compression")]
    compress: String,
    /// Smallest value, in bytes, that is compressed
    #[arg(long = "compress-min", default_value_t = 64, value_name = "BYTES", help_heading = "memcore: compression")]
    compress_min: usize,
    /// zstd level (negative: faster, 1-19: smaller)
    #[arg(
        long = "compress-level",
        default_value_t = 1,
        allow_negative_numbers = true,
        help_heading = "memcore: compression"
    )]
    compress_level: i32,
    /// Dictionary for small values: off, auto (trained per core from the values
    /// stored), or the path of a trained zstd dictionary
    #[arg(
        long = "compress-dict",
        default_value = "auto",
        value_name = "off|auto|FILE",
        help_heading = "memcore: compression"
    )]
    compress_dict: String,

    /// Address this node accepts links from peers on
    #[arg(long = "repl-listen", value_name = "ADDR:PORT", help_heading = "memcore: replication")]
    repl_listen: Option<String>,
    /// The other nodes' replication addresses, comma-separated
    #[arg(long = "peers", value_name = "ADDR:PORT,...", help_heading = "memcore: replication")]
    peers: Option<String>,
    /// This node's id, unique in its group (0-255)
    #[arg(long = "node-id", help_heading = "memcore: replication")]
    node_id: Option<u32>,
    /// File holding the group's shared secret
    #[arg(long = "repl-secret", value_name = "FILE", help_heading = "memcore: replication")]
    repl_secret: Option<String>,
    /// Replication without a secret: anyone who reaches the replication
    /// port, or sits between two nodes, can read and write this cache
    #[arg(long = "repl-insecure", help_heading = "memcore: replication")]
    repl_insecure: bool,
    /// Most inbound replication connections at once (over all cores;
    /// handshakes in progress count), apart from -c
    #[arg(long = "repl-max-links", default_value_t = crate::repl::DEFAULT_MAX_LINKS, value_name = "N",
        help_heading = "memcore: replication")]
    repl_max_links: usize,
    /// When a write is acknowledged (async, sync, majority)
    #[arg(long = "repl-mode", default_value = "async", help_heading = "memcore: replication")]
    repl_mode: String,
    /// How long sync/majority writes wait for peers, in ms
    #[arg(long = "repl-timeout", default_value_t = crate::repl::DEFAULT_TIMEOUT_MS, value_name = "MS",
        help_heading = "memcore: replication")]
    repl_timeout: u64,
    /// Backlog kept for reconnecting peers, in MB (over all cores)
    #[arg(long = "repl-backlog", default_value_t = crate::repl::DEFAULT_BACKLOG_MB, value_name = "MB",
        help_heading = "memcore: replication")]
    repl_backlog: usize,
    /// How long deletes are remembered, in seconds
    #[arg(long = "repl-tombstone-ttl", default_value_t = crate::repl::DEFAULT_TOMBSTONE_TTL_S, value_name = "SECONDS",
        help_heading = "memcore: replication")]
    repl_tombstone_ttl: u64,
    /// Heartbeat interval on idle links, in ms (a link silent for 4
    /// intervals is dropped and reconnected)
    #[arg(long = "repl-heartbeat", default_value_t = crate::repl::DEFAULT_HEARTBEAT_MS, value_name = "MS",
        help_heading = "memcore: replication")]
    repl_heartbeat: u64,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off by default;
    /// a bare PORT listens on 127.0.0.1)
    #[arg(long = "metrics-listen", value_name = "ADDR:PORT", help_heading = "memcore: monitoring")]
    metrics_listen: Option<String>,
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
    /// `-X` unset: `lru_crawler metadump` and `stats cachedump` answer.
    pub dump_enabled: bool,
    /// `-W` unset: `watch` streams.
    pub watch_enabled: bool,
    /// `-A`: the `shutdown` command stops the server.
    pub shutdown_enabled: bool,
    /// `-d`: detach once listening (`server::startup::daemonize`).
    pub daemon: bool,
    /// `-r`: raise the core file limit to its maximum.
    pub enable_coredumps: bool,
    /// `-k`: lock all memory (mlockall).
    pub lock_memory: bool,
    /// `-s`: listen on this UNIX socket instead of TCP, with the
    /// permissions `-a` (octal).
    pub unix_socket: Option<String>,
    pub unix_mask: u32,
    /// `--log-file` (or a config file's `logfile`).
    pub log_file: Option<String>,
    /// `--config-file` and the command line, for SIGHUP to parse again.
    pub reload: Option<Reload>,
    pub evict: bool,
    pub reqs_per_event: usize,
    /// Bytes client connections may hold over all cores (route/budget.rs).
    pub conn_memory: usize,
    /// `-o idle_timeout`: close a connection that sent nothing, or took
    /// none of its replies, for this long.
    pub idle_timeout: Option<std::time::Duration>,
    pub spin_before_park: std::time::Duration,
    pub compress: CompressConfig,
    /// `--compress on` (compress.enabled is also off on small cores).
    pub compress_requested: bool,
    pub verbosity: u8,
    pub warnings: Vec<String>,
    /// Choices made for the operator (logged at info at start), such as the
    /// number of cores when -t was not given.
    pub notes: Vec<String>,
    /// `listen` and `secret` are filled by `server::startup` from
    /// `unresolved`; None before.
    pub repl: Option<crate::repl::ReplConfig>,
    /// `-D`: the byte that ends a key's prefix for `stats detail`.
    pub prefix_delimiter: u8,
    /// `--metrics-listen`: where `/metrics` is served; None (the default): nowhere.
    pub metrics_listen: Option<SocketAddr>,
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMinVersion {
    #[default]
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

/// What SIGHUP parses again: the config file's path and the command line.
#[derive(Clone, Debug)]
pub struct Reload {
    pub path: String,
    pub args: Vec<OsString>,
}

/// A config file read at startup (or on SIGHUP) by the server.
pub struct ConfigFile<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

/// The `--config-file` a command line names (the last one), for the caller
/// to read before `parse_args`.
pub fn config_file_arg(args: &[OsString]) -> Option<String> {
    let mut found = None;
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config-file" {
            found = it.next().map(|p| p.into_owned());
        } else if let Some(p) = a.strip_prefix("--config-file=") {
            found = Some(p.to_string());
        }
    }
    found
}

/// Parse and check the command line, for a process that may run on `cpus`
/// (`server::startup::allowed_cpus`). Errors are one line, meant for stderr.
pub fn parse_args<I, T>(args: I, cpus: &[usize]) -> Result<Command, String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_with_file(args.into_iter().map(Into::into).collect(), None, cpus)
}

/// As `parse_args`, with the options of `file` (memcached.conf's format)
/// under the command line's: a line setting an option the command line
/// also sets is left out. A bad line is reported as `path:line: reason`.
pub fn parse_with_file(args: Vec<OsString>, file: Option<&ConfigFile>, cpus: &[usize]) -> Result<Command, String> {
    let cli = match Args::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => return clap_fail(e),
    };
    if cli.get_flag("license") {
        return Ok(Command::Print(LICENSE.to_string()));
    }
    let Some(file) = file else {
        let parsed = Args::try_parse_from(&args).or_else(|e| clap_fail(e).and(Err("bad command line".into())))?;
        return check(parsed, cpus).map(|c| Command::Run(Box::new(c)));
    };
    let set_by_cli = set_ids(&cli);
    let mut kept: Vec<(usize, Vec<String>)> = Vec::new();
    for (n, words) in config_lines(file.text) {
        let at = |msg: String| format!("{}:{n}: {msg}", file.path);
        let words = match words.first().map(String::as_str) {
            Some("logfile") if words.len() == 2 => vec!["--log-file".to_string(), words[1].clone()],
            Some(w) if !w.starts_with('-') => {
                return Err(at(format!("unknown directive {w:?} (options start with -)")));
            }
            _ => words,
        };
        let line = match Args::command().no_binary_name(true).try_get_matches_from(&words) {
            Ok(m) => m,
            Err(e) => {
                let e = clap_fail(e).map_or_else(|line| line, |_| "help and version are for the command line".into());
                return Err(at(e));
            }
        };
        let ids = set_ids(&line);
        if ids.iter().any(|i| i == "config_file" || i == "license") {
            return Err(at(format!("{} is for the command line", words[0])));
        }
        if !ids.iter().any(|i| set_by_cli.contains(i)) {
            kept.push((n, words));
        }
    }
    let with = |lines: &[(usize, Vec<String>)]| -> Result<Config, String> {
        let mut all = vec![args[0].clone()];
        all.extend(lines.iter().flat_map(|(_, w)| w.iter().map(OsString::from)));
        all.extend(args[1..].iter().cloned());
        let parsed = Args::try_parse_from(&all).or_else(|e| clap_fail(e).and(Err("bad command line".into())))?;
        check(parsed, cpus)
    };
    let mut cfg = match with(&kept) {
        Ok(c) => c,
        Err(e) => {
            // Name the first line with which the options stop making sense.
            let line = (1..=kept.len()).find(|&k| with(&kept[..k]).is_err()).map(|k| kept[k - 1].0);
            return Err(match line {
                Some(n) => format!("{}:{n}: {e}", file.path),
                None => format!("{}: {e}", file.path),
            });
        }
    };
    cfg.reload = Some(Reload { path: file.path.to_string(), args });
    Ok(Command::Run(Box::new(cfg)))
}

/// memcached.conf's lines, numbered from 1: `#` starts a comment (unless
/// escaped as `\#`), blank lines are skipped, words are separated by
/// white space (no quoting, as the Debian wrapper that joins the lines).
fn config_lines(text: &str) -> impl Iterator<Item = (usize, Vec<String>)> + '_ {
    text.lines().enumerate().filter_map(|(i, line)| {
        let mut out = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'#') => out.push(chars.next().unwrap_or('#')),
                '#' => break,
                c => out.push(c),
            }
        }
        let words: Vec<String> = out.split_whitespace().map(String::from).collect();
        (!words.is_empty()).then_some((i + 1, words))
    })
}

/// The ids of the arguments a parse got from its input (not defaults, and
/// not the group clap's derive names after the struct).
fn set_ids(m: &clap::ArgMatches) -> Vec<String> {
    let args = Args::command();
    m.ids()
        .filter(|id| args.get_arguments().any(|a| a.get_id() == *id))
        .filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect()
}

/// A clap error: --help and --version are text to print, anything else
/// one line for stderr.
fn clap_fail(e: clap::Error) -> Result<Command, String> {
    use clap::error::ErrorKind;
    let text = e.render().to_string();
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return Ok(Command::Print(text));
    }
    Err(text.lines().find(|l| !l.trim().is_empty()).unwrap_or("bad command line").trim().to_string())
}

/// What SIGHUP can change in a running server, and what it cannot.
#[derive(Debug, Default)]
pub struct Changes {
    /// New item memory per core (bytes), over the running cores.
    pub per_core_limit: Option<usize>,
    pub verbosity: Option<u8>,
    pub compress: Option<CompressConfig>,
    /// Options that changed but need a restart, as named on the command line.
    pub need_restart: Vec<&'static str>,
}

/// Compare the running `old` with `new` (parsed again from the file and the
/// same command line): what can be applied to `old.threads` cores now, and
/// what needs a restart. Err when the new memory limit cannot hold an item
/// of `-I` on each running core.
pub fn changes(old: &Config, new: &Config) -> Result<Changes, String> {
    let mut c = Changes::default();
    let n = old.threads.max(1);
    let per_core = new.memory_per_core.unwrap_or(new.memory_limit / n);
    if per_core != old.per_core_limit() {
        if per_core < old.item_size_max {
            return Err(format!(
                "-m {} leaves each of the {n} running cores less than the item size limit {} (-I): not applied",
                new.memory_limit >> 20,
                old.item_size_max
            ));
        }
        c.per_core_limit = Some(per_core);
    }
    if new.verbosity != old.verbosity {
        c.verbosity = Some(new.verbosity);
    }
    let mut z = new.compress.clone();
    // The running cores' share decides, not the count `new` chose.
    z.enabled = new.compress_requested && per_core >= COMPRESS_MIN_CORE_MEMORY;
    z.dict = old.compress.dict.clone();
    if (z.enabled, z.min_size, z.level) != (old.compress.enabled, old.compress.min_size, old.compress.level) {
        c.compress = Some(z);
    }
    let u = (&old.unresolved, &new.unresolved);
    for (name, differs) in [
        ("-l/-p", u.0.listen != u.1.listen || u.0.port != u.1.port),
        ("-t (cores)", old.threads != new.threads),
        ("-s/-a", old.unix_socket != new.unix_socket || old.unix_mask != new.unix_mask),
        ("-c", old.conn_limit != new.conn_limit),
        ("-I", old.item_size_max != new.item_size_max),
        ("-u", old.user != new.user),
        ("-P", old.pidfile != new.pidfile),
        ("-b", old.backlog != new.backlog),
        ("-C", old.use_cas != new.use_cas),
        ("-F", old.flush_enabled != new.flush_enabled),
        ("-M", old.evict != new.evict),
        ("-R", old.reqs_per_event != new.reqs_per_event),
        ("-A", old.shutdown_enabled != new.shutdown_enabled),
        ("-o idle_timeout", old.idle_timeout != new.idle_timeout),
        ("--conn-memory", old.conn_memory != new.conn_memory),
        ("--compress-dict", u.0.compress_dict != u.1.compress_dict),
        ("replication", format!("{:?}", old.repl) != format!("{:?}", new.repl)),
    ] {
        if differs {
            c.need_restart.push(name);
        }
    }
    Ok(c)
}

fn check(a: Args, cpus: &[usize]) -> Result<Config, String> {
    let mut warnings = Vec::new();
    if a.udp_port != 0 {
        return Err(format!("UDP is not supported (-U {}); use -U 0", a.udp_port));
    }
    refuse_unsupported(&a)?;
    // memcached flags that tune what memcore does not have: one warning.
    let mut ignored: Vec<String> = [
        a.slab_growth_factor.as_ref().map(|v| format!("-f {v}")),
        a.slab_min_size.as_ref().map(|v| format!("-n {v}")),
        a.enable_largepages.then(|| "-L".to_string()),
        a.napi_ids.as_ref().map(|v| format!("-N {v}")),
    ]
    .into_iter()
    .flatten()
    .collect();
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
    let simulated: Vec<usize>;
    let cpus: &[usize] = match (a.simulate_cpus, cpus.is_empty()) {
        (Some(0), _) => return Err("--simulate-cpus must be at least 1".into()),
        (Some(n), _) => {
            let real: &[usize] = if cpus.is_empty() { &[0] } else { cpus };
            simulated = (0..n).map(|i| real[i % real.len()]).collect();
            &simulated
        }
        (None, true) => &[0],
        (None, false) => cpus,
    };
    let memory_per_core = match a.memory_per_core {
        Some(0) => return Err("--memory-per-core must be at least 1 megabyte".into()),
        Some(mb) => Some((mb as usize).checked_mul(1 << 20).ok_or("--memory-per-core too large")?),
        None => None,
    };
    let compress_on = a.compress == "on";
    let mut notes = Vec::new();
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
        None if memory_per_core.is_some() => cpus.len(),
        None => {
            // Each core holds its share of -m: enough for two of the
            // largest items, and for compression when it is on.
            let want = (2 * item_size_max).max(if compress_on { COMPRESS_MIN_CORE_MEMORY } else { 0 });
            let fit = (memory_limit / want).clamp(1, cpus.len());
            if fit < cpus.len() {
                notes.push(format!(
                    "running {fit} of {} cores: -m {} gives each {} MiB (at least {} MiB each for -I {}{}); -t or a larger -m changes this",
                    cpus.len(),
                    a.memory_limit,
                    (memory_limit / fit) >> 20,
                    want.div_ceil(1 << 20),
                    a.max_item_size,
                    if compress_on { " items and compression" } else { " items" }
                ));
            }
            fit
        }
    };
    // Each item lives on one core, so it must fit in one core's memory.
    let per_core = memory_per_core.unwrap_or(memory_limit / threads);
    if item_size_max > per_core {
        return Err(format!(
            "-m {} leaves each of the {threads} cores {} bytes, less than the item size limit {item_size_max} (-I): use -m {} or more, or fewer cores (-t)",
            a.memory_limit,
            per_core,
            (item_size_max * threads).div_ceil(1 << 20)
        ));
    }
    let compress_on = if compress_on && per_core < COMPRESS_MIN_CORE_MEMORY {
        warnings.push(format!(
            "compression off: each of the {threads} cores has less than {} MiB of memory (-m {} or more keeps it on)",
            COMPRESS_MIN_CORE_MEMORY >> 20,
            (COMPRESS_MIN_CORE_MEMORY * threads) >> 20
        ));
        false
    } else {
        compress_on
    };
    let ext = extended_options(&a.extended, &mut ignored)?;
    let idle_timeout = ext.idle_timeout;
    if !ignored.is_empty() {
        warnings.push(format!(
            "accepted without effect (memcore has no slabs, LRU tuning, per-prefix stats, dumps or watchers): {}",
            ignored.join(", ")
        ));
    }
    // A core's connections must be able to hold two of the largest items.
    let conn_memory_floor = (32usize << 20).max(item_size_max.saturating_mul(2).saturating_mul(threads));
    let conn_memory = match a.conn_memory.or(ext.read_buf_mem_limit) {
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
        CompressConfig { enabled: compress_on, min_size: a.compress_min.max(1), level: a.compress_level, dict };
    let repl = check_repl(&a, threads, &mut warnings)?;
    let metrics_listen = a.metrics_listen.as_deref().map(parse_metrics_listen).transpose()?;
    let prefix_delimiter = match a.prefix_delimiter.as_deref().unwrap_or(":").as_bytes() {
        [b] if b.is_ascii_graphic() => *b,
        _ => return Err(format!("bad -D {:?}: one printable character", a.prefix_delimiter.unwrap_or_default())),
    };
    let tls = match (a.enable_ssl, ext.chain_cert, ext.key) {
        (false, ..) => None,
        (true, Some(chain_cert), Some(key)) if !chain_cert.is_empty() && !key.is_empty() => Some(TlsSettings {
            chain_cert,
            key,
            ca_cert: ext.ca_cert,
            verify_mode: ext.verify_mode,
            min_version: ext.min_version,
        }),
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
        dump_enabled: !a.disable_dumping,
        watch_enabled: !a.disable_watch,
        shutdown_enabled: a.enable_shutdown,
        daemon: a.daemon,
        enable_coredumps: a.enable_coredumps,
        lock_memory: a.lock_memory,
        unix_socket: a.unix_socket.clone(),
        unix_mask: u32::from_str_radix(&a.unix_mask, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("bad -a {}: an octal access mask such as 700", a.unix_mask))?,
        log_file: a.log_file,
        reload: None,
        evict: !a.disable_evictions,
        reqs_per_event: a.reqs_per_event,
        conn_memory,
        idle_timeout,
        spin_before_park: std::time::Duration::from_micros(a.spin_before_park),
        compress,
        compress_requested: a.compress == "on",
        verbosity: a.verbose,
        warnings,
        notes,
        repl,
        metrics_listen,
        prefix_delimiter,
        unresolved,
        auth_file: a.auth_file,
        tls,
        listen_plain: Vec::new(),
    })
}

/// `--metrics-listen`: an IP address and port, or a port alone (loopback).
fn parse_metrics_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("bad --metrics-listen {s:?}: use IP:PORT (e.g. 127.0.0.1:9150) or a port"))
}

/// memcached flags for what memcore does not have: refused, each with the
/// alternative.
fn refuse_unsupported(a: &Args) -> Result<(), String> {
    if a.enable_sasl {
        return Err("SASL is not supported (-S): use -Y (memcached's ASCII authentication) or -Z with client certificates (docs/security.md)".into());
    }
    if a.memory_file.is_some() {
        return Err(
            "a restartable cache is not supported (-e): replication (--peers) keeps a copy warm across restarts".into(),
        );
    }
    match a.protocol.as_str() {
        "ascii" | "auto" => {}
        "binary" => {
            return Err("the binary protocol is not supported (-B binary): use -B ascii, the text protocol".into());
        }
        p => return Err(format!("invalid value for binding protocol: {p} (-B): one of auto, binary or ascii")),
    }
    Ok(())
}

/// What `-o` sets that memcore honours.
#[derive(Default)]
struct Extended {
    idle_timeout: Option<std::time::Duration>,
    /// `read_buf_mem_limit=MB`: the connection budget, as `--conn-memory`.
    read_buf_mem_limit: Option<u64>,
    /// `ssl_*`: `-Z`'s certificates and checks.
    chain_cert: Option<String>,
    key: Option<String>,
    ca_cert: Option<String>,
    verify_mode: u8,
    min_version: TlsMinVersion,
}

/// memcached 1.6's `-o` options: honoured, accepted without effect (added to
/// `ignored`), or refused with the alternative; an unknown one is refused as
/// memcached does.
fn extended_options(opts: &[String], ignored: &mut Vec<String>) -> Result<Extended, String> {
    const NO_EFFECT: &[&str] = &[
        "maxconns_fast",
        "no_maxconns_fast",
        "hashpower",
        "no_hashexpand",
        "hash_algorithm",
        "tail_repair_time",
        "slab_reassign",
        "no_slab_reassign",
        "slab_automove",
        "slab_automove_ratio",
        "slab_automove_window",
        "slab_automove_freeratio",
        "slab_chunk_max",
        "slab_sizes",
        "no_chunked_items",
        "lru_crawler",
        "no_lru_crawler",
        "lru_crawler_sleep",
        "lru_crawler_tocrawl",
        "lru_maintainer",
        "no_lru_maintainer",
        "lru_segmented",
        "no_lru_segmented",
        "hot_lru_pct",
        "warm_lru_pct",
        "hot_max_factor",
        "warm_max_factor",
        "temporary_ttl",
        "watcher_logbuf_size",
        "worker_logbuf_size",
        "track_sizes",
        "modern",
        "no_modern",
        "inline_ascii_response",
        "no_inline_ascii_resp",
        "sock_cookie_id",
        "drop_privileges",
        "no_drop_privileges",
        "meta_response_old",
        "resp_obj_mem_limit",
    ];
    let mut ext = Extended::default();
    for o in opts.iter().flat_map(|o| o.split(',')).map(str::trim).filter(|o| !o.is_empty()) {
        let (name, value) = o.split_once('=').unwrap_or((o, ""));
        match name {
            "idle_timeout" => {
                let secs: u64 =
                    value.parse().map_err(|_| format!("bad -o idle_timeout={value}: a number of seconds"))?;
                ext.idle_timeout = (secs > 0).then(|| std::time::Duration::from_secs(secs));
            }
            "read_buf_mem_limit" => {
                let mb: u64 =
                    value.parse().map_err(|_| format!("bad -o read_buf_mem_limit={value}: a number of megabytes"))?;
                ext.read_buf_mem_limit = (mb > 0).then_some(mb);
            }
            _ if NO_EFFECT.contains(&name) => ignored.push(format!("-o {o}")),
            _ if name.starts_with("ext_") => {
                return Err(format!(
                    "-o {name}: external storage (extstore) is not supported; memcore keeps items in memory (-m)"
                ));
            }
            "ssl_chain_cert" => ext.chain_cert = Some(value.to_string()),
            "ssl_key" => ext.key = Some(value.to_string()),
            "ssl_ca_cert" => ext.ca_cert = Some(value.to_string()),
            "ssl_verify_mode" => {
                ext.verify_mode = match value.parse::<u8>() {
                    Ok(m) if m <= 3 => m,
                    _ => return Err(format!("bad -o ssl_verify_mode={value}: 0, 1, 2 or 3")),
                }
            }
            "ssl_min_version" => {
                ext.min_version = match value {
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
            _ if name.starts_with("ssl_") => {
                return Err(format!("-o {name}: not a TLS setting memcore has (see docs/security.md)"));
            }
            _ if name.starts_with("proxy_") => {
                return Err(format!("-o {name}: memcached's proxy is not supported; run it in front of memcore"));
            }
            _ => return Err(format!("illegal suboption \"{o}\" (-o)")),
        }
    }
    Ok(ext)
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
            "replication runs without a secret (--repl-insecure): frames cross the network in clear, and anyone who can reach the replication port can write to this cache"
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
    fn metrics_are_off_unless_asked_for_and_a_bare_port_is_loopback() {
        assert_eq!(run(&[]).unwrap().metrics_listen, None);
        let at = |s: &str| run(&["--metrics-listen", s]).map(|c| c.metrics_listen.unwrap().to_string());
        assert_eq!(at("9150").unwrap(), "127.0.0.1:9150");
        assert_eq!(at("0.0.0.0:9150").unwrap(), "0.0.0.0:9150");
        assert_eq!(at("[::1]:9150").unwrap(), "[::1]:9150");
        assert!(at("localhost:9150").is_err() && at("").is_err() && at("1.2.3.4").is_err());
    }

    #[test]
    fn the_prefix_delimiter_is_one_printable_character() {
        assert_eq!(run(&[]).unwrap().prefix_delimiter, b':');
        assert_eq!(run(&["-D", "/"]).unwrap().prefix_delimiter, b'/');
        assert!(run(&["-D", "ab"]).is_err() && run(&["-D", " "]).is_err() && run(&["-D", "é"]).is_err());
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

    fn on(cpus: usize, args: &[&str]) -> Result<Config, String> {
        let n = cpus.to_string();
        let all = std::iter::once("memcore").chain(["--simulate-cpus", &n]).chain(args.iter().copied());
        match parse_args(all, &[0, 1])? {
            Command::Run(c) => Ok(*c),
            Command::Print(_) => Err("printed".into()),
        }
    }

    #[test]
    fn without_t_each_core_gets_room_for_items_and_compression_on_any_host() {
        // Debian's -m 64 -I 1m: 8 MiB per core keeps compression.
        for cpus in [1, 2, 8, 9, 64, 65, 1024] {
            let c = on(cpus, &["-m", "64"]).unwrap();
            assert_eq!(c.threads, cpus.min(8), "{cpus} CPUs");
            assert!(c.compress.enabled && c.per_core_limit() >= 8 << 20);
            assert_eq!(c.notes.len(), usize::from(cpus > 8), "{:?}", c.notes);
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        }
        assert!(on(128, &[]).unwrap().notes[0].starts_with("running 8 of 128 cores: -m 64 gives each 8 MiB"));
        // Without compression two items per core are enough.
        assert_eq!(on(128, &["-m", "64", "--compress", "off"]).unwrap().threads, 32);
        assert_eq!(on(128, &["-m", "64", "-I", "16m", "--compress", "off"]).unwrap().threads, 2);
        assert_eq!(on(128, &["-m", "100000"]).unwrap().threads, 128);
        // The cores of a simulated host are the real CPUs, repeated.
        assert_eq!(on(5, &["-m", "1024"]).unwrap().cpus, vec![0, 1, 0, 1, 0]);
        assert_eq!(on(128, &["--memory-per-core", "1"]).unwrap().threads, 128);
    }

    #[test]
    fn an_explicit_t_too_small_for_items_names_the_smallest_m() {
        let e = on(128, &["-m", "64", "-t", "128"]).unwrap_err();
        assert!(e.contains("use -m 128 or more"), "{e}");
        let c = on(128, &["-m", "64", "-t", "16"]).unwrap();
        assert!(!c.compress.enabled);
        assert!(c.warnings[0].contains("-m 128 or more keeps it on"), "{:?}", c.warnings);
    }

    #[test]
    fn config_lines_are_memcached_conf() {
        let text = "# c\n\n  -m 64   # mem\n-l 127.0.0.1\n-D \\#\nlogfile /var/log/memcached.log\n";
        let lines: Vec<(usize, Vec<String>)> = config_lines(text).collect();
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            lines,
            vec![
                (3, words(&["-m", "64"])),
                (4, words(&["-l", "127.0.0.1"])),
                (5, words(&["-D", "#"])),
                (6, words(&["logfile", "/var/log/memcached.log"]))
            ]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
    }
}
