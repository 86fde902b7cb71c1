//! [`SocketBackend`]: the [`CharBackend`] a serial port uses for a socket
//! chardev. Never blocks the vCPU: output goes to the `logfile=` (if any)
//! and, within the credit window and only while a client is connected, to
//! the service; the rest is dropped (see the parent module's docs).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use ipc::chardev::CoreToChardev;

use super::config::LogFile;
use super::Shared;
use crate::chardev::CharBackend;

/// A serial port's view of a socket chardev.
pub struct SocketBackend {
    shared: Arc<Shared>,
    log: Option<File>,
    dropped: u64,
}

impl SocketBackend {
    pub(super) fn new(shared: Arc<Shared>, logfile: Option<&LogFile>) -> io::Result<Self> {
        let log = match logfile {
            None => None,
            Some(l) => Some(
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(l.append)
                    .truncate(!l.append)
                    .open(&l.path)?,
            ),
        };
        Ok(SocketBackend {
            shared,
            log,
            dropped: 0,
        })
    }

    /// Guest output bytes dropped so far (no client, or window full).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl CharBackend for SocketBackend {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write_all(data) {
                tracing::warn!(chardev = %self.shared.id, error = %e, "logfile write failed; logging stops");
                self.log = None;
            }
        }
        let mut rest = data;
        while !rest.is_empty() {
            let n = {
                let mut f = self.shared.lock();
                if f.client.is_none() {
                    0
                } else {
                    f.to_service.take(rest.len())
                }
            };
            if n == 0 {
                break;
            }
            if !self
                .shared
                .send(&CoreToChardev::Data(rest[..n].to_vec().into()))
            {
                break;
            }
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            self.dropped += rest.len() as u64;
        }
        Ok(())
    }

    fn input_fd(&self) -> Option<RawFd> {
        Some(self.shared.input_event.as_raw_fd())
    }

    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, credit) = {
            let mut f = self.shared.lock();
            if f.input.is_empty() {
                let _ = self.shared.input_event.read();
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(f.input.len());
            for (dst, src) in buf.iter_mut().zip(f.input.drain(..n)) {
                *dst = src;
            }
            if f.input.is_empty() {
                let _ = self.shared.input_event.read();
            }
            (n, f.from_service.consumed(n))
        };
        if let Some(k) = credit {
            self.shared.send(&CoreToChardev::Credit(k));
        }
        Ok(n)
    }

    fn describe(&self) -> String {
        format!("socket:{}", self.shared.address)
    }
}
