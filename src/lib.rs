//! memcore: a memcached-compatible, thread-per-core cache server.
//!
//! Rooms, from the sockets inwards (arrows point down this list):
//! `server` (glommio executors, listeners, connections, signals), `route`
//! (run here or forward: key to core, the cross-core mesh, ordered replies,
//! the multi-get split, a request run on its owning core's `Shard`), `repl`
//! (replication between nodes), `stats` (counters with memcached's names),
//! `config` (the command line), `protocol` (pure parsing and encoding),
//! `storage` (one core's items, runtime-free). See docs/architecture.md.

pub mod config;
pub mod protocol;
pub mod repl;
pub mod route;
pub mod server;
pub mod stats;
pub mod storage;
