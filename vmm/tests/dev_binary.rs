//! Devices through the real `bulkhead` binary: serial on stdio, a raw
//! `-drive ...,if=virtio`, and QMP `screendump`, `send-key` and
//! `input-send-event` reaching the built-in guest.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

struct Vm {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<String>>,
    at: usize,
    qmp: BufReader<UnixStream>,
    dir: PathBuf,
}

impl Vm {
    fn start(tag: &str, image: Option<&PathBuf>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("bulkhead-devbin-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("qmp.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
        cmd.args(["-nographic", "-m", "128M", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()));
        if let Some(img) = image {
            cmd.arg("-drive")
                .arg(format!("file={},format=raw,if=virtio", img.display()));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let t0 = Instant::now();
        let stream = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if t0.elapsed() < T => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("QMP socket: {e}"),
            }
        };
        let mut vm = Self {
            child,
            stdin,
            out,
            at: 0,
            qmp: BufReader::new(stream),
            dir,
        };
        let greeting = vm.qmp_line();
        assert!(greeting.get("QMP").is_some(), "{greeting}");
        assert_eq!(vm.qmp("qmp_capabilities", json!({})), json!({}));
        vm.expect("bulkhead> ");
        vm
    }

    fn qmp_line(&mut self) -> Value {
        let mut line = String::new();
        self.qmp.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn qmp(&mut self, cmd: &str, args: Value) -> Value {
        let req = json!({"execute": cmd, "arguments": args}).to_string() + "\n";
        self.qmp.get_mut().write_all(req.as_bytes()).unwrap();
        loop {
            let v = self.qmp_line();
            if v.get("event").is_some() {
                continue;
            }
            return v
                .get("return")
                .cloned()
                .unwrap_or_else(|| panic!("{cmd}: {v}"));
        }
    }

    fn expect(&mut self, want: &str) -> String {
        let t0 = Instant::now();
        loop {
            {
                let out = self.out.lock().unwrap();
                if let Some(p) = out[self.at..].find(want) {
                    let s = out[self.at..self.at + p + want.len()].to_string();
                    self.at += p + want.len();
                    return s;
                }
                assert!(
                    t0.elapsed() < T,
                    "waiting for {want:?}; got {:?}",
                    &out[self.at..]
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn cmd(&mut self, line: &str, want: &str) -> String {
        self.stdin
            .write_all(format!("{line}\r").as_bytes())
            .unwrap();
        self.expect(want)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pattern(off: u64, seed: u64) -> u64 {
    ((off >> 3) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed
}

#[test]
fn dev_binary_guest_disk_bytes_land_in_the_image() {
    let dir = std::env::temp_dir().join(format!("bulkhead-devbin-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let mut vm = Vm::start("disk", Some(&img));
    vm.cmd("disk write 16 300 0x1234", "seed 0x1234 ok");
    vm.cmd("exit 0", "exit 0");
    let status = vm.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let data = std::fs::read(&img).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    for (i, w) in data[16 * 512..316 * 512].chunks_exact(8).enumerate() {
        let off = 16 * 512 + 8 * i as u64;
        assert_eq!(
            u64::from_le_bytes(w.try_into().unwrap()),
            pattern(off, 0x1234)
        );
    }
    assert!(data[316 * 512..].iter().all(|&b| b == 0));
}

#[test]
fn dev_binary_screendump_send_key_and_pointer() {
    let mut vm = Vm::start("qmp", None);
    vm.cmd("fb", "fb: 1024x768 test card");
    let shot = vm.dir.join("shot.ppm");
    assert_eq!(vm.qmp("screendump", json!({"filename": shot})), json!({}));
    let ppm = std::fs::read(&shot).unwrap();
    let hdr = b"P6\n1024 768\n255\n";
    assert_eq!(&ppm[..hdr.len()], hdr);
    let px = |x: usize, y: usize| {
        let o = hdr.len() + (y * 1024 + x) * 3;
        [ppm[o], ppm[o + 1], ppm[o + 2]]
    };
    // Colour bars: yellow second, blue seventh; grey ramp below.
    assert_eq!(px(64 * 3, 200), [255, 255, 0]);
    assert_eq!(px(64 * 13, 200), [0, 0, 255]);
    assert_eq!(px(0, 700), [0, 0, 0]);

    vm.cmd("input 4", "input: waiting for 4 events");
    assert_eq!(
        vm.qmp(
            "send-key",
            json!({"keys": [{"type": "qcode", "data": "shift"}, {"type": "qcode", "data": "z"}]})
        ),
        json!({})
    );
    vm.expect("key: shift down (0x2a)");
    vm.expect("key: z down (0x2c)");
    vm.expect("key: z up (0x2c)");
    vm.expect("key: shift up (0x2a)");
    vm.cmd("input 1", "input: waiting for 1 events");
    let ev = json!({"events": [
        {"type": "abs", "data": {"axis": "x", "value": 0x7fff}},
        {"type": "abs", "data": {"axis": "y", "value": 1234}},
        {"type": "btn", "data": {"button": "right", "down": true}}
    ]});
    assert_eq!(vm.qmp("input-send-event", ev), json!({}));
    vm.expect("pointer: x=32767 y=1234 buttons=2 wheel=0");
    vm.expect("input: done, 1 events");
}
