//! The memcore binary: reads the command line into a `Config` (exit 64 on
//! a bad flag or an unreadable file it names, as memcached does), sets up
//! logging, and runs the server until a signal ends it (exit 71 when it
//! cannot start). Owns the exit status and logging's setup; the work is
//! the library's (`config`, `server`), and nothing imports this.

use std::process::ExitCode;

use memcore::config::{Command, ConfigFile, config_file_arg, parse_with_file};
use memcore::server::startup;

fn main() -> ExitCode {
    // `memcore top` / `memcore stat`: the monitoring client, not the server.
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    if memcore::top::subcommand(&args).is_some() {
        return ExitCode::from(memcore::top::main(&args));
    }
    let cpus = startup::allowed_cpus();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // --config-file: read here, parsed under the command line by config.
    let text = match config_file_arg(&args).map(|p| startup::read_config_file(&p).map(|t| (p, t))).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("memcore: {e}");
            return ExitCode::from(64);
        }
    };
    let file = text.as_ref().map(|(path, text)| ConfigFile { path, text });
    let mut cfg = match parse_with_file(args, file.as_ref(), &cpus) {
        Ok(Command::Run(cfg)) => *cfg,
        Ok(Command::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("memcore: {e}");
            return ExitCode::from(64);
        }
    };
    // Files and names the command line gave: as bad as a bad flag.
    if let Err(e) = startup::prepare(&mut cfg) {
        eprintln!("memcore: {e}");
        return ExitCode::from(64);
    }
    init_logging(cfg.verbosity);
    map_large_blocks_apart();
    match memcore::server::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memcore: {e}");
            ExitCode::from(71)
        }
    }
}

/// Startup line and warnings by default; `-vv` and `-vvv` add more, as
/// memcached's levels do, and the `verbosity` command changes the level at
/// run time. RUST_LOG, when set, takes precedence over both.
fn init_logging(verbosity: u8) {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,memcore=trace"))
        .format_timestamp_millis()
        .init();
    if !from_env {
        memcore::server::set_verbosity(verbosity);
    }
}

/// Segments (256 KiB) and full large-value chunks get mappings of their own,
/// so a freed one goes back to the kernel at once (smaller blocks, such as
/// the buffer eviction moves items through, stay in the heap). Left to itself, glibc raises
/// its mapping threshold past them after the first free and keeps freed
/// segments in its heaps, where fragmentation holds them: 10,000 keys of
/// 16 KiB overwritten for 15 s at `-m 1024` held 211-240 MiB of RSS for 190
/// MiB of engine memory, and 186 MiB with this (memcached: 173 MiB).
fn map_large_blocks_apart() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, memcore::storage::SEG_SIZE as libc::c_int);
    }
}
