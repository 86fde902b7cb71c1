//! A socket chardev with its REAL svc-chardev process (the `bulkhead`
//! binary re-executed, sandboxed), driven through the serial port's
//! `CharBackend` interface, plain TCP: bytes flow both ways in order and
//! past the credit window, guest output with no client is dropped but
//! logged, and a client that stops reading never blocks the writer (the
//! vCPU): its excess is dropped and the line recovers once it reads again.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm::chardev::socket::config::{LogFile, Role};
use vmm::chardev::socket::{SocketBackend, SocketChardev, SocketConfig};
use vmm::chardev::CharBackend;
use vmm::services::{ServiceManager, ServiceSettings};

const T: Duration = Duration::from_secs(20);

fn manager() -> Arc<ServiceManager> {
    let settings = ServiceSettings {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_bulkhead")),
        ..ServiceSettings::default()
    };
    Arc::new(ServiceManager::new(settings, Arc::new(|_| {})))
}

fn start(m: &ServiceManager, log: Option<PathBuf>) -> (SocketChardev, SocketBackend, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cfg = SocketConfig {
        id: "t0".into(),
        address: format!("tcp:127.0.0.1:{port},server=on"),
        role: Role::Server {
            listener: l.into(),
            wait: false,
        },
        tls: None,
        authz: None,
        logfile: log.map(|path| LogFile {
            path,
            append: false,
        }),
    };
    let c = SocketChardev::start(m, cfg).unwrap();
    let b = c.backend().unwrap();
    let deadline = Instant::now() + T;
    while c.pid() == 0 {
        assert!(Instant::now() < deadline, "service never came up");
        std::thread::sleep(Duration::from_millis(10));
    }
    (c, b, port)
}

fn connect(c: &SocketChardev, port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(c.wait_connected(Some(T)), "client never reported connected");
    s
}

/// Reads everything the backend offers until `want` bytes arrived.
fn read_input(b: &mut SocketBackend, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + T;
    while got.len() < want {
        let mut pfd = libc::pollfd {
            fd: b.input_fd().unwrap(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        match b.read_input(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read_input: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {want} bytes",
            got.len()
        );
    }
    got
}

#[test]
fn bytes_flow_both_ways_past_the_window() {
    let m = manager();
    let (c, mut b, port) = start(&m, None);
    let mut client = connect(&c, port);
    assert!(c
        .filename()
        .starts_with(&format!("tcp:127.0.0.1:{port},server=on <-> 127.0.0.1:")));

    b.write(b"guest says hi\r\n").unwrap();
    let mut buf = [0u8; 15];
    client.set_read_timeout(Some(T)).unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"guest says hi\r\n");

    // 1 MiB from the client, 16x the credit window, arrives whole and in
    // order at the UART side.
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let sender = {
        let mut w = client.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || w.write_all(&data).unwrap())
    };
    let got = read_input(&mut b, data.len());
    sender.join().unwrap();
    assert!(got == data, "client bytes corrupted or reordered");
    assert_eq!(b.dropped(), 0);
    c.stop();
}

#[test]
fn no_client_means_dropped_but_logged() {
    let m = manager();
    let log = std::env::temp_dir().join(format!("chardev-flow-{}.log", std::process::id()));
    let (c, mut b, port) = start(&m, Some(log.clone()));
    b.write(b"before any client\n").unwrap();
    assert_eq!(b.dropped(), 18);
    let mut client = connect(&c, port);
    b.write(b"after").unwrap();
    let mut buf = [0u8; 5];
    client.set_read_timeout(Some(T)).unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after");
    drop(client);
    let deadline = Instant::now() + T;
    while c.client().is_some() {
        assert!(Instant::now() < deadline, "disconnect not noticed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(c.filename().starts_with("disconnected:tcp:127.0.0.1:"));
    b.write(b"!").unwrap();
    assert_eq!(b.dropped(), 19);
    drop(b);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        b"before any client\nafter!".to_vec()
    );
    let _ = std::fs::remove_file(&log);
    c.stop();
}

#[test]
fn a_client_that_stops_reading_never_blocks_the_writer() {
    let m = manager();
    let (c, mut b, port) = start(&m, None);
    let mut client = connect(&c, port);
    // 16 MiB of guest output while the client reads nothing.
    let chunk = [b'x'; 1024];
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..16 * 1024 {
        let t = Instant::now();
        b.write(&chunk).unwrap();
        slowest = slowest.max(t.elapsed());
    }
    let total = t0.elapsed();
    eprintln!(
        "16 MiB written in {total:?}, slowest write {slowest:?}, dropped {}",
        b.dropped()
    );
    assert!(
        b.dropped() > 8 << 20,
        "most of it is dropped: {}",
        b.dropped()
    );
    assert!(
        slowest < Duration::from_millis(500),
        "a write blocked for {slowest:?}"
    );
    // The client reads again: what was accepted arrives, then the line
    // recovers and new output gets through.
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut drained = 0usize;
    let mut buf = vec![0u8; 65536];
    loop {
        match client.read(&mut buf) {
            Ok(0) => panic!("service closed the slow client"),
            Ok(n) => {
                assert!(buf[..n].iter().all(|&x| x == b'x'));
                drained += n;
            }
            Err(_) => break,
        }
    }
    assert!(drained > 0 && drained < 8 << 20, "drained {drained}");
    let deadline = Instant::now() + T;
    let mut tail = Vec::new();
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while !tail.ends_with(b"END") {
        b.write(b"END").unwrap();
        if let Ok(n) = client.read(&mut buf) {
            tail.extend_from_slice(&buf[..n]);
        }
        assert!(Instant::now() < deadline, "the line never recovered");
    }
    assert!(c.client().is_some(), "the slow client was kept");
    c.stop();
}
