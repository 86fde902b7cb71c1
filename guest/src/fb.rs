//! Framebuffer driver (ring 3): mode set through the register block at
//! `bi.fb_regs`, pixels written straight into VRAM (no exits).
//!
//! `fb [WxH]` draws the test card: eight colour bars (white, yellow, cyan,
//! green, magenta, red, blue, black) over the top two thirds, a grey ramp
//! below, and "BULKHEAD" in large letters. `fb anim [N]` bounces a square
//! across it for N frames (default 120, ~60 fps).

use core::sync::atomic::{AtomicI64, Ordering};

use crate::arch;
use crate::bootinfo::BootInfo;
use crate::mmio::{r32, w32};
use crate::print;

const MAGIC: u32 = 0x4246_4842;
const R_WIDTH: u64 = 0x08;
const R_HEIGHT: u64 = 0x0c;
const R_FORMAT: u64 = 0x10;
const R_STRIDE: u64 = 0x14;
const R_ENABLE: u64 = 0x18;
const R_MODE_SET: u64 = 0x1c;
const R_STATUS: u64 = 0x20;
const R_CUR_WIDTH: u64 = 0x3c;
const R_CUR_HEIGHT: u64 = 0x40;

/// Colour bars, left to right (XRGB).
pub const BARS: [u32; 8] = [
    0x00ff_ffff, 0x00ff_ff00, 0x0000_ffff, 0x0000_ff00, 0x00ff_00ff, 0x00ff_0000, 0x0000_00ff, 0x0000_0000,
];
/// The bouncing square's colour.
pub const SQUARE: u32 = 0x00ff_8000;
const SQ: u32 = 48;

/// An enabled mode.
#[derive(Clone, Copy)]
pub struct Fb {
    /// VRAM base.
    pub base: u64,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Bytes per line.
    pub stride: u32,
}

impl Fb {
    /// Put one pixel (clipped).
    #[inline(always)]
    pub fn put(&self, x: u32, y: u32, c: u32) {
        if x < self.w && y < self.h {
            let a = self.base + u64::from(y) * u64::from(self.stride) + u64::from(x) * 4;
            // SAFETY: inside the enabled mode's frame in VRAM (identity-mapped).
            unsafe { core::ptr::write_volatile(a as *mut u32, c) };
        }
    }

    /// Fill a rectangle (clipped).
    pub fn rect(&self, x: u32, y: u32, w: u32, h: u32, c: u32) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                self.put(xx, yy, c);
            }
        }
    }

    /// The test card's colour at (x, y).
    pub fn card(&self, x: u32, y: u32) -> u32 {
        if y < self.h * 2 / 3 {
            BARS[(x * 8 / self.w) as usize]
        } else {
            let g = x * 255 / self.w.max(1);
            (g << 16) | (g << 8) | g
        }
    }

    /// Restore the test card under a rectangle.
    pub fn restore(&self, x: u32, y: u32, w: u32, h: u32) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                self.put(xx, yy, self.card(xx, yy));
            }
        }
    }
}

/// 5x7 glyphs for the banner.
fn glyph(c: u8) -> [u8; 7] {
    match c {
        b'B' => [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
        b'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        b'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
        b'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        b'H' => [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        b'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        b'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        b'D' => [0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e],
        _ => [0; 7],
    }
}

fn text(fb: &Fb, x: u32, y: u32, scale: u32, s: &[u8], c: u32) {
    for (i, &ch) in s.iter().enumerate() {
        let g = glyph(ch);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) != 0 {
                    fb.rect(x + (i as u32 * 6 + col) * scale, y + row as u32 * scale, scale, scale, c);
                }
            }
        }
    }
}

/// Set `w`x`h` XRGB8888 and enable scan-out.
pub fn set_mode(bi: &BootInfo, w: u32, h: u32) -> Option<Fb> {
    let r = bi.fb_regs;
    if bi.fb_base == 0 || r32(r) != MAGIC {
        print!("fb: no framebuffer\r\n");
        return None;
    }
    w32(r + R_WIDTH, w);
    w32(r + R_HEIGHT, h);
    w32(r + R_FORMAT, 1);
    w32(r + R_MODE_SET, 1);
    if r32(r + R_STATUS) != 0 {
        print!("fb: mode {}x{} rejected\r\n", w, h);
        return None;
    }
    w32(r + R_ENABLE, 1);
    Some(Fb { base: bi.fb_base, w, h, stride: r32(r + R_STRIDE) })
}

/// The active mode, if the display is enabled.
pub fn current(bi: &BootInfo) -> Option<Fb> {
    let r = bi.fb_regs;
    if bi.fb_base == 0 || r32(r) != MAGIC || r32(r + R_ENABLE) == 0 {
        return None;
    }
    Some(Fb { base: bi.fb_base, w: r32(r + R_CUR_WIDTH), h: r32(r + R_CUR_HEIGHT), stride: r32(r + R_STRIDE) })
}

/// Draw the test card.
pub fn draw_card(fb: &Fb) {
    for y in 0..fb.h {
        for x in 0..fb.w {
            fb.put(x, y, fb.card(x, y));
        }
    }
    let scale = (fb.w / 64).max(1);
    let tw = 8 * 6 * scale;
    let x = fb.w.saturating_sub(tw) / 2;
    let y = fb.h * 2 / 3 + (fb.h / 3).saturating_sub(7 * scale) / 2;
    text(fb, x, y, scale, b"BULKHEAD", 0x0020_60c0);
}

/// The square's position and velocity, kept between `fb anim` runs.
static SQ_STATE: [AtomicI64; 4] = [AtomicI64::new(0), AtomicI64::new(0), AtomicI64::new(7), AtomicI64::new(5)];

fn anim(bi: &BootInfo, fb: &Fb, frames: u32) {
    let ld = |i: usize| SQ_STATE[i].load(Ordering::Relaxed);
    let (mut x, mut y, mut dx, mut dy) = (ld(0), ld(1), ld(2), ld(3));
    if x + i64::from(SQ) > i64::from(fb.w) || y + i64::from(SQ) > i64::from(fb.h * 2 / 3) {
        (x, y) = (0, 0);
    }
    let frame_tsc = bi.tsc_khz * 16;
    let t0 = arch::rdtsc();
    let mut done = 0u32;
    for _ in 0..frames {
        let (ox, oy) = (x as u32, y as u32);
        x += dx;
        y += dy;
        if x < 0 || x + i64::from(SQ) > i64::from(fb.w) {
            dx = -dx;
            x += 2 * dx;
        }
        if y < 0 || y + i64::from(SQ) > i64::from(fb.h * 2 / 3) {
            dy = -dy;
            y += 2 * dy;
        }
        fb.restore(ox, oy, SQ, SQ);
        fb.rect(x as u32, y as u32, SQ, SQ, SQUARE);
        arch::status_write(arch::status::HEARTBEAT, u64::from(done));
        done += 1;
        let start = arch::rdtsc();
        while frame_tsc > 0 && arch::rdtsc().wrapping_sub(start) < frame_tsc {
            core::hint::spin_loop();
        }
        if arch::rx_pending() {
            break;
        }
    }
    for (i, v) in [x, y, dx, dy].into_iter().enumerate() {
        SQ_STATE[i].store(v, Ordering::Relaxed);
    }
    let ms = if bi.tsc_khz > 0 { arch::rdtsc().wrapping_sub(t0) / bi.tsc_khz } else { 0 };
    print!("fb: {} frames in {} ms, square at {},{}\r\n", done, ms, x, y);
}

fn parse_mode(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// The `fb` shell command.
pub fn command(bi: &BootInfo, arg: &str) {
    let mut it = arg.split_whitespace();
    match it.next() {
        Some("anim") => {
            let n = it.next().and_then(|s| s.parse().ok()).unwrap_or(120);
            let fb = match current(bi) {
                Some(fb) => fb,
                None => match set_mode(bi, 1024, 768) {
                    Some(fb) => {
                        draw_card(&fb);
                        fb
                    }
                    None => return,
                },
            };
            anim(bi, &fb, n);
        }
        m => {
            let (w, h) = match m.map(parse_mode) {
                None => (1024, 768),
                Some(Some(wh)) => wh,
                Some(None) => {
                    print!("usage: fb [WxH] | fb anim [N]\r\n");
                    return;
                }
            };
            if let Some(fb) = set_mode(bi, w, h) {
                draw_card(&fb);
                print!("fb: {}x{} test card\r\n", fb.w, fb.h);
            }
        }
    }
}
