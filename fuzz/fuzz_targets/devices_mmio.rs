//! Guest register traffic against the device models: arbitrary sequences
//! of reads and writes (any offset, any width) to the i8042 ports, the
//! framebuffer and pointer register blocks and a virtio-blk transport
//! (activation spawns and stops its worker), mixed with host-side input
//! and screendumps. Nothing may panic, hang or grow without bound.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm::devices::bus::BusDevice;
use vmm::devices::framebuffer::Framebuffer;
use vmm::devices::i8042::I8042;
use vmm::devices::pointer::{Axis, Button, Pointer, PointerInput};
use vmm::devices::virtio::block::backend::BlockBackend;
use vmm::devices::virtio::block::virtio_mmio_block;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

struct MemDisk(Mutex<Vec<u8>>);

impl BlockBackend for MemDisk {
    fn size(&self) -> u64 {
        8192
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let d = self.0.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let mut d = self.0.lock().unwrap();
        d[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.lock().unwrap()[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let mut kbd = I8042::new(Box::new(|| {}), EventFd::new(EFD_NONBLOCK).unwrap());
    let fb = Framebuffer::with_size(1 << 20).unwrap();
    let mut regs = fb.regs();
    let mut ptr = Pointer::with_irq(EventFd::new(EFD_NONBLOCK).unwrap());
    let disk = std::sync::Arc::new(MemDisk(Mutex::new(vec![0; 8192])));
    let mut blk = virtio_mmio_block(
        disk,
        data.first().is_some_and(|b| b & 1 != 0),
        "f",
        EventFd::new(EFD_NONBLOCK).unwrap(),
        mem,
    )
    .unwrap();
    // Ops of 12 bytes: target, width, offset (u16), value (u64).
    for op in data.chunks_exact(12).take(2000) {
        let width = [1usize, 2, 4, 8][usize::from(op[1] & 3)];
        let off = u64::from(u16::from_le_bytes([op[2], op[3]]));
        let val = u64::from_le_bytes(op[4..12].try_into().unwrap());
        let write = op[0] & 0x80 != 0;
        let bytes = val.to_le_bytes();
        let mut buf = [0u8; 8];
        let dev: &mut dyn BusDevice = match op[0] & 0x7 {
            0 => &mut kbd,
            1 => &mut regs,
            2 => &mut ptr,
            3 => &mut blk,
            4 => {
                let _ = kbd.send_key((val & 0x1ff) as u16, val & 0x200 != 0);
                continue;
            }
            5 => {
                let axis = if val & 1 == 0 { Axis::X } else { Axis::Y };
                ptr.input(&[
                    PointerInput::Abs(axis, (val >> 8) as i64),
                    PointerInput::Btn(Button::WheelUp, val & 2 != 0),
                ]);
                continue;
            }
            6 => {
                let img = fb.screendump();
                assert_eq!(img.rgb.len(), img.width as usize * img.height as usize * 3);
                continue;
            }
            _ => {
                let s = blk.save_state();
                if let Ok(s) = s {
                    let _ = blk.restore_state(&s);
                }
                continue;
            }
        };
        if write {
            dev.write(off % 0x1000, &bytes[..width]);
        } else {
            dev.read(off % 0x1000, &mut buf[..width]);
        }
    }
});
