//! SIGINT/SIGTERM: blocked in every thread, awaited by one thread, and
//! turned into a wake-up that every executor can await (`route::Shutdown`,
//! triggered by the signal thread).
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
        set
    }
}

/// Block SIGINT and SIGTERM in this thread and every thread it starts, and
/// ignore SIGHUP: a cache must not drop its contents because the terminal
/// that started it went away, and it has no configuration to reload.
pub fn block_termination_signals() {
    let set = termination_set();
    // SAFETY: changes this thread's signal mask and SIGHUP's disposition only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// Wait for SIGINT or SIGTERM (must be blocked first); returns its number.
pub fn wait_termination_signal() -> i32 {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait writes the signal number into `sig`.
    unsafe { while libc::sigwait(&set, &mut sig) != 0 {} }
    sig
}
