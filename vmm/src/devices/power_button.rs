//! The machine's power button (this platform has no ACPI): `system_powerdown`
//! latches a press and raises `layout::POWER_IRQ`; the guest reads
//! `layout::POWER_PORT` (1 = pressed, clears the latch) and, if it agrees,
//! writes 1 to it to power off. A guest that ignores the button keeps
//! running, as with QEMU and a guest without ACPI support.

use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;

/// Power button + soft-off register.
pub struct PowerButton {
    pressed: bool,
    irq: EventFd,
    on_off: Box<dyn Fn() + Send>,
}

impl PowerButton {
    /// `irq` raises the button interrupt; `on_off` runs when the guest powers off.
    pub fn new(irq: EventFd, on_off: impl Fn() + Send + 'static) -> Self {
        Self {
            pressed: false,
            irq,
            on_off: Box::new(on_off),
        }
    }

    /// Press the button.
    pub fn press(&mut self) {
        self.pressed = true;
        if let Err(e) = self.irq.write(1) {
            tracing::warn!("power button interrupt: {e}");
        }
    }

    /// Power-on state (no press pending).
    pub fn reset(&mut self) {
        self.pressed = false;
    }
}

impl BusDevice for PowerButton {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 0 {
            if let Some(b) = data.first_mut() {
                *b = u8::from(std::mem::take(&mut self.pressed));
            }
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&1) {
            (self.on_off)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn press_latches_once_and_soft_off_calls_back() {
        let offs = Arc::new(AtomicU32::new(0));
        let o = offs.clone();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut p = PowerButton::new(irq.try_clone().unwrap(), move || {
            o.fetch_add(1, Ordering::SeqCst);
        });
        let mut b = [0xffu8];
        p.read(0, &mut b);
        assert_eq!(b[0], 0);
        p.press();
        assert_eq!(irq.read().unwrap(), 1);
        p.read(0, &mut b);
        assert_eq!(b[0], 1);
        p.read(0, &mut b);
        assert_eq!(b[0], 0, "latch must clear on read");
        p.write(0, &[0]);
        assert_eq!(offs.load(Ordering::SeqCst), 0);
        p.write(0, &[1]);
        assert_eq!(offs.load(Ordering::SeqCst), 1);
        p.press();
        p.reset();
        p.read(0, &mut b);
        assert_eq!(b[0], 0);
    }
}
