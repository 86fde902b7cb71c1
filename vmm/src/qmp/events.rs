//! Event broadcast: every negotiated QMP client gets every event.
//!
//! The VM core holds an [`EventBus`] clone and calls [`EventBus::emit`] when
//! its state changes. Emitting never blocks: the line is appended to each
//! client's bounded output queue and that client's thread is woken to write
//! it. A client whose queue overflows (it stopped reading) is disconnected.

use serde_json::Value;
use std::sync::{Arc, Mutex, Weak};

use super::backend::ShutdownCause;
use super::wire;

/// Something that accepts event lines (a client's output queue).
pub(crate) trait EventSink: Send + Sync {
    /// Queues one already formatted event line.
    fn push_event(&self, line: &[u8]);
}

/// Cloneable handle for emitting QMP events.
#[derive(Clone, Default)]
pub struct EventBus {
    sinks: Arc<Mutex<Vec<Weak<dyn EventSink>>>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus with no clients.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn subscribe(&self, sink: Weak<dyn EventSink>) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        sinks.retain(|s| s.strong_count() > 0);
        sinks.push(sink);
    }

    /// Sends `{"timestamp": ..., "event": name, "data": data}` to every
    /// negotiated client, in emission order.
    pub fn emit(&self, name: &str, data: Option<Value>) {
        let line = wire::event(name, data.as_ref());
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        sinks.retain(|s| match s.upgrade() {
            Some(sink) => {
                sink.push_event(&line);
                true
            }
            None => false,
        });
    }

    /// `STOP`.
    pub fn stop(&self) {
        self.emit("STOP", None);
    }

    /// `RESUME`.
    pub fn resume(&self) {
        self.emit("RESUME", None);
    }

    /// `POWERDOWN`.
    pub fn powerdown(&self) {
        self.emit("POWERDOWN", None);
    }

    /// `RESET` with QEMU's `guest` and `reason` members.
    pub fn reset(&self, cause: ShutdownCause) {
        self.emit(
            "RESET",
            Some(serde_json::json!({"guest": cause.is_guest(), "reason": cause.as_str()})),
        );
    }

    /// `SHUTDOWN` with QEMU's `guest` and `reason` members.
    pub fn shutdown(&self, cause: ShutdownCause) {
        self.emit(
            "SHUTDOWN",
            Some(serde_json::json!({"guest": cause.is_guest(), "reason": cause.as_str()})),
        );
    }

    /// Number of live subscribers (negotiated clients).
    pub fn subscribers(&self) -> usize {
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        sinks.iter().filter(|s| s.strong_count() > 0).count()
    }
}
