//! End to end through the real `bulkhead` binary with the built-in guest:
//! serial console on stdio, a raw disk image, the framebuffer through QMP
//! `screendump`, keys through QMP `send-key`, and command-line errors.

use std::path::Path;
use std::time::Duration;

use bulkhead_tests::{have_kvm, BulkheadProcess, QmpClient};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn kvm_or_skip() -> bool {
    if have_kvm() {
        return true;
    }
    if std::env::var_os("BULKHEAD_REQUIRE_PEERS").is_some() {
        panic!("/dev/kvm is required");
    }
    eprintln!("SKIPPED: no usable /dev/kvm");
    false
}

/// The guest's disk pattern (guest/src/virtio_blk.rs `pattern`).
fn pattern(off: u64, seed: u64) -> u64 {
    ((off >> 3) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed
}

fn parse_ppm(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    // "P6\n<w> <h>\n255\n" then RGB.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).into_owned());
    }
    assert_eq!(fields[0], "P6");
    assert_eq!(fields[3], "255");
    let w: u32 = fields[1].parse().unwrap();
    let h: u32 = fields[2].parse().unwrap();
    let data = bytes[i + 1..].to_vec();
    assert_eq!(data.len(), (w * h * 3) as usize);
    (w, h, data)
}

#[test]
fn serial_banner_prompt_echo_and_exit_status() {
    if !kvm_or_skip() {
        return;
    }
    let mut vm =
        BulkheadProcess::start(&["-nodefaults", "-serial", "stdio", "-m", "128M"]).unwrap();
    let at = vm.serial.wait_for("Bulkhead test guest", T).unwrap();
    let at = vm.serial.wait_for_from(at, "bulkhead> ", T).unwrap();
    vm.type_serial("echo hello-from-host\r").unwrap();
    // The guest echoes what is typed, then prints the argument on its own line.
    let at = vm
        .serial
        .wait_for_from(at, "echo hello-from-host", T)
        .unwrap();
    vm.serial
        .wait_for_from(at, "\r\nhello-from-host\r\n", T)
        .unwrap();
    vm.type_serial("exit 3\r").unwrap();
    let st = vm.wait_exit(T).unwrap();
    assert_eq!(
        st.code(),
        Some(3),
        "exit status from the guest's debug-exit port"
    );
}

#[test]
fn guest_disk_writes_land_in_the_image_file() {
    if !kvm_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let drive = format!("file={},format=raw,if=virtio", img.display());
    let mut vm =
        BulkheadProcess::start(&["-nodefaults", "-serial", "stdio", "-drive", &drive]).unwrap();
    let at = vm.serial.wait_for("bulkhead> ", T).unwrap();
    vm.type_serial("disk write 8 64 77\r").unwrap();
    let at = vm
        .serial
        .wait_for_from(at, "disk: wrote 64 sectors at 8 seed 0x4d ok", T)
        .unwrap();
    vm.serial.wait_for_from(at, "bulkhead> ", T).unwrap();
    vm.type_serial("exit 0\r").unwrap();
    assert_eq!(vm.wait_exit(T).unwrap().code(), Some(0));

    let data = std::fs::read(&img).unwrap();
    assert_eq!(data.len(), 1 << 20, "image size unchanged");
    assert!(
        data[..8 * 512].iter().all(|&b| b == 0),
        "sectors before the write untouched"
    );
    for w in 0..(64 * 512 / 8) {
        let off = 8 * 512 + w * 8;
        let got = u64::from_le_bytes(data[off..off + 8].try_into().unwrap());
        assert_eq!(got, pattern(off as u64, 77), "word at byte {off}");
    }
    assert!(
        data[(8 + 64) * 512..].iter().all(|&b| b == 0),
        "sectors after the write untouched"
    );
}

#[test]
fn screendump_and_send_key_over_qmp() {
    if !kvm_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let qmp_arg = format!("unix:{},server=on,wait=off", sock.display());
    let mut vm =
        BulkheadProcess::start(&["-nodefaults", "-serial", "stdio", "-qmp", &qmp_arg]).unwrap();
    let at = vm.serial.wait_for("bulkhead> ", T).unwrap();
    let mut qmp = QmpClient::connect(&sock, T).unwrap();

    vm.type_serial("fb 1024x768\r").unwrap();
    let at = vm
        .serial
        .wait_for_from(at, "fb: 1024x768 test card", T)
        .unwrap();

    // PPM (default format): compare the colour bars pixel by pixel.
    let ppm = dir.path().join("screen.ppm");
    let r = qmp
        .execute("screendump", json!({"filename": ppm.to_str().unwrap()}))
        .unwrap();
    assert_eq!(r, json!({"return": {}}), "{r}");
    let (w, h, rgb) = parse_ppm(&std::fs::read(&ppm).unwrap());
    assert_eq!((w, h), (1024, 768));
    let bars: [[u8; 3]; 8] = [
        [255, 255, 255],
        [255, 255, 0],
        [0, 255, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [0, 0, 0],
    ];
    for (i, want) in bars.iter().enumerate() {
        for y in [10u32, 200, 500] {
            let x = i as u32 * 128 + 64;
            let o = ((y * w + x) * 3) as usize;
            assert_eq!(&rgb[o..o + 3], want, "bar {i} at ({x},{y})");
        }
    }
    // The grey ramp in the bottom third.
    let o = ((700 * w + 1000) * 3) as usize;
    assert!(rgb[o] > 200 && rgb[o] == rgb[o + 1] && rgb[o] == rgb[o + 2]);

    // PNG when asked.
    let png = dir.path().join("screen.png");
    let r = qmp
        .execute(
            "screendump",
            json!({"filename": png.to_str().unwrap(), "format": "png"}),
        )
        .unwrap();
    assert_eq!(r, json!({"return": {}}), "{r}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1024);
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 768);

    // send-key reaches the guest's i8042 driver, which reports on serial.
    vm.type_serial("input 2\r").unwrap();
    let at = vm
        .serial
        .wait_for_from(at, "input: waiting for 2 events", T)
        .unwrap();
    let r = qmp
        .execute(
            "send-key",
            json!({"keys": [{"type": "qcode", "data": "b"}]}),
        )
        .unwrap();
    assert_eq!(r, json!({"return": {}}), "{r}");
    let at = vm.serial.wait_for_from(at, "key: ", T).unwrap();
    vm.serial
        .wait_for_from(at, "input: done, 2 events", T)
        .unwrap();
    let text = vm.serial.text();
    assert!(
        text.contains("down") && text.contains("up"),
        "press and release: {text}"
    );

    let r = qmp.execute("quit", json!({})).unwrap();
    assert_eq!(r, json!({"return": {}}));
    assert_eq!(vm.wait_exit(T).unwrap().code(), Some(0));
    assert!(
        !Path::new(&sock).exists(),
        "QMP socket file removed on quit"
    );
}

#[test]
fn command_line_errors_name_the_option_and_exit_1() {
    for (args, want) in [
        (&["-frobnicate"][..], "-frobnicate"),
        (&["-m"][..], "-m"),
        (&["-m", "lots"][..], "-m"),
        (
            &[
                "-drive",
                "file=/nonexistent/disk.img,format=raw,if=virtio",
                "-nodefaults",
            ][..],
            "/nonexistent/disk.img",
        ),
        (&["-netdev", "user,id=n0"][..], "-netdev"),
        (&["-smp", "0"][..], "smp"),
    ] {
        let out = std::process::Command::new(bulkhead_tests::bulkhead_bin())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(want),
            "{args:?}: message should name {want}: {err}"
        );
        assert!(err.starts_with("bulkhead: "), "{args:?}: {err}");
    }
}

#[test]
fn version_and_help() {
    let out = std::process::Command::new(bulkhead_tests::bulkhead_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bulkhead") && text.contains("7.2.22"),
        "{text}"
    );
    let out = std::process::Command::new(bulkhead_tests::bulkhead_bin())
        .arg("-h")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-qmp") && text.contains("-object"), "{text}");
}

/// `qemu.qmp`'s usual `execute('quit')` then `disconnect()` ends cleanly, as
/// it does against QEMU (the server lets the client hang up first).
#[test]
fn qemu_qmp_quit_then_disconnect_is_clean() {
    if !kvm_or_skip() {
        return;
    }
    let have = std::process::Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .status()
        .is_ok_and(|s| s.success());
    if !bulkhead_tests::require_peer("python3 qemu.qmp", have) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let qmp_arg = format!("unix:{},server=on,wait=off", sock.display());
    let mut vm =
        BulkheadProcess::start(&["-nodefaults", "-serial", "null", "-qmp", &qmp_arg]).unwrap();
    let script = format!(
        "import asyncio, time\n\
         from qemu.qmp import QMPClient\n\
         async def main():\n\
         \x20   c = QMPClient('t')\n\
         \x20   for _ in range(500):\n\
         \x20       try:\n\
         \x20           await c.connect('{}')\n\
         \x20           break\n\
         \x20       except Exception:\n\
         \x20           await asyncio.sleep(0.02)\n\
         \x20   await c.execute('quit')\n\
         \x20   await c.disconnect()\n\
         \x20   print('clean')\n\
         asyncio.run(main())\n",
        sock.display()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("clean"),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(vm.wait_exit(T).unwrap().code(), Some(0));
}
