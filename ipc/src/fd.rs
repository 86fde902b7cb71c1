//! [`Fd`]: a file descriptor carried inside a message, crosvm-`Tube` style.
//!
//! A message type simply has a field of type `Fd`. When the message is sent
//! over a [`crate::Channel`], the `Fd` serializes as a small index into the
//! datagram's `SCM_RIGHTS` list, and the descriptor itself travels as
//! ancillary data:
//!
//! ```text
//!   message { a: 7, f: Fd(12), g: Fd(40) }   (12, 40: fds in the sender)
//!        | serialize (encode context collects raw fds)
//!   bytes  [.. 7 .. idx 0 .. idx 1 ..]   +   SCM_RIGHTS [12, 40]
//!        | sendmsg / recvmsg (MSG_CMSG_CLOEXEC)
//!   bytes  [.. 7 .. idx 0 .. idx 1 ..]   +   fds [5, 6]  (new numbers)
//!        | deserialize (decode context hands out each fd once)
//!   message { a: 7, f: Fd(5), g: Fd(6) }
//! ```
//!
//! The contexts are thread-local and installed only for the duration of one
//! encode or decode ([`crate::codec`]). On decode, an index that was not
//! attached ([`IpcError::MissingFd`]) or that is used twice
//! ([`IpcError::DuplicateFd`]) is an error, and every attached fd that the
//! message did not take is closed when decoding ends, success or not.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use serde::{de, ser, Deserialize, Deserializer, Serialize, Serializer};

use crate::{IpcError, MAX_FDS};

/// An owned file descriptor that can travel inside an IPC message.
///
/// It closes its descriptor when dropped, like [`OwnedFd`]. Two `Fd`s compare
/// equal when they refer to the same open file (same device and inode), so a
/// message compares equal to its copy received on the other side of a
/// channel.
pub struct Fd(OwnedFd);

impl Fd {
    /// Wraps an owned descriptor.
    pub fn new(fd: impl Into<OwnedFd>) -> Fd {
        Fd(fd.into())
    }

    /// Gives the descriptor back.
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }

    /// Duplicates the descriptor (`F_DUPFD_CLOEXEC`).
    pub fn try_clone(&self) -> std::io::Result<Fd> {
        self.0.try_clone().map(Fd)
    }

    /// `(st_dev, st_ino)` of the open file, for identity comparisons.
    fn identity(&self) -> Option<(u64, u64)> {
        // SAFETY: fstat writes into the zeroed stat buffer we pass and reads
        // only the descriptor, which `self` keeps open.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(self.0.as_raw_fd(), &mut st) == 0 {
                Some((st.st_dev, st.st_ino))
            } else {
                None
            }
        }
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fd({})", self.0.as_raw_fd())
    }
}

impl PartialEq for Fd {
    fn eq(&self, other: &Fd) -> bool {
        match (self.identity(), other.identity()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd(fd)
    }
}

impl From<File> for Fd {
    fn from(f: File) -> Fd {
        Fd(f.into())
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> OwnedFd {
        fd.0
    }
}

impl From<Fd> for File {
    fn from(fd: Fd) -> File {
        File::from(fd.0)
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl IntoRawFd for Fd {
    fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

impl FromRawFd for Fd {
    /// # Safety
    /// `fd` must be an open descriptor owned by nobody else.
    unsafe fn from_raw_fd(fd: RawFd) -> Fd {
        // SAFETY: forwarded from the caller's contract.
        Fd(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Collects the raw fds of a message being serialized.
#[derive(Default)]
pub(crate) struct EncodeContext {
    pub(crate) fds: Vec<RawFd>,
    pub(crate) error: Option<IpcError>,
}

/// Hands out the fds attached to a datagram being deserialized.
pub(crate) struct DecodeContext {
    pub(crate) fds: Vec<Option<OwnedFd>>,
    pub(crate) error: Option<IpcError>,
}

thread_local! {
    static ENCODE: RefCell<Option<EncodeContext>> = const { RefCell::new(None) };
    static DECODE: RefCell<Option<DecodeContext>> = const { RefCell::new(None) };
}

/// Runs `f` with an encode context installed; returns its result and the
/// context. A previous context (re-entrant use) is restored afterwards, also
/// on panic.
pub(crate) fn with_encode_context<R>(f: impl FnOnce() -> R) -> (R, EncodeContext) {
    struct Restore(Option<EncodeContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            ENCODE.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = ENCODE.with(|c| c.borrow_mut().replace(EncodeContext::default()));
    let _restore = Restore(prev);
    let r = f();
    let ctx = ENCODE
        .with(|c| c.borrow_mut().take())
        .expect("encode context installed above");
    (r, ctx)
}

/// Runs `f` with a decode context holding `fds`; returns its result and any
/// fd error recorded. Every fd the message did not take is closed before
/// this returns, also on panic.
pub(crate) fn with_decode_context<R>(
    fds: Vec<OwnedFd>,
    f: impl FnOnce() -> R,
) -> (R, Option<IpcError>) {
    struct Restore(Option<DecodeContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            // Dropping the replaced context closes the fds nobody took.
            let _ours = DECODE.with(|c| std::mem::replace(&mut *c.borrow_mut(), prev));
        }
    }
    let ctx = DecodeContext {
        fds: fds.into_iter().map(Some).collect(),
        error: None,
    };
    let prev = DECODE.with(|c| c.borrow_mut().replace(ctx));
    let _restore = Restore(prev);
    let r = f();
    let error = DECODE.with(|c| c.borrow_mut().as_mut().and_then(|ctx| ctx.error.take()));
    (r, error)
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = ENCODE.with(|c| {
            let mut c = c.borrow_mut();
            let Some(ctx) = c.as_mut() else {
                return Err(IpcError::FdOutsideChannel.to_string());
            };
            if ctx.fds.len() >= MAX_FDS {
                let err = IpcError::TooManyFds {
                    count: ctx.fds.len() + 1,
                    max: MAX_FDS,
                };
                let msg = err.to_string();
                ctx.error = Some(err);
                return Err(msg);
            }
            ctx.fds.push(self.0.as_raw_fd());
            Ok(ctx.fds.len() as u32 - 1)
        });
        match index {
            Ok(i) => s.serialize_u32(i),
            Err(msg) => Err(ser::Error::custom(msg)),
        }
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fd, D::Error> {
        let index = u32::deserialize(d)?;
        let taken = DECODE.with(|c| {
            let mut c = c.borrow_mut();
            let Some(ctx) = c.as_mut() else {
                return Err(IpcError::FdOutsideChannel.to_string());
            };
            let attached = ctx.fds.len();
            let err = match ctx.fds.get_mut(index as usize) {
                Some(slot) => match slot.take() {
                    Some(fd) => return Ok(Fd(fd)),
                    None => IpcError::DuplicateFd { index },
                },
                None => IpcError::MissingFd { index, attached },
            };
            let msg = err.to_string();
            ctx.error = Some(err);
            Err(msg)
        });
        taken.map_err(de::Error::custom)
    }
}

#[cfg(feature = "proptest")]
impl proptest::arbitrary::Arbitrary for Fd {
    type Parameters = ();
    type Strategy = proptest::strategy::BoxedStrategy<Fd>;

    /// A fresh memfd per value, so every generated `Fd` has its own inode.
    fn arbitrary_with(_: ()) -> Self::Strategy {
        use proptest::strategy::Strategy;
        proptest::strategy::Just(())
            .prop_map(|()| {
                // SAFETY: memfd_create takes a NUL-terminated name and flags
                // and returns a new descriptor (or -1), which we own.
                let raw =
                    unsafe { libc::memfd_create(c"ipc-proptest".as_ptr(), libc::MFD_CLOEXEC) };
                assert!(raw >= 0, "memfd_create failed");
                // SAFETY: `raw` is a fresh descriptor owned by nobody else.
                Fd(unsafe { OwnedFd::from_raw_fd(raw) })
            })
            .boxed()
    }
}
