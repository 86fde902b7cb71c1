//! IPC round-trip benchmark: request/response through `ipc::Channel`
//! (postcard encode/decode, SCM_RIGHTS-capable sendmsg/recvmsg) against a
//! raw `SOCK_SEQPACKET` socketpair ping-pong with datagrams of the same size,
//! measured in the same run, alternating, between two threads.
//!
//! Run with `bench/ipc/run` (release build). Arguments:
//! `[round_trips_per_sample] [samples]`. Prints the median per-sample
//! round-trip time of each and their ratio; the target is ipc <= 2x raw.
//! Exits non-zero if a ratio exceeds `IPC_BENCH_MAX_RATIO` when that
//! variable is set.

use std::os::fd::{AsRawFd, RawFd};
use std::thread;
use std::time::{Duration, Instant};

use ipc::chardev::{ChardevToCore, CoreToChardev};
use ipc::idle::{CoreToIdle, IdleToCore};
use ipc::{Bytes, Channel};

/// One raw ping-pong round trip of `len`-byte datagrams, `n` times.
fn raw_rounds(n: u64, len: usize) -> Duration {
    let (a, b) = Channel::pair().unwrap();
    let (a, b) = (a.into_fd(), b.into_fd());
    let echo = thread::spawn(move || {
        let mut buf = vec![0u8; len.max(1) + 16];
        loop {
            // SAFETY: recv/send on our own socket with a live buffer.
            let got = unsafe { libc::recv(b.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got <= 0 {
                return;
            }
            // SAFETY: as above; sends the `got` bytes just received.
            let sent = unsafe {
                libc::send(
                    b.as_raw_fd(),
                    buf.as_ptr().cast(),
                    got as usize,
                    libc::MSG_NOSIGNAL,
                )
            };
            if sent < 0 {
                return;
            }
        }
    });
    let fd: RawFd = a.as_raw_fd();
    let out = vec![0x5au8; len];
    let mut inb = vec![0u8; len + 16];
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: send/recv on our own socket with live buffers.
        unsafe {
            assert_eq!(
                libc::send(fd, out.as_ptr().cast(), len, libc::MSG_NOSIGNAL),
                len as isize
            );
            assert_eq!(
                libc::recv(fd, inb.as_mut_ptr().cast(), inb.len(), 0),
                len as isize
            );
        }
    }
    let t = start.elapsed();
    drop(a);
    echo.join().unwrap();
    t
}

/// `n` Ping/Pong round trips through `ipc::Channel`.
fn ipc_ping_rounds(n: u64) -> Duration {
    let (core, svc) = Channel::pair().unwrap();
    let echo = thread::spawn(move || {
        while let Ok(CoreToIdle::Ping(v)) = svc.recv::<CoreToIdle>() {
            svc.send(&IdleToCore::Pong(v)).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..n {
        core.send(&CoreToIdle::Ping(i)).unwrap();
        match core.recv::<IdleToCore>().unwrap() {
            IdleToCore::Pong(v) if v == i => {}
            other => panic!("unexpected reply {other:?}"),
        }
    }
    let t = start.elapsed();
    core.send(&CoreToIdle::Shutdown).unwrap();
    echo.join().unwrap();
    t
}

/// `n` round trips of a `len`-byte chardev `Data` payload, echoed back.
fn ipc_data_rounds(n: u64, len: usize) -> Duration {
    let (core, svc) = Channel::pair().unwrap();
    let echo = thread::spawn(move || {
        while let Ok(CoreToChardev::Data(d)) = svc.recv::<CoreToChardev>() {
            svc.send(&ChardevToCore::Data(d)).unwrap();
        }
    });
    let payload = CoreToChardev::Data(Bytes(vec![0x5a; len]));
    let start = Instant::now();
    for _ in 0..n {
        core.send(&payload).unwrap();
        match core.recv::<ChardevToCore>().unwrap() {
            ChardevToCore::Data(d) if d.len() == len => {}
            other => panic!("unexpected reply {other:?}"),
        }
    }
    let t = start.elapsed();
    core.send(&CoreToChardev::Shutdown).unwrap();
    echo.join().unwrap();
    t
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let samples: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let max_ratio: Option<f64> = std::env::var("IPC_BENCH_MAX_RATIO")
        .ok()
        .and_then(|s| s.parse().ok());

    let ping_len = ipc::to_bytes(&CoreToIdle::Ping(n / 2)).unwrap().len();
    let data_payload = 4096;
    let data_len = ipc::to_bytes(&CoreToChardev::Data(Bytes(vec![0; data_payload])))
        .unwrap()
        .len();

    println!(
        "ipc round-trip benchmark: {samples} samples x {n} round trips, two threads, \
         SOCK_SEQPACKET socketpair"
    );
    let mut worst = 0.0f64;
    type Case<'a> = (&'a str, usize, Box<dyn Fn() -> Duration + 'a>);
    let cases: Vec<Case> = vec![
        ("Ping/Pong", ping_len, Box::new(|| ipc_ping_rounds(n))),
        (
            "Data 4 KiB echo",
            data_len,
            Box::new(|| ipc_data_rounds(n, data_payload)),
        ),
    ];
    for (name, len, ipc_run) in &cases {
        // Warm up both paths.
        raw_rounds(n / 10 + 1, *len);
        ipc_run();
        let (mut raw, mut ipc) = (Vec::new(), Vec::new());
        for _ in 0..samples {
            raw.push(raw_rounds(n, *len).as_secs_f64() * 1e6 / n as f64);
            ipc.push(ipc_run().as_secs_f64() * 1e6 / n as f64);
        }
        let (r, i) = (median(raw), median(ipc));
        let ratio = i / r;
        worst = worst.max(ratio);
        println!(
            "{name:>16} ({len:>5}-byte datagrams): ipc {i:7.2} us/round trip, \
             raw {r:7.2} us/round trip, ratio {ratio:.2}x (target <= 2x)"
        );
    }
    if let Some(max) = max_ratio {
        if worst > max {
            eprintln!("ratio {worst:.2} exceeds IPC_BENCH_MAX_RATIO={max}");
            std::process::exit(1);
        }
    }
}
