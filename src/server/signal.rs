//! SIGINT/SIGTERM and SIGHUP: blocked in every thread, awaited by one
//! thread. SIGINT/SIGTERM become a wake-up that every executor can await
//! (`route::Shutdown`, triggered by the signal thread); SIGHUP re-reads the
//! config file (`reload`) and the `-Y` auth file and `-Z` certificates, and
//! never ends the process: a cache must not drop its contents because the
//! terminal that started it went away.
//!
//! glommio has no signal support, and a handler interrupting an executor in
//! io_uring_enter is trouble; so the signals are blocked before any executor
//! starts (threads inherit the mask) and taken with sigwait.
//!
//! Imports nothing of memcore's; nothing below imports it.

fn handled_set() -> libc::sigset_t {
    // SAFETY: plain libc calls on a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Block SIGINT, SIGTERM and SIGHUP in this thread and every thread it
/// starts, for `wait_signal` to take.
pub fn block_termination_signals() {
    let set = handled_set();
    // SAFETY: changes this thread's signal mask only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// What a signal asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM (its number): shut down.
    Terminate(i32),
    /// SIGHUP: read the auth file and the certificates again.
    Reload,
}

/// Wait for SIGINT, SIGTERM or SIGHUP (blocked first).
pub fn wait_signal() -> Signal {
    let set = handled_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait writes the signal number into `sig`.
    unsafe { while libc::sigwait(&set, &mut sig) != 0 {} }
    if sig == libc::SIGHUP { Signal::Reload } else { Signal::Terminate(sig) }
}
