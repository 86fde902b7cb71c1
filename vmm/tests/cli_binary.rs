//! The real `bulkhead` binary rejects unsupported options with QEMU's
//! message shape and exit code 1; `--version`/`-h` exit 0.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_binary_rejects_unknown_options_with_exit_1() {
    let cases: &[(&[&str], &str)] = &[
        (&["-foo"], "bulkhead: -foo: invalid option\n"),
        (&["-m=512"], "bulkhead: -m=512: invalid option\n"),
        (&["-m"], "bulkhead: -m: requires an argument\n"),
        (
            &["-cpu", "host"],
            "bulkhead: -cpu: option not supported by this build\n",
        ),
        (
            &["-device", "foo"],
            "bulkhead: -device foo: 'foo' is not a valid device model name\n",
        ),
        (
            &["-accel", "tcg"],
            "bulkhead: -accel tcg: invalid accelerator tcg (this build only supports kvm)\n",
        ),
        (
            &["-mon", "chardev=nope"],
            "bulkhead: -mon chardev=nope: chardev \"nope\" not found\n",
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = run(args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(&err, want, "{args:?}");
    }
}

#[test]
fn cli_binary_version_and_help_exit_0() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("bulkhead "), "{out}");
    let (code, out, _) = run(&["-h"]);
    assert_eq!(code, 0);
    assert!(out.contains("-qmp"));
}
