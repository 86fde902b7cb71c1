//! Message <-> datagram bytes (postcard), with the fd side channel.
//!
//! [`from_bytes`] is exactly the decoder [`crate::Channel`] runs on every
//! received datagram, so fuzzing it covers the receive path. Its guarantees
//! on untrusted input:
//!
//! - never panics; every failure is an [`IpcError`];
//! - bytes left over after the message are an error (no smuggled data);
//! - allocation is bounded by the input size: strings and byte buffers are
//!   length-checked against the remaining input before any copy, and
//!   postcard 1.2 gives no sequence size hint larger than the remaining
//!   input (serde additionally caps pre-allocation at 1 MiB), so a claimed
//!   length of 2^60 cannot reserve memory. Message types contain no maps and
//!   no recursion, so nesting depth is fixed by the type;
//! - every attached fd that the message does not take is closed.

use std::os::fd::{OwnedFd, RawFd};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::fd::{with_decode_context, with_encode_context};
use crate::{IpcError, MAX_MESSAGE_SIZE};

/// Serializes `msg` into `buf` (cleared first) and returns the raw fds of
/// the [`crate::Fd`]s it contains, in index order. The fds stay owned by
/// `msg`; they are valid as long as `msg` is.
pub(crate) fn encode_into<M: Serialize + ?Sized>(
    msg: &M,
    buf: &mut Vec<u8>,
) -> Result<Vec<RawFd>, IpcError> {
    buf.clear();
    let out = std::mem::take(buf);
    let (result, ctx) = with_encode_context(|| postcard::to_extend(msg, out));
    match result {
        Ok(v) => *buf = v,
        Err(e) => return Err(ctx.error.unwrap_or(IpcError::Encode(e))),
    }
    if let Some(e) = ctx.error {
        return Err(e);
    }
    if buf.is_empty() {
        return Err(IpcError::Empty);
    }
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(IpcError::TooLarge {
            size: buf.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    Ok(ctx.fds)
}

/// Encodes a message that carries no fds into the exact bytes a
/// [`crate::Channel`] would send. Fails with [`IpcError::FdOutsideChannel`]
/// if the message contains an [`crate::Fd`], and with the same size errors
/// as sending.
pub fn to_bytes<M: Serialize + ?Sized>(msg: &M) -> Result<Vec<u8>, IpcError> {
    let mut buf = Vec::new();
    let fds = encode_into(msg, &mut buf)?;
    if !fds.is_empty() {
        return Err(IpcError::FdOutsideChannel);
    }
    Ok(buf)
}

/// Decodes one received datagram: its bytes and the fds that came with it.
///
/// This is the decoder the channel uses on every message from the peer.
/// Every fd in `fds` that the decoded message does not own is closed before
/// this returns, whether decoding succeeded or not.
pub fn from_bytes<M: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<M, IpcError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(IpcError::Truncated {
            size: bytes.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    let (result, fd_error) = with_decode_context(fds, || postcard::take_from_bytes::<M>(bytes));
    match result {
        Err(e) => Err(fd_error.unwrap_or(IpcError::Decode(e))),
        Ok((msg, rest)) => {
            if let Some(e) = fd_error {
                drop(msg);
                return Err(e);
            }
            if !rest.is_empty() {
                return Err(IpcError::TrailingBytes(rest.len()));
            }
            Ok(msg)
        }
    }
}
