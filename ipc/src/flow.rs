//! Credit-based flow control for byte streams carried as `Data` messages
//! (chardev), so that neither side can make the other queue unbounded data.
//!
//! Each direction starts with [`STREAM_WINDOW`] bytes of credit. The sender
//! spends credit on every `Data` chunk (at most [`MAX_DATA_CHUNK`] bytes)
//! and stops at zero; the receiver returns credit with `Credit(n)` once it
//! has consumed the bytes (written them on, or dropped them).
//!
//! ```text
//!   sender (SendCredit)                     receiver (RecvCredit)
//!   take(len) -> n  --- Data(n bytes) --->  on_data(n)?   (overrun = peer bug)
//!                                           ... consume ...
//!   grant(k)?       <--- Credit(k) -------  consumed(n) -> Some(k)
//! ```
//! Both checks are enforced on untrusted input: more data than granted is
//! [`FlowError::Overrun`], more credit than the window is
//! [`FlowError::ExcessCredit`].

/// Credit each direction starts with, and the most that may be outstanding.
pub const STREAM_WINDOW: u32 = 64 * 1024;

/// Largest `Data` chunk (well under [`crate::MAX_MESSAGE_SIZE`]).
pub const MAX_DATA_CHUNK: usize = 16 * 1024;

/// The receiver returns credit once this much was consumed (batching).
const GRANT_THRESHOLD: u32 = STREAM_WINDOW / 4;

/// A flow-control rule broken by the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The peer sent more bytes than it had credit for.
    #[error("peer sent {received} bytes with only {allowed} bytes of credit")]
    Overrun { received: usize, allowed: u32 },
    /// The peer granted credit beyond the window.
    #[error("peer granted credit beyond the {STREAM_WINDOW}-byte window")]
    ExcessCredit,
}

/// Sender side: bytes the peer still accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCredit {
    available: u32,
}

impl Default for SendCredit {
    fn default() -> Self {
        Self::new()
    }
}

impl SendCredit {
    /// A full window.
    pub fn new() -> SendCredit {
        SendCredit {
            available: STREAM_WINDOW,
        }
    }

    /// Bytes that may be sent now.
    pub fn available(&self) -> usize {
        self.available as usize
    }

    /// Reserves the size of the next chunk for `want` pending bytes:
    /// `min(want, available, MAX_DATA_CHUNK)`, possibly 0 (then wait for
    /// `Credit`).
    pub fn take(&mut self, want: usize) -> usize {
        let n = want.min(self.available as usize).min(MAX_DATA_CHUNK);
        self.available -= n as u32;
        n
    }

    /// Applies the peer's `Credit(n)`.
    pub fn grant(&mut self, n: u32) -> Result<(), FlowError> {
        match self.available.checked_add(n) {
            Some(total) if total <= STREAM_WINDOW => {
                self.available = total;
                Ok(())
            }
            _ => Err(FlowError::ExcessCredit),
        }
    }
}

/// Receiver side: credit the peer holds, and consumed bytes not yet
/// returned to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvCredit {
    /// Granted to the peer and not yet used by it.
    outstanding: u32,
    /// Received but not yet consumed.
    buffered: u32,
    /// Consumed but not yet granted back.
    to_grant: u32,
}

impl Default for RecvCredit {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvCredit {
    /// The peer starts with a full window.
    pub fn new() -> RecvCredit {
        RecvCredit {
            outstanding: STREAM_WINDOW,
            buffered: 0,
            to_grant: 0,
        }
    }

    /// Accounts for a received `Data` chunk of `n` bytes; an error means
    /// the peer broke the protocol (treat it as hostile).
    pub fn on_data(&mut self, n: usize) -> Result<(), FlowError> {
        if n > self.outstanding as usize {
            return Err(FlowError::Overrun {
                received: n,
                allowed: self.outstanding,
            });
        }
        self.outstanding -= n as u32;
        self.buffered += n as u32;
        Ok(())
    }

    /// Bytes received and not yet consumed (never more than the window).
    pub fn buffered(&self) -> usize {
        self.buffered as usize
    }

    /// Records that `n` buffered bytes were consumed (delivered or dropped).
    /// Returns the `Credit(k)` to send, if enough has accumulated or the
    /// peer has run dry. `n` is clamped to what is buffered.
    pub fn consumed(&mut self, n: usize) -> Option<u32> {
        let n = (n.min(self.buffered as usize)) as u32;
        self.buffered -= n;
        self.to_grant += n;
        if self.to_grant > 0 && (self.to_grant >= GRANT_THRESHOLD || self.outstanding == 0) {
            let k = self.to_grant;
            self.to_grant = 0;
            self.outstanding += k;
            Some(k)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_stops_at_zero_and_resumes_on_credit() {
        let mut s = SendCredit::new();
        let mut sent = 0;
        loop {
            let n = s.take(usize::MAX);
            if n == 0 {
                break;
            }
            assert!(n <= MAX_DATA_CHUNK);
            sent += n;
        }
        assert_eq!(sent, STREAM_WINDOW as usize);
        s.grant(100).unwrap();
        assert_eq!(s.take(1000), 100);
        assert_eq!(s.grant(STREAM_WINDOW + 1), Err(FlowError::ExcessCredit));
        assert_eq!(s.grant(u32::MAX), Err(FlowError::ExcessCredit));
    }

    #[test]
    fn receiver_rejects_overrun_and_grants_back() {
        let mut s = SendCredit::new();
        let mut r = RecvCredit::new();
        let mut total = 0usize;
        // Stream 1 MiB through the window.
        while total < 1 << 20 {
            let n = s.take(usize::MAX);
            if n == 0 {
                panic!("sender starved: receiver never granted");
            }
            r.on_data(n).unwrap();
            total += n;
            if let Some(k) = r.consumed(n) {
                s.grant(k).unwrap();
            }
            assert!(r.buffered() <= STREAM_WINDOW as usize);
        }
        let mut r = RecvCredit::new();
        r.on_data(STREAM_WINDOW as usize).unwrap();
        assert!(matches!(r.on_data(1), Err(FlowError::Overrun { .. })));
    }
}
