//! One client connection: read, parse every complete request and hand each
//! to `route` (which runs it here or forwards it), then write all replies
//! in request order with one write. Also answers `stats` and holds a sync
//! write's reply until the replication peers applied it.
//!
//! Owns the connection's buffers and its charge against the core's
//! connection budget; what a request means and where it runs is `route`'s.
//! Imports route (dispatch, the batch, the mesh's reply slots), protocol,
//! stats and repl (the ACK wait); nothing below imports it.

use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::auth::{AuthFile, log_failure};
use crate::protocol::auth::{FAILURE, Gate, parse_gate};

use crate::latency::{self, Op, Pending};
use crate::protocol::encode::{self, encode_line};
use crate::protocol::{GetKind, Parsed, READ_BUFFER, Request, parse, parse_get_rest};
use crate::route::budget::{BUDGET_WAIT, Charge, FLUSH_AT};
use crate::route::dispatch::{SyncWrite, broadcast, dispatch_sync_write, sync_write};
use crate::route::mesh::{Cmd, ConnWait, Interruptible, Typed};
use crate::route::{Batch, Core, dispatch, unix_now, version};
use crate::stats::{self, Counters, ServerInfo};

const INITIAL_BUFFER: usize = 16 * 1024;
/// Buffers grown for a large item go back to this size once drained.
const KEEP_BUFFER: usize = 64 * 1024;

/// Why request processing stopped.
enum Stop {
    /// The buffer holds no complete request.
    NeedInput,
    /// `-R` requests were handled; let other connections run.
    Yield,
    /// A `stats` request: answered once every earlier reply is out.
    Stats(Vec<u8>),
    /// An `lru_crawler` request: likewise.
    LruCrawler(Vec<u8>),
    /// `watch`: the connection streams log lines from then on.
    Watch(Vec<u8>),
    /// quit, or input that ends the connection.
    Close,
    /// `sync`/`majority` replication: the next write goes alone in its batch.
    Boundary,
    /// `sync`/`majority` replication: a write whose reply waits for the
    /// peers.
    SyncWrite(SyncWrite),
    /// The batch owes enough, or the next request needs room in the
    /// connection budget: write the batch before taking more requests.
    Drain,
    /// The next request needs room in the connection budget, and the batch
    /// owes nothing: wait for other connections to free some.
    WaitBudget,
}

/// `S`: a TCP stream, or a UNIX one (`-s`).
pub struct Conn<S = TcpStream> {
    core: Rc<Core>,
    id: usize,
    stream: S,
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes still to discard (the data of a refused item).
    skip: usize,
    /// The next request already waited for the connection budget once; it
    /// runs with whatever room there is now.
    budget_waited: bool,
    /// Buffer length that completes the pending request, when known.
    need: usize,
    /// Inside a long get line whose first keys were answered: its kind
    /// and exptime, until its newline (`parse_get_rest`).
    get_rest: Option<(GetKind, i64)>,
    batch: Batch,
    spliced: Vec<u8>,
    /// What this connection holds, charged to its core's `ConnBudget`.
    charge: Charge,
    /// When the last read returned, and when the first byte of the oldest
    /// request not yet answered arrived (None: no such request).
    last_read: Instant,
    first_byte: Option<Instant>,
    /// Requests of the batch per kind, recorded when its replies are queued.
    pending: Pending,
    /// `-Y`: the credentials to check until this connection authenticates;
    /// None once it has (or when the server needs none).
    auth: Option<Arc<AuthFile>>,
}

impl<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + std::os::fd::AsRawFd> Conn<S> {
    pub fn new(core: Rc<Core>, id: usize, stream: S, auth: Option<Arc<AuthFile>>) -> Self {
        let ncores = core.ncores;
        Conn {
            core,
            id,
            stream,
            inbuf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            skip: 0,
            budget_waited: false,
            need: 0,
            get_rest: None,
            batch: Batch::new(ncores, INITIAL_BUFFER),
            spliced: Vec::new(),
            charge: Charge::default(),
            last_read: Instant::now(),
            first_byte: None,
            pending: Pending::default(),
            auth,
        }
    }

    pub async fn run(mut self) -> io::Result<()> {
        match self.serve().await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                // `-o idle_timeout`: the client sent nothing, or took none of
                // its replies, for that long.
                log::debug!("core {}: connection {} idle; closed", self.core.id, self.id);
                self.core.shard.borrow_mut().counters.idle_kicks += 1;
                Ok(())
            }
            r => r,
        }
    }

    /// Bytes this connection holds: buffers and replies owed (replies still
    /// on their way from other cores are charged by the core building them).
    fn held(&self) -> usize {
        self.inbuf.len() + self.batch.out.capacity() + self.spliced.capacity() + self.batch.wait.held_bytes()
    }

    /// Buffers larger than this are given back once drained: `KEEP_BUFFER`,
    /// or the initial size while the core's connection budget runs short
    /// (so that idle connections do not sit on it).
    fn keep(&self) -> usize {
        let b = self.core.budget();
        if b.available() < b.limit() / 4 { INITIAL_BUFFER } else { KEEP_BUFFER }
    }

    fn settle(&mut self) {
        let held = self.held();
        self.charge.settle(self.core.budget(), held);
    }

    async fn serve(&mut self) -> io::Result<()> {
        loop {
            let stop = self.process();
            crate::repl::link::kick(&*self.core);
            if let Stop::SyncWrite(w) = stop {
                self.finish_sync_write(w).await?;
                continue;
            }
            self.finish_batch().await?;
            match stop {
                Stop::NeedInput => {
                    if !self.read_more().await? {
                        return Ok(());
                    }
                }
                Stop::Yield => {
                    self.core.shard.borrow_mut().counters.conn_yields += 1;
                    glommio::yield_if_needed().await;
                }
                Stop::Stats(args) => {
                    self.stats(&args).await;
                    self.finish_batch().await?;
                }
                Stop::LruCrawler(args) => self.lru_crawler(&args).await?,
                Stop::Watch(args) => {
                    if self.watch(&args).await? {
                        return Ok(());
                    }
                }
                Stop::Close => return Ok(()),
                Stop::WaitBudget => {
                    self.wait_for_budget(self.core.budget().admit()).await;
                    self.budget_waited = true;
                }
                Stop::Boundary | Stop::SyncWrite(_) | Stop::Drain => {}
            }
        }
    }

    /// A write in `sync` or `majority` mode: its reply goes out once enough
    /// peers applied it, or becomes a SERVER_ERROR after `--repl-timeout`
    /// (the write stays applied here; docs/replication.md).
    async fn finish_sync_write(&mut self, SyncWrite { noreply }: SyncWrite) -> io::Result<()> {
        self.collect_forwarded().await?;
        let b = &mut self.batch;
        // Only a write that changed something was shipped.
        if let Some(written) = b.take_written()
            && !noreply
            && let Some(sh) = &self.core.global.repl
        {
            // The owner sealed the write before replying (`link::kick`).
            let owner = written.owner;
            let target = sh.pending_seq[owner].load(std::sync::atomic::Ordering::Acquire) - 1;
            let live = sh.live_peers(owner);
            if let Err((have, need)) = crate::repl::link::wait_acked(sh, owner, target, &live).await {
                sh.timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                b.out.clear();
                b.out.extend_from_slice(
                    format!(
                        "SERVER_ERROR replication timeout: {have} of {need} peers applied the write within {} ms; it is applied on this node\r\n",
                        sh.cfg.timeout.as_millis()
                    )
                    .as_bytes(),
                );
            }
        }
        self.finish_batch().await
    }

    /// Read more input. Returns false at end of stream or shutdown.
    async fn read_more(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.inbuf.len() > self.keep() {
                self.inbuf = vec![0; INITIAL_BUFFER];
            }
        }
        let want = self.need.max(self.end - self.start + 1);
        if self.start + want > self.inbuf.len() {
            // Move the partial request to the front, then grow if needed.
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if want > self.inbuf.len() {
                let size = want.max(self.inbuf.len() * 2);
                let more = size - self.inbuf.len();
                if !self.core.budget().may_grow(self.held(), more) {
                    self.core.shard.borrow_mut().counters.conn_memory_backpressure += 1;
                    self.wait_for_budget(more).await;
                }
                if !self.core.budget().may_grow(self.held(), more) {
                    self.core.shard.borrow_mut().counters.conn_memory_refused += 1;
                    encode_line(&mut self.batch.out, "SERVER_ERROR out of memory reading request");
                    self.finish_batch().await?;
                    return Ok(false);
                }
                // A fresh zeroed allocation is mapped lazily, so a large
                // item's buffer costs memory only as its bytes arrive.
                let mut grown = vec![0; size];
                grown[..self.end].copy_from_slice(&self.inbuf[..self.end]);
                self.inbuf = grown;
            }
        }
        if self.core.stopping.get() {
            return Ok(false);
        }
        let core = self.core.clone();
        let Some(waker) = core.conns.borrow().get(self.id).map(|c| c.waker.clone()) else {
            log::warn!("core {}: connection {} is missing from the registry; closing it", core.id, self.id);
            return Ok(false);
        };
        let read = pin!(self.stream.read(&mut self.inbuf[self.end..]));
        let r = Interruptible { inner: read, stop: &core.stopping, waker: &waker }.await;
        match r {
            None => Ok(false),
            Some(Ok(0)) => Ok(false),
            Some(Ok(n)) => {
                self.end += n;
                self.last_read = Instant::now();
                self.first_byte.get_or_insert(self.last_read);
                let now = self.core.clock.get();
                if let Some(info) = self.core.conns.borrow().get(self.id) {
                    info.last_cmd.set(now);
                }
                self.core.shard.borrow_mut().counters.bytes_read += n as u64;
                Ok(true)
            }
            Some(Err(e)) => Err(e),
        }
    }

    /// Parse and dispatch buffered requests until input runs out, `-R` is
    /// reached, or a request needs the batch finished first.
    fn process(&mut self) -> Stop {
        let core = self.core.clone();
        let now = core.clock.get();
        let hot = core.global.hotkeys.on();
        let mut handled = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.end - self.start);
                self.start += n;
                self.skip -= n;
                if self.skip > 0 {
                    self.need = 0;
                    return Stop::NeedInput;
                }
            }
            if handled >= core.cfg().reqs_per_event {
                return Stop::Yield;
            }
            if handled > 0 && self.batch.out.len() >= FLUSH_AT {
                return Stop::Drain;
            }
            let avail = &self.inbuf[self.start..self.end];
            if avail.is_empty() {
                self.need = 0;
                return Stop::NeedInput;
            }
            if self.auth.is_some() {
                match self.authenticate(now) {
                    Some(stop) => return stop,
                    None => {
                        handled += 1;
                        continue;
                    }
                }
            }
            let parsed = match self.get_rest {
                Some((kind, exptime)) => parse_get_rest(avail, kind, exptime),
                None => parse(avail, &core.limits),
            };
            match parsed {
                Parsed::Incomplete { need } => {
                    self.need = need;
                    return Stop::NeedInput;
                }
                Parsed::Error { msg, consumed, noreply } => {
                    if !noreply {
                        encode_line(&mut self.batch.out, msg);
                    }
                    self.start += consumed;
                }
                Parsed::Close { msg: None }
                    if avail.len() < READ_BUFFER && !avail.contains(&b'\n') && input_waiting(&self.stream) =>
                {
                    // memcached's 2,048-byte rule is for a line whose newline
                    // has not come: first read what the socket already holds.
                    self.need = 0;
                    return Stop::NeedInput;
                }
                Parsed::Close { msg } => {
                    if let Some(msg) = msg {
                        encode_line(&mut self.batch.out, msg);
                    }
                    return Stop::Close;
                }
                Parsed::Request { req, consumed, swallow } => {
                    let raw = &avail[..consumed];
                    if let Some(w) = sync_write(&core, &req) {
                        if handled > 0 {
                            return Stop::Boundary;
                        }
                        dispatch_sync_write(&core, &req, raw, now, &mut self.batch);
                        self.pending.count(Op::of(&req));
                        if hot {
                            core.global.hotkeys.with(core.id, |s| s.count(&req));
                        }
                        self.start += consumed;
                        self.skip = swallow;
                        return Stop::SyncWrite(w);
                    }
                    match req {
                        Request::Quit => return Stop::Close,
                        // -A: as memcached, `shutdown` (or `shutdown
                        // graceful`) closes this connection and stops the
                        // server as SIGTERM does; no reply.
                        Request::Shutdown if core.cfg().shutdown_enabled => {
                            let mode: Vec<&[u8]> = raw
                                .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
                                .filter(|t| !t.is_empty())
                                .skip(1)
                                .collect();
                            if mode.is_empty() || mode == [b"graceful"] {
                                log::info!("shutdown command received, shutting down");
                                core.global.shutdown.trigger();
                                return Stop::Close;
                            }
                            encode_line(&mut self.batch.out, "CLIENT_ERROR invalid shutdown mode");
                        }
                        Request::Stats { args } => {
                            let args = args.to_vec();
                            self.start += consumed;
                            return Stop::Stats(args);
                        }
                        Request::LruCrawler { args } => {
                            let args = args.to_vec();
                            self.start += consumed;
                            return Stop::LruCrawler(args);
                        }
                        Request::Watch { args } => {
                            let args = args.to_vec();
                            self.start += consumed;
                            return Stop::Watch(args);
                        }
                        _ => {
                            // A get's reply is capped by what the budget
                            // leaves beside this connection's own charge.
                            let held = self.held();
                            self.charge.settle(core.budget(), held);
                            if !dispatch(&core, &req, raw, now, &mut self.batch, !self.budget_waited) {
                                // Not run: the budget had no room for its
                                // reply. Write what the batch owes (that
                                // frees room), or wait for others to.
                                core.shard.borrow_mut().counters.conn_memory_backpressure += 1;
                                return if self.batch.owes() { Stop::Drain } else { Stop::WaitBudget };
                            }
                            self.pending.count(Op::of(&req));
                            if hot {
                                core.global.hotkeys.with(core.id, |s| s.count(&req));
                            }
                        }
                    }
                    self.budget_waited = false;
                    self.get_rest = match req {
                        Request::GetPart { kind, exptime, .. } => Some((kind, exptime)),
                        _ => None,
                    };
                    self.start += consumed;
                    self.skip = swallow;
                }
            }
            handled += 1;
        }
    }

    /// `-Y`, before the connection authenticated: answer what it sent as
    /// memcached does (`protocol::auth`). None: one command answered, go on.
    fn authenticate(&mut self, now: u64) -> Option<Stop> {
        let avail = &self.inbuf[self.start..self.end];
        match parse_gate(avail) {
            Gate::Incomplete { need } => {
                self.need = need;
                Some(Stop::NeedInput)
            }
            Gate::Close => Some(Stop::Close),
            Gate::Refuse { msg, consumed } => {
                encode_line(&mut self.batch.out, msg);
                self.start += consumed;
                None
            }
            Gate::Attempt { user, password, consumed } => {
                let ok = self.auth.as_ref().is_some_and(|a| a.current().check(user, password));
                {
                    let c = &mut self.core.shard.borrow_mut().counters;
                    c.auth_cmds += 1;
                    c.auth_errors += u64::from(!ok);
                }
                if ok {
                    self.auth = None;
                    self.batch.out.extend_from_slice(encode::STORED);
                } else {
                    let peer = self.core.conns.borrow().get(self.id).map(|c| c.peer);
                    log_failure(peer, user, now);
                    encode_line(&mut self.batch.out, FAILURE);
                }
                self.start += consumed;
                None
            }
        }
    }

    /// Wait until the core's connection budget has `room` bytes, or
    /// `BUDGET_WAIT` passed. Other connections free theirs as their clients
    /// read; a client that never reads must not hold this one forever.
    async fn wait_for_budget(&mut self, room: usize) {
        self.settle();
        let deadline = std::time::Instant::now() + BUDGET_WAIT;
        while self.core.budget().available() < room && std::time::Instant::now() < deadline && !self.core.stopping.get()
        {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Wait for forwarded replies and splice them into the batch's output.
    /// A reply that did not match its request ends this connection only.
    async fn collect_forwarded(&mut self) -> io::Result<()> {
        if self.batch.wait.has_pending() {
            self.settle();
            let waiting = Instant::now();
            let b = &mut self.batch;
            b.wait.all_filled().await;
            let took = waiting.elapsed();
            self.core.global.latency.with(self.core.id, |l| l.record_one(Op::Hop, took));
            if b.wait.is_broken() {
                log::warn!("core {}: connection {} lost a forwarded reply; closing it", self.core.id, self.id);
                return Err(io::Error::other("a forwarded reply did not match its request"));
            }
            b.splice_into(&mut self.spliced);
            std::mem::swap(&mut b.out, &mut self.spliced);
        }
        Ok(())
    }

    /// Wait for forwarded replies, splice them in, and write the batch.
    async fn finish_batch(&mut self) -> io::Result<()> {
        self.collect_forwarded().await?;
        self.settle();
        // The batch's replies are queued: its requests took this long.
        if !self.pending.is_empty() {
            let took = self.first_byte.map_or(Duration::ZERO, |t| t.elapsed());
            self.core.global.latency.with(self.core.id, |l| l.record(&mut self.pending, took));
        }
        // What is left in the buffer arrived by the last read at the latest.
        self.first_byte = (self.start < self.end).then_some(self.last_read);
        let b = &mut self.batch;
        if !b.out.is_empty() {
            self.stream.write_all(&b.out).await?;
            self.stream.flush().await?;
            self.core.shard.borrow_mut().counters.bytes_written += b.out.len() as u64;
            let b = &mut self.batch;
            b.out.clear();
            let keep = self.keep();
            let b = &mut self.batch;
            if b.out.capacity() > keep {
                b.out = Vec::with_capacity(INITIAL_BUFFER);
            }
            // After a splice this holds the batch's local replies.
            if self.spliced.capacity() > keep {
                self.spliced = Vec::new();
            }
            self.settle();
        }
        Ok(())
    }

    /// Answer `stats [args]`, gathering from every core when it needs to.
    async fn stats(&mut self, args: &[u8]) {
        let core = self.core.clone();
        let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let sub = words.next().unwrap_or(b"");
        let out = &mut self.batch.out;
        match sub {
            b"" | b"items" | b"slabs" | b"sizes" | b"cores" => {
                let per_core = self.gather_counters().await;
                let out = &mut self.batch.out;
                let mut total = Counters::default();
                for c in &per_core {
                    total.add(c);
                }
                match sub {
                    b"" => stats::render_general(out, &server_info(&core), &total),
                    b"items" => stats::render_items(out, &total),
                    b"slabs" => stats::render_slabs(out, &total),
                    b"sizes" => stats::render_sizes(out, &total),
                    _ => stats::render_cores(out, &per_core),
                }
            }
            b"reset" => {
                core.global.latency.reset();
                core.global.detail.reset();
                core.shard.borrow_mut().reset_stats();
                self.broadcast(|| Cmd::StatsReset).await;
                self.batch.out.extend_from_slice(encode::RESET);
            }
            b"settings" => render_settings(&core, out),
            b"latency" => latency::render(out, &core.global.latency.merged()),
            b"hotkeys" => match words.next() {
                None => crate::hotkeys::render(out, &core.global.hotkeys),
                Some(b"on") => {
                    core.global.hotkeys.set(true);
                    out.extend_from_slice(encode::OK);
                }
                Some(b"off") => {
                    core.global.hotkeys.set(false);
                    out.extend_from_slice(encode::OK);
                }
                Some(_) => out.extend_from_slice(b"CLIENT_ERROR usage: stats hotkeys [on|off]\r\n"),
            },
            b"detail" => match words.next() {
                Some(w @ (b"on" | b"off")) => {
                    core.global.detail.set(w == b"on");
                    out.extend_from_slice(encode::OK);
                }
                Some(b"dump") => crate::detail::render(out, &core.global.detail),
                _ => out.extend_from_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
            },
            b"cachedump" if !core.cfg().dump_enabled => {
                out.extend_from_slice(b"CLIENT_ERROR stats cachedump not allowed\r\n")
            }
            b"cachedump" => out.extend_from_slice(encode::END),
            b"repl" => {
                let figures = gather_repl(&core, &self.batch.wait).await;
                let out = &mut self.batch.out;
                crate::repl::report(core.global.repl.as_ref(), &figures, &mut |name, value| {
                    encode::encode_stat(out, name, value)
                });
                out.extend_from_slice(encode::END);
            }
            b"conns" => {
                let now = unix_now();
                core.render_conns(now, out);
                let slots = self.broadcast(|| Cmd::Conns).await;
                for s in slots {
                    self.batch.wait.with_slot(s, |b| self.batch.out.extend_from_slice(b));
                }
                self.batch.wait.clear();
                self.batch.out.extend_from_slice(encode::END);
            }
            _ => out.extend_from_slice(encode::ERROR),
        }
    }

    /// `lru_crawler`: `metadump` lists every live item (memcached's format,
    /// so that `memcached-tool HOST dump` and `keys` work), one segment of
    /// one core at a time, each written before the next is asked for, so
    /// that a dump of any size holds one segment's lines in memory.
    /// memcore's expiry crawler always runs: `crawl` and `enable` are OK,
    /// the settings that would stop or slow it are refused.
    async fn lru_crawler(&mut self, args: &[u8]) -> io::Result<()> {
        let words: Vec<&[u8]> = args.split(|&b| b == b' ').filter(|w| !w.is_empty()).collect();
        let reply: &[u8] = match words.as_slice() {
            // -X: memcached's answer, whatever the classes.
            [b"metadump", ..] if !self.core.cfg().dump_enabled => b"ERROR metadump not allowed\r\n",
            [b"metadump", which] => match dump_classes(which) {
                Some(true) => return self.metadump().await,
                Some(false) => encode::END,
                None => b"BADCLASS invalid class id\r\n",
            },
            [b"crawl", _] | [b"enable"] => encode::OK,
            [b"disable"] | [b"sleep", _] | [b"tocrawl", _] => {
                b"SERVER_ERROR memcore's expiry crawler always runs; its pace is not settable\r\n"
            }
            _ => encode::ERROR,
        };
        self.batch.out.extend_from_slice(reply);
        self.finish_batch().await
    }

    /// `watch [fetchers] [mutations]`: OK, then the streams' lines until
    /// the client goes or the server stops; what the client sends is read
    /// and ignored, as memcached does. Streams memcore cannot feed are
    /// refused; unknown ones answer ERROR, as memcached does (the
    /// connection then goes on). True when it streamed: the connection ends.
    async fn watch(&mut self, args: &[u8]) -> io::Result<bool> {
        use crate::watch::{FETCHERS, MUTATIONS};
        if !self.core.cfg().watch_enabled {
            self.batch.out.extend_from_slice(b"CLIENT_ERROR watch commands not allowed\r\n");
            return self.finish_batch().await.map(|()| false);
        }
        let mut streams = 0;
        for w in args.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
            streams |= match w {
                b"fetchers" => FETCHERS,
                b"mutations" => MUTATIONS,
                b"rawcmds" | b"evictions" | b"sysevents" | b"connevents" | b"deletions" | b"proxyreqs"
                | b"proxyevents" | b"proxyuser" => {
                    let name = String::from_utf8_lossy(w);
                    let line =
                        format!("SERVER_ERROR watch {name} is not supported by memcore (fetchers and mutations are)");
                    encode_line(&mut self.batch.out, &line);
                    return self.finish_batch().await.map(|()| false);
                }
                _ => {
                    self.batch.out.extend_from_slice(encode::ERROR);
                    return self.finish_batch().await.map(|()| false);
                }
            };
        }
        if streams == 0 {
            streams = FETCHERS;
        }
        self.batch.out.extend_from_slice(encode::OK);
        self.finish_batch().await?;
        let hub = self.core.global.watch.clone();
        let watcher = hub.add(streams);
        let r = self.stream_watch(&watcher).await;
        hub.remove(&watcher);
        r.map(|()| true)
    }

    async fn stream_watch(&mut self, watcher: &crate::watch::Watcher) -> io::Result<()> {
        let mut scratch = [0u8; 512];
        loop {
            let tick = async {
                glommio::timer::sleep(Duration::from_millis(10)).await;
                None
            };
            let read = async { Some(self.stream.read(&mut scratch).await) };
            if let Some(Ok(0) | Err(_)) = futures_lite::future::or(read, tick).await {
                return Ok(());
            }
            if self.core.stopping.get() {
                return Ok(());
            }
            let lines = watcher.take();
            if !lines.is_empty() {
                self.stream.write_all(&lines).await?;
                self.core.shard.borrow_mut().counters.bytes_written += lines.len() as u64;
            }
        }
    }

    async fn metadump(&mut self) -> io::Result<()> {
        let core = self.core.clone();
        for id in 0..core.ncores {
            let mut cursor = 0;
            loop {
                let now = core.clock.get();
                let next = if id == core.id {
                    core.shard.borrow_mut().metadump(cursor, now, &mut self.batch.out)
                } else {
                    let wait = &self.batch.wait;
                    let slot = wait.reserve(1);
                    core.peers[id].control(wait, slot, Cmd::Metadump { cursor });
                    wait.all_filled().await;
                    wait.with_slot(slot, |lines| self.batch.out.extend_from_slice(lines));
                    let next = match wait.take_typed(slot) {
                        Some(Typed::Cursor(next)) => next,
                        _ => None,
                    };
                    wait.clear();
                    next
                };
                self.finish_batch().await?;
                match next {
                    Some(c) if !core.stopping.get() => cursor = c,
                    _ => break,
                }
            }
        }
        self.batch.out.extend_from_slice(encode::END);
        self.finish_batch().await
    }

    async fn gather_counters(&mut self) -> Vec<Counters> {
        gather_counters(&self.core, &self.batch.wait).await
    }

    /// Send a control command to every other core and wait for the replies;
    /// returns their slots in core order. The caller clears `wait`.
    async fn broadcast(&mut self, cmd: impl Fn() -> Cmd) -> Vec<usize> {
        broadcast(&self.core, &self.batch.wait, cmd).await
    }
}

/// `lru_crawler metadump`'s argument: `all`, `hash`, or class ids
/// separated by commas. Some(true) when it names memcore's one class (1),
/// Some(false) for other valid ids, None for anything else (memcached's
/// BADCLASS).
fn dump_classes(which: &[u8]) -> Option<bool> {
    if which == b"all" || which == b"hash" {
        return Some(true);
    }
    let mut ours = false;
    for id in which.split(|&b| b == b',') {
        let id: u8 = std::str::from_utf8(id).ok()?.parse().ok()?;
        if !(1..64).contains(&id) {
            return None;
        }
        ours |= id == 1;
    }
    Some(ours)
}

/// Process-wide facts `stats` (and `/metrics`) print beside the counters.
pub fn server_info(core: &Core) -> ServerInfo {
    ServerInfo {
        pid: core.global.pid,
        started: core.global.started,
        now: unix_now(),
        version: version(),
        max_connections: core.cfg().conn_limit as u64,
        threads: core.ncores as u64,
        listeners: core.cfg().listen.len() as u64,
        idle_timeout: core.cfg().idle_timeout.is_some(),
    }
}

/// Every core's counters, in core order, through `wait` (left cleared).
pub async fn gather_counters(core: &Core, wait: &Rc<ConnWait>) -> Vec<Counters> {
    let slots = broadcast(core, wait, || Cmd::Stats).await;
    let mut per_core = Vec::with_capacity(core.ncores);
    let mut remote = slots.into_iter();
    for id in 0..core.ncores {
        if id == core.id {
            per_core.push(core.snapshot());
        } else if let Some(s) = remote.next() {
            per_core.push(match wait.take_typed(s) {
                Some(Typed::Counters(c)) => *c,
                _ => Counters::default(),
            });
        }
    }
    wait.clear();
    per_core
}

/// Replication figures summed over the cores, through `wait` (left cleared).
pub async fn gather_repl(core: &Core, wait: &Rc<ConnWait>) -> crate::repl::ReplFigures {
    let slots = broadcast(core, wait, || Cmd::ReplStats).await;
    let mut figures = core.shard.borrow().repl_figures();
    for s in slots {
        if let Some(Typed::Repl(f)) = wait.take_typed(s) {
            figures.add(&f);
        }
    }
    wait.clear();
    figures
}

fn render_settings(core: &Core, out: &mut Vec<u8>) {
    use crate::protocol::encode::encode_stat;
    let cfg = core.cfg();
    // Current values: cache_memlimit and verbosity change them at run time.
    encode_stat(out, "maxbytes", core.shard.borrow().store.limit() * core.ncores);
    encode_stat(out, "maxconns", cfg.conn_limit);
    encode_stat(out, "tcpport", cfg.tcp_port());
    encode_stat(out, "udpport", 0);
    let inter: Vec<String> = cfg.listen.iter().map(|a| a.ip().to_string()).collect();
    encode_stat(out, "inter", inter.join(","));
    let verbosity = match log::max_level() {
        log::LevelFilter::Trace => 3,
        log::LevelFilter::Debug => 2,
        _ => cfg.verbosity.min(1),
    };
    encode_stat(out, "verbosity", verbosity);
    encode_stat(out, "evictions", if cfg.evict { "on" } else { "off" });
    encode_stat(out, "num_threads", core.ncores);
    encode_stat(out, "stat_key_prefix", char::from(cfg.prefix_delimiter));
    encode_stat(out, "detail_enabled", if core.global.detail.on() { "yes" } else { "no" });
    encode_stat(out, "reqs_per_event", cfg.reqs_per_event);
    encode_stat(out, "cas_enabled", if cfg.use_cas { "yes" } else { "no" });
    encode_stat(out, "tcp_backlog", cfg.backlog);
    encode_stat(out, "item_size_max", cfg.item_size_max);
    encode_stat(out, "flush_enabled", if cfg.flush_enabled { "yes" } else { "no" });
    encode_stat(out, "idle_timeout", cfg.idle_timeout.map_or(0, |t| t.as_secs()));
    // memcached's names for -Y and -Z (its "(null)" and "NULL" for unset).
    encode_stat(out, "auth_enabled_sasl", "no");
    encode_stat(out, "auth_enabled_ascii", cfg.auth_file.as_deref().unwrap_or("no"));
    let tls = cfg.tls.as_ref();
    encode_stat(out, "ssl_enabled", if tls.is_some() { "yes" } else { "no" });
    encode_stat(out, "ssl_chain_cert", tls.map_or("(null)", |t| &t.chain_cert));
    encode_stat(out, "ssl_key", tls.map_or("(null)", |t| &t.key));
    encode_stat(out, "ssl_verify_mode", tls.map_or(0, |t| t.verify_mode));
    encode_stat(out, "ssl_ca_cert", tls.and_then(|t| t.ca_cert.as_deref()).unwrap_or("NULL"));
    let min = tls.map_or(crate::config::TlsMinVersion::Tls12, |t| t.min_version);
    encode_stat(out, "ssl_min_version", if min == crate::config::TlsMinVersion::Tls13 { "tlsv1.3" } else { "tlsv1.2" });
    encode_stat(out, "conn_memory", cfg.conn_memory);
    encode_stat(out, "memory_per_core", core.shard.borrow().store.limit());
    encode_stat(out, "cores", cfg.cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","));
    // What the cores run with (small cores do not compress).
    let z = &super::compress_for(cfg, 1);
    encode_stat(out, "compress", if z.enabled { "on" } else { "off" });
    encode_stat(out, "compress_min", z.min_size);
    encode_stat(out, "compress_level", z.level);
    let dict = match z.dict {
        crate::storage::DictMode::Off => "off",
        crate::storage::DictMode::Auto => "auto",
        crate::storage::DictMode::Loaded(_) => "file",
    };
    encode_stat(out, "compress_dict", dict);
    out.extend_from_slice(encode::END);
}

impl<S> Drop for Conn<S> {
    fn drop(&mut self) {
        self.charge.release(self.core.budget());
    }
}

/// Whether the socket holds bytes not read yet (FIONREAD; the stream is
/// unbuffered, so nothing is held on this side).
fn input_waiting(stream: &impl std::os::fd::AsRawFd) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD stores one int through the pointer given.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    r == 0 && n > 0
}
