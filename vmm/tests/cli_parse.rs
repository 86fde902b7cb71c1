//! The QEMU-style command line: every supported option, libvirt's
//! invocation, and QEMU-style rejection of everything else.

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::json;
use vmm::cli::{
    self, Action, ChardevBackend, Config, Incoming, MonitorMode, SocketAddr, VncDisplay,
};

fn parse(s: &[&str]) -> Result<Config, String> {
    let args: Vec<OsString> = s.iter().map(OsString::from).collect();
    cli::parse(&args).map_err(|e| e.to_string())
}

fn ok(s: &[&str]) -> Config {
    parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn cli_defaults() {
    let c = ok(&[]);
    assert_eq!(
        (c.memory, c.cpus, c.machine.as_str(), c.start_paused),
        (128 << 20, 1, "bulkhead", false)
    );
    assert_eq!(c.action, Action::Run);
}

#[test]
fn cli_basic_options() {
    let c = ok(&[
        "-name",
        "vm1",
        "-m",
        "512M",
        "-smp",
        "2",
        "-S",
        "-nographic",
        "-kernel",
        "/k",
        "-initrd",
        "/i",
        "-append",
        "console=ttyS0 quiet",
        "-pidfile",
        "/tmp/p",
        "-D",
        "/tmp/log",
        "-no-user-config",
        "-nodefaults",
        "-msg",
        "timestamp=on",
    ]);
    assert_eq!(c.name.as_deref(), Some("vm1"));
    assert_eq!(
        (
            c.memory,
            c.cpus,
            c.start_paused,
            c.nographic,
            c.display_none
        ),
        (512 << 20, 2, true, true, true)
    );
    assert_eq!(
        (c.kernel, c.initrd),
        (Some(PathBuf::from("/k")), Some(PathBuf::from("/i")))
    );
    assert_eq!(c.append.as_deref(), Some("console=ttyS0 quiet"));
    assert_eq!(
        (c.pidfile, c.logfile),
        (
            Some(PathBuf::from("/tmp/p")),
            Some(PathBuf::from("/tmp/log"))
        )
    );
    assert!(c.no_user_config && c.nodefaults && c.msg_timestamp);
    // --opt works like -opt.
    let c = ok(&[
        "--m",
        "2G",
        "--smp",
        "cpus=4",
        "--name",
        "guest=g,debug-threads=on",
    ]);
    assert_eq!(
        (c.memory, c.cpus, c.name.as_deref(), c.debug_threads),
        (2 << 30, 4, Some("g"), true)
    );
    assert_eq!(ok(&["-m", "1024"]).memory, 1 << 30);
    assert_eq!(ok(&["-m", "size=8G"]).memory, 8 << 30);
    assert_eq!(ok(&["-m", "1.5G"]).memory, 3 << 29);
    assert_eq!(ok(&["-smp", "sockets=1,cores=2,threads=2"]).cpus, 4);
    assert!(ok(&["-display", "none"]).display_none);
    assert!(ok(&["-daemonize"]).daemonize);
}

#[test]
fn cli_machine_and_accel() {
    for m in [
        "bulkhead",
        "pc",
        "q35",
        "microvm",
        "pc-i440fx-7.2",
        "pc-q35-7.2",
    ] {
        assert_eq!(ok(&["-machine", m]).machine, m);
        assert_eq!(ok(&["-M", m]).machine, m);
    }
    let c = ok(&[
        "-machine",
        "q35,accel=kvm,usb=off,vmport=off,smm=off,dump-guest-core=off,memory-backend=pc.ram",
        "-object",
        "memory-backend-memfd,id=pc.ram,size=1G,share=on",
    ]);
    assert_eq!(c.memory_backend.as_deref(), Some("pc.ram"));
    assert_eq!(c.dump_guest_core, Some(false));
    ok(&["-accel", "kvm", "-enable-kvm"]);
    assert_eq!(
        parse(&["-accel", "tcg"]).unwrap_err(),
        "-accel tcg: invalid accelerator tcg (this build only supports kvm)"
    );
    assert!(parse(&["-machine", "pc,accel=tcg"]).is_err());
    assert!(parse(&["-machine", "foo"])
        .unwrap_err()
        .starts_with("-machine foo: unsupported machine type"));
    assert!(parse(&["-machine", "pc,usb=on"]).is_err());
    assert_eq!(
        parse(&["-machine", "pc,bogus=1"]).unwrap_err(),
        "-machine pc,bogus=1: Property 'pc.bogus' not found"
    );
    assert!(parse(&["-machine", "pc,memory-backend=nope"])
        .unwrap_err()
        .contains("Memory backend 'nope' not found"));
    let Action::Print(t) = ok(&["-machine", "help"]).action else {
        panic!()
    };
    assert!(t.contains("bulkhead") && t.contains("microvm"));
}

#[test]
fn cli_chardev_serial_and_monitors() {
    let c = ok(&[
        "-serial",
        "stdio",
        "-serial",
        "file:/tmp/s1",
        "-serial",
        "null",
    ]);
    assert_eq!(c.serials, vec!["serial0", "serial1", "serial2"]);
    assert_eq!(
        c.chardev("serial0").unwrap().backend,
        ChardevBackend::Stdio { signal: true }
    );
    let c = ok(&["-chardev", "pty,id=p0", "-serial", "chardev:p0"]);
    assert_eq!(c.serials, vec!["p0"]);
    let c = ok(&[
        "-serial",
        "tcp:127.0.0.1:4444,server=on,wait=off",
        "-serial",
        "unix:/tmp/ser,server=on,wait=off",
        "-serial",
        "pty",
    ]);
    let ChardevBackend::Socket(s) = &c.chardev("serial0").unwrap().backend else {
        panic!()
    };
    assert_eq!(
        (&s.addr, s.server, s.wait),
        (
            &SocketAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 4444
            },
            true,
            false
        )
    );
    assert!(ok(&["-serial", "none"]).serial_none);
    // Several -qmp, plus -monitor.
    let c = ok(&[
        "-qmp",
        "unix:/tmp/a.sock,server=on,wait=off",
        "-qmp",
        "tcp:127.0.0.1:4445,server=on,wait=off",
        "-monitor",
        "stdio",
    ]);
    let qmp: Vec<_> = c.qmp_monitors().map(|m| m.chardev.clone()).collect();
    assert_eq!(qmp, vec!["compat_monitor0", "compat_monitor1"]);
    let ChardevBackend::Socket(s) = &c.chardev("compat_monitor0").unwrap().backend else {
        panic!()
    };
    assert_eq!(
        (&s.addr, s.server, s.wait),
        (&SocketAddr::Unix("/tmp/a.sock".into()), true, false)
    );
    let hmp: Vec<_> = c.hmp_monitors().collect();
    assert_eq!(
        c.chardev(&hmp[0].chardev).unwrap().backend,
        ChardevBackend::Stdio { signal: true }
    );
    assert!(ok(&["-monitor", "none"]).monitor_none);
    let c = ok(&[
        "-chardev",
        "socket,id=h,path=/tmp/h.sock,server=on,wait=off",
        "-mon",
        "chardev=h,mode=readline",
    ]);
    assert_eq!(c.monitors[0].mode, MonitorMode::Readline);
    let c = ok(&["-chardev", "socket,id=c1,host=10.0.0.1,port=5000,reconnect=2,tls-creds=tls0,tls-authz=a0,logfile=/tmp/l,logappend=on", "-serial", "chardev:c1"]);
    let spec = c.chardev("c1").unwrap();
    assert!(spec.logappend);
    let ChardevBackend::Socket(s) = &spec.backend else {
        panic!()
    };
    assert_eq!(
        (s.reconnect, s.tls_creds.as_deref(), s.tls_authz.as_deref()),
        (Some(2), Some("tls0"), Some("a0"))
    );
    // Errors name the option.
    assert_eq!(
        parse(&["-mon", "chardev=nope"]).unwrap_err(),
        "-mon chardev=nope: chardev \"nope\" not found"
    );
    assert_eq!(
        parse(&["-serial", "bogus:x"]).unwrap_err(),
        "-serial bogus:x: 'bogus:x' is not a valid char driver"
    );
    assert_eq!(
        parse(&["-chardev", "null"]).unwrap_err(),
        "-chardev null: chardev: no id specified"
    );
    assert!(parse(&["-chardev", "null,id=a", "-chardev", "null,id=a"]).is_err());
    assert!(
        parse(&["-chardev", "null,id=a", "-serial", "chardev:a", "-mon", "a"])
            .unwrap_err()
            .contains("already in use")
    );
}

#[test]
fn cli_libvirt_invocation() {
    let c = ok(&[
        "-name",
        "guest=demo,debug-threads=on",
        "-S",
        "-object",
        r#"{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/var/lib/libvirt/qemu/domain-1-demo/master-key.aes"}"#,
        "-machine",
        "pc-q35-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel",
        "kvm",
        "-m",
        "512",
        "-object",
        r#"{"qom-type":"memory-backend-ram","id":"pc.ram","size":536870912}"#,
        "-smp",
        "2,sockets=2,cores=1,threads=1",
        "-no-user-config",
        "-nodefaults",
        "-chardev",
        "socket,id=charmonitor,fd=23,server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
        "-msg",
        "timestamp=on",
    ]);
    assert_eq!(c.name.as_deref(), Some("demo"));
    assert_eq!((c.memory, c.cpus), (512 << 20, 2));
    assert_eq!(c.objects.len(), 2);
    assert_eq!(
        c.objects[0].props["file"],
        json!("/var/lib/libvirt/qemu/domain-1-demo/master-key.aes")
    );
    assert_eq!(c.objects[1].get_size("size"), Ok(Some(512 << 20)));
    let m = &c.monitors[0];
    assert_eq!(
        (m.id.as_deref(), m.chardev.as_str(), m.mode),
        (Some("monitor"), "charmonitor", MonitorMode::Control)
    );
    let ChardevBackend::Socket(s) = &c.chardev("charmonitor").unwrap().backend else {
        panic!()
    };
    assert_eq!(
        (&s.addr, s.server, s.wait),
        (&SocketAddr::Fd(23), true, false)
    );
}

#[test]
fn cli_drive_object_device_vnc_incoming() {
    let c = ok(&[
        "-drive",
        "file=/tmp/disk,,1.img,format=raw,if=virtio,readonly=on,id=d0,cache=none,discard=unmap",
    ]);
    let d = &c.drives[0];
    assert_eq!(
        (
            d.id.as_str(),
            d.file.clone(),
            d.readonly,
            d.interface.as_str()
        ),
        ("d0", Some(PathBuf::from("/tmp/disk,1.img")), true, "virtio")
    );
    let c = ok(&[
        "-drive",
        "driver=nbd,host=127.0.0.1,port=10809,export=disk,tls-creds=tls0,id=n0",
    ]);
    let n = c.drives[0].nbd.clone().unwrap();
    assert_eq!(
        (
            n.host.as_deref(),
            n.port,
            n.export.as_deref(),
            n.tls_creds.as_deref()
        ),
        (Some("127.0.0.1"), 10809, Some("disk"), Some("tls0"))
    );
    let c = ok(&["-drive", "file=nbd://h:1234/exp,format=raw"]);
    assert_eq!(c.drives[0].nbd.clone().unwrap().port, 1234);
    assert_eq!(c.drives[0].id, "virtio0");
    assert_eq!(parse(&["-drive", "file=/x,format=raw,if=virtio,foo=bar"]).unwrap_err(), "-drive file=/x,format=raw,if=virtio,foo=bar: Block format 'raw' does not support the option 'foo'");
    assert!(parse(&["-drive", "file=/x,format=qcow2"]).is_err());
    assert!(parse(&["-drive", "file=/x,if=ide"]).is_err());
    // -object both forms.
    let c = ok(&[
        "-object",
        "secret,id=s0,data=pass,format=raw",
        "-object",
        r#"{"qom-type":"tls-creds-x509","id":"tls0","dir":"/pki","endpoint":"server","verify-peer":true}"#,
    ]);
    assert_eq!(c.objects[0].get_str("data").as_deref(), Some("pass"));
    assert_eq!(c.objects[1].get_bool("verify-peer"), Ok(Some(true)));
    assert!(parse(&[
        "-object",
        "secret,id=a,data=x",
        "-object",
        "secret,id=a,data=y"
    ])
    .is_err());
    // -device, only modelled devices.
    let c = ok(&[
        "-drive",
        "file=/x,if=none,id=d1",
        "-device",
        "virtio-blk-device,drive=d1",
        "-chardev",
        "null,id=c",
        "-device",
        r#"{"driver":"isa-serial","chardev":"c"}"#,
    ]);
    assert_eq!(c.devices.len(), 2);
    assert_eq!(
        parse(&["-device", "foo"]).unwrap_err(),
        "-device foo: 'foo' is not a valid device model name"
    );
    assert!(parse(&["-device", "virtio-blk-device,drive=missing"]).is_err());
    // -vnc.
    let c = ok(&["-vnc", "127.0.0.1:5,tls-creds=tls0,tls-authz=auth0,password-secret=vncpass,websocket=5705,lossy=on,share=force-shared"]);
    let v = c.vnc.unwrap();
    assert_eq!(
        v.display,
        VncDisplay::Tcp {
            host: "127.0.0.1".into(),
            display: 5
        }
    );
    assert_eq!(
        (
            v.tls_creds.as_deref(),
            v.tls_authz.as_deref(),
            v.password_secret.as_deref(),
            v.websocket.as_deref(),
            v.lossy,
            v.share.as_deref()
        ),
        (
            Some("tls0"),
            Some("auth0"),
            Some("vncpass"),
            Some("5705"),
            true,
            Some("force-shared")
        )
    );
    assert_eq!(
        ok(&["-vnc", ":0"]).vnc.unwrap().display,
        VncDisplay::Tcp {
            host: String::new(),
            display: 0
        }
    );
    assert_eq!(
        ok(&["-vnc", "unix:/tmp/v"]).vnc.unwrap().display,
        VncDisplay::Unix("/tmp/v".into())
    );
    assert_eq!(
        parse(&["-vnc", ":5,foo=bar"]).unwrap_err(),
        "-vnc :5,foo=bar: Invalid parameter 'foo'"
    );
    // -incoming.
    assert_eq!(ok(&["-incoming", "defer"]).incoming, Some(Incoming::Defer));
    assert_eq!(
        ok(&["-incoming", "tcp:0.0.0.0:4444"]).incoming,
        Some(Incoming::Tcp {
            host: "0.0.0.0".into(),
            port: 4444
        })
    );
    assert_eq!(
        ok(&["-incoming", "unix:/tmp/m"]).incoming,
        Some(Incoming::Unix("/tmp/m".into()))
    );
    assert_eq!(ok(&["-incoming", "fd:7"]).incoming, Some(Incoming::Fd(7)));
    assert_eq!(
        ok(&["-incoming", "exec:cat /tmp/x"]).incoming,
        Some(Incoming::Exec("cat /tmp/x".into()))
    );
    assert_eq!(
        parse(&["-incoming", "bogus:"]).unwrap_err(),
        "-incoming bogus:: unknown migration protocol: bogus:"
    );
}

#[test]
fn cli_rejects_unknown_and_malformed_options_like_qemu() {
    assert_eq!(parse(&["-foo"]).unwrap_err(), "-foo: invalid option");
    assert_eq!(
        parse(&["--m", "512", "-foo"]).unwrap_err(),
        "-foo: invalid option"
    );
    assert_eq!(parse(&["-m=512"]).unwrap_err(), "-m=512: invalid option");
    assert_eq!(parse(&["-m"]).unwrap_err(), "-m: requires an argument");
    assert_eq!(
        parse(&["-cpu", "host"]).unwrap_err(),
        "-cpu: option not supported by this build"
    );
    assert!(parse(&["disk.img"]).unwrap_err().contains("invalid option"));
    assert!(parse(&["-m", "512x"])
        .unwrap_err()
        .starts_with("-m 512x: Parameter 'size' expects a non-negative number below 2^64"));
    assert_eq!(
        parse(&["-msg", "timestamp=maybe"]).unwrap_err(),
        "-msg timestamp=maybe: Parameter 'timestamp' expects 'on' or 'off'"
    );
    assert_eq!(
        parse(&["-name", "foo,bar=1"]).unwrap_err(),
        "-name foo,bar=1: Invalid parameter 'bar'"
    );
    assert_eq!(
        parse(&["-smp", "cpus=2,bogus=1"]).unwrap_err(),
        "-smp cpus=2,bogus=1: Parameter 'smp.bogus' is unexpected"
    );
    assert!(parse(&["-smp", "0"]).is_err());
    assert!(parse(&["-smp", "1000"]).is_err());
    assert_eq!(
        parse(&["-display", "gtk"]).unwrap_err(),
        "-display gtk: Display 'gtk' is not available."
    );
    assert!(parse(&["-daemonize", "-serial", "stdio"]).is_err());
}

#[test]
fn cli_version_and_help() {
    for a in ["--version", "-version"] {
        let Action::Print(t) = ok(&[a]).action else {
            panic!()
        };
        assert!(t.starts_with("bulkhead "));
    }
    for a in ["-h", "--help", "-help"] {
        let Action::Print(t) = ok(&[a]).action else {
            panic!()
        };
        assert!(t.contains("-qmp") && t.contains("-chardev"));
    }
}
