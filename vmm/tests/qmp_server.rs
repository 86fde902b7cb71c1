//! The QMP server against a fake VM on real sockets: protocol shapes as
//! observed on QEMU 7.2, bounded input, events, several clients, fd passing.

mod qmp_support;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vmm::qmp::{EventBus, KeyValue, Listener, Registry, RunState, Server, ServerHandle};

use qmp_support::{err, sock_path, Client, FakeVm};

fn start(tag: &str, state: RunState) -> (ServerHandle, Arc<FakeVm>, std::path::PathBuf) {
    let path = sock_path(tag);
    let bus = EventBus::new();
    let vm = FakeVm::new(bus.clone(), state);
    let h = Server::start_with(
        vec![Listener::bind_unix(&path).unwrap()],
        vm.clone(),
        bus,
        Registry::standard(),
    )
    .unwrap();
    (h, vm, path)
}

#[test]
fn qmp_greeting_and_negotiation_match_qemu() {
    let (_h, _vm, path) = start("greet", RunState::Running);
    let mut c = Client::connect(&path);
    let line = c.recv_line();
    let g: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        g["QMP"]["version"]["qemu"],
        json!({"major": 7, "minor": 2, "micro": 22})
    );
    assert_eq!(g["QMP"]["capabilities"], json!(["oob"]));
    assert!(g["QMP"]["version"]["package"]
        .as_str()
        .unwrap()
        .starts_with("bulkhead-"));
    // Before negotiation: CommandNotFound with QEMU's text, id echoed.
    let r = c.cmd(r#"{"execute":"query-status","id":1}"#);
    let mut want = err(
        "CommandNotFound",
        "Expecting capabilities negotiation with 'qmp_capabilities'",
    );
    want["id"] = json!(1);
    assert_eq!(r, want);
    // Structural checks still come first, as in QEMU.
    assert_eq!(
        c.cmd("{}"),
        err("GenericError", "QMP input lacks member 'execute'")
    );
    assert_eq!(
        c.cmd(r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":"n"}"#),
        json!({"return": {}, "id": "n"})
    );
    assert_eq!(
        c.cmd(r#"{"execute":"qmp_capabilities"}"#),
        err(
            "CommandNotFound",
            "Capabilities negotiation is already complete, command ignored"
        )
    );
    let r = c.cmd(r#"{"execute":"query-version","id":{"a":[1,null]}}"#);
    assert_eq!(r["id"], json!({"a": [1, null]}));
    assert_eq!(r["return"]["qemu"]["major"], 7);
    // Raw layout: QEMU's separators, return before id.
    c.send(r#"{"execute":"query-status","id":7}"#);
    assert_eq!(c.recv_line(), "{\"return\": {\"running\": true, \"singlestep\": false, \"status\": \"running\"}, \"id\": 7}\r\n");
}

#[test]
fn qmp_errors_keep_the_connection_usable() {
    let (_h, _vm, path) = start("errors", RunState::Running);
    let mut c = Client::negotiated(&path);
    let cases: &[(&str, Value)] = &[
        (
            "{\"execute\": \ngarbage}",
            err(
                "GenericError",
                "JSON parse error, invalid keyword 'garbage'",
            ),
        ),
        (
            "[1, 2]",
            err("GenericError", "QMP input must be a JSON object"),
        ),
        (
            r#""abc""#,
            err("GenericError", "QMP input must be a JSON object"),
        ),
        (r#"{"execute":"nosuch","id":"x"}"#, {
            let mut e = err("CommandNotFound", "The command nosuch has not been found");
            e["id"] = json!("x");
            e
        }),
        (
            r#"{"execute":"screendump","arguments":{"filename":1}}"#,
            err(
                "GenericError",
                "Invalid parameter type for 'filename', expected: string",
            ),
        ),
        (
            r#"{"execute":"screendump"}"#,
            err("GenericError", "Parameter 'filename' is missing"),
        ),
        (
            r#"{"execute":"query-status","arguments":{"a":1}}"#,
            err("GenericError", "Parameter 'a' is unexpected"),
        ),
        (
            r#"{"execute":"stop","arguments":[1]}"#,
            err(
                "GenericError",
                "QMP input member 'arguments' must be an object",
            ),
        ),
        (
            r#"{"execute":1}"#,
            err(
                "GenericError",
                "QMP input member 'execute' must be a string",
            ),
        ),
        (
            r#"{"foo":1}"#,
            err("GenericError", "QMP input member 'foo' is unexpected"),
        ),
        (
            r#"{"exec-oob":"query-status"}"#,
            err(
                "GenericError",
                "The command query-status does not support OOB",
            ),
        ),
        (
            r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"nokey"}]}}"#,
            err(
                "GenericError",
                "Parameter 'data' does not accept value 'nokey'",
            ),
        ),
        (
            r#"{"execute":"send-key","arguments":{"keys":[],"hold-time":"x"}}"#,
            err(
                "GenericError",
                "Invalid parameter type for 'hold-time', expected: integer",
            ),
        ),
        (
            r#"{"execute":"input-send-event","arguments":{"events":[{"type":"abs","data":{"axis":"x"}}]}}"#,
            err(
                "GenericError",
                "Parameter 'events[0].data.value' is missing",
            ),
        ),
        (
            r#"{"execute":"screendump","arguments":{"filename":"/tmp/x","format":"jpg"}}"#,
            err(
                "GenericError",
                "Parameter 'format' does not accept value 'jpg'",
            ),
        ),
        (
            r#"{"execute":"screendump","arguments":{"filename":"/tmp/x","head":1}}"#,
            err(
                "GenericError",
                "'head' must be specified together with 'device'",
            ),
        ),
        (
            r#"{"execute":"screendump","arguments":{"filename":"/tmp/x","device":"nope"}}"#,
            err("DeviceNotFound", "Device 'nope' not found"),
        ),
        (
            r#"{"execute":"closefd","arguments":{"fdname":"x"}}"#,
            err("GenericError", "File descriptor named 'x' not found"),
        ),
        (
            r#"{"execute":"getfd","arguments":{"fdname":"x"}}"#,
            err("GenericError", "No file descriptor supplied via SCM_RIGHTS"),
        ),
        (
            r#"{"execute":"object-del","arguments":{"id":"nope"}}"#,
            err("GenericError", "object 'nope' not found"),
        ),
        (
            r#"{"execute":"query-status","id":1,"id":2}"#,
            err("GenericError", "JSON parse error, duplicate key"),
        ),
        (
            "}",
            err("GenericError", "JSON parse error, expecting value"),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(&c.cmd(input), want, "input {input}");
        // Still usable after every error.
        assert_eq!(
            c.cmd(r#"{"execute":"query-status"}"#)["return"]["status"],
            "running"
        );
    }
}

#[test]
fn qmp_streaming_and_size_limits() {
    let (_h, _vm, path) = start("stream", RunState::Running);
    let mut c = Client::negotiated(&path);
    // Several requests in one write.
    c.send(r#"{"execute":"query-name","id":1}{"execute":"query-kvm","id":2} {"execute":"query-target","id":3}"#);
    assert_eq!(c.recv(), json!({"return": {"name": "testvm"}, "id": 1}));
    assert_eq!(
        c.recv(),
        json!({"return": {"enabled": true, "present": true}, "id": 2})
    );
    assert_eq!(c.recv(), json!({"return": {"arch": "x86_64"}, "id": 3}));
    // One request a byte at a time.
    for b in br#"{"execute":"query-name","id":"slow"}"#.iter() {
        c.stream.write_all(std::slice::from_ref(b)).unwrap();
    }
    assert_eq!(
        c.recv(),
        json!({"return": {"name": "testvm"}, "id": "slow"})
    );
    // A 2 MiB request is parsed whole, like QEMU.
    let pad = "x".repeat(2 << 20);
    let t = Instant::now();
    c.send(&format!(
        r#"{{"execute":"query-status","arguments":{{"pad":"{pad}"}}}}"#
    ));
    assert_eq!(
        c.recv(),
        err("GenericError", "Parameter 'pad' is unexpected")
    );
    let two_mib = t.elapsed();
    // A 6 MiB request exceeds the limit: one error, then the stream resyncs.
    let pad = "}".repeat(6 << 20);
    c.send(&format!(
        r#"{{"execute":"query-status","arguments":{{"pad":"{pad}"}}}}"#
    ));
    let r = c.recv();
    assert_eq!(r["error"]["class"], "GenericError");
    assert!(
        r["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("maximum request size of 4194304"),
        "{r}"
    );
    assert_eq!(
        c.cmd(r#"{"execute":"query-name"}"#),
        json!({"return": {"name": "testvm"}})
    );
    // The id is echoed even when it comes after the oversize member.
    c.send(&format!(
        r#"{{"execute":"query-status","arguments":{{"pad":"{pad}"}},"id":"big-1"}}"#
    ));
    let r = c.recv();
    assert_eq!(r["id"], "big-1", "{r}");
    assert_eq!(r["error"]["class"], "GenericError");
    // Deep nesting is bounded too.
    c.send(&("[".repeat(5000) + &"]".repeat(5000)));
    assert_eq!(
        c.recv(),
        err("GenericError", "JSON nesting depth limit exceeded")
    );
    assert_eq!(
        c.cmd(r#"{"execute":"query-name"}"#),
        json!({"return": {"name": "testvm"}})
    );
    eprintln!("2 MiB request answered in {two_mib:?} (QEMU 7.2: 4-9 s)");
    assert!(
        two_mib < Duration::from_secs(3),
        "2 MiB request took {two_mib:?}"
    );
}

#[test]
fn qmp_stop_cont_events_reach_every_client_before_the_return() {
    let (_h, _vm, path) = start("events", RunState::Running);
    let mut a = Client::negotiated(&path);
    let mut b = Client::negotiated(&path);
    let mut unnegotiated = Client::connect(&path);
    let _greeting = unnegotiated.recv();
    assert_eq!(
        a.cmd(r#"{"execute":"query-status"}"#)["return"],
        json!({"status": "running", "singlestep": false, "running": true})
    );
    a.send(r#"{"execute":"stop","id":"s"}"#);
    let ev = a.recv();
    assert_eq!(ev["event"], "STOP");
    assert!(ev["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
    assert!(ev["timestamp"]["microseconds"].as_u64().unwrap() < 1_000_000);
    assert_eq!(a.recv(), json!({"return": {}, "id": "s"}));
    assert_eq!(b.recv()["event"], "STOP");
    assert_eq!(
        b.cmd(r#"{"execute":"query-status"}"#)["return"],
        json!({"status": "paused", "singlestep": false, "running": false})
    );
    // stop again: no event.
    assert_eq!(a.cmd(r#"{"execute":"stop"}"#), json!({"return": {}}));
    a.send(r#"{"execute":"cont"}"#);
    assert_eq!(a.recv()["event"], "RESUME");
    assert_eq!(a.recv(), json!({"return": {}}));
    assert_eq!(b.recv()["event"], "RESUME");
    a.send(r#"{"execute":"system_reset"}"#);
    let ev = a.recv();
    assert_eq!(
        (ev["event"].clone(), ev["data"].clone()),
        (
            json!("RESET"),
            json!({"guest": false, "reason": "host-qmp-system-reset"})
        )
    );
    assert_eq!(a.recv(), json!({"return": {}}));
    a.send(r#"{"execute":"system_powerdown"}"#);
    assert_eq!(a.recv()["event"], "POWERDOWN");
    assert_eq!(a.recv(), json!({"return": {}}));
    // The un-negotiated client got no events.
    unnegotiated
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let got = std::io::Read::read(&mut unnegotiated.stream, &mut buf);
    assert!(got.is_err(), "events before negotiation: {got:?}");
}

#[test]
fn qmp_quit_sends_shutdown_then_return_then_closes_and_removes_socket() {
    let (mut h, vm, path) = start("quit", RunState::Running);
    let mut a = Client::negotiated(&path);
    let mut other = Client::negotiated(&path);
    a.send(r#"{"execute":"quit","id":9}"#);
    let ev = a.recv();
    assert_eq!(ev["event"], "SHUTDOWN");
    assert_eq!(
        ev["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    assert_eq!(a.recv(), json!({"return": {}, "id": 9}));
    assert!(a.at_eof());
    assert_eq!(other.recv()["event"], "SHUTDOWN");
    assert!(other.at_eof());
    h.wait();
    assert!(h.quit_requested());
    assert!(!path.exists(), "socket file must be removed");
    assert_eq!(vm.rec.lock().unwrap().quits, 1);
}

#[test]
fn qmp_serves_many_clients_at_once() {
    let (h, _vm, path) = start("many", RunState::Running);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let p = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::negotiated(&p);
                for j in 0..50 {
                    let r = c.cmd(&format!(r#"{{"execute":"query-name","id":[{i},{j}]}}"#));
                    assert_eq!(r, json!({"return": {"name": "testvm"}, "id": [i, j]}));
                }
                c
            })
        })
        .collect();
    let clients: Vec<Client> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(h.clients(), 8);
    h.emit_event("POWERDOWN", None);
    for mut c in clients {
        assert_eq!(c.recv()["event"], "POWERDOWN");
    }
}

#[test]
fn qmp_client_that_never_reads_cannot_block_events() {
    let (h, _vm, path) = start("slow", RunState::Running);
    let mut c = Client::negotiated(&path);
    let mut reader = Client::negotiated(&path);
    let _ = &mut c; // `c` never reads again
    let t = Instant::now();
    let data = json!({"pad": "y".repeat(64 << 10)});
    for _ in 0..400 {
        h.emit_event("BULKHEAD_TEST", Some(data.clone()));
        // The reading client keeps up.
        assert_eq!(reader.recv()["event"], "BULKHEAD_TEST");
    }
    assert!(t.elapsed() < Duration::from_secs(20));
    // 25 MiB of events queued for `c` exceeds the output bound: dropped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.clients() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        h.clients(),
        1,
        "the non-reading client must be disconnected"
    );
}

#[test]
fn qmp_getfd_closefd_with_scm_rights() {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let (_h, _vm, path) = start("fd", RunState::Running);
    let mut c = Client::negotiated(&path);
    let file = std::fs::File::open("/dev/null").unwrap();
    let fds = [file.as_raw_fd()];
    let msg = br#"{"execute":"getfd","arguments":{"fdname":"mig"}}"#;
    let iov = [std::io::IoSlice::new(msg)];
    sendmsg::<()>(
        c.stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(c.recv(), json!({"return": {}}));
    assert_eq!(
        c.cmd(r#"{"execute":"closefd","arguments":{"fdname":"mig"}}"#),
        json!({"return": {}})
    );
    assert_eq!(
        c.cmd(r#"{"execute":"closefd","arguments":{"fdname":"mig"}}"#),
        err("GenericError", "File descriptor named 'mig' not found")
    );
    let msg = br#"{"execute":"getfd","arguments":{"fdname":"1abc"}}"#;
    let iov = [std::io::IoSlice::new(msg)];
    sendmsg::<()>(
        c.stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(
        c.recv(),
        err(
            "GenericError",
            "Parameter 'fdname' expects a name not starting with a digit"
        )
    );
}

#[test]
fn qmp_commands_reach_the_backend() {
    let (_h, vm, path) = start("cmds", RunState::Prelaunch);
    let mut c = Client::negotiated(&path);
    assert_eq!(
        c.cmd(r#"{"execute":"query-status"}"#)["return"]["status"],
        "prelaunch"
    );
    let r = c.cmd(r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"number","data":30}],"hold-time":50}}"#);
    assert_eq!(r, json!({"return": {}}));
    let r = c.cmd(r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"a"}]}}"#);
    assert_eq!(r, json!({"return": {}}));
    // Like QEMU: no input while the VM is not running.
    let r = c.cmd(r#"{"execute":"input-send-event","arguments":{"events":[]}}"#);
    assert_eq!(r, err("GenericError", "VM not running"));
    c.send(r#"{"execute":"cont"}"#);
    assert_eq!(c.recv()["event"], "RESUME");
    assert_eq!(c.recv(), json!({"return": {}}));
    let r = c.cmd(r#"{"execute":"input-send-event","arguments":{"events":[{"type":"abs","data":{"axis":"x","value":100}},{"type":"btn","data":{"down":true,"button":"left"}},{"type":"key","data":{"down":false,"key":{"type":"qcode","data":"ret"}}}]}}"#);
    assert_eq!(r, json!({"return": {}}));
    let r = c.cmd(r#"{"execute":"input-send-event","arguments":{"device":"x","events":[]}}"#);
    assert_eq!(r, err("DeviceNotFound", "Device 'x' not found"));
    assert_eq!(
        c.cmd(
            r#"{"execute":"object-add","arguments":{"qom-type":"secret","id":"s0","data":"abc"}}"#
        ),
        json!({"return": {}})
    );
    assert_eq!(
        c.cmd(
            r#"{"execute":"object-add","arguments":{"qom-type":"secret","id":"s0","data":"abc"}}"#
        ),
        err(
            "GenericError",
            "attempt to add duplicate property 's0' to object (type 'container')"
        )
    );
    assert_eq!(
        c.cmd(r#"{"execute":"object-add","arguments":{"qom-type":"secret"}}"#),
        err("GenericError", "Parameter 'id' is missing")
    );
    {
        let rec = vm.rec.lock().unwrap();
        assert_eq!(
            rec.keys[0],
            (
                vec![KeyValue::QCode("ctrl".into()), KeyValue::Number(30)],
                50
            )
        );
        assert_eq!(rec.keys[1].1, 100, "QEMU's default hold time");
        assert_eq!(rec.input.len(), 3);
        assert_eq!(rec.objects[0].props["data"], "abc");
        assert!(!rec.objects[0].from_keyval);
    }
    assert_eq!(
        c.cmd(r#"{"execute":"object-del","arguments":{"id":"s0"}}"#),
        json!({"return": {}})
    );
    let cmds = c.cmd(r#"{"execute":"query-commands"}"#)["return"].clone();
    let names: Vec<&str> = cmds
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for n in [
        "qmp_capabilities",
        "query-version",
        "query-commands",
        "query-status",
        "query-name",
        "query-kvm",
        "query-target",
        "query-machines",
        "query-cpus-fast",
        "query-block",
        "stop",
        "cont",
        "system_reset",
        "system_powerdown",
        "quit",
        "screendump",
        "send-key",
        "input-send-event",
        "human-monitor-command",
        "object-add",
        "object-del",
        "getfd",
        "closefd",
    ] {
        assert!(names.contains(&n), "query-commands lacks {n}");
    }
    let cpus = c.cmd(r#"{"execute":"query-cpus-fast"}"#)["return"].clone();
    assert_eq!(cpus[1]["cpu-index"], 1);
    assert_eq!(cpus[1]["thread-id"], 1001);
    assert_eq!(cpus[1]["target"], "x86_64");
    let blk = c.cmd(r#"{"execute":"query-block"}"#)["return"][0].clone();
    assert_eq!(blk["device"], "d0");
    assert_eq!(blk["inserted"]["ro"], true);
    assert_eq!(blk["inserted"]["image"]["virtual-size"], 1 << 20);
    let m = c.cmd(r#"{"execute":"query-machines"}"#)["return"].clone();
    assert!(m
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "bulkhead" && m["is-default"] == true && m["alias"] == "pc"));
}

#[test]
fn qmp_screendump_writes_ppm_and_png() {
    let (_h, _vm, path) = start("shot", RunState::Running);
    let mut c = Client::negotiated(&path);
    let dir = std::env::temp_dir().join(format!("bh-shot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ppm = dir.join("a.ppm");
    let png = dir.join("a.png");
    let r = c.cmd(&format!(
        r#"{{"execute":"screendump","arguments":{{"filename":"{}"}}}}"#,
        ppm.display()
    ));
    assert_eq!(r, json!({"return": {}}));
    let want = qmp_support::fake_screen();
    let data = std::fs::read(&ppm).unwrap();
    assert!(data.starts_with(b"P6\n4 2\n255\n"));
    assert_eq!(&data[11..], &want.rgb[..]);
    let r = c.cmd(&format!(
        r#"{{"execute":"screendump","arguments":{{"filename":"{}","format":"png"}}}}"#,
        png.display()
    ));
    assert_eq!(r, json!({"return": {}}));
    assert!(std::fs::read(&png)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));
    let r = c.cmd(r#"{"execute":"screendump","arguments":{"filename":"/nonexistent-dir/x.ppm"}}"#);
    assert_eq!(
        r,
        err(
            "GenericError",
            "Could not open '/nonexistent-dir/x.ppm': No such file or directory"
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn qmp_human_monitor_command() {
    let (_h, vm, path) = start("hmp", RunState::Running);
    let mut c = Client::negotiated(&path);
    let hmp = |c: &mut Client, line: &str| {
        c.cmd(
            &json!({"execute": "human-monitor-command", "arguments": {"command-line": line}})
                .to_string(),
        )
    };
    assert_eq!(
        hmp(&mut c, "info status"),
        json!({"return": "VM status: running\r\n"})
    );
    assert_eq!(
        hmp(&mut c, "foo"),
        json!({"return": "unknown command: 'foo'\r\n"})
    );
    assert_eq!(
        hmp(&mut c, "info foo"),
        json!({"return": "unknown command: 'info foo'\r\n"})
    );
    assert_eq!(
        hmp(&mut c, "stop now"),
        json!({"return": "stop|s: extraneous characters at the end of line\r\nTry \"help stop\" for more information\r\n"})
    );
    c.send(
        &json!({"execute": "human-monitor-command", "arguments": {"command-line": "stop"}})
            .to_string(),
    );
    assert_eq!(c.recv()["event"], "STOP");
    assert_eq!(c.recv(), json!({"return": ""}));
    assert_eq!(
        hmp(&mut c, "info status"),
        json!({"return": "VM status: paused\r\n"})
    );
    assert_eq!(hmp(&mut c, "c"), json!({"return": ""}));
    assert_eq!(hmp(&mut c, "sendkey ctrl-alt-f1"), json!({"return": ""}));
    assert_eq!(
        hmp(&mut c, "sendkey ctrl-foo"),
        json!({"return": "invalid parameter: foo\r\n"})
    );
    assert_eq!(
        hmp(&mut c, "screendump"),
        json!({"return": "screendump: filename expected\r\nTry \"help screendump\" for more information\r\n"})
    );
    assert_eq!(
        hmp(&mut c, "object_del nope"),
        json!({"return": "Error: object 'nope' not found\r\n"})
    );
    assert_eq!(
        hmp(&mut c, "object_add secret,id=s9,data=x"),
        json!({"return": ""})
    );
    assert_eq!(
        hmp(&mut c, "help stop"),
        json!({"return": "stop|s  -- stop emulation\r\n"})
    );
    assert_eq!(
        hmp(&mut c, "info block"),
        json!({"return": "d0 (#block100): /tmp/d.img (raw, read-only)\r\n    Attached to:      /machine/peripheral-anon/device[0]/virtio-backend\r\n    Cache mode:       writeback\r\n"})
    );
    assert_eq!(
        hmp(&mut c, "info chardev"),
        json!({"return": "serial0: filename=stdio\r\n"})
    );
    let v = hmp(&mut c, "info version")["return"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(v.starts_with("7.2.22bulkhead-"), "{v}");
    assert_eq!(
        c.cmd(r#"{"execute":"human-monitor-command","arguments":{"command-line":"info status","cpu-index":5}}"#),
        err("GenericError", "Parameter 'cpu-index' expects a CPU number")
    );
    let rec = vm.rec.lock().unwrap();
    assert_eq!(
        rec.keys[0].0,
        vec![
            KeyValue::QCode("ctrl".into()),
            KeyValue::QCode("alt".into()),
            KeyValue::QCode("f1".into())
        ]
    );
    assert!(rec.objects[0].from_keyval);
}

#[test]
fn qmp_tcp_and_preopened_fd_listeners() {
    let bus = EventBus::new();
    let vm = FakeVm::new(bus.clone(), RunState::Running);
    let tcp = Listener::bind_tcp("127.0.0.1", 0).unwrap();
    let port = tcp.local_port().unwrap();
    let path = sock_path("fdl");
    let pre = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let fdl = Listener::from_fd(pre.into()).unwrap();
    assert!(Listener::from_fd(std::fs::File::open("/dev/null").unwrap().into()).is_err());
    let _h = Server::start_with(vec![tcp, fdl], vm, bus, Registry::standard()).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert!(line.starts_with("{\"QMP\""));
    s.write_all(br#"{"execute":"qmp_capabilities"}{"execute":"query-name"}"#)
        .unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert_eq!(line, "{\"return\": {}}\r\n");
    let mut c = Client::negotiated(&path);
    assert_eq!(
        c.cmd(r#"{"execute":"query-name"}"#),
        json!({"return": {"name": "testvm"}})
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn qmp_attached_socket_and_stdio_pipes() {
    use std::io::{BufRead, BufReader};
    let (h, _vm, _path) = start("attach", RunState::Running);
    // A connected socket (client-mode chardev).
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    h.attach_socket(ours.into());
    theirs
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut r = BufReader::new(theirs.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("{\"QMP\""));
    (&theirs)
        .write_all(br#"{"execute":"qmp_capabilities"}{"execute":"query-name"}"#)
        .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "{\"return\": {\"name\": \"testvm\"}}\r\n");
    // Plain pipes, as `-qmp stdio` gets.
    let (in_r, in_w) = nix::unistd::pipe().unwrap();
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    h.attach_stdio(in_r, out_w);
    let mut to_server = std::fs::File::from(in_w);
    let mut from_server = BufReader::new(std::fs::File::from(out_r));
    line.clear();
    from_server.read_line(&mut line).unwrap();
    assert!(line.starts_with("{\"QMP\""));
    to_server
        .write_all(br#"{"execute":"qmp_capabilities"}{"execute":"stop","id":1}"#)
        .unwrap();
    let mut lines = Vec::new();
    for _ in 0..3 {
        line.clear();
        from_server.read_line(&mut line).unwrap();
        lines.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    assert_eq!(lines[0], json!({"return": {}}));
    assert_eq!(lines[1]["event"], "STOP");
    assert_eq!(lines[2], json!({"return": {}, "id": 1}));
}
