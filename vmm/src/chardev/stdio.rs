//! `-chardev stdio` / `-serial stdio`: guest output to stdout, input from
//! stdin. When stdin is a terminal it is put in raw mode (keeping `ISIG`, so
//! Ctrl-C still reaches the VMM, like QEMU's default `signal=on`) and the
//! original mode is restored when the backend is dropped or the process
//! exits (an `atexit` hook covers `std::process::exit`).

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

use super::{read_fd, write_fd, CharBackend};

static SAVED_TERMIOS: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Restore stdin's terminal mode if this process changed it. Safe to call
/// more than once and from any thread (not from a signal handler).
pub fn restore_terminal() {
    let saved = SAVED_TERMIOS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(t) = saved {
        // SAFETY: tcsetattr with a termios value previously read from fd 0.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    }
}

extern "C" fn restore_at_exit() {
    restore_terminal();
}

/// stdin/stdout backend.
#[derive(Debug)]
pub struct StdioBackend {
    raw: bool,
}

impl StdioBackend {
    /// Use stdin/stdout; make the terminal raw when stdin is one.
    pub fn new() -> io::Result<Self> {
        // SAFETY: isatty on fd 0.
        let tty = unsafe { libc::isatty(0) } == 1;
        if tty {
            // SAFETY: tcgetattr into a zeroed termios owned here.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: as above, fd 0 is a terminal.
            if unsafe { libc::tcgetattr(0, &mut t) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut raw = t;
            // SAFETY: cfmakeraw only edits the struct.
            unsafe { libc::cfmakeraw(&mut raw) };
            raw.c_lflag |= libc::ISIG;
            raw.c_oflag |= libc::OPOST | libc::ONLCR;
            {
                let mut saved = SAVED_TERMIOS.lock().unwrap_or_else(|p| p.into_inner());
                if saved.is_none() {
                    *saved = Some(t);
                    // SAFETY: registering a plain extern "C" fn with atexit.
                    unsafe { libc::atexit(restore_at_exit) };
                }
            }
            // SAFETY: tcsetattr with a valid termios on fd 0.
            if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self { raw: tty })
    }
}

impl Drop for StdioBackend {
    fn drop(&mut self) {
        if self.raw {
            restore_terminal();
        }
    }
}

fn poll_readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd with zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLIN | libc::POLLHUP) != 0
}

impl CharBackend for StdioBackend {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        write_fd(1, data)
    }
    fn input_fd(&self) -> Option<RawFd> {
        Some(0)
    }
    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !poll_readable(0) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        read_fd(0, buf)
    }
    fn describe(&self) -> String {
        "stdio".into()
    }
}
