//! COM1 driver for ring 3. Output: one LSR check per 16-byte FIFO burst
//! (every port access is a ~72 µs exit from ring 3). Input: bytes arrive in
//! the ring filled by the ring-0 IRQ 4 handler; waiting sleeps in `hlt`.

use crate::arch::{self, inb, outb, COM1};

const THR: u16 = COM1;
const IER: u16 = COM1 + 1;
const FCR: u16 = COM1 + 2;
const LCR: u16 = COM1 + 3;
const MCR: u16 = COM1 + 4;
const LSR: u16 = COM1 + 5;

/// 8N1, FIFO on, OUT2 (interrupts to the PIC), receive interrupt enabled.
pub fn init() {
    outb(IER, 0);
    outb(LCR, 0x03);
    outb(FCR, 0xc7);
    outb(MCR, 0x0b);
    outb(IER, 0x01);
}

/// Write bytes.
pub fn write(data: &[u8]) {
    for chunk in data.chunks(16) {
        let mut spins = 0u32;
        while inb(LSR) & 0x20 == 0 && spins < 100_000 {
            spins += 1;
        }
        for &b in chunk {
            outb(THR, b);
        }
    }
}

/// Write a string.
pub fn puts(s: &str) {
    write(s.as_bytes());
}

/// Drain the UART directly (only after the ring overflowed).
fn drain_stalled() -> Option<u8> {
    if inb(LSR) & 1 != 0 {
        Some(inb(THR))
    } else {
        None
    }
}

/// A received byte, if any, without waiting.
pub fn try_getc() -> Option<u8> {
    if let Some(b) = arch::rx_pop() {
        return Some(b);
    }
    if arch::rx_take_stalled() {
        return drain_stalled();
    }
    None
}

/// Wait for a received byte.
pub fn getc() -> u8 {
    loop {
        let seen = arch::irq_total();
        if let Some(b) = try_getc() {
            return b;
        }
        crate::power::poll();
        arch::wait_irq(seen);
    }
}

/// `core::fmt` sink that batches output (fewer LSR checks).
pub struct Out {
    buf: [u8; 128],
    len: usize,
}

impl Out {
    /// Empty buffer.
    pub const fn new() -> Self {
        Self { buf: [0; 128], len: 0 }
    }
    /// Send what is buffered.
    pub fn flush(&mut self) {
        write(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl core::fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// `print!` to COM1.
#[macro_export]
macro_rules! print {
    ($($t:tt)*) => {{
        let mut o = $crate::serial::Out::new();
        let _ = core::fmt::Write::write_fmt(&mut o, format_args!($($t)*));
        o.flush();
    }};
}
