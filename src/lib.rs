//! memcore: a memcached-compatible, thread-per-core cache server.
//!
//! Layers, from the wire inwards: `protocol` (pure parsing and encoding),
//! `server` (glommio executors, listeners, connections), `shard` (key to
//! core, forwarding over the mesh), `exec` (running a request on the owning
//! core), `storage` (one core's items, runtime-free), `stats` (counters with
//! memcached's names), `config` (the command line), `repl` (replication
//! between nodes).

pub mod config;
pub mod exec;
pub mod protocol;
pub mod repl;
pub mod server;
pub mod shard;
pub mod stats;
pub mod storage;
