//! Power button (the machine has no ACPI): the VMM raises IRQ 13 when the
//! button is pressed; port 0x505 reads 1 once per press, and writing 1 to
//! it powers the machine off. Idle and busy loops call [`poll`].

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{self, inb, outb};

const PORT: u16 = 0x505;
const IRQ: u8 = 13;

/// IRQ 13 count already handled.
static SEEN: AtomicU64 = AtomicU64::new(0);

fn irq_count() -> u64 {
    arch::status_read(arch::status::IRQ_COUNT + usize::from(IRQ) * 8)
}

/// Unmask the button's interrupt.
pub fn init() {
    SEEN.store(irq_count(), Ordering::Relaxed);
    arch::pic_unmask(IRQ);
}

/// If the button interrupt fired, check the latch and power off.
pub fn poll() {
    let n = irq_count();
    if n == SEEN.load(Ordering::Relaxed) {
        return;
    }
    SEEN.store(n, Ordering::Relaxed);
    if inb(PORT) & 1 != 0 {
        crate::print!("\r\npower button pressed: powering off\r\n");
        outb(PORT, 1);
        loop {
            arch::wait_irq(arch::irq_total());
        }
    }
}
