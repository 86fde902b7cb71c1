//! Side by side with real QEMU: the same raw QMP bytes go to
//! `qemu-system-x86_64 -S -display none -machine none -qmp unix:...` and to
//! our server (fake VM in prelaunch); error replies must be identical and
//! successful replies must have the same shape. Skips loudly when QEMU is
//! not installed, unless BULKHEAD_REQUIRE_PEERS is set.

mod qmp_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vmm::qmp::{EventBus, Listener, Registry, RunState, Server};

use qmp_support::{sock_path, Client};

fn have_qemu() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "QEMU did not create {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replaces values that legitimately differ (timestamps, package, data).
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(_) => Value::String(String::new()),
        Value::Number(_) => Value::from(0),
        other => other.clone(),
    }
}

#[test]
fn qmp_replies_match_real_qemu() {
    if !have_qemu() {
        if std::env::var_os("BULKHEAD_REQUIRE_PEERS").is_some() {
            panic!("qemu-system-x86_64 is required");
        }
        eprintln!("SKIPPED: qemu-system-x86_64 not installed; set BULKHEAD_REQUIRE_PEERS=1 to fail instead");
        return;
    }
    let qpath = sock_path("realqemu");
    let _qemu = bulkhead_tests::ReferenceQemu::start(&qpath).unwrap();
    let ours = sock_path("ours");
    let bus = EventBus::new();
    let vm = qmp_support::FakeVm::new(bus.clone(), RunState::Prelaunch);
    let mut h = Server::start_with(
        vec![Listener::bind_unix(&ours).unwrap()],
        vm,
        bus,
        Registry::standard(),
    )
    .unwrap();
    wait_for(&qpath);
    let mut q = Client::connect(&qpath);
    let mut b = Client::connect(&ours);
    assert_eq!(shape(&q.recv()), shape(&b.recv()), "greeting shape");

    // QEMU reads QMP input a byte per recvmsg(): keep this one small so the
    // test stays fast (the 2 MiB case is covered in qmp_server.rs).
    let pad = "x".repeat(256 << 10);
    let big = format!(r#"{{"execute":"query-status","arguments":{{"pad":"{pad}"}},"id":"big"}}"#);
    let inputs: Vec<&str> = vec![
        r#"{"execute":"query-status","id":1}"#,
        "{}",
        r#"{"exec-oob":"stop"}"#,
        r#"{"execute":"qmp_capabilities","arguments":{"enable":["foo"]}}"#,
        r#"{"execute":"qmp_capabilities","arguments":{"x":1}}"#,
        r#"{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}"#,
        r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":2}"#,
        r#"{"execute":"qmp_capabilities"}"#,
        r#"{"execute":"no-such","id":"x"}"#,
        "{\"execute\": \ngarbage}",
        "[1, 2]",
        r#""abc""#,
        r#"{"execute":"stop","arguments":[1]}"#,
        r#"{"foo":1,"id":3}"#,
        r#"{"execute":1}"#,
        r#"{"exec-oob":"query-status"}"#,
        r#"{"execute":"screendump"}"#,
        r#"{"execute":"screendump","arguments":{"filename":1}}"#,
        r#"{"execute":"screendump","arguments":{"filename":"/x","format":"jpg"}}"#,
        r#"{"execute":"screendump","arguments":{"filename":"/x","head":1}}"#,
        r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"nokey"}]}}"#,
        r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode"}]}}"#,
        r#"{"execute":"send-key","arguments":{"keys":[1]}}"#,
        r#"{"execute":"send-key","arguments":{"keys":[],"hold-time":1.5}}"#,
        r#"{"execute":"input-send-event","arguments":{"events":[{"type":"abs","data":{"axis":"x"}}]}}"#,
        r#"{"execute":"query-status","arguments":{"a":1}}"#,
        r#"{"execute":"input-send-event","arguments":{"events":[]}}"#,
        r#"{"execute":"query-status","id":1,"id":2}"#,
        r#"{"execute":"closefd","arguments":{"fdname":"x"}}"#,
        r#"{"execute":"getfd","arguments":{"fdname":"x"}}"#,
        r#"{"execute":"object-del","arguments":{"id":"nope"}}"#,
        r#"{"execute":"object-add","arguments":{"qom-type":"secret"}}"#,
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"foo"}}"#,
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}"#,
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"stop now"}}"#,
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"screendump"}}"#,
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"sendkey"}}"#,
        r#"{"execute":"query-status","id":{"a":[1,null]}}"#,
        r#"{"execute":"query-target"}"#,
        r#"{"execute":"stop","id":5}"#,
        &big,
        "}",
    ];
    for input in inputs {
        q.send(input);
        b.send(input);
        let (rq, rb) = (q.recv(), b.recv());
        let shown: String = input.chars().take(80).collect();
        if rq.get("error").is_some() || rq.get("return").is_some_and(Value::is_string) {
            assert_eq!(rb, rq, "reply to {shown}");
        } else {
            assert_eq!(
                shape(&rb),
                shape(&rq),
                "reply shape to {shown}: ours {rb} qemu {rq}"
            );
        }
    }
    // quit: SHUTDOWN (same data), return, close.
    q.send(r#"{"execute":"quit"}"#);
    b.send(r#"{"execute":"quit"}"#);
    let (eq, eb) = (q.recv(), b.recv());
    assert_eq!(eb["event"], eq["event"]);
    assert_eq!(eb["data"], eq["data"]);
    assert_eq!(
        (q.recv(), b.recv()),
        (
            serde_json::json!({"return": {}}),
            serde_json::json!({"return": {}})
        )
    );
    assert!(q.at_eof() && b.at_eof());
    h.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while qpath.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !qpath.exists() && !ours.exists(),
        "both remove their socket file"
    );
}
