//! The one place that decides "run here or forward".
//!
//! Every key is owned by one core (`owner`). A connection hands each parsed
//! request to `dispatch` (which hands retrievals to `get`); a request for a key this
//! core owns runs at once on its `Shard`, any other travels to the owner
//! over the mesh and its reply is spliced back into the batch in request
//! order. Keyless commands (flush_all, cache_memlimit, stats gathering) go
//! to every core.
//!
//! ```text
//!  server::conn ──parsed request──▶ dispatch / get ──owner(key) == here──▶ Shard::execute
//!        ▲                                 │ otherwise
//!        │ Batch (spliced, in order)       ▼
//!        └──────────── ConnWait ◀── mesh (Peer, Frame) ──▶ owner: serve_frame
//! ```
//!
//! - `mesh`: the key-to-core hash, frames, reply slots, the per-peer FIFO.
//! - `shard`: one core's store plus its counters; runs a request on it.
//! - `meta`: the meta commands (mg ms md ma me) on the owning core's shard.
//! - `state`: one core's state (`Core`), what all cores share (`Global`),
//!   serving forwarded frames and the mesh's sender and receiver tasks.
//! - `dispatch`: the decision, the multi-get split, the splice.
//! - `budget`: the memory one core's connections may hold.
//! - `replicate`: the handle replication's link tasks are given
//!   (`repl::host::Host` for `Core`), and routing a peer's ops to their
//!   owner cores.
//!
//! Imports protocol, storage, stats, config and repl (its per-core state
//! and its `Host` trait; repl never imports route); must not import
//! `server`, which sits above (sockets, listeners, connection lifecycle,
//! signals).

pub mod budget;
pub mod dispatch;
pub mod mesh;
pub mod meta;
pub mod replicate;
pub mod shard;
pub mod state;

pub use dispatch::{Batch, dispatch, set_verbosity, version};
pub use mesh::{owner, set_owner_key};
pub use shard::Shard;
pub use state::{ConnInfo, Core, GET_TOO_LARGE, Global, Shutdown, unix_now};
