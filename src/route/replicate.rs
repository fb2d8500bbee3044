//! What replication gets from a core: `route`'s side of the narrow handle
//! (`repl::host::Host`) its link tasks are given, and the routing of a
//! peer's ops to the cores that own their keys.
//!
//! Replication sees a core only through this handle: its store and
//! replication state, its backlog, its clock, and `apply`. Imports repl
//! (the handle's trait, the wire's op reader) and storage; must not import
//! `server`.

use std::future::Future;
use std::rc::Rc;

use crate::repl::apply::ReplShard;
use crate::repl::host::Host;
use crate::repl::link::ReplCore;
use crate::repl::wire::{self, Reader};
use crate::repl::{ReplShared, unix_ms};
use crate::storage::Store;

use super::mesh::{Cmd, ConnWait, owner};
use super::state::Core;

impl Host for Core {
    fn core_id(&self) -> usize {
        self.id
    }

    fn shared(&self) -> Option<&ReplShared> {
        self.global.repl.as_ref()
    }

    fn local(&self) -> Option<&ReplCore> {
        self.repl.as_ref()
    }

    fn now(&self) -> u64 {
        self.clock.get()
    }

    fn stopping(&self) -> bool {
        self.stopping.get()
    }

    fn item_size_max(&self) -> usize {
        self.cfg().item_size_max
    }

    fn with_store<R>(&self, f: impl FnOnce(&mut Store, &mut ReplShard) -> R) -> Option<R> {
        let mut shard = self.shard.borrow_mut();
        let shard = &mut *shard;
        shard.repl.as_mut().map(|r| f(&mut shard.store, r))
    }

    fn apply(&self, ops: &[u8]) -> impl Future<Output = ()> {
        apply_routed(self, ops)
    }
}

/// Apply a peer's ops on the cores that own their keys (a flush on every
/// core), in order per core, and wait until all have.
async fn apply_routed(core: &Core, ops: &[u8]) {
    let n = core.ncores;
    let now = core.clock.get();
    if n == 1 {
        core.with_store(|store, r| r.apply_ops(store, ops, now, unix_ms()));
        return;
    }
    let mut per_core: Vec<Vec<u8>> = vec![Vec::new(); n];
    let mut r = Reader(ops);
    while !r.is_empty() {
        let before = r.0;
        let Ok(op) = wire::next_op(&mut r) else { break };
        let bytes = &before[..before.len() - r.0.len()];
        match op.key() {
            Some(key) => per_core[owner(key, n)].extend_from_slice(bytes),
            None => per_core.iter_mut().for_each(|c| c.extend_from_slice(bytes)),
        }
    }
    let wait = Rc::new(ConnWait::default());
    for (id, ops) in per_core.iter().enumerate() {
        if ops.is_empty() || id == core.id {
            continue;
        }
        let peer = &core.peers[id];
        let (start, end) = {
            let mut f = peer.outbox.borrow_mut();
            let start = f.arena.len();
            f.arena.extend_from_slice(ops);
            (start, f.arena.len())
        };
        let slot = wait.reserve(1);
        peer.control(&wait, slot, Cmd::Apply { start, end });
    }
    if !per_core[core.id].is_empty() {
        core.with_store(|store, r| r.apply_ops(store, &per_core[core.id], now, unix_ms()));
    }
    if wait.has_pending() {
        wait.all_filled().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_replication_wire_takes_every_key_a_client_can_store() {
        assert_eq!(crate::repl::wire::KEY_MAX, crate::protocol::KEY_MAX_LENGTH);
    }
}
