//! Message <-> datagram bytes (postcard), with the fd side channel.
//!
//! [`from_bytes`] is exactly the decoder [`crate::Channel`] runs on every
//! received datagram, so fuzzing it covers the receive path. Its guarantees
//! on untrusted input:
//!
//! - never panics; every failure is an [`IpcError`];
//! - bytes left over after the message are an error (no smuggled data);
//! - allocation is bounded by the input size, never by a length the input
//!   claims: strings and byte buffers ([`crate::Bytes`], `serde_bytes`) are
//!   length-checked against the remaining input before any copy, and serde
//!   caps the pre-allocation of any other sequence at 1 MiB whatever length
//!   is claimed (postcard passes the claim through as a size hint). Message
//!   types contain no maps and no recursion, so the worst case is a few
//!   `Vec`s of 1 MiB each for a 64 KiB datagram (`TlsMaterial`; the
//!   service->core families hold only strings and byte buffers).
//!   `tests/alloc_bound.rs` measures this with a counting allocator;
//! - every attached fd that the message does not take is closed.

use std::cell::RefCell;
use std::os::fd::{OwnedFd, RawFd};

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroize;

use crate::fd::{with_decode_context, with_encode_context};
use crate::{IpcError, MAX_MESSAGE_SIZE};

thread_local! {
    static SEND_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes `msg` into `buf` (at least [`MAX_MESSAGE_SIZE`] bytes long;
/// serialization stops as soon as it would not fit, so an oversize message
/// costs no memory) and returns the encoded length and the raw fds of the
/// [`crate::Fd`]s it contains, in index order. The fds stay owned by `msg`;
/// they are valid as long as `msg` is.
fn encode_into<M: Serialize + ?Sized>(
    msg: &M,
    buf: &mut [u8],
) -> Result<(usize, Vec<RawFd>), IpcError> {
    let buf = &mut buf[..MAX_MESSAGE_SIZE];
    let (result, ctx) = with_encode_context(|| postcard::to_slice(msg, buf).map(|b| b.len()));
    if let Some(e) = ctx.error {
        return Err(e);
    }
    let len = match result {
        Ok(len) => len,
        Err(postcard::Error::SerializeBufferFull) => {
            // Measure (without allocating) for the error message.
            let (size, _) =
                with_encode_context(|| postcard::experimental::serialized_size(msg).unwrap_or(0));
            return Err(IpcError::TooLarge {
                size,
                max: MAX_MESSAGE_SIZE,
            });
        }
        Err(e) => return Err(IpcError::Encode(e)),
    };
    if len == 0 {
        return Err(IpcError::Empty);
    }
    Ok((len, ctx.fds))
}

/// Encodes `msg` into this thread's reusable `MAX_MESSAGE_SIZE` buffer (a
/// fresh one if it is already in use further up the stack) and runs `f` on
/// the bytes and fds; the bytes are zeroed afterwards.
pub(crate) fn with_encoded<M: Serialize + ?Sized, R>(
    msg: &M,
    f: impl FnOnce(&[u8], &[RawFd]) -> Result<R, IpcError>,
) -> Result<R, IpcError> {
    let run = |buf: &mut Vec<u8>| {
        if buf.len() != MAX_MESSAGE_SIZE {
            buf.resize(MAX_MESSAGE_SIZE, 0);
        }
        let (len, fds) = encode_into(msg, buf)?;
        let r = f(&buf[..len], &fds);
        buf[..len].zeroize();
        r
    };
    SEND_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        Err(_) => run(&mut Vec::new()),
    })
}

/// Encodes a message that carries no fds into the exact bytes a
/// [`crate::Channel`] would send. Fails with [`IpcError::FdOutsideChannel`]
/// if the message contains an [`crate::Fd`], and with the same size errors
/// as sending.
pub fn to_bytes<M: Serialize + ?Sized>(msg: &M) -> Result<Vec<u8>, IpcError> {
    with_encoded(msg, |bytes, fds| {
        if fds.is_empty() {
            Ok(bytes.to_vec())
        } else {
            Err(IpcError::FdOutsideChannel)
        }
    })
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
