//! HMP as a text console (`-monitor unix:...`) and over a byte stream
//! (`-monitor stdio`), against the fake VM.

mod qmp_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use vmm::hmp::monitor::{serve_stream, HmpServer, SessionEnd};
use vmm::qmp::{EventBus, Listener, Registry, RunState};

fn read_until_prompt(r: &mut impl BufRead) -> String {
    let mut out = Vec::new();
    loop {
        let mut b = [0u8; 1];
        let n = r.read(&mut b).unwrap();
        assert!(
            n > 0,
            "EOF before prompt; got {:?}",
            String::from_utf8_lossy(&out)
        );
        out.push(b[0]);
        if out.ends_with(b"(qemu) ") {
            return String::from_utf8(out).unwrap();
        }
    }
}

#[test]
fn qmp_hmp_over_unix_socket() {
    let vm = qmp_support::FakeVm::new(EventBus::new(), RunState::Running);
    let path = qmp_support::sock_path("hmp");
    let server = HmpServer::start(
        vec![Listener::bind_unix(&path).unwrap()],
        vm.clone(),
        Arc::new(Registry::standard()),
    )
    .unwrap();
    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let banner = read_until_prompt(&mut r);
    assert!(
        banner.starts_with("QEMU 7.2.22 monitor - type 'help' for more information\r\n"),
        "{banner}"
    );
    w.write_all(b"info status\n").unwrap();
    assert_eq!(read_until_prompt(&mut r), "VM status: running\r\n(qemu) ");
    w.write_all(b"stop\r\ninfo status\n").unwrap();
    assert_eq!(read_until_prompt(&mut r), "(qemu) ");
    assert_eq!(read_until_prompt(&mut r), "VM status: paused\r\n(qemu) ");
    w.write_all(b"bogus\n").unwrap();
    assert_eq!(
        read_until_prompt(&mut r),
        "unknown command: 'bogus'\r\n(qemu) "
    );
    // An over-long line is rejected and the session continues.
    w.write_all(&vec![b'a'; 10_000]).unwrap();
    w.write_all(b"\ninfo status\n").unwrap();
    assert_eq!(
        read_until_prompt(&mut r),
        "command line too long\r\n(qemu) "
    );
    assert_eq!(read_until_prompt(&mut r), "VM status: paused\r\n(qemu) ");
    let help = {
        w.write_all(b"help\n").unwrap();
        read_until_prompt(&mut r)
    };
    for cmd in [
        "cont|c",
        "info",
        "quit|q",
        "screendump",
        "sendkey",
        "stop|s",
        "system_reset",
        "object_add",
        "object_del",
    ] {
        assert!(help.contains(cmd), "help lacks {cmd}");
    }
    server.shutdown();
    assert!(!path.exists());
}

#[test]
fn qmp_hmp_over_stdio_stream_until_quit() {
    let vm = qmp_support::FakeVm::new(EventBus::new(), RunState::Running);
    let input = b"c\nsystem_reset\nquit\ninfo status\n".to_vec();
    let mut out = Vec::new();
    let end = serve_stream(&input[..], &mut out, &*vm, &Registry::standard()).unwrap();
    assert_eq!(end, SessionEnd::Quit);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("(qemu) (qemu) (qemu) "), "{text:?}");
    assert_eq!(vm.rec.lock().unwrap().resets, 1);
    assert_eq!(vm.rec.lock().unwrap().quits, 1);
    let mut out = Vec::new();
    let end = serve_stream(&b"info status"[..], &mut out, &*vm, &Registry::standard()).unwrap();
    assert_eq!(end, SessionEnd::Eof);
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("VM status: running"));
}
