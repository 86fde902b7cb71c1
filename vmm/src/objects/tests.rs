use serde_json::json;

use super::*;

/// A scratch directory removed on drop (vmm has no tempfile dev-dependency).
mod tempfile {
    pub struct TempDir(std::path::PathBuf);
    impl TempDir {
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    pub fn tempdir() -> std::io::Result<TempDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "bulkhead-objects-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// `key=value,...` as the CLI helper hands it over: every value a string.
fn kv(s: &str) -> Map<String, Value> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_string(), Value::String(v.to_string()))
        })
        .collect()
}

/// tracing caches per-callsite interest globally; a test that hits the
/// registry's log callsites while `secrets_never_logged` installs its
/// subscriber can make those events vanish there. Logging tests take the
/// write side, the others the read side.
static LOG_LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    LOG_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut o = creds::pki::PkiOptions::new(dir.path());
    o.client_cn = "client.test".into();
    creds::pki::init(&o).unwrap();
    dir
}

#[test]
fn secret_keyval_and_json() {
    let _g = shared();
    let mut r = ObjectRegistry::new();
    r.add("secret", "sec0", &kv("data=letmein"), true).unwrap();
    assert_eq!(r.secret("sec0").unwrap().expose(), b"letmein");
    r.add(
        "secret",
        "sec1",
        &map(json!({"data": "bGV0bWVpbg==", "format": "base64"})),
        false,
    )
    .unwrap();
    assert_eq!(r.secret("sec1").unwrap().expose(), b"letmein");
    assert_eq!(format!("{r:?}"), r#"{"sec0": "secret", "sec1": "secret"}"#);
}

#[test]
fn encrypted_secret_through_registry() {
    let _g = shared();
    // Key and IV fixed; ciphertext from `printf letmein | openssl enc -aes-256-cbc -a -K 00..1f -iv 00..0f`.
    let key: Vec<u8> = (0u8..32).collect();
    let iv: Vec<u8> = (0u8..16).collect();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf letmein | openssl enc -aes-256-cbc -a -A -K {} -iv {}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            iv.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ))
        .output()
        .unwrap();
    let ct = String::from_utf8(out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.key");
    std::fs::write(&master, &key).unwrap();
    let mut r = ObjectRegistry::new();
    r.add(
        "secret",
        "master",
        &kv(&format!("file={},format=raw", master.display())),
        true,
    )
    .unwrap();
    let iv_b64 = "AAECAwQFBgcICQoLDA0ODw==";
    r.add(
        "secret",
        "sec0",
        &kv(&format!(
            "keyid=master,iv={iv_b64},format=base64,data={}",
            ct.trim()
        )),
        true,
    )
    .unwrap();
    assert_eq!(r.secret("sec0").unwrap().expose(), b"letmein");
    // keyid naming a non-secret.
    r.add("authz-simple", "az", &kv("identity=x"), true)
        .unwrap();
    let e = r
        .add(
            "secret",
            "sec1",
            &kv(&format!("keyid=az,iv={iv_b64},data=x")),
            true,
        )
        .unwrap_err();
    assert_eq!(e.msg, "Object with id 'az' is not a secret");
    // The master may be deleted afterwards (consumed at creation, as QEMU).
    r.del("master").unwrap();
    assert_eq!(r.secret("sec0").unwrap().expose(), b"letmein");
}

#[test]
fn qemu_error_messages() {
    let _g = shared();
    let mut r = ObjectRegistry::new();
    let e = |r: &mut ObjectRegistry, t: &str, id: &str, p: &str| {
        r.add(t, id, &kv(p), true).unwrap_err().msg
    };
    assert_eq!(
        e(&mut r, "foo", "x", ""),
        "Parameter 'qom-type' does not accept value 'foo'"
    );
    assert_eq!(
        e(&mut r, "secret", "1x", "data=a"),
        "Parameter 'id' expects an identifier"
    );
    assert_eq!(
        e(&mut r, "secret", "s", "data=a,bogus=1"),
        "Invalid parameter 'bogus'"
    );
    assert_eq!(
        r.add("secret", "s", &map(json!({"data": "a", "bogus": 1})), false)
            .unwrap_err()
            .msg,
        "Parameter 'bogus' is unexpected"
    );
    assert_eq!(
        e(&mut r, "tls-creds-x509", "t", "dir=/tmp,endpoint=middle"),
        "Parameter 'endpoint' does not accept value 'middle'"
    );
    assert_eq!(
        e(&mut r, "tls-creds-x509", "t", "dir=/tmp,verify-peer=maybe"),
        "Parameter 'verify-peer' expects 'on' or 'off'"
    );
    assert_eq!(
        r.add(
            "tls-creds-x509",
            "t",
            &map(json!({"dir": "/tmp", "verify-peer": "on"})),
            false
        )
        .unwrap_err()
        .msg,
        "Invalid parameter type for 'verify-peer', expected: boolean"
    );
    assert_eq!(
        e(&mut r, "tls-creds-x509", "t", "dir=/nonexist,endpoint=server"),
        "Unable to access credentials /nonexist/ca-cert.pem: No such file or directory (os error 2)"
    );
    assert_eq!(
        e(&mut r, "authz-simple", "a", ""),
        "Parameter 'identity' is missing"
    );
    assert_eq!(
        e(&mut r, "authz-listfile", "a", ""),
        "Parameter 'filename' is missing"
    );
    assert_eq!(
        e(&mut r, "secret", "s", ""),
        "Either 'file' or 'data' must be provided"
    );
    assert!(e(&mut r, "tls-creds-psk", "p", "dir=/tmp").contains("use tls-creds-x509"));
    assert!(e(&mut r, "tls-creds-anon", "p", "").contains("use tls-creds-x509"));
    r.add("secret", "s", &kv("data=a"), true).unwrap();
    assert_eq!(
        e(&mut r, "secret", "s", "data=b"),
        "Duplicate ID 's' for object"
    );
    assert_eq!(
        r.add("secret", "s", &map(json!({"data": "b"})), false)
            .unwrap_err()
            .msg,
        "attempt to add duplicate property 's' to object (type 'container')"
    );
    assert_eq!(r.del("nope").unwrap_err().msg, "object 'nope' not found");
    // Nothing failed leaves an object behind.
    assert_eq!(r.list(), vec![("s".to_string(), "secret")]);
}

#[test]
fn in_use_objects_cannot_be_deleted() {
    let _g = shared();
    let dir = pki();
    let mut r = ObjectRegistry::new();
    r.add(
        "tls-creds-x509",
        "tls0",
        &kv(&format!("dir={},endpoint=server", dir.path().display())),
        true,
    )
    .unwrap();
    r.acquire("tls0", "chardev:s0").unwrap();
    r.acquire("tls0", "vnc").unwrap();
    assert_eq!(
        r.del("tls0").unwrap_err().msg,
        "object 'tls0' is in use, can not be deleted"
    );
    r.release("tls0", "chardev:s0");
    assert!(r.in_use("tls0"));
    r.release_all("vnc");
    r.del("tls0").unwrap();
    assert!(r.acquire("tls0", "vnc").is_err());
}

#[test]
fn tls_creds_lookup_and_endpoint() {
    let _g = shared();
    let dir = pki();
    let mut r = ObjectRegistry::new();
    r.add(
        "tls-creds-x509",
        "tls0",
        &map(json!({"dir": dir.path().to_str().unwrap(), "endpoint": "server", "verify-peer": false, "priority": "NORMAL"})),
        false,
    )
    .unwrap();
    let m = r.tls_creds("tls0", Some(Endpoint::Server)).unwrap();
    assert!(!m.verify_peer);
    m.server_config().unwrap();
    assert_eq!(
        r.tls_creds("tls0", Some(Endpoint::Client)).unwrap_err().msg,
        "Expecting TLS credentials with a client endpoint"
    );
    assert_eq!(
        r.tls_creds("x", None).unwrap_err().msg,
        "No TLS credentials with id 'x'"
    );
    // The default endpoint is client, verify-peer on.
    r.add(
        "tls-creds-x509",
        "tls1",
        &kv(&format!("dir={}", dir.path().display())),
        true,
    )
    .unwrap();
    let m = r.tls_creds("tls1", None).unwrap();
    assert_eq!((m.endpoint, m.verify_peer), (Endpoint::Client, true));
}

#[test]
fn authz_objects() {
    let _g = shared();
    let mut r = ObjectRegistry::new();
    r.add(
        "authz-simple",
        "a0",
        &kv("identity=O=Bulkhead,CN=client.test"),
        true,
    )
    .unwrap_err();
    // A DN holds commas, so on the command line it needs QEMU's ",," escaping,
    // which the CLI helper undoes; here the property arrives already unescaped.
    let mut props = Map::new();
    props.insert(
        "identity".into(),
        Value::String("O=Bulkhead,CN=client.test".into()),
    );
    r.add("authz-simple", "a0", &props, true).unwrap();
    assert!(r
        .authz("a0")
        .unwrap()
        .is_allowed("O=Bulkhead,CN=client.test"));
    // authz-list from QMP JSON...
    r.add(
        "authz-list",
        "a1",
        &map(json!({"policy": "deny", "rules": [{"match": "O=Bulkhead,CN=*", "policy": "allow", "format": "glob"}]})),
        false,
    )
    .unwrap();
    assert!(r.authz("a1").unwrap().is_allowed("O=Bulkhead,CN=x"));
    assert!(!r.authz("a1").unwrap().is_allowed("O=Other,CN=x"));
    // ...and from flattened keyval.
    r.add("authz-list", "a2", &kv("policy=allow,rules.0.match=bad,rules.0.policy=deny,rules.1.match=b*,rules.1.policy=deny,rules.1.format=glob"), true).unwrap();
    let a2 = r.authz("a2").unwrap();
    assert!(!a2.is_allowed("bad") && !a2.is_allowed("bob") && a2.is_allowed("alice"));
    let e = r
        .add(
            "authz-list",
            "a3",
            &kv("rules.1.match=x,rules.1.policy=allow"),
            true,
        )
        .unwrap_err();
    assert_eq!(e.msg, "Parameter 'rules.0' is missing");
    let e = r
        .add("authz-list", "a3", &kv("policy=maybe"), true)
        .unwrap_err();
    assert!(e.msg.contains("maybe"), "{}", e.msg);
    assert_eq!(
        r.authz("nope").unwrap_err().msg,
        "No authorization object with id 'nope'"
    );
}

#[test]
fn authz_listfile_refresh() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("acl.json");
    std::fs::write(
        &f,
        r#"{"policy":"deny","rules":[{"match":"fred","policy":"allow","format":"exact"}]}"#,
    )
    .unwrap();
    let mut r = ObjectRegistry::new();
    r.add(
        "authz-listfile",
        "acl",
        &kv(&format!("filename={},refresh=on", f.display())),
        true,
    )
    .unwrap();
    assert!(r.authz("acl").unwrap().is_allowed("fred"));
    assert_eq!(r.refresh_authz_files(), (vec![], vec![]));
    let tmp = dir.path().join("acl.new");
    std::fs::write(
        &tmp,
        r#"{"policy":"allow","rules":[{"match":"fred","policy":"deny"}]}"#,
    )
    .unwrap();
    std::fs::rename(&tmp, &f).unwrap();
    let (changed, errors) = r.refresh_authz_files();
    assert_eq!(changed, vec!["acl".to_string()]);
    assert!(errors.is_empty());
    assert!(!r.authz("acl").unwrap().is_allowed("fred"));
    assert!(r.authz("acl").unwrap().is_allowed("bob"));
    let e = r
        .add(
            "authz-listfile",
            "bad",
            &kv("filename=/nonexistent/acl.json"),
            true,
        )
        .unwrap_err();
    assert!(
        e.msg.starts_with("Unable to read '/nonexistent/acl.json'"),
        "{}",
        e.msg
    );
}

/// Secret values never reach the supervisor's log output, error messages or
/// `Debug` output, whatever happens to the objects that hold them.
#[test]
fn secrets_never_logged() {
    let _g = LOG_LOCK.write().unwrap_or_else(|e| e.into_inner());
    use std::sync::{Arc, Mutex};
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    const SECRET: &str = "hunter2-sekrit";
    let mut texts = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let dir = pki();
        let mut r = ObjectRegistry::new();
        r.add("secret", "pw", &kv(&format!("data={SECRET}")), true)
            .unwrap();
        r.add(
            "secret",
            "b64",
            &map(json!({"data": "aHVudGVyMi1zZWtyaXQ=", "format": "base64"})),
            false,
        )
        .unwrap();
        // Failing objects that carry the secret in their properties.
        texts.push(
            r.add(
                "secret",
                "bad",
                &kv(&format!("data={SECRET},file=/x")),
                true,
            )
            .unwrap_err()
            .msg,
        );
        texts.push(
            r.add(
                "secret",
                "bad",
                &kv(&format!("data={SECRET},bogus=1")),
                true,
            )
            .unwrap_err()
            .msg,
        );
        texts.push(
            r.add(
                "secret",
                "bad",
                &kv(&format!(
                    "data={SECRET},keyid=pw,iv=AAAAAAAAAAAAAAAAAAAAAA=="
                )),
                true,
            )
            .unwrap_err()
            .msg,
        );
        // A TLS key "password" that is wrong for an unencrypted key is simply unused.
        r.add(
            "tls-creds-x509",
            "t",
            &kv(&format!(
                "dir={},endpoint=server,passwordid=pw",
                dir.path().display()
            )),
            true,
        )
        .unwrap();
        texts.push(format!("{r:?}"));
        texts.push(format!("{:?}", r.secret("pw").unwrap()));
        texts.push(format!("{:?}", r.object("pw").unwrap()));
        texts.push(format!("{:?}", r.tls_creds("t", None).unwrap()));
        r.del("pw").unwrap();
    });
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("object created"), "the log is captured: {log}");
    for t in texts.iter().chain(std::iter::once(&log)) {
        assert!(
            !t.contains(SECRET) && !t.contains("aHVudGVyMi1zZWtyaXQ"),
            "secret leaked in: {t}"
        );
    }
}
