//! A one-task wake-up flag for tasks of one executor (a core): the mesh's
//! sender tasks and replication's link tasks sleep on one until there is
//! work. No runtime calls, no atomics: a flag and the waker of the task
//! that waits.
//!
//! A leaf, as `item.rs`: imports nothing of memcore's, so that `route` and
//! `repl` can both use it without one of them importing the other.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};

/// Set by `notify`, taken by the one task awaiting `wait`.
#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}
