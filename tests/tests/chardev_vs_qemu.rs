//! `chardev-add` / `chardev-remove` side by side with real QEMU 7.2: the
//! same commands go to `qemu-system-x86_64 -machine none` and to a
//! bulkhead VM; error classes and descriptions must be identical.

use std::time::Duration;

use bulkhead_tests::pki::free_port;
use bulkhead_tests::{
    have_kvm, have_program, require_peer, BulkheadProcess, QmpClient, ReferenceQemu,
};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

fn error_of(r: &Value) -> Option<(String, String)> {
    let e = r.get("error")?;
    Some((
        e["class"].as_str().unwrap_or_default().to_owned(),
        e["desc"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[test]
fn chardev_errors_match_real_qemu() {
    if !have_kvm() || !require_peer("qemu-system-x86_64", have_program("qemu-system-x86_64")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let qemu_sock = dir.path().join("qemu.qmp");
    let _qemu = ReferenceQemu::start(&qemu_sock).unwrap();
    let mut qemu = QmpClient::connect(&qemu_sock, T).unwrap();
    let ours_sock = dir.path().join("ours.qmp");
    let _ours = BulkheadProcess::start(&[
        "-nodefaults",
        "-qmp",
        &format!("unix:{},server=on,wait=off", ours_sock.display()),
    ])
    .unwrap();
    let mut ours = QmpClient::connect(&ours_sock, T).unwrap();

    let inet = |port: u16| json!({"type": "inet", "data": {"host": "127.0.0.1", "port": port.to_string()}});
    let sock =
        |id: &str, data: Value| json!({"id": id, "backend": {"type": "socket", "data": data}});
    // Each side gets its own port for the commands that succeed.
    let (pq, po) = (free_port(), free_port());
    type Args = Box<dyn Fn(u16) -> Value>;
    let cases: Vec<(&str, Args)> = vec![
        ("chardev-add", Box::new(|_| json!({"id": "x"}))),
        (
            "chardev-add",
            Box::new(|_| json!({"backend": {"type": "null", "data": {}}})),
        ),
        (
            "chardev-add",
            Box::new(|_| json!({"id": "x", "backend": {"type": "nope", "data": {}}})),
        ),
        (
            "chardev-add",
            Box::new(|_| json!({"id": "x", "backend": {"data": {}}})),
        ),
        ("chardev-add", Box::new(move |_| sock("x", json!({})))),
        (
            "chardev-add",
            Box::new(move |_| {
                sock(
                    "x",
                    json!({"addr": {"type": "inet", "data": {"host": "h", "port": 1}}}),
                )
            }),
        ),
        (
            "chardev-add",
            Box::new(move |p| sock("x", json!({"addr": inet(p), "bogus": 1}))),
        ),
        (
            "chardev-add",
            Box::new(move |p| sock("x", json!({"addr": inet(p), "server": "yes"}))),
        ),
        (
            "chardev-add",
            Box::new(move |p| sock("x", json!({"addr": inet(p), "reconnect": 1}))),
        ),
        (
            "chardev-add",
            Box::new(move |p| {
                sock(
                    "x",
                    json!({"addr": inet(p), "server": false, "wait": false}),
                )
            }),
        ),
        (
            "chardev-add",
            Box::new(move |p| sock("x", json!({"addr": inet(p), "tls-authz": "a"}))),
        ),
        (
            "chardev-add",
            Box::new(move |p| sock("x", json!({"addr": inet(p), "tls-creds": "nosuch"}))),
        ),
        (
            "chardev-add",
            Box::new(move |p| sock("ok0", json!({"addr": inet(p), "wait": false}))),
        ),
        (
            "chardev-add",
            Box::new(move |p| sock("ok0", json!({"addr": inet(p + 1), "wait": false}))),
        ),
        ("chardev-remove", Box::new(|_| json!({"id": "nosuch"}))),
        ("chardev-remove", Box::new(|_| json!({}))),
        ("chardev-remove", Box::new(|_| json!({"id": "ok0"}))),
        ("chardev-remove", Box::new(|_| json!({"id": "ok0"}))),
    ];
    let mut diffs = Vec::new();
    for (cmd, args) in &cases {
        let rq = qemu.execute(cmd, args(pq)).unwrap();
        let ro = ours.execute(cmd, args(po)).unwrap();
        let (eq, eo) = (error_of(&rq), error_of(&ro));
        let same = match (&eq, &eo) {
            (Some(a), Some(b)) => a == b,
            (None, None) => rq["return"] == ro["return"],
            _ => false,
        };
        if !same {
            diffs.push(format!("{cmd} {}\n  qemu: {rq}\n  ours: {ro}", args(po)));
        }
    }
    assert!(
        diffs.is_empty(),
        "differences from QEMU:\n{}",
        diffs.join("\n")
    );

    // query-chardev: a listening socket chardev looks the same (port aside).
    let add = |c: &mut QmpClient, p: u16| {
        let r = c.execute(
            "chardev-add",
            sock("q0", json!({"addr": inet(p), "wait": false})),
        );
        assert_eq!(r.unwrap()["return"], json!({}));
    };
    add(&mut qemu, pq);
    add(&mut ours, po);
    let row = |c: &mut QmpClient, p: u16| {
        let r = c.execute("query-chardev", json!({})).unwrap();
        let mut row = r["return"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == "q0")
            .cloned()
            .unwrap();
        let f = row["filename"]
            .as_str()
            .unwrap()
            .replace(&p.to_string(), "PORT");
        row["filename"] = f.into();
        row
    };
    assert_eq!(row(&mut ours, po), row(&mut qemu, pq));
}
