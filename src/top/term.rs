//! The terminal, by hand: raw input so that `q` quits without Enter, the
//! alternate screen, and frames drawn over the last one (cursor home, each
//! line cleared to its end, the rest of the screen cleared once) so that
//! nothing flickers, locally or over ssh. A few termios calls and ANSI
//! sequences every terminal since the VT100 knows; no terminal library.

use std::io::Write;
use std::os::fd::RawFd;
use std::time::Duration;

const STDIN: RawFd = 0;
const STDOUT: RawFd = 1;

/// Raw mode and the alternate screen while it lives; the terminal as it
/// was when dropped (also on an error or a panic unwinding through).
pub struct Screen {
    saved: Option<libc::termios>,
}

impl Screen {
    /// Enter the alternate screen; raw input when stdin is a terminal.
    pub fn enter() -> Screen {
        // SAFETY: isatty and tc[gs]etattr only read and write the struct we pass.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::isatty(STDIN) == 1 && libc::tcgetattr(STDIN, &mut t) == 0 {
                let saved = t;
                // No line buffering, echo or signals: Ctrl-C arrives as a
                // byte and quits like q, so the terminal is always restored.
                // Output processing (\n) stays.
                t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
                t.c_cc[libc::VMIN] = 0;
                t.c_cc[libc::VTIME] = 0;
                libc::tcsetattr(STDIN, libc::TCSANOW, &t);
                Some(saved)
            } else {
                None
            }
        };
        // Alternate screen, cursor hidden, screen cleared once.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
        let _ = out.flush();
        Screen { saved }
    }

    /// Draw `lines` over the previous frame, fitted to the window.
    pub fn draw(&self, lines: &[String]) {
        let (rows, cols) = size();
        let mut buf = String::from("\x1b[H");
        for line in lines.iter().take(rows.saturating_sub(1).max(1)) {
            buf.extend(line.chars().take(cols));
            buf.push_str("\x1b[K\r\n");
        }
        buf.push_str("\x1b[J");
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(buf.as_bytes());
        let _ = out.flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
        if let Some(t) = self.saved {
            // SAFETY: restores the attributes read in `enter`.
            unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &t) };
        }
    }
}

/// Rows and columns of the terminal (24x80 when stdout is not one).
fn size() -> (usize, usize) {
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(STDOUT, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
        (ws.ws_row as usize, ws.ws_col as usize)
    } else {
        (24, 80)
    }
}

/// Wait up to `timeout` for a key; true when it asks to quit (q, Q, or
/// Ctrl-C / Ctrl-D in raw mode, or stdin closed).
pub fn wait_quit(timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd { fd: STDIN, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd, owned here.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                // stdin cannot be polled: just wait out the interval.
                std::thread::sleep(left);
            }
            continue;
        }
        let mut b = [0u8; 64];
        // SAFETY: reads into our buffer.
        let r = unsafe { libc::read(STDIN, b.as_mut_ptr().cast(), b.len()) };
        if r == 0 {
            // End of input (stdin is /dev/null or closed): keep refreshing
            // until the interval ends, never read it again.
            std::thread::sleep(left);
            return false;
        }
        if r > 0 && b[..r as usize].iter().any(|&c| matches!(c, b'q' | b'Q' | 3 | 4)) {
            return true;
        }
    }
}
