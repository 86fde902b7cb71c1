//! Debug-exit port (`layout::DEBUG_EXIT_PORT`): a guest ends a test run by
//! writing its status (8, 16 or 32 bits, little-endian) to the port; the VM
//! stops and reports `VmEvent::GuestExit(status)`. Unlike QEMU's
//! `isa-debug-exit` the status is passed through unchanged (no `(v<<1)|1`).
//! Reads return 0.

use super::bus::BusDevice;

/// Debug-exit device; `on_exit` receives the status.
pub struct DebugExit {
    on_exit: Box<dyn Fn(u32) + Send>,
}

impl DebugExit {
    /// A device that calls `on_exit(status)` on every write.
    pub fn new(on_exit: impl Fn(u32) + Send + 'static) -> Self {
        Self {
            on_exit: Box::new(on_exit),
        }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset != 0 {
            return;
        }
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        (self.on_exit)(u32::from_le_bytes(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn reports_status_of_any_width() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let mut d = DebugExit::new(move |c| g.lock().unwrap().push(c));
        d.write(0, &[3]);
        d.write(0, &[0x34, 0x12]);
        d.write(0, &7u32.to_le_bytes());
        d.write(1, &[9]);
        assert_eq!(*got.lock().unwrap(), vec![3, 0x1234, 7]);
    }
}
