//! `-chardev stdio` / `-serial stdio`: guest output to stdout, input from
//! stdin. When the input fd is a terminal it is put in raw mode (keeping
//! `ISIG`, so Ctrl-C still reaches the VMM, like QEMU's default `signal=on`,
//! and output post-processing so `\n` still returns the carriage) and the
//! original mode is restored when the backend is dropped or the process
//! exits (an `atexit` hook covers `std::process::exit`).

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

use super::{read_fd, write_fd, CharBackend};

/// Terminals this process made raw, with their original modes.
static SAVED_TERMIOS: Mutex<Vec<(RawFd, libc::termios)>> = Mutex::new(Vec::new());

fn restore_fd(fd: RawFd) {
    let mut saved = SAVED_TERMIOS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = saved.iter().position(|(f, _)| *f == fd) {
        let (_, t) = saved.remove(i);
        // SAFETY: tcsetattr with a termios value previously read from `fd`.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
}

/// Restore every terminal this process put in raw mode. Safe to call more
/// than once and from any thread (not from a signal handler).
pub fn restore_terminal() {
    let all: Vec<_> = std::mem::take(&mut *SAVED_TERMIOS.lock().unwrap_or_else(|p| p.into_inner()));
    for (fd, t) in all {
        // SAFETY: tcsetattr with a termios value previously read from `fd`.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
}

extern "C" fn restore_at_exit() {
    restore_terminal();
}

/// stdin/stdout backend.
#[derive(Debug)]
pub struct StdioBackend {
    in_fd: RawFd,
    out_fd: RawFd,
    raw: bool,
}

impl StdioBackend {
    /// Use stdin/stdout; make the terminal raw when stdin is one.
    pub fn new() -> io::Result<Self> {
        Self::with_fds(0, 1)
    }

    /// Use `in_fd`/`out_fd` (which stay owned by the caller).
    pub fn with_fds(in_fd: RawFd, out_fd: RawFd) -> io::Result<Self> {
        // SAFETY: isatty on a caller-provided fd.
        let tty = unsafe { libc::isatty(in_fd) } == 1;
        if tty {
            // SAFETY: tcgetattr into a zeroed termios owned here.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: as above, `in_fd` is a terminal.
            if unsafe { libc::tcgetattr(in_fd, &mut t) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut raw = t;
            // SAFETY: cfmakeraw only edits the struct.
            unsafe { libc::cfmakeraw(&mut raw) };
            raw.c_lflag |= libc::ISIG;
            raw.c_oflag |= libc::OPOST | libc::ONLCR;
            {
                static AT_EXIT: std::sync::Once = std::sync::Once::new();
                // SAFETY: registering a plain extern "C" fn with atexit.
                AT_EXIT.call_once(|| unsafe {
                    libc::atexit(restore_at_exit);
                });
                let mut saved = SAVED_TERMIOS.lock().unwrap_or_else(|p| p.into_inner());
                if !saved.iter().any(|(f, _)| *f == in_fd) {
                    saved.push((in_fd, t));
                }
            }
            // SAFETY: tcsetattr with a valid termios on a terminal fd.
            if unsafe { libc::tcsetattr(in_fd, libc::TCSANOW, &raw) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self {
            in_fd,
            out_fd,
            raw: tty,
        })
    }
}

impl Drop for StdioBackend {
    fn drop(&mut self) {
        if self.raw {
            restore_fd(self.in_fd);
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
        write_fd(self.out_fd, data)
    }
    fn input_fd(&self) -> Option<RawFd> {
        Some(self.in_fd)
    }
    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // stdin is not switched to O_NONBLOCK (that would leak into the
        // shell's terminal after exit): read only when poll says so.
        if !poll_readable(self.in_fd) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        read_fd(self.in_fd, buf)
    }
    fn describe(&self) -> String {
        "stdio".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn lflag(fd: RawFd) -> libc::tcflag_t {
        // SAFETY: tcgetattr into a zeroed termios on a terminal fd.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag
    }

    #[test]
    fn terminal_raw_while_open_and_restored() {
        let p = nix::pty::openpty(None, None).unwrap();
        let fd = p.slave.as_raw_fd();
        assert_ne!(lflag(fd) & libc::ICANON, 0);
        let mut b = StdioBackend::with_fds(fd, fd).unwrap();
        let l = lflag(fd);
        assert_eq!(l & (libc::ICANON | libc::ECHO), 0, "not raw");
        assert_ne!(l & libc::ISIG, 0, "Ctrl-C must still signal");
        // Input arrives byte by byte (no line discipline).
        write_fd(p.master.as_raw_fd(), b"k").unwrap();
        let mut buf = [0u8; 4];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let n = loop {
            match b.read_input(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"k");
        drop(b);
        let l = lflag(fd);
        assert_ne!(l & libc::ICANON, 0, "mode not restored");
        assert_ne!(l & libc::ECHO, 0);
    }

    #[test]
    fn pipe_is_left_alone() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let b = StdioBackend::with_fds(r.as_raw_fd(), w.as_raw_fd()).unwrap();
        assert!(!b.raw);
        assert_eq!(b.describe(), "stdio");
    }
}
