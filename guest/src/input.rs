//! Keyboard (i8042, set 1 through the controller's translation) and
//! absolute pointer (`bi.pointer_regs`) input, shown on serial and screen.
//!
//! `input [N]` reports N events (default 16; `q` on serial stops early),
//! sleeping in `hlt` between interrupts (IRQ 1 keyboard, IRQ 3 pointer).
//! Serial lines: `key: NAME down|up (0xCODE)` and
//! `pointer: x=X y=Y buttons=B wheel=W`. On screen (if enabled) keys light
//! a box per key count and the pointer draws a cursor.

use crate::arch::{self, inb};
use crate::bootinfo::BootInfo;
use crate::fb;
use crate::mmio::{r32, r64};
use crate::{print, serial};

const PTR_MAGIC: u32 = 0x5450_4842;
const KBD_IRQ: u8 = 1;
const PTR_IRQ: u8 = 3;

fn key_name(code: u8, ext: bool) -> Option<&'static str> {
    const DIGITS: [&str; 10] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];
    const ROW1: [&str; 10] = ["q", "w", "e", "r", "t", "y", "u", "i", "o", "p"];
    const ROW2: [&str; 9] = ["a", "s", "d", "f", "g", "h", "j", "k", "l"];
    const ROW3: [&str; 7] = ["z", "x", "c", "v", "b", "n", "m"];
    Some(match (ext, code) {
        (false, 0x02..=0x0b) => DIGITS[(code - 0x02) as usize],
        (false, 0x10..=0x19) => ROW1[(code - 0x10) as usize],
        (false, 0x1e..=0x26) => ROW2[(code - 0x1e) as usize],
        (false, 0x2c..=0x32) => ROW3[(code - 0x2c) as usize],
        (false, 0x01) => "esc",
        (false, 0x0e) => "backspace",
        (false, 0x0f) => "tab",
        (false, 0x1c) => "ret",
        (false, 0x1d) => "ctrl",
        (false, 0x2a) => "shift",
        (false, 0x36) => "shift_r",
        (false, 0x38) => "alt",
        (false, 0x39) => "spc",
        (true, 0x1c) => "kp_enter",
        (true, 0x1d) => "ctrl_r",
        (true, 0x38) => "alt_r",
        (true, 0x48) => "up",
        (true, 0x50) => "down",
        (true, 0x4b) => "left",
        (true, 0x4d) => "right",
        (true, 0x53) => "delete",
        _ => return None,
    })
}

struct Screen {
    fb: Option<fb::Fb>,
    keys: u32,
    cursor: Option<(u32, u32)>,
}

impl Screen {
    fn key(&mut self, down: bool) {
        let Some(f) = self.fb else { return };
        if down {
            let slot = self.keys % 32;
            f.rect(8 + slot * 20, f.h - 24, 16, 16, 0x00ff_ff00);
            self.keys += 1;
        }
    }

    fn pointer(&mut self, x: u32, y: u32, buttons: u32) {
        let Some(f) = self.fb else { return };
        if let Some((ox, oy)) = self.cursor {
            f.restore(ox, oy, 8, 8);
        }
        let (px, py) = (x * f.w / 0x8000, y * f.h / 0x8000);
        f.rect(px, py, 8, 8, if buttons & 1 != 0 { 0x00ff_0000 } else { 0x00ff_ffff });
        self.cursor = Some((px, py));
    }
}

/// The `input` shell command.
pub fn command(bi: &BootInfo, arg: &str) {
    let want: u32 = arg.trim().parse().unwrap_or(16);
    let ptr = bi.pointer_regs;
    let have_ptr = ptr != 0 && r32(ptr) == PTR_MAGIC;
    arch::pic_unmask(KBD_IRQ);
    if have_ptr {
        arch::pic_unmask(PTR_IRQ);
    }
    // Stale controller bytes from before.
    while inb(0x64) & 1 != 0 {
        let _ = inb(0x60);
    }
    let mut screen = Screen { fb: fb::current(bi), keys: 0, cursor: None };
    print!("input: waiting for {} events (q to stop)\r\n", want);
    let mut got = 0u32;
    let mut ext = false;
    'outer: while got < want {
        let seen = arch::irq_total();
        while inb(0x64) & 1 != 0 {
            let b = inb(0x60);
            if b == 0xe0 {
                ext = true;
                continue;
            }
            let down = b & 0x80 == 0;
            let code = b & 0x7f;
            let e = core::mem::replace(&mut ext, false);
            let q = u16::from(code) | if e { 0x80 } else { 0 };
            match key_name(code, e) {
                Some(n) => print!("key: {} {} ({:#04x})\r\n", n, if down { "down" } else { "up" }, q),
                None => print!("key: {:#04x} {}\r\n", q, if down { "down" } else { "up" }),
            }
            screen.key(down);
            got += 1;
        }
        while have_ptr && r32(ptr + 0x08) > 0 {
            let v = r64(ptr + 0x10);
            if v >> 63 == 0 {
                break;
            }
            let (x, y) = ((v & 0xffff) as u32, ((v >> 16) & 0xffff) as u32);
            let buttons = ((v >> 32) & 0xff) as u32;
            let wheel = ((v >> 40) & 0xff) as u8 as i8;
            print!("pointer: x={} y={} buttons={} wheel={}\r\n", x, y, buttons, wheel);
            screen.pointer(x, y, buttons);
            got += 1;
        }
        while let Some(c) = serial::try_getc() {
            if c == b'q' {
                break 'outer;
            }
        }
        if got >= want {
            break;
        }
        arch::wait_irq(seen);
    }
    print!("input: done, {} events\r\n", got);
}
