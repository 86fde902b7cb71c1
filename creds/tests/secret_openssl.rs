//! `secret` objects against vectors made with the real `openssl enc` command
//! line at test time (the recipe from the seed's part 3), plus every error.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use creds::{Secret, SecretError, SecretFormat, SecretSpec};
use zeroize::Zeroizing;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `printf PLAIN | openssl enc -aes-256-cbc -a -K KEYHEX -iv IVHEX`
fn openssl_encrypt(plain: &[u8], key: &[u8], iv: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "enc",
            "-aes-256-cbc",
            "-a",
            "-A",
            "-K",
            &hex(key),
            "-iv",
            &hex(iv),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(plain).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `openssl rand -base64 N`
fn openssl_rand_b64(n: usize) -> String {
    let out = Command::new("openssl")
        .args(["rand", "-base64", &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn b64d(s: &str) -> Vec<u8> {
    creds::secret::qbase64_decode(s.as_bytes())
        .unwrap()
        .to_vec()
}

fn spec(data: Option<&str>, file: Option<&Path>, format: SecretFormat) -> SecretSpec {
    SecretSpec {
        data: data.map(|d| Zeroizing::new(d.to_string())),
        file: file.map(Path::to_path_buf),
        format,
        keyid: None,
        iv: None,
    }
}

/// A tiny registry like the object registry: id -> loaded secret.
struct Reg(HashMap<String, Secret>);
impl Reg {
    fn add(&mut self, id: &str, s: &SecretSpec) -> Result<(), SecretError> {
        let lookup = |k: &str| self.0.get(k).cloned();
        let v = s.load(&lookup)?;
        self.0.insert(id.to_string(), v);
        Ok(())
    }
    fn get(&self, id: &str) -> &[u8] {
        self.0[id].expose()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    master_file: std::path::PathBuf,
    master: Vec<u8>,
    iv0: String,
    sec0: String,
}

/// The seed's recipe: master key file from `openssl rand -base64 32`, a
/// password encrypted with `openssl enc -aes-256-cbc -a`.
fn fixture(plain: &[u8]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let master_b64 = openssl_rand_b64(32);
    let master_file = dir.path().join("master-key.b64");
    std::fs::write(&master_file, &master_b64).unwrap();
    let master = b64d(&master_b64);
    assert_eq!(master.len(), 32);
    let iv0 = openssl_rand_b64(16).trim().to_string();
    let sec0 = openssl_encrypt(plain, &master, &b64d(&iv0));
    Fixture {
        _dir: dir,
        master_file,
        master,
        iv0,
        sec0,
    }
}

fn reg_with_master(f: &Fixture) -> Reg {
    let mut r = Reg(HashMap::new());
    r.add(
        "secmaster",
        &spec(None, Some(&f.master_file), SecretFormat::Base64),
    )
    .unwrap();
    assert_eq!(r.get("secmaster"), &f.master[..]);
    r
}

fn encrypted(f: &Fixture, keyid: &str) -> SecretSpec {
    SecretSpec {
        keyid: Some(keyid.into()),
        iv: Some(f.iv0.clone()),
        ..spec(Some(&f.sec0), None, SecretFormat::Base64)
    }
}

#[test]
fn openssl_vectors_decrypt() {
    for plain in [
        &b"letmein"[..],
        b"1234567",
        b"",
        b"exactly sixteen!",
        b"a longer password with spaces \xff\x00 and bytes",
    ] {
        let f = fixture(plain);
        let mut r = reg_with_master(&f);
        r.add("sec0", &encrypted(&f, "secmaster")).unwrap();
        assert_eq!(r.get("sec0"), plain, "plaintext {plain:?}");
    }
}

#[test]
fn nested_master_from_file_then_tls_password() {
    // master (file, base64) -> sec0 (encrypted, data) -> used as an x509 key password elsewhere.
    let f = fixture(b"s3rv3r-k3y-pw");
    let mut r = reg_with_master(&f);
    r.add("sec0", &encrypted(&f, "secmaster")).unwrap();
    let s = &r.0["sec0"];
    assert_eq!(s.as_utf8("sec0").unwrap(), "s3rv3r-k3y-pw");
    assert!(!format!("{s:?}").contains("s3rv3r"));
}

#[test]
fn plain_data_and_file_formats() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Reg(HashMap::new());
    r.add("a", &spec(Some("letmein"), None, SecretFormat::Raw))
        .unwrap();
    assert_eq!(r.get("a"), b"letmein");
    r.add("b", &spec(Some("bGV0bWVpbg=="), None, SecretFormat::Base64))
        .unwrap();
    assert_eq!(r.get("b"), b"letmein");
    let p = dir.path().join("mydisk.pw");
    std::fs::write(&p, "letmein\n").unwrap();
    r.add("c", &spec(None, Some(&p), SecretFormat::Raw))
        .unwrap();
    assert_eq!(
        r.get("c"),
        b"letmein\n",
        "raw file contents are used as-is, as in QEMU"
    );
}

fn err(r: &Reg, s: &SecretSpec) -> String {
    let lookup = |k: &str| r.0.get(k).cloned();
    s.load(&lookup).unwrap_err().to_string()
}

#[test]
fn error_unknown_keyid() {
    let f = fixture(b"letmein");
    let r = reg_with_master(&f);
    assert_eq!(
        err(&r, &encrypted(&f, "nosuch")),
        "No secret with id 'nosuch'"
    );
}

#[test]
fn error_wrong_key_length() {
    let f = fixture(b"letmein");
    let mut r = reg_with_master(&f);
    r.add("short", &spec(Some("c2hvcnQ="), None, SecretFormat::Base64))
        .unwrap();
    assert_eq!(
        err(&r, &encrypted(&f, "short")),
        "Key should be 32 bytes in length"
    );
}

#[test]
fn error_missing_and_bad_iv() {
    let f = fixture(b"letmein");
    let r = reg_with_master(&f);
    let mut s = encrypted(&f, "secmaster");
    s.iv = None;
    assert_eq!(err(&r, &s), "IV is required to decrypt secret");
    s.iv = Some("AAAAAAAAAAAAAAAA".into());
    assert_eq!(err(&r, &s), "IV should be 16 bytes in length not 12");
    s.iv = Some("not base64!".into());
    assert_eq!(err(&r, &s), "Base64 data contains invalid characters");
}

#[test]
fn error_wrong_master_key_is_bad_padding() {
    // Encrypt with one key, decrypt with another: the padding check must catch it.
    // (A wrong key yields valid-looking padding with probability ~1/256 per try,
    // so try several independent keys and require almost all to fail.)
    let mut failures = 0;
    for _ in 0..8 {
        let f = fixture(b"letmein");
        let other = fixture(b"x");
        let mut r = Reg(HashMap::new());
        r.add(
            "wrong",
            &spec(None, Some(&other.master_file), SecretFormat::Base64),
        )
        .unwrap();
        let e = err(&r, &encrypted(&f, "wrong"));
        if e.starts_with("Incorrect number of padding bytes") {
            failures += 1;
        }
    }
    assert!(failures >= 7, "{failures}/8");
}

#[test]
fn error_bad_base64() {
    let mut r = Reg(HashMap::new());
    assert_eq!(
        err(&r, &spec(Some("bGV0%%%"), None, SecretFormat::Base64)),
        "Base64 data contains invalid characters"
    );
    assert_eq!(
        err(&r, &spec(Some("bGV0b"), None, SecretFormat::Base64)),
        "Base64 data has a truncated final group or bad '=' padding"
    );
    // Encrypted ciphertext that is not base64.
    let f = fixture(b"letmein");
    r = reg_with_master(&f);
    let mut s = encrypted(&f, "secmaster");
    s.data = Some(Zeroizing::new("@@@@".into()));
    assert_eq!(err(&r, &s), "Base64 data contains invalid characters");
    // Ciphertext of a length that is not a whole number of blocks.
    s.data = Some(Zeroizing::new("AAAA".into()));
    assert_eq!(err(&r, &s), "Length 3 must be a multiple of block size 16");
}

#[test]
fn error_unreadable_file() {
    let r = Reg(HashMap::new());
    let e = err(
        &r,
        &spec(
            None,
            Some(Path::new("/nonexistent/master.b64")),
            SecretFormat::Base64,
        ),
    );
    assert!(
        e.starts_with("Unable to read /nonexistent/master.b64: "),
        "{e}"
    );
    assert!(e.contains("No such file"), "{e}");
}

#[test]
fn error_both_or_neither() {
    let r = Reg(HashMap::new());
    assert_eq!(
        err(
            &r,
            &spec(Some("x"), Some(Path::new("/tmp/x")), SecretFormat::Raw)
        ),
        "'file' and 'data' are mutually exclusive"
    );
    assert_eq!(
        err(&r, &spec(None, None, SecretFormat::Raw)),
        "Either 'file' or 'data' must be provided"
    );
    assert!(matches!(
        SecretFormat::parse("hex"),
        Err(SecretError::BadFormat(_))
    ));
}

#[test]
fn errors_never_contain_secret_bytes() {
    let f = fixture(b"hunter2hunter2");
    let r = reg_with_master(&f);
    let mut s = encrypted(&f, "secmaster");
    s.iv = Some(openssl_rand_b64(16).trim().to_string());
    let e = err(&r, &s); // wrong IV: first block garbles, padding usually still fine
    assert!(!e.contains("hunter2"), "{e}");
    let d = format!("{s:?}");
    assert!(!d.contains(&f.sec0) && !d.contains("hunter2"), "{d}");
}
