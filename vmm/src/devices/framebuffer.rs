//! Linear framebuffer: VRAM in its own memfd-backed memslot plus a small
//! MMIO register block through which the guest picks the mode.
//!
//! ```text
//!  guest ──writes pixels──▶ VRAM  (layout::FB_BASE, FB_SIZE; memslot with
//!                           │      dirty logging, registered by the core)
//!                           ├─▶ screendump(): Image ─▶ PPM (P6) / PNG
//!                           └─▶ svc-vnc maps the memfd read-only
//!  guest ──MMIO──▶ registers at layout::FB_REGS_BASE:
//!    0x00 MAGIC "BHFB"   0x04 VERSION 1
//!    0x08 WIDTH  (rw, pending)    0x0c HEIGHT (rw, pending)
//!    0x10 FORMAT (rw, pending; 1 = XRGB8888, little-endian B,G,R,X bytes)
//!    0x14 STRIDE (r, active mode, bytes per line)
//!    0x18 ENABLE (rw)             0x1c MODE_SET (w: apply pending mode)
//!    0x20 STATUS (r: 0 ok, 1 mode rejected)
//!    0x24 GENERATION (r: +1 on every mode set or enable change)
//!    0x28/0x2c VRAM_BASE lo/hi    0x30 VRAM_SIZE
//!    0x34 MAX_WIDTH 0x38 MAX_HEIGHT   0x3c CUR_WIDTH 0x40 CUR_HEIGHT
//! ```
//! Registers take 32-bit accesses; other widths read 0 and are ignored.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use vm_memory::{FileOffset, MmapRegion, VolatileMemory};

use super::bus::BusDevice;
use crate::layout;

/// "BHFB".
pub const FB_MAGIC: u32 = 0x4246_4842;
/// Register block version.
pub const FB_VERSION: u32 = 1;
/// Pixel format code: 32-bit XRGB, little-endian (bytes B, G, R, X).
pub const FORMAT_XRGB8888: u32 = 1;
/// Largest width the guest may ask for.
pub const MAX_WIDTH: u32 = 4096;
/// Largest height the guest may ask for.
pub const MAX_HEIGHT: u32 = 4096;
/// Mode at power-on.
pub const DEFAULT_WIDTH: u32 = 1024;
/// Mode at power-on.
pub const DEFAULT_HEIGHT: u32 = 768;

/// Register offsets.
pub mod reg {
    /// Magic.
    pub const MAGIC: u64 = 0x00;
    /// Version.
    pub const VERSION: u64 = 0x04;
    /// Pending width.
    pub const WIDTH: u64 = 0x08;
    /// Pending height.
    pub const HEIGHT: u64 = 0x0c;
    /// Pending format.
    pub const FORMAT: u64 = 0x10;
    /// Active stride.
    pub const STRIDE: u64 = 0x14;
    /// Scan-out enable.
    pub const ENABLE: u64 = 0x18;
    /// Apply pending mode.
    pub const MODE_SET: u64 = 0x1c;
    /// Result of the last mode set.
    pub const STATUS: u64 = 0x20;
    /// Generation counter.
    pub const GENERATION: u64 = 0x24;
    /// VRAM guest-physical base, low half.
    pub const VRAM_BASE_LO: u64 = 0x28;
    /// VRAM guest-physical base, high half.
    pub const VRAM_BASE_HI: u64 = 0x2c;
    /// VRAM size in bytes.
    pub const VRAM_SIZE: u64 = 0x30;
    /// Maximum width.
    pub const MAX_WIDTH: u64 = 0x34;
    /// Maximum height.
    pub const MAX_HEIGHT: u64 = 0x38;
    /// Active width.
    pub const CUR_WIDTH: u64 = 0x3c;
    /// Active height.
    pub const CUR_HEIGHT: u64 = 0x40;
}

/// The active display mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Pixels per line.
    pub width: u32,
    /// Lines.
    pub height: u32,
    /// Bytes per line.
    pub stride: u32,
    /// Pixel format code ([`FORMAT_XRGB8888`]).
    pub format: u32,
    /// Whether the guest enabled scan-out.
    pub enabled: bool,
}

/// Framebuffer mode state for migration/snapshots (VRAM contents travel
/// with the VRAM memslot, like RAM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FramebufferState {
    /// Active width.
    pub width: u32,
    /// Active height.
    pub height: u32,
    /// Active format.
    pub format: u32,
    /// Scan-out enabled.
    pub enabled: bool,
    /// Pending width register.
    pub pending_width: u32,
    /// Pending height register.
    pub pending_height: u32,
    /// Pending format register.
    pub pending_format: u32,
    /// STATUS register.
    pub status: u32,
    /// GENERATION register.
    pub generation: u32,
}

/// An RGB image (8 bits per channel, no padding) from [`Framebuffer::screendump`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, rows top to bottom.
    pub rgb: Vec<u8>,
}

/// Errors writing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// File or stream I/O.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// PNG encoding.
    #[error("png: {0}")]
    Png(#[from] png::EncodingError),
}

/// Output format for [`Image::write_file`], named as QMP `screendump` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// Binary PPM (P6), QEMU's default.
    Ppm,
    /// PNG.
    Png,
}

impl Image {
    /// RGB of pixel `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]])
    }

    /// Binary PPM (P6), maxval 255, as QEMU writes it.
    pub fn to_ppm(&self) -> Vec<u8> {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.rgb);
        out
    }

    /// PNG, 8-bit RGB.
    pub fn to_png(&self) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header()?;
            w.write_image_data(&self.rgb)?;
        }
        Ok(out)
    }

    /// Write to `path` in `format` (create or truncate).
    pub fn write_file(&self, path: &Path, format: ImageFormat) -> Result<(), ImageError> {
        let bytes = match format {
            ImageFormat::Ppm => self.to_ppm(),
            ImageFormat::Png => self.to_png()?,
        };
        let mut f = File::create(path)?;
        f.write_all(&bytes)?;
        Ok(())
    }
}

/// VRAM: a sealed memfd mapped shared into this process.
pub struct Vram {
    file: File,
    map: Arc<MmapRegion>,
}

impl Vram {
    fn new(size: usize) -> io::Result<Self> {
        let fd = memfd_create(
            c"bulkhead-vram",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(io::Error::from)?;
        let file = File::from(fd);
        file.set_len(size as u64)?;
        fcntl(
            &file,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )
        .map_err(io::Error::from)?;
        let map = MmapRegion::from_file(FileOffset::new(file.try_clone()?, 0), size)
            .map_err(|e| io::Error::other(format!("mmap vram: {e}")))?;
        Ok(Self {
            file,
            map: Arc::new(map),
        })
    }

    /// The memfd (pass to svc-vnc; it maps it read-only).
    pub fn memfd(&self) -> &File {
        &self.file
    }

    /// Host address of this process's shared mapping (for `add_memslot`).
    pub fn host_addr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.map.size()
    }

    /// The mapping as a region (host-side pixel access, tests).
    pub fn region(&self) -> &MmapRegion {
        &self.map
    }

    /// The shared mapping, for `Vm::add_memslot(layout::FB_BASE, .., true)`.
    pub fn mapping(&self) -> Arc<MmapRegion> {
        self.map.clone()
    }
}

struct State {
    mode: Mode,
    pending_width: u32,
    pending_height: u32,
    pending_format: u32,
    status: u32,
}

/// The framebuffer: VRAM plus mode state, shared by the register device
/// (vCPU threads), screendump (monitor) and the VNC bridge.
pub struct Framebuffer {
    vram: Vram,
    guest_base: u64,
    state: Mutex<State>,
    generation: AtomicU32,
}

impl std::fmt::Debug for Framebuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framebuffer")
            .field("mode", &self.mode())
            .field("generation", &self.generation())
            .finish()
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Framebuffer {
    /// VRAM of `layout::FB_SIZE` at `layout::FB_BASE`, mode 1024x768 XRGB8888.
    pub fn new() -> io::Result<Arc<Self>> {
        Self::with_size(layout::FB_SIZE as usize)
    }

    /// VRAM of `size` bytes (tests use smaller ones).
    pub fn with_size(size: usize) -> io::Result<Arc<Self>> {
        let vram = Vram::new(size)?;
        let stride = DEFAULT_WIDTH * 4;
        Ok(Arc::new(Self {
            vram,
            guest_base: layout::FB_BASE,
            state: Mutex::new(State {
                mode: Mode {
                    width: DEFAULT_WIDTH,
                    height: DEFAULT_HEIGHT,
                    stride,
                    format: FORMAT_XRGB8888,
                    enabled: false,
                },
                pending_width: DEFAULT_WIDTH,
                pending_height: DEFAULT_HEIGHT,
                pending_format: FORMAT_XRGB8888,
                status: 0,
            }),
            generation: AtomicU32::new(0),
        }))
    }

    /// The register block device to map at `layout::FB_REGS_BASE`.
    pub fn regs(self: &Arc<Self>) -> FramebufferRegs {
        FramebufferRegs(self.clone())
    }

    /// VRAM (memfd, host mapping).
    pub fn vram(&self) -> &Vram {
        &self.vram
    }

    /// Active mode.
    pub fn mode(&self) -> Mode {
        lock(&self.state).mode
    }

    /// Bumped on every mode set or enable change (VNC: DesktopSize).
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Power-on state (system_reset). VRAM contents stay, as on hardware.
    pub fn reset(&self) {
        let mut s = lock(&self.state);
        s.mode = Mode {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            stride: DEFAULT_WIDTH * 4,
            format: FORMAT_XRGB8888,
            enabled: false,
        };
        s.pending_width = DEFAULT_WIDTH;
        s.pending_height = DEFAULT_HEIGHT;
        s.pending_format = FORMAT_XRGB8888;
        s.status = 0;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Snapshot.
    pub fn state(&self) -> FramebufferState {
        let s = lock(&self.state);
        FramebufferState {
            width: s.mode.width,
            height: s.mode.height,
            format: s.mode.format,
            enabled: s.mode.enabled,
            pending_width: s.pending_width,
            pending_height: s.pending_height,
            pending_format: s.pending_format,
            status: s.status,
            generation: self.generation(),
        }
    }

    /// Load a snapshot (untrusted: the active mode must fit VRAM).
    pub fn restore(&self, st: &FramebufferState) -> Result<(), String> {
        if !self.mode_fits(st.width, st.height, st.format) {
            return Err(format!(
                "framebuffer mode {}x{} does not fit",
                st.width, st.height
            ));
        }
        let mut s = lock(&self.state);
        s.mode = Mode {
            width: st.width,
            height: st.height,
            stride: st.width * 4,
            format: st.format,
            enabled: st.enabled,
        };
        s.pending_width = st.pending_width;
        s.pending_height = st.pending_height;
        s.pending_format = st.pending_format;
        s.status = st.status;
        self.generation.store(st.generation, Ordering::SeqCst);
        Ok(())
    }

    /// Whether `width x height` in `format` is a mode we can scan out.
    pub fn mode_fits(&self, width: u32, height: u32, format: u32) -> bool {
        format == FORMAT_XRGB8888
            && (1..=MAX_WIDTH).contains(&width)
            && (1..=MAX_HEIGHT).contains(&height)
            && u64::from(width) * 4 * u64::from(height) <= self.vram.size() as u64
    }

    /// Apply a mode from the host side (tests, or a future `-vga` option).
    pub fn set_mode(&self, width: u32, height: u32, enabled: bool) -> bool {
        let mut s = lock(&self.state);
        s.pending_width = width;
        s.pending_height = height;
        s.pending_format = FORMAT_XRGB8888;
        let ok = self.apply_pending(&mut s);
        s.mode.enabled = enabled;
        ok
    }

    fn apply_pending(&self, s: &mut State) -> bool {
        if !self.mode_fits(s.pending_width, s.pending_height, s.pending_format) {
            s.status = 1;
            return false;
        }
        s.mode.width = s.pending_width;
        s.mode.height = s.pending_height;
        s.mode.format = s.pending_format;
        s.mode.stride = s.pending_width * 4;
        s.status = 0;
        self.generation.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// The picture the guest shows now, like QMP `screendump`. A disabled
    /// display gives a black image of the current mode's size.
    pub fn screendump(&self) -> Image {
        let mode = self.mode();
        let (w, h) = (mode.width as usize, mode.height as usize);
        let mut rgb = vec![0u8; w * h * 3];
        if !mode.enabled {
            return Image {
                width: mode.width,
                height: mode.height,
                rgb,
            };
        }
        let stride = mode.stride as usize;
        let mut line = vec![0u8; w * 4];
        for y in 0..h {
            // mode_fits guarantees the whole frame lies inside VRAM.
            let Ok(slice) = self.vram.map.get_slice(y * stride, w * 4) else {
                break;
            };
            slice.copy_to(&mut line[..]);
            for (x, px) in line.chunks_exact(4).enumerate() {
                let o = (y * w + x) * 3;
                rgb[o] = px[2];
                rgb[o + 1] = px[1];
                rgb[o + 2] = px[0];
            }
        }
        Image {
            width: mode.width,
            height: mode.height,
            rgb,
        }
    }
}

/// The MMIO register block (`BusDevice`) of a [`Framebuffer`].
pub struct FramebufferRegs(Arc<Framebuffer>);

impl FramebufferRegs {
    fn read_reg(&self, offset: u64) -> u32 {
        let fb = &self.0;
        let s = lock(&fb.state);
        match offset {
            reg::MAGIC => FB_MAGIC,
            reg::VERSION => FB_VERSION,
            reg::WIDTH => s.pending_width,
            reg::HEIGHT => s.pending_height,
            reg::FORMAT => s.pending_format,
            reg::STRIDE => s.mode.stride,
            reg::ENABLE => u32::from(s.mode.enabled),
            reg::STATUS => s.status,
            reg::GENERATION => fb.generation(),
            reg::VRAM_BASE_LO => fb.guest_base as u32,
            reg::VRAM_BASE_HI => (fb.guest_base >> 32) as u32,
            reg::VRAM_SIZE => u32::try_from(fb.vram.size()).unwrap_or(u32::MAX),
            reg::MAX_WIDTH => MAX_WIDTH,
            reg::MAX_HEIGHT => MAX_HEIGHT,
            reg::CUR_WIDTH => s.mode.width,
            reg::CUR_HEIGHT => s.mode.height,
            _ => 0,
        }
    }

    fn write_reg(&self, offset: u64, v: u32) {
        let fb = &self.0;
        let mut s = lock(&fb.state);
        match offset {
            reg::WIDTH => s.pending_width = v,
            reg::HEIGHT => s.pending_height = v,
            reg::FORMAT => s.pending_format = v,
            reg::ENABLE => {
                let en = v != 0;
                if en != s.mode.enabled {
                    s.mode.enabled = en;
                    fb.generation.fetch_add(1, Ordering::SeqCst);
                }
            }
            reg::MODE_SET => {
                fb.apply_pending(&mut s);
            }
            _ => {}
        }
    }
}

impl BusDevice for FramebufferRegs {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() != 4 || offset % 4 != 0 {
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(b) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if offset % 4 == 0 {
            self.write_reg(offset, u32::from_le_bytes(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn w32(d: &mut FramebufferRegs, off: u64, v: u32) {
        d.write(off, &v.to_le_bytes());
    }
    fn r32(d: &mut FramebufferRegs, off: u64) -> u32 {
        let mut b = [0u8; 4];
        d.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    /// Paint like a guest: XRGB little-endian words into VRAM.
    fn put(fb: &Framebuffer, x: u32, y: u32, rgb: u32) {
        let m = fb.mode();
        let off = (y * m.stride + x * 4) as usize;
        fb.vram()
            .region()
            .as_volatile_slice()
            .write_obj(rgb, off)
            .unwrap();
    }

    #[test]
    fn fb_mode_set_through_registers() {
        let fb = Framebuffer::new().unwrap();
        let mut r = fb.regs();
        assert_eq!(r32(&mut r, reg::MAGIC), FB_MAGIC);
        assert_eq!(r32(&mut r, reg::CUR_WIDTH), 1024);
        assert_eq!(r32(&mut r, reg::VRAM_SIZE), 16 << 20);
        assert_eq!(r32(&mut r, reg::VRAM_BASE_LO), layout::FB_BASE as u32);
        let g0 = r32(&mut r, reg::GENERATION);
        w32(&mut r, reg::WIDTH, 800);
        w32(&mut r, reg::HEIGHT, 600);
        w32(&mut r, reg::FORMAT, FORMAT_XRGB8888);
        w32(&mut r, reg::MODE_SET, 1);
        assert_eq!(r32(&mut r, reg::STATUS), 0);
        assert_eq!(r32(&mut r, reg::STRIDE), 3200);
        assert_eq!(fb.mode().width, 800);
        assert_eq!(r32(&mut r, reg::GENERATION), g0 + 1);
        // Too big for VRAM, zero, bad format: rejected, mode unchanged.
        for (w, h, f) in [(4096, 4096, 1), (0, 10, 1), (640, 480, 7)] {
            w32(&mut r, reg::WIDTH, w);
            w32(&mut r, reg::HEIGHT, h);
            w32(&mut r, reg::FORMAT, f);
            w32(&mut r, reg::MODE_SET, 1);
            assert_eq!(r32(&mut r, reg::STATUS), 1);
            assert_eq!(fb.mode().width, 800);
        }
        w32(&mut r, reg::ENABLE, 1);
        assert!(fb.mode().enabled);
        assert_eq!(r32(&mut r, reg::GENERATION), g0 + 2);
        // Odd widths are ignored.
        r.write(reg::ENABLE, &[0]);
        assert!(fb.mode().enabled);
    }

    #[test]
    fn fb_screendump_pixels_ppm_and_png() {
        let fb = Framebuffer::new().unwrap();
        assert!(fb.set_mode(1024, 768, true));
        put(&fb, 0, 0, 0x00ff_0000);
        put(&fb, 1023, 0, 0x0000_ff00);
        put(&fb, 0, 767, 0x0000_00ff);
        put(&fb, 512, 384, 0x0012_3456);
        let img = fb.screendump();
        assert_eq!((img.width, img.height), (1024, 768));
        assert_eq!(img.pixel(0, 0), Some([0xff, 0, 0]));
        assert_eq!(img.pixel(1023, 0), Some([0, 0xff, 0]));
        assert_eq!(img.pixel(0, 767), Some([0, 0, 0xff]));
        assert_eq!(img.pixel(512, 384), Some([0x12, 0x34, 0x56]));
        assert_eq!(img.pixel(1, 1), Some([0, 0, 0]));
        assert_eq!(img.pixel(1024, 0), None);

        let ppm = img.to_ppm();
        let hdr = b"P6\n1024 768\n255\n";
        assert_eq!(&ppm[..hdr.len()], hdr);
        let body = &ppm[hdr.len()..];
        let o = (384 * 1024 + 512) * 3;
        assert_eq!(&body[o..o + 3], &[0x12, 0x34, 0x56]);

        let png_bytes = img.to_png().unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (1024, 768));
        assert_eq!(&buf[..info.buffer_size()], &img.rgb[..]);

        // A smaller mode uses a tighter stride.
        assert!(fb.set_mode(320, 200, true));
        put(&fb, 319, 199, 0x00ab_cdef);
        assert_eq!(fb.screendump().pixel(319, 199), Some([0xab, 0xcd, 0xef]));
        // Disabled: black.
        fb.set_mode(320, 200, false);
        assert!(fb.screendump().rgb.iter().all(|&b| b == 0));
    }

    #[test]
    fn fb_state_round_trip() {
        let fb = Framebuffer::with_size(4 << 20).unwrap();
        assert!(fb.set_mode(800, 600, true));
        let s = fb.state();
        let other = Framebuffer::with_size(4 << 20).unwrap();
        other.restore(&s).unwrap();
        assert_eq!(other.state(), s);
        assert_eq!(other.mode().stride, 3200);
        let mut bad = s;
        bad.width = 100_000;
        assert!(other.restore(&bad).is_err());
    }

    #[test]
    fn fb_vram_memfd_is_shared_and_sealed() {
        let fb = Framebuffer::with_size(1 << 20).unwrap();
        let f = fb.vram().memfd();
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
        assert!(f.set_len(1).is_err(), "sealed against shrinking");
        // A second mapping of the memfd sees guest writes (what svc-vnc does).
        let other =
            MmapRegion::<()>::from_file(FileOffset::new(f.try_clone().unwrap(), 0), 1 << 20)
                .unwrap();
        fb.vram()
            .region()
            .as_volatile_slice()
            .write_obj(0xdead_beefu32, 64)
            .unwrap();
        assert_eq!(
            other.as_volatile_slice().read_obj::<u32>(64).unwrap(),
            0xdead_beef
        );
    }
}
