// memcore patch: this module used to pick between the `membarrier` syscall,
// an `mprotect` trick and plain fences (code imported from
// jeehoonkang/membarrier-rs). Only the fence is left; see `heavy`.

use core::sync::atomic;

/// The barrier an executor issues after announcing that it is about to
/// sleep and before it checks its channels one last time.
///
/// A SeqCst fence. `SleepNotifier::notify`, the producer side, fences too,
/// so either the producer sees the sleep flag or the sleeper sees the
/// message. The `membarrier` syscall glommio used here let producers skip
/// their fence, but it interrupted every CPU running another executor each
/// time one went to sleep: on a virtual machine, an IPI and a VM exit per
/// sleep.
#[inline]
pub(crate) fn heavy() {
    atomic::fence(atomic::Ordering::SeqCst)
}
