//! File descriptors passed by a QMP client with SCM_RIGHTS.
//!
//! Fds arrive with the bytes of a request and wait in a small FIFO until a
//! `getfd` names one; named fds live as long as the connection (or until
//! `closefd`). Later commands (e.g. `migrate fd:NAME`) take them by name.
//! Both collections are bounded so a client cannot exhaust our fd table.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;

/// Received but not yet named fds kept per client; more are closed.
pub const MAX_PENDING_FDS: usize = 16;
/// Named fds kept per client.
pub const MAX_NAMED_FDS: usize = 256;

/// One client's passed fds.
#[derive(Debug, Default)]
pub struct FdStore {
    pending: VecDeque<OwnedFd>,
    named: HashMap<String, OwnedFd>,
}

impl FdStore {
    /// Queues fds that arrived on the connection; returns how many were
    /// dropped (closed) because the queue was full.
    pub fn receive(&mut self, fds: Vec<OwnedFd>) -> usize {
        let mut dropped = 0;
        for fd in fds {
            if self.pending.len() < MAX_PENDING_FDS {
                self.pending.push_back(fd);
            } else {
                dropped += 1;
            }
        }
        dropped
    }

    /// Takes the oldest received fd.
    pub fn take_pending(&mut self) -> Option<OwnedFd> {
        self.pending.pop_front()
    }

    /// Names an fd, closing any previous fd of that name. Fails (giving the
    /// fd back) when the table is full.
    pub fn insert(&mut self, name: String, fd: OwnedFd) -> Result<(), OwnedFd> {
        if !self.named.contains_key(&name) && self.named.len() >= MAX_NAMED_FDS {
            return Err(fd);
        }
        self.named.insert(name, fd);
        Ok(())
    }

    /// Removes (and returns) the fd with that name.
    pub fn remove(&mut self, name: &str) -> Option<OwnedFd> {
        self.named.remove(name)
    }

    /// Whether an fd with that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.named.contains_key(name)
    }
}
