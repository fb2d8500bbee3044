//! The thread that trains a core's compression dictionary: storage hands
//! out a `TrainingJob` (`Store::take_training`), this runs it off the core
//! at the lowest priority and on any CPU, and the core's timer task gives
//! the result back (`Store::install_dictionary`).
//!
//! Owns the thread, its affinity and priority; must not import route,
//! repl or protocol.

use std::sync::mpsc::{Receiver, TryRecvError};

use crate::storage::{Store, TrainingJob};

/// One core's training: at most one job in flight.
#[derive(Default)]
pub struct Trainer {
    running: Option<Receiver<Option<Vec<u8>>>>,
}

impl Trainer {
    /// Give a finished dictionary to the store, and start training on the
    /// samples it has gathered, if any. Called from the core's timer.
    pub fn poll(&mut self, store: &mut Store) {
        if let Some(rx) = &self.running {
            match rx.try_recv() {
                Ok(dict) => {
                    self.running = None;
                    store.install_dictionary(dict);
                }
                Err(TryRecvError::Disconnected) => {
                    self.running = None;
                    store.install_dictionary(None);
                }
                Err(TryRecvError::Empty) => return,
            }
        }
        if let Some(job) = store.take_training() {
            match spawn(job) {
                Some(rx) => self.running = Some(rx),
                None => store.install_dictionary(None),
            }
        }
    }
}

fn spawn(job: TrainingJob) -> Option<Receiver<Option<Vec<u8>>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("memcore-dict".into()).spawn(move || {
        run_in_background();
        let dict = job.train();
        // Training's workspace (several MiB) is freed but would stay with
        // this thread's allocator arena: give it back.
        // SAFETY: malloc_trim only releases free memory.
        unsafe {
            libc::malloc_trim(0);
        }
        let _ = tx.send(dict);
    });
    spawned.ok().map(|_| rx)
}

/// The training thread inherits its core's CPU pinning: let it run on any
/// CPU, at the lowest priority, so that it takes time from no executor.
fn run_in_background() {
    // SAFETY: plain system calls on the calling thread with an owned mask;
    // failures leave the thread as it was.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut all);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &all);
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}
