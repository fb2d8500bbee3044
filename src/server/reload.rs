//! SIGHUP: re-read `--config-file` with the same command line, apply what
//! a running server can change (item memory, verbosity, compression), log
//! what needs a restart, and reopen `--log-file` (for log rotation).
//!
//! The signal thread decides (`on_sighup`) and publishes the settings in
//! `LIVE`; each core's timer task picks them up (`apply`) within 100 ms.
//! Imports `config` (pure) and storage's compression settings.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{self, Config, ConfigFile};
use crate::storage::{CompressConfig, Store};

/// What the cores run with after a reload.
#[derive(Clone, Debug)]
struct Settings {
    per_core_limit: usize,
    compress: CompressConfig,
}

/// Bumped by each reload that changed a setting; cores compare it with the
/// one they applied.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static LIVE: Mutex<Option<Settings>> = Mutex::new(None);

/// The compression settings cores run with: a reload's, else `cfg`'s.
pub fn compress(cfg: &Config) -> CompressConfig {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.as_ref().map_or_else(|| cfg.compress.clone(), |s| s.compress.clone())
}

/// On a core: apply the newest reload if `seen` is older.
pub fn apply(seen: &mut u64, store: &mut Store, now: u64) {
    let g = GENERATION.load(Ordering::Acquire);
    if g == *seen {
        return;
    }
    *seen = g;
    let Some(s) = LIVE.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return };
    store.set_limit(s.per_core_limit, now);
    store.set_compress(s.compress.enabled, s.compress.min_size, s.compress.level);
}

/// The signal thread, on SIGHUP: `current` is what the server runs with,
/// and is updated with what was applied.
pub fn on_sighup(current: &mut Config) {
    if let Some(path) = &current.log_file {
        match super::startup::open_log_file(path) {
            Ok(fd) => super::startup::redirect_output(&fd),
            Err(e) => log::warn!("SIGHUP: {e}; logging on to the old file"),
        }
    }
    let Some(reload) = current.reload.clone() else {
        log::info!("SIGHUP: no --config-file to re-read");
        return;
    };
    let text = match super::startup::read_config_file(&reload.path) {
        Ok(t) => t,
        Err(e) => return log::error!("SIGHUP: {e}; nothing changed"),
    };
    let file = ConfigFile { path: &reload.path, text: &text };
    let new = match config::parse_with_file(reload.args.clone(), Some(&file), &super::startup::allowed_cpus()) {
        Ok(config::Command::Run(c)) => c,
        Ok(config::Command::Print(_)) => return,
        Err(e) => return log::error!("SIGHUP: {e}; nothing changed"),
    };
    let mut new = *new;
    if let Err(e) = super::startup::prepare(&mut new) {
        return log::error!("SIGHUP: {}: {e}; nothing changed", reload.path);
    }
    let changes = match config::changes(current, &new) {
        Ok(c) => c,
        Err(e) => return log::error!("SIGHUP: {}: {e}; nothing changed", reload.path),
    };
    let mut applied = Vec::new();
    if let Some(level) = changes.verbosity {
        if std::env::var_os("RUST_LOG").is_none() {
            super::set_verbosity(level);
        }
        applied.push(format!("verbosity {} -> {level}", current.verbosity));
        current.verbosity = level;
    }
    let mut live = Settings { per_core_limit: current.per_core_limit(), compress: compress(current) };
    let mut publish = false;
    if let Some(limit) = changes.per_core_limit {
        applied.push(format!("memory per core {} -> {} MiB", live.per_core_limit >> 20, limit >> 20));
        live.per_core_limit = limit;
        current.memory_limit = new.memory_limit;
        current.memory_per_core = new.memory_per_core;
        publish = true;
    }
    if let Some(z) = changes.compress {
        let show = |c: &CompressConfig| {
            if c.enabled { format!("on (min {}, level {})", c.min_size, c.level) } else { "off".to_string() }
        };
        applied.push(format!("compression {} -> {}", show(&live.compress), show(&z)));
        live.compress = z.clone();
        current.compress = z;
        publish = true;
    }
    if publish {
        *LIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(live);
        GENERATION.fetch_add(1, Ordering::Release);
    }
    if applied.is_empty() {
        log::info!("SIGHUP: {} re-read; nothing to change", reload.path);
    } else {
        log::info!("SIGHUP: {} re-read; applied: {}", reload.path, applied.join(", "));
    }
    if !changes.need_restart.is_empty() {
        log::warn!(
            "SIGHUP: changed in {} but applied only at restart: {}",
            reload.path,
            changes.need_restart.join(", ")
        );
    }
}
