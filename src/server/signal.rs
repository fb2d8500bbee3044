//! SIGINT/SIGTERM/SIGHUP: blocked in every thread, awaited by one thread.
//! SIGINT and SIGTERM become a wake-up that every executor can await
//! (`route::Shutdown`, triggered by the signal thread); SIGHUP re-reads the
//! config file (`reload`). A cache must not drop its contents because the
//! terminal that started it went away: SIGHUP never stops it.
//!
//! glommio has no signal support, and a handler interrupting an executor in
//! io_uring_enter is trouble; so the signals are blocked before any executor
//! starts (threads inherit the mask) and taken with sigwait.
//!
//! Imports nothing of memcore's; nothing below imports it.

fn termination_set() -> libc::sigset_t {
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
/// starts.
pub fn block_termination_signals() {
    let set = termination_set();
    // SAFETY: changes this thread's signal mask only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait for SIGINT, SIGTERM or SIGHUP (blocked first); returns its number.
pub fn wait_termination_signal() -> i32 {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait writes the signal number into `sig`.
    unsafe { while libc::sigwait(&set, &mut sig) != 0 {} }
    sig
}
