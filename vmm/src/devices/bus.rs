//! The device bus: maps port-I/O and MMIO address ranges to device models.
//!
//! A vCPU thread that takes an `IoIn`/`IoOut`/`MmioRead`/`MmioWrite` exit
//! looks the address up here and calls the device with the offset inside the
//! device's range. Devices are shared between vCPU threads behind a mutex.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device model reachable through port I/O or MMIO.
pub trait BusDevice: Send {
    /// Read `data.len()` bytes at `offset` inside the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Write `data` at `offset` inside the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A shared, lockable device.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors from building a bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The new range overlaps one already inserted.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap {
        /// Base address of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
    /// Zero-length range.
    #[error("bus range at {0:#x} has zero length")]
    Empty(u64),
}

#[derive(Clone)]
struct Entry {
    len: u64,
    dev: SharedDevice,
}

/// An address space (one for port I/O, one for MMIO).
#[derive(Clone, Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for (base, e) in &self.ranges {
            l.entry(&format_args!("{:#x}+{:#x}", base, e.len));
        }
        l.finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `dev` at `[base, base+len)`.
    pub fn insert(&mut self, base: u64, len: u64, dev: SharedDevice) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty(base));
        }
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overlap { base, len })?;
        if let Some((b, e)) = self.ranges.range(..end).next_back() {
            if b + e.len > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.ranges.insert(base, Entry { len, dev });
        Ok(())
    }

    /// Find the device covering `addr`, with the offset of `addr` inside it.
    pub fn resolve(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (base, e) = self.ranges.range(..=addr).next_back()?;
        let off = addr - base;
        (off < e.len).then_some((off, &e.dev))
    }

    /// Dispatch a read; returns false (and fills `data` with 0xff) when no
    /// device is mapped there, like an open bus.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((off, dev)) => {
                dev.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .read(off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatch a write; returns false when no device is mapped there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((off, dev)) => {
                dev.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write(off, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(u8);
    impl BusDevice for Reg {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0.wrapping_add(offset as u8));
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn resolve_and_overlap() {
        let mut bus = Bus::new();
        bus.insert(0x10, 4, Arc::new(Mutex::new(Reg(1)))).unwrap();
        bus.insert(0x20, 4, Arc::new(Mutex::new(Reg(5)))).unwrap();
        assert!(bus.insert(0x12, 4, Arc::new(Mutex::new(Reg(0)))).is_err());
        assert!(bus.insert(0x0e, 4, Arc::new(Mutex::new(Reg(0)))).is_err());
        assert!(bus.insert(0x30, 0, Arc::new(Mutex::new(Reg(0)))).is_err());
        let mut b = [0u8; 1];
        assert!(bus.read(0x11, &mut b));
        assert_eq!(b[0], 2);
        assert!(!bus.read(0x14, &mut b));
        assert_eq!(b[0], 0xff);
        assert!(bus.write(0x23, &[9]));
        bus.read(0x20, &mut b);
        assert_eq!(b[0], 9);
    }
}
