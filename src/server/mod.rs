//! The thread-per-core server: one glommio executor per core, pinned, each
//! with its own listeners (SO_REUSEPORT) and its own shard of the keys.
//!
//! ```text
//!                 clients (kernel spreads connections by 4-tuple hash)
//!                    │                                │
//!        ┌───────────▼───────────┐        ┌───────────▼───────────┐
//!        │ core 0 (CPU a)        │  mesh  │ core 1 (CPU b)        │
//!        │ listeners, conns      │◀══════▶│ listeners, conns      │
//!        │ Shard 0: keys with    │ frames │ Shard 1: keys with    │
//!        │ owner(key) == 0       │        │ owner(key) == 1       │
//!        └───────────────────────┘        └───────────────────────┘
//!   main thread: flags, bind, drop privileges, start executors, then wait;
//!   signal thread: sigwait(SIGINT/SIGTERM) → Shutdown::trigger.
//! ```
//!
//! A connection runs on the core that accepted it and hands every request
//! to `route`, which runs it inline or sends it to the key's owner. Shutdown:
//! stop accepting, let every connection finish its batch, tell the other
//! cores, wait for theirs, exit.
//!
//! Owns sockets, listeners, connection lifecycle, signals and startup
//! (privileges, pid file, executors). Sits on top: imports `route`, `repl`,
//! `storage`, `config`; nothing below imports it.

pub mod auth;
pub mod conn;
pub mod listener;
pub mod metrics;
pub mod reload;
pub mod signal;
pub mod startup;
pub mod tls;
pub mod trainer;

use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::{TcpListener, UnixListener};
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::protocol::encode;
use crate::route::mesh::Frame;
use crate::route::state::{receiver_task, sender_task};
use crate::route::{ConnInfo, Core, Global, Shard, Shutdown};
use crate::storage::{HashKey, Store, StoreConfig};

pub use crate::route::{set_verbosity, unix_now};

/// Frames in flight per direction between two cores.
const MESH_CAPACITY: usize = 256;
/// glommio's registered buffers serve only file I/O, which memcore does not
/// do; keeping them tiny lets it start under the default 8 MiB memlock.
const IO_MEMORY: usize = 64 * 1024;
/// glommio's task quantum (its default). Requests are short and batches are
/// bounded by -R, so nothing needs a finer quantum.
const PREEMPT_TIMER: Duration = Duration::from_millis(100);
/// How long shutdown waits for connections to finish their batch, and then
/// for the other cores, so that the process is gone within 2 s.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(1200);
const PEERS_TIMEOUT: Duration = Duration::from_millis(500);
/// Slots the expiry crawler visits per tick on each core.
const CRAWL_BUDGET: usize = 5_000;
const CRAWL_INTERVAL: Duration = Duration::from_millis(100);
const CRAWL_BUSY_INTERVAL: Duration = Duration::from_millis(1);

/// The compression settings of `core`: config decided them (off on cores
/// with too little memory, with a warning), or the last SIGHUP reload.
pub fn compress_for(cfg: &crate::config::Config, _core: usize) -> crate::storage::CompressConfig {
    reload::compress(cfg)
}

/// Run the server until SIGINT/SIGTERM. Errors are one line for stderr.
pub fn run(mut cfg: Config) -> Result<(), String> {
    signal::block_termination_signals();
    let n = cfg.threads;
    // -s: one UNIX socket, a dup of it on every core, and no TCP.
    let (fds, mut unix_fds): (Vec<Vec<RawFd>>, Vec<Option<RawFd>>) = match cfg.unix_socket.as_deref() {
        Some(path) => {
            let fds = listener::bind_unix(path, cfg.unix_mask, cfg.backlog, n)?;
            (vec![Vec::new(); n], fds.into_iter().map(Some).collect())
        }
        None => {
            let bound = listener::bind_all(&cfg.listen, n, cfg.backlog)?;
            // From here on the real ports (`-p 0` asked for any free one),
            // for the log, the port file and `stats settings`.
            cfg.listen = bound.addrs;
            (bound.fds, vec![None; n])
        }
    };
    // Removed at exit, as memcached does.
    let _unix_file = cfg.unix_socket.as_deref().map(|p| RunFile(p.into()));
    // The replication port is bound like the client ports: on every core.
    let mut repl_fds = match cfg.repl.as_ref().and_then(|r| r.listen) {
        Some(addr) => listener::bind_all(&[addr], n, cfg.backlog)
            .map_err(|e| format!("replication port {addr}: {e}"))?
            .fds
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; n],
    };
    // `/metrics`, served by core 0 only.
    let mut metrics_fd = match cfg.metrics_listen {
        Some(addr) => {
            let bound = listener::bind_all(&[addr], 1, cfg.backlog).map_err(|e| format!("metrics port {addr}: {e}"))?;
            log::info!("metrics at http://{}/metrics", bound.addrs[0]);
            bound.fds.into_iter().flatten().next()
        }
        None => None,
    };
    // Replication's descriptors come on top of the clients' budget, so
    // peers (or strangers at the replication port) cannot use up `-c`.
    raise_fd_limit(cfg.conn_limit + cfg.repl.as_ref().map_or(0, |r| r.fd_budget(n)));
    if cfg.enable_coredumps {
        startup::enable_coredumps()?;
    }
    // Opened before switching user (a log directory root owns), used once
    // the server serves.
    let log_file = cfg.log_file.as_deref().map(startup::open_log_file).transpose()?;
    if let (Some(fd), Some(user)) = (&log_file, cfg.user.as_deref()) {
        // So that SIGHUP can reopen it (log rotation) as the -u user.
        startup::give_to_user(fd, user);
    }
    // Read before privileges go, as memcached does: the key may be
    // readable by root only. SIGHUP reads them again as the user it runs as.
    let security = Arc::new(Security {
        auth: cfg.auth_file.as_deref().map(auth::AuthFile::load).transpose()?.map(Arc::new),
        tls: cfg.tls.as_ref().map(tls::Tls::load).transpose()?.map(Arc::new),
    });
    drop_privileges(cfg.user.as_deref())?;
    // As the user the cores run as (kernel.io_uring_group), before -d.
    startup::check_io_uring()?;
    if cfg.enable_coredumps {
        startup::keep_dumpable();
    }
    // Before any thread: fork copies only this one.
    let daemon = cfg.daemon.then(|| startup::daemonize(cfg.verbosity > 0, cfg.enable_coredumps)).transpose()?;
    if cfg.lock_memory {
        // Item memory, connection buffers, and the runtime's own.
        startup::lock_memory(cfg.per_core_limit() * n + cfg.conn_memory + (64 << 20) * n);
    }
    // As memcached: written by the user the server runs as. Removed on every
    // way out of this function, so a failed start leaves none behind.
    let _pidfile =
        cfg.pidfile.as_deref().map(|p| RunFile::write(p, "pid", &format!("{}\n", std::process::id()))).transpose()?;
    // Written once every port listens, so whoever reads it can connect.
    let port_text = listener::port_file_text(&cfg.listen);
    let _portfile = cfg.port_file.as_deref().map(|p| RunFile::write(p, "port", &port_text)).transpose()?;
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    for n in &cfg.notes {
        log::info!("{n}");
    }
    log::info!(
        "memcore {} listening on {} with {} core(s) (CPUs {:?}), {} MiB per core, item size max {} bytes",
        env!("CARGO_PKG_VERSION"),
        cfg.unix_socket.as_ref().map_or_else(
            || cfg.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
            |p| format!("UNIX socket {p}")
        ),
        n,
        cfg.cpus,
        cfg.per_core_limit() >> 20,
        cfg.item_size_max
    );
    if let Some(r) = &cfg.repl {
        log::info!(
            "replication: node {} in {} mode, listening on {}, peers {}",
            r.node_id,
            r.mode.name(),
            r.listen.map_or("(none)".to_string(), |a| a.to_string()),
            if r.peers.is_empty() { "(none)".to_string() } else { r.peers.join(",") }
        );
    }
    // Before any core starts: every core must see the same key-to-core hash.
    if !crate::route::set_owner_key(cfg.hash_key.unwrap_or_else(random_hash_key)) {
        log::warn!("the key-to-core hash key was chosen before the server started; --hash-key may not apply");
    }
    let repl = cfg.repl.clone().map(|r| crate::repl::ReplShared::new(r, n));
    let budgets =
        (0..n).map(|_| crate::route::budget::ConnBudget::new(cfg.conn_memory / n, cfg.item_size_max)).collect();
    let detail = Arc::new(crate::detail::PerCore::new(n, cfg.prefix_delimiter));
    let global = Arc::new(Global {
        repl,
        cfg,
        conns: Default::default(),
        started: unix_now(),
        pid: std::process::id(),
        shutdown: Shutdown::default(),
        budgets,
        latency: crate::latency::PerCore::new(n),
        hotkeys: crate::hotkeys::PerCore::new(n),
        detail,
        watch: Default::default(),
    });
    let mesh = MeshBuilder::<Frame, _>::full(n, MESH_CAPACITY);
    let mut handles = Vec::new();
    for (i, core_fds) in fds.into_iter().enumerate() {
        let (g, m, sec) = (global.clone(), mesh.clone(), security.clone());
        let repl_fd = repl_fds[i].take();
        let metrics_fd = if i == 0 { metrics_fd.take() } else { None };
        let unix_fd = unix_fds[i].take();
        let cpu = g.cfg.cpus[i];
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu));
        if !g.cfg.spin_before_park.is_zero() {
            builder = builder.spin_before_park(g.cfg.spin_before_park);
        }
        let h = builder
            .name(&format!("memcore-{i}"))
            .io_memory(IO_MEMORY)
            .preempt_timer(PREEMPT_TIMER)
            .spawn(move || core_main(g, m, core_fds, unix_fd, repl_fd, metrics_fd, sec))
            .map_err(|e| format!("cannot start executor on CPU {cpu}: {e}"))?;
        handles.push(h);
    }
    {
        let g = global.clone();
        let mut current = g.cfg.clone();
        std::thread::Builder::new()
            .name("memcore-signals".into())
            .spawn(move || {
                loop {
                    match signal::wait_signal() {
                        signal::Signal::Reload => {
                            reload::on_sighup(&mut current);
                            security.reload();
                        }
                        signal::Signal::Terminate(sig) => {
                            log::info!("signal {sig} received, shutting down");
                            startup::notify_systemd("STOPPING=1");
                            break g.shutdown.trigger();
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start signal thread: {e}"))?;
    }
    startup::notify_systemd(&format!("READY=1\nMAINPID={}", std::process::id()));
    match (daemon, &log_file) {
        (Some(d), log_file) => d.ready(log_file.as_ref()),
        (None, Some(fd)) => startup::redirect_output(fd),
        (None, None) => {}
    }
    let mut failure = None;
    for h in handles {
        let r = match h.join() {
            Ok(r) => r,
            Err(e) => Err(format!("executor failed: {e}")),
        };
        if let Err(e) = r {
            global.shutdown.trigger();
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// What client connections must pass before their first request: the `-Y`
/// credentials and the `-Z` TLS configuration, each reloaded on SIGHUP.
struct Security {
    auth: Option<Arc<auth::AuthFile>>,
    tls: Option<Arc<tls::Tls>>,
}

impl Security {
    /// SIGHUP: read the auth file and the certificates again; what fails to
    /// read leaves the old in force, and the log says so.
    fn reload(&self) {
        if let Some(a) = &self.auth {
            match a.reload() {
                Ok(n) => log::info!("SIGHUP: auth file {} reloaded, {n} entries", a.path),
                Err(e) => log::error!("SIGHUP: {e}; the previous credentials stay in force"),
            }
        }
        if let Some(t) = &self.tls {
            match t.reload() {
                Ok(()) => log::info!("SIGHUP: TLS certificates reloaded; new connections use them"),
                Err(e) => log::error!("SIGHUP: {e}; the previous certificates stay in force"),
            }
        }
        if self.auth.is_none() && self.tls.is_none() {
            log::info!("SIGHUP: nothing to reload (no -Y, no -Z)");
        }
    }
}

/// A secret key for a hash over client keys (see `storage::HashKey`).
fn random_hash_key() -> HashKey {
    let b = crate::repl::random_bytes::<16>();
    let half = |h: &[u8]| u64::from_le_bytes(h.try_into().unwrap_or_default());
    HashKey::new(half(&b[..8]), half(&b[8..]))
}

async fn core_main(
    global: Arc<Global>,
    mesh: MeshBuilder<Frame, glommio::channels::channel_mesh::Full>,
    fds: Vec<RawFd>,
    unix_fd: Option<RawFd>,
    repl_fd: Option<Vec<RawFd>>,
    metrics_fd: Option<RawFd>,
    security: Arc<Security>,
) -> Result<(), String> {
    // glommio 0.9's first timer in an executor fires tens of ms late.
    glommio::timer::sleep(Duration::from_millis(1)).await;
    let n = global.cfg.threads;
    let (senders, receivers) = if n > 1 {
        let (s, r) = mesh.join().await.map_err(|_| "cannot join the core mesh".to_string())?;
        (Some(Rc::new(s)), Some(Rc::new(r)))
    } else {
        (None, None)
    };
    let id = senders.as_ref().map_or(0, |s| s.peer_id());
    let store = Store::new(StoreConfig {
        limit: global.cfg.per_core_limit(),
        evict: global.cfg.evict,
        use_cas: global.cfg.use_cas,
        cas_stride: n as u64,
        cas_offset: id as u64 + 1,
        started: global.started,
        compress: compress_for(&global.cfg, id),
        digest: global.repl.is_some(),
        // Each core its own index key: a key learnt from one core's timing
        // says nothing about another's.
        index_key: global.cfg.hash_key.unwrap_or_else(random_hash_key),
        item_size_max: global.cfg.item_size_max,
    });
    let mut shard = Shard::new(store);
    shard.detail = Some((global.detail.clone(), id));
    shard.watch = Some(global.watch.clone());
    let mut core = Core::new(id, n, global.clone(), Shard::new(Store::new(StoreConfig::default())));
    if let Some(r) = &global.repl {
        shard.repl = Some(crate::repl::apply::ReplShard::new(
            r.cfg.node_id,
            r.cfg.tombstone_ttl.as_millis() as u64,
            global.cfg.item_size_max,
            r.flush_mark.clone(),
        ));
        core.repl = Some(crate::repl::link::ReplCore::new(r.cfg.peers.len(), r.cfg.backlog_bytes));
    }
    core.shard = std::cell::RefCell::new(shard);
    let core = Rc::new(core);
    if let (Some(s), Some(r)) = (&senders, &receivers) {
        for peer in core.remote_ids() {
            glommio::spawn_local(sender_task(core.clone(), s.clone(), peer)).detach();
            glommio::spawn_local(receiver_task(core.clone(), r.clone(), peer)).detach();
        }
    }
    glommio::spawn_local(crawl_task(core.clone())).detach();
    if let Some(r) = &global.repl {
        for peer in 0..r.cfg.peers.len() {
            glommio::spawn_local(crate::repl::link::link_task(core.clone(), peer)).detach();
        }
        for fd in repl_fd.into_iter().flatten() {
            // SAFETY: as for the client listeners below.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            glommio::spawn_local(crate::repl::link::accept_loop(core.clone(), listener)).detach();
        }
    }

    if let Some(fd) = metrics_fd {
        // SAFETY: as for the client listeners below.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        glommio::spawn_local(metrics::serve(core.clone(), listener)).detach();
    }

    let gate = Rc::new(glommio::sync::Gate::new());
    let mut accept_tasks = Vec::new();
    for (i, fd) in fds.into_iter().enumerate() {
        // SAFETY: the fd is a bound, listening, non-blocking TCP socket that
        // nothing else owns.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        let plain = global.cfg.listen_plain.get(i).copied().unwrap_or(false);
        let tls = security.tls.clone().filter(|_| !plain);
        let auth = security.auth.clone();
        accept_tasks.push(glommio::spawn_local(accept_loop(core.clone(), listener, gate.clone(), tls, auth)));
    }
    if let Some(fd) = unix_fd {
        // SAFETY: a bound, listening, non-blocking UNIX socket (this core's
        // dup) that nothing else owns.
        let listener = unsafe { UnixListener::from_raw_fd(fd) };
        let auth = security.auth.clone();
        accept_tasks.push(glommio::spawn_local(accept_loop(core.clone(), listener, gate.clone(), None, auth)));
    }

    global.shutdown.wait().await;
    core.stop();
    for t in accept_tasks {
        t.await;
    }
    log::debug!("core {id}: accept loops stopped");
    let drained = futures_lite::future::or(async { gate.close().await.is_ok() }, async {
        glommio::timer::sleep(DRAIN_TIMEOUT).await;
        false
    })
    .await;
    if !drained {
        log::warn!("{} connection(s) on core {id} did not finish in time", core.conns.borrow().len());
    }
    log::debug!("core {id}: connections drained");
    // Tell the other cores this one sends no more work, and keep serving
    // theirs until they say the same.
    if n > 1 {
        for peer in core.remote_ids() {
            core.peers[peer].outbox.borrow_mut().done = true;
            core.peers[peer].wake_sender.notify();
        }
        let all_done = async {
            while !core.remote_ids().all(|p| core.peers[p].done_received.get()) {
                core.peer_done.wait().await;
            }
        };
        futures_lite::future::or(all_done, glommio::timer::sleep(PEERS_TIMEOUT)).await;
        log::debug!("core {id}: peers done");
        // Let the sender tasks hand the last frames to the channels.
        glommio::yield_if_needed().await;
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// What `accept_loop` needs of a listener (TCP, or `-s`'s UNIX socket) and
/// of the connections it accepts.
trait Listen {
    type Stream: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static;
    /// What the connection reads and writes: for TCP, the socket or TLS
    /// over it (`-Z`); a UNIX socket as accepted.
    type Client: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + std::os::fd::AsRawFd + 'static;
    async fn accept(&self) -> std::io::Result<Self::Stream>;
    /// The TLS handshake, when `tls` is given, on the core that accepted.
    async fn secure(stream: Self::Stream, tls: Option<Arc<tls::Tls>>) -> Result<Self::Client, tls::Refused>;
    /// No delay, and `-o idle_timeout`.
    fn configure(stream: &Self::Stream, idle: Option<Duration>);
    /// Peer and local address, for `stats conns`; None if the peer is gone
    /// (a UNIX socket's are shown as its path instead).
    fn addrs(stream: &Self::Stream) -> Option<(std::net::SocketAddr, std::net::SocketAddr)>;
}

impl Listen for TcpListener {
    type Stream = glommio::net::TcpStream;
    type Client = tls::ClientStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        TcpListener::accept(self).await.map_err(Into::into)
    }
    async fn secure(stream: Self::Stream, tls: Option<Arc<tls::Tls>>) -> Result<Self::Client, tls::Refused> {
        match tls {
            None => Ok(tls::ClientStream::Plain(stream)),
            Some(t) => tls::accept(t.current(), stream).await,
        }
    }
    fn configure(stream: &Self::Stream, idle: Option<Duration>) {
        let _ = stream.set_nodelay(true);
        if let Some(t) = idle {
            let _ = stream.set_read_timeout(Some(t));
            let _ = stream.set_write_timeout(Some(t));
        }
    }
    fn addrs(stream: &Self::Stream) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        Some((stream.peer_addr().ok()?, stream.local_addr().ok()?))
    }
}

impl Listen for UnixListener {
    type Stream = glommio::net::UnixStream;
    type Client = glommio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        UnixListener::accept(self).await.map_err(Into::into)
    }
    async fn secure(stream: Self::Stream, _: Option<Arc<tls::Tls>>) -> Result<Self::Client, tls::Refused> {
        Ok(stream)
    }
    fn configure(stream: &Self::Stream, idle: Option<Duration>) {
        if let Some(t) = idle {
            let _ = stream.set_read_timeout(Some(t));
            let _ = stream.set_write_timeout(Some(t));
        }
    }
    fn addrs(_: &Self::Stream) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        let none = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        Some((none, none))
    }
}

/// Accept connections until shutdown, enforcing `-c` over all cores.
async fn accept_loop<L: Listen>(
    core: Rc<Core>,
    listener: L,
    gate: Rc<glommio::sync::Gate>,
    tls: Option<Arc<tls::Tls>>,
    auth: Option<Arc<auth::AuthFile>>,
) {
    while let Some(stream) = core.accept_until_stop("", || listener.accept()).await {
        L::configure(&stream, core.cfg().idle_timeout);
        let global = &core.global;
        if global.conns.fetch_add(1, Ordering::Relaxed) >= global.cfg.conn_limit {
            global.conns.fetch_sub(1, Ordering::Relaxed);
            core.shard.borrow_mut().counters.rejected_connections += 1;
            let refuse = gate.spawn(async move {
                use futures_lite::AsyncWriteExt;
                let mut stream = stream;
                let _ = stream.write_all(encode::TOO_MANY_CONNECTIONS).await;
                let _ = stream.close().await;
            });
            if let Ok(t) = refuse {
                t.detach();
            }
            continue;
        }
        let Some((peer, local)) = L::addrs(&stream) else {
            global.conns.fetch_sub(1, Ordering::Relaxed);
            continue;
        };
        let id = core.conns.borrow_mut().insert(ConnInfo {
            peer,
            local,
            last_cmd: unix_now().into(),
            waker: Default::default(),
        });
        {
            let c = &mut core.shard.borrow_mut().counters;
            c.curr_connections += 1;
            c.total_connections += 1;
        }
        log::debug!("core {}: connection from {peer}", core.id);
        let c = core.clone();
        let (tls, auth) = (tls.clone(), auth.clone());
        let spawned = gate.spawn(async move {
            // The handshake runs here, on the core that accepted.
            match L::secure(stream, tls).await {
                Ok(stream) => {
                    if let Err(e) = conn::Conn::new(c.clone(), id, stream, auth).run().await {
                        log::debug!("connection {peer}: {e}");
                    }
                }
                Err(tls::Refused::Gone) => log::debug!("connection from {peer} closed before its TLS handshake"),
                Err(tls::Refused::Plain) => {
                    c.shard.borrow_mut().counters.ssl_handshake_errors += 1;
                    auth::log_limited(unix_now(), |dropped| {
                        log::warn!(
                            "connection from {peer} spoke plain text to a TLS port; told so and closed{}",
                            auth::dropped_note(dropped)
                        )
                    })
                }
                Err(tls::Refused::Failed(e)) => {
                    c.shard.borrow_mut().counters.ssl_handshake_errors += 1;
                    auth::log_limited(unix_now(), |dropped| {
                        log::warn!("TLS handshake from {peer} failed: {e}{}", auth::dropped_note(dropped))
                    })
                }
            }
            c.conns.borrow_mut().try_remove(id);
            c.shard.borrow_mut().counters.curr_connections -= 1;
            c.global.conns.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            // The gate is closing: shutdown has begun.
            core.conns.borrow_mut().try_remove(id);
            core.shard.borrow_mut().counters.curr_connections -= 1;
            global.conns.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        if let Ok(t) = spawned {
            t.detach();
        }
    }
}

/// Keep the core's clock current, reclaim expired and flushed items a
/// slice at a time (every 100 ms, or every millisecond while the crawler
/// finds more work than a slice holds), and train compression
/// dictionaries off the core.
async fn crawl_task(core: Rc<Core>) {
    let mut busy = false;
    let mut trainer = trainer::Trainer::default();
    let mut reloaded = 0;
    loop {
        glommio::timer::sleep(if busy { CRAWL_BUSY_INTERVAL } else { CRAWL_INTERVAL }).await;
        let now = unix_now();
        core.clock.set(now);
        let mut shard = core.shard.borrow_mut();
        let shard = &mut *shard;
        reload::apply(&mut reloaded, &mut shard.store, now);
        trainer.poll(&mut shard.store);
        shard.store.crawl(now, CRAWL_BUDGET);
        busy = shard.store.crawl_busy();
        // Tombstones past their TTL go here too, not only when a write
        // comes by.
        if let Some(r) = shard.repl.as_mut() {
            r.collect(crate::repl::unix_ms());
            r.charge(&mut shard.store, now);
        }
    }
}

/// The `-P` pid file or the `--port-file`, removed when the server exits.
/// Written to a new file beside it and renamed into place: the path is never
/// opened for writing, so a symlink planted there (or a file someone else
/// owns) is replaced, not followed or truncated.
struct RunFile(std::path::PathBuf);

impl RunFile {
    /// Write `text` to a new file beside `path` and rename it into place, so
    /// that a reader sees the whole file or none (and a planted symlink is
    /// replaced, not followed). `what` names the file in errors.
    fn write(path: &str, what: &str, text: &str) -> Result<RunFile, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::path::PathBuf::from(path);
        let name =
            path.file_name().ok_or_else(|| format!("cannot write {what} file {}: not a file name", path.display()))?;
        let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot write {what} file {}: {e}", path.display()));
        }
        Ok(RunFile(path))
    }
}

impl Drop for RunFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Let the process hold `-c` connections plus its own descriptors (as
/// memcached does); past the hard limit, warn and serve what fits.
fn raise_fd_limit(conn_limit: usize) {
    // Listeners, rings, eventfds and the like per core, with room to spare.
    let want = conn_limit as u64 + 64;
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= want {
            return;
        }
        let target = want.min(lim.rlim_max);
        if target > lim.rlim_cur {
            lim.rlim_cur = target;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        if target < want {
            log::warn!(
                "open files limited to {target}: fewer than -c {conn_limit} connections may be accepted (raise LimitNOFILE / ulimit -n)"
            );
        }
    }
}

/// As memcached: root must name a user with -u, and switches to it after
/// binding; other users ignore -u.
fn drop_privileges(user: Option<&str>) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Some(user) = user else {
        return Err("can't run as root without the -u switch".into());
    };
    let cname = std::ffi::CString::new(user).map_err(|_| format!("can't find the user {user} to switch to"))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy
    // what we need before any other call that could overwrite it.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            return Err(format!("can't find the user {user} to switch to"));
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    if uid == 0 {
        return Ok(());
    }
    // SAFETY: plain credential changes; glibc applies them to every thread.
    unsafe {
        if libc::initgroups(cname.as_ptr(), gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            return Err(format!("failed to assume identity of user {user}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
