//! Devices end to end: the built-in guest drives virtio-blk, the
//! framebuffer, the i8042 keyboard and the absolute pointer through the
//! platform devices attached to a real VM (KVM), talking over its serial
//! shell; the host checks the image file, screendumps and serial output.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vmm::chardev::capture::{capture, CaptureHandle};
use vmm::devices::framebuffer::Image;
use vmm::devices::platform::{attach, DriveSpec, PlatformDevices};
use vmm::devices::pointer::{Axis, Button, PointerInput};
use vmm::devices::virtio::block::RawFile;
use vmm::vm::{Vm, VmConfig};

const T: Duration = Duration::from_secs(60);

struct TempImage(PathBuf);
impl TempImage {
    fn new(tag: &str, len: u64) -> Self {
        let p = std::env::temp_dir().join(format!("bulkhead-dev-{tag}-{}.img", std::process::id()));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(len).unwrap();
        Self(p)
    }
}
impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Guest {
    vm: Vm,
    serial: CaptureHandle,
    dev: PlatformDevices,
    at: usize,
}

impl Guest {
    fn boot(drives: Vec<DriveSpec>) -> Self {
        let (backend, serial) = capture().unwrap();
        let vm = Vm::new(VmConfig::builtin(256 << 20, Box::new(backend))).unwrap();
        let dev = attach(&vm, drives).unwrap();
        vm.start().unwrap();
        let at = serial
            .wait_for("bulkhead> ", 0, T)
            .unwrap_or_else(|| panic!("no prompt: {:?}", serial.text()));
        Self {
            vm,
            serial,
            dev,
            at,
        }
    }

    /// Run a shell command and wait until `want` appears in its output.
    fn cmd(&mut self, line: &str, want: &str) -> String {
        self.serial.send(format!("{line}\r").as_bytes()).unwrap();
        self.expect(want)
    }

    fn expect(&mut self, want: &str) -> String {
        let start = self.at;
        let end = self.serial.wait_for(want, self.at, T).unwrap_or_else(|| {
            panic!(
                "waiting for {want:?}; serial so far: {:?}",
                &self.serial.text()[start..]
            )
        });
        self.at = end;
        self.serial.text()[start..end].to_string()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.vm.pause();
    }
}

/// Mirror of the guest's disk pattern (guest/src/virtio_blk.rs).
fn pattern(off: u64, seed: u64) -> u64 {
    ((off >> 3) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed
}

#[test]
fn dev_guest_disk_write_verify_read_through_virtio_blk() {
    let img = TempImage::new("disk", 8 << 20);
    let backend = Arc::new(RawFile::open(&img.0, false).unwrap());
    let mut g = Guest::boot(vec![DriveSpec {
        backend,
        read_only: false,
        serial: "d0".into(),
    }]);
    g.cmd("disk info", "capacity 16384 sectors (8 MiB)");
    // 2000 sectors = 1000 KiB: four 256 KiB requests in one batch, then flush.
    let out = g.cmd("disk write 100 2000 0x5a", "KiB/s)\r\n");
    assert!(
        out.contains("disk: wrote 2000 sectors at 100 seed 0x5a ok"),
        "{out}"
    );
    eprintln!(
        "guest: {}",
        out.lines().find(|l| l.contains("wrote")).unwrap_or("")
    );
    // The image file has exactly the guest's bytes, and nothing around them.
    let mut f = std::fs::File::open(&img.0).unwrap();
    let mut data = vec![0u8; 8 << 20];
    f.read_exact(&mut data).unwrap();
    for (i, w) in data[100 * 512..2100 * 512].chunks_exact(8).enumerate() {
        let off = 100 * 512 + i as u64 * 8;
        assert_eq!(
            u64::from_le_bytes(w.try_into().unwrap()),
            pattern(off, 0x5a),
            "word at {off:#x}"
        );
    }
    assert!(data[..100 * 512].iter().all(|&b| b == 0));
    assert!(data[2100 * 512..].iter().all(|&b| b == 0));
    g.cmd(
        "disk verify 100 2000 0x5a",
        "disk: verify 2000 sectors at 100 seed 0x5a ok",
    );
    // A host write is seen by the guest: read checksum matches.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&img.0)
        .unwrap();
    let host: Vec<u8> = (0..64 * 512).map(|i| (i * 7 + 3) as u8).collect();
    f.seek(SeekFrom::Start(5000 * 512)).unwrap();
    f.write_all(&host).unwrap();
    f.sync_all().unwrap();
    let sum = host.chunks_exact(8).fold(0u64, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()))
    });
    g.cmd("disk read 5000 64", &format!("checksum {sum:#018x}"));
    // Out of range is refused by the driver; a wrong seed fails verification.
    g.cmd("disk write 16380 8", "outside");
    g.cmd("disk verify 100 8 0x5b", "verify FAIL at sector 100");
}

#[test]
fn dev_guest_disk_batched_throughput() {
    let img = TempImage::new("tput", 64 << 20);
    let backend = Arc::new(RawFile::open(&img.0, false).unwrap());
    let mut g = Guest::boot(vec![DriveSpec {
        backend,
        read_only: false,
        serial: "t".into(),
    }]);
    let w = g.cmd("disk write 0 131072 0x77", "KiB/s)\r\n");
    assert!(w.contains("wrote 131072 sectors at 0 seed 0x77 ok"), "{w}");
    let v = g.cmd("disk verify 0 131072 0x77", " us)\r\n");
    assert!(v.contains("verify 131072 sectors at 0 seed 0x77 ok"), "{v}");
    for l in w
        .lines()
        .chain(v.lines())
        .filter(|l| l.starts_with("disk:"))
    {
        eprintln!("guest (64 MiB): {l}");
    }
    let data = std::fs::read(&img.0).unwrap();
    let last = data.len() - 8;
    assert_eq!(
        u64::from_le_bytes(data[last..].try_into().unwrap()),
        pattern(last as u64, 0x77)
    );
}

#[test]
fn dev_guest_read_only_drive_refuses_writes() {
    let img = TempImage::new("ro", 1 << 20);
    let backend = Arc::new(RawFile::open(&img.0, true).unwrap());
    let mut g = Guest::boot(vec![DriveSpec {
        backend,
        read_only: true,
        serial: "ro".into(),
    }]);
    g.cmd("disk info", "read-only");
    g.cmd("disk write 0 8 1", "failed with status 1");
    assert!(std::fs::read(&img.0).unwrap().iter().all(|&b| b == 0));
}

fn bar_centres(img: &Image) -> Vec<[u8; 3]> {
    (0..8)
        .map(|i| {
            img.pixel(img.width * (2 * i + 1) / 16, img.height / 3)
                .unwrap()
        })
        .collect()
}

#[test]
fn dev_guest_framebuffer_screendump_and_animation() {
    let mut g = Guest::boot(vec![]);
    g.cmd("fb", "fb: 1024x768 test card");
    let img = g.dev.framebuffer.screendump();
    assert_eq!((img.width, img.height), (1024, 768));
    assert_eq!(
        bar_centres(&img),
        vec![
            [255, 255, 255],
            [255, 255, 0],
            [0, 255, 255],
            [0, 255, 0],
            [255, 0, 255],
            [255, 0, 0],
            [0, 0, 255],
            [0, 0, 0]
        ]
    );
    // Grey ramp below the bars.
    assert_eq!(img.pixel(0, 700), Some([0, 0, 0]));
    let p = img.pixel(1023, 700).unwrap();
    assert!(p[0] > 250 && p[0] == p[1] && p[1] == p[2], "{p:?}");
    // The banner text is drawn in its own colour.
    let text = img
        .rgb
        .chunks_exact(3)
        .filter(|p| *p == [0x20, 0x60, 0xc0])
        .count();
    assert!(text > 1000, "banner pixels: {text}");
    // PPM and PNG encodings of the guest picture.
    let dir = std::env::temp_dir();
    let ppm = dir.join(format!("bulkhead-dev-shot-{}.ppm", std::process::id()));
    img.write_file(&ppm, vmm::devices::framebuffer::ImageFormat::Ppm)
        .unwrap();
    let bytes = std::fs::read(&ppm).unwrap();
    let _ = std::fs::remove_file(&ppm);
    assert!(bytes.starts_with(b"P6\n1024 768\n255\n"));
    assert_eq!(bytes.len(), 16 + 1024 * 768 * 3);

    // Something moves: the square shows up, at different places over time.
    let orange = |img: &Image| -> Vec<usize> {
        img.rgb
            .chunks_exact(3)
            .enumerate()
            .filter(|(_, p)| *p == [0xff, 0x80, 0x00])
            .map(|(i, _)| i)
            .collect()
    };
    g.cmd("fb anim 20", "fb: 20 frames");
    let a = orange(&g.dev.framebuffer.screendump());
    g.cmd("fb anim 20", "fb: 20 frames");
    let b = orange(&g.dev.framebuffer.screendump());
    assert_eq!(a.len(), 48 * 48);
    assert_eq!(b.len(), 48 * 48);
    assert_ne!(a[0], b[0], "the square moved");
}

#[test]
fn dev_guest_sees_keys_and_pointer_events() {
    let mut g = Guest::boot(vec![]);
    g.cmd("fb", "test card");
    g.cmd("input 5", "input: waiting for 5 events");
    {
        let mut k = g.dev.i8042.lock().unwrap();
        k.send_qcode("a", true).unwrap();
        k.send_qcode("a", false).unwrap();
        k.send_qcode("up", true).unwrap();
    }
    g.expect("key: a down (0x1e)");
    g.expect("key: a up (0x1e)");
    g.expect("key: up down (0xc8)");
    g.dev.pointer.lock().unwrap().input(&[
        PointerInput::Abs(Axis::X, 0x4000),
        PointerInput::Abs(Axis::Y, 0x2000),
        PointerInput::Btn(Button::Left, true),
    ]);
    g.expect("pointer: x=16384 y=8192 buttons=1 wheel=0");
    g.dev.pointer.lock().unwrap().input(&[
        PointerInput::Btn(Button::Left, false),
        PointerInput::Btn(Button::WheelDown, true),
    ]);
    g.expect("pointer: x=16384 y=8192 buttons=0 wheel=-1");
    g.expect("input: done, 5 events");
    // On screen: the cursor at (512, 192) and one key box per press.
    let img = g.dev.framebuffer.screendump();
    assert_eq!(img.pixel(514, 194), Some([255, 255, 255]));
    assert_eq!(img.pixel(10, 768 - 20), Some([255, 255, 0]));
}

#[test]
fn dev_guest_i8042_reset_restarts_the_guest() {
    let mut g = Guest::boot(vec![]);
    let rx = g.vm.subscribe();
    // The guest has the i8042 ports: ask the shell? It has no command for
    // it, so pulse reset from the device side as the guest would (0xFE).
    use vmm::devices::bus::BusDevice;
    g.dev.i8042.lock().unwrap().write(4, &[0xfe]);
    let deadline = std::time::Instant::now() + T;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(vmm::vm::VmEvent::Reset { .. }) => break,
            Ok(_) => continue,
            Err(e) => panic!("no reset event: {e}"),
        }
    }
    g.expect("Bulkhead test guest v");
    g.expect("bulkhead> ");
}
