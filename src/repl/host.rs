//! What replication needs from the core it runs on, and nothing more: the
//! narrow handle its link tasks are given. `route` implements it for its
//! per-core state; replication never sees the mesh, the connections or the
//! rest of a core.
//!
//! Through it the link tasks reach this core's store and replication state
//! (to seal pending ops, stream a snapshot, apply a peer's ops), the
//! backlog and the links' wake-ups, the core's clock, and one routing
//! service: apply a peer's ops on the cores that own their keys.
//!
//! Imports storage; must not import `route` or `server` (they sit above
//! and implement or hold this).

use std::future::Future;

use super::ReplShared;
use super::apply::ReplShard;
use super::link::ReplCore;
use crate::storage::Store;

pub trait Host: 'static {
    /// This core's id: its links' index in `ReplShared`.
    fn core_id(&self) -> usize;

    /// What every core shares about replication; None when the node does
    /// not replicate.
    fn shared(&self) -> Option<&ReplShared>;

    /// This core's outgoing stream (its backlog and its links' wake-ups);
    /// None when the node does not replicate.
    fn local(&self) -> Option<&ReplCore>;

    /// The core's clock, Unix seconds.
    fn now(&self) -> u64;

    /// True once the server is shutting down.
    fn stopping(&self) -> bool;

    /// The largest value this node keeps (`-I`): longer ones from a peer
    /// are skipped as they arrive.
    fn item_size_max(&self) -> usize;

    /// Run `f` on this core's store and its replication state; None when
    /// the node does not replicate. `f` must not await: the store is the
    /// core's, and its requests wait meanwhile.
    fn with_store<R>(&self, f: impl FnOnce(&mut Store, &mut ReplShard) -> R) -> Option<R>;

    /// Apply a peer's ops (`wire` encoding, whole ops) on the cores that
    /// own their keys (a flush on every core), in order per core; resolves
    /// once every core has.
    fn apply(&self, ops: &[u8]) -> impl Future<Output = ()>;
}
