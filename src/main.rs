use std::process::ExitCode;

use memcore::config::{Command, ConfigFile, config_file_arg, parse_with_file};
use memcore::server::startup;

fn main() -> ExitCode {
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
