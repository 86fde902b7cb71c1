//! The one error type of the `ipc` crate.

use crate::ServiceKind;

/// Everything that can go wrong while talking over a [`crate::Channel`].
///
/// Every variant is a clean, recoverable error: malformed input from the
/// peer never panics, and the peer going away is [`IpcError::Disconnected`].
/// No variant carries message contents, so errors are safe to log even when
/// the message held secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpcError {
    /// The peer closed its end (EOF, `ECONNRESET`, `EPIPE`, `ENOTCONN`).
    #[error("IPC peer disconnected")]
    Disconnected,
    /// A message to send encodes to more than [`crate::MAX_MESSAGE_SIZE`] bytes.
    #[error("IPC message of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// A message to send encodes to zero bytes (indistinguishable from EOF on
    /// a `SOCK_SEQPACKET` socket, so it is refused).
    #[error("IPC message encodes to zero bytes")]
    Empty,
    /// A received datagram was larger than [`crate::MAX_MESSAGE_SIZE`]
    /// (`MSG_TRUNC`); every fd that came with it was closed.
    #[error("received IPC datagram of {size} bytes exceeds the maximum of {max} bytes")]
    Truncated { size: usize, max: usize },
    /// A received datagram carried more fds than fit (`MSG_CTRUNC`); every fd
    /// that did arrive was closed.
    #[error("received IPC datagram carried more than {max} file descriptors")]
    ControlTruncated { max: usize },
    /// A message to send carries more than [`crate::MAX_FDS`] fds.
    #[error("IPC message carries {count} file descriptors, the maximum is {max}")]
    TooManyFds { count: usize, max: usize },
    /// The received bytes are not a valid encoding of the expected type.
    #[error("malformed IPC message: {0}")]
    Decode(postcard::Error),
    /// The received bytes decode, but bytes are left over after the message.
    #[error("malformed IPC message: {0} trailing bytes")]
    TrailingBytes(usize),
    /// Serializing a message failed.
    #[error("cannot encode IPC message: {0}")]
    Encode(postcard::Error),
    /// A received message references an fd index that was not attached to
    /// the datagram.
    #[error("IPC message references file descriptor #{index}, but only {attached} were attached")]
    MissingFd { index: u32, attached: usize },
    /// A received message references the same attached fd twice.
    #[error("IPC message references file descriptor #{index} more than once")]
    DuplicateFd { index: u32 },
    /// An [`crate::Fd`] was serialized or deserialized outside a channel
    /// (for example with [`crate::to_bytes`]), where it cannot be carried.
    #[error("a file descriptor can only travel inside a message sent over an ipc::Channel")]
    FdOutsideChannel,
    /// The two sides speak different protocol versions.
    #[error("IPC protocol version mismatch: this side speaks version {local}, the peer speaks version {peer}")]
    VersionMismatch { local: u32, peer: u32 },
    /// The service announced a different kind than the core expected.
    #[error("IPC service kind mismatch: the core expected a {expected} service, the peer is a {got} service")]
    KindMismatch {
        expected: ServiceKind,
        got: ServiceKind,
    },
    /// The handshake failed for another reason (unknown service kind,
    /// unexpected reply).
    #[error("IPC handshake failed: {0}")]
    Handshake(&'static str),
    /// Nothing arrived (or could be sent) within the allowed time.
    #[error("IPC operation timed out")]
    Timeout,
    /// Any other operating-system error.
    #[error("IPC I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl IpcError {
    /// True when the error means the peer is gone for good.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, IpcError::Disconnected)
    }
}
