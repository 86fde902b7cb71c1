//! QEMU `secret` objects: `-object secret,id=ID,data=...|file=PATH[,format=raw|base64]
//! [,keyid=MASTER,iv=BASE64]`.
//!
//! Loading follows QEMU's `qcrypto_secret_load_data()` / `qcrypto_secret_decrypt()`:
//!
//! ```text
//!   data= | file=  ──► input bytes
//!        │
//!        ├─ keyid set:  format=base64 ? base64-decode(input) : input   = ciphertext
//!        │              AES-256-CBC(key = secret[keyid], iv = base64(iv)) ─► strip PKCS#7
//!        │              (the plaintext is the value; `format` described the ciphertext)
//!        └─ no keyid:   format=base64 ? base64-decode(input) : input   = value
//! ```
//!
//! The master key is itself a secret (typically `file=master.b64,format=base64`) and
//! must decode to exactly 32 bytes. Error messages use QEMU's wording where QEMU
//! has one. Secret bytes live in [`Secret`], which keeps them in a
//! [`ProtectedBytes`] region (left out of core dumps, zeroized on drop) and whose
//! `Debug` prints only the length; no error message ever contains secret bytes.

use std::fmt;
use std::path::PathBuf;

use aes::cipher::{BlockDecryptMut, KeyIvInit};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::protected::ProtectedBytes;

/// Largest secret file we read (QEMU has no limit; 1 MiB is far above any key or password).
pub const MAX_SECRET_FILE: u64 = 1 << 20;

/// Decoded secret bytes, in a [`ProtectedBytes`] region: not in core dumps,
/// zeroized on drop; `Debug` redacts the value. Serialized as a byte sequence.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(ProtectedBytes);

impl Secret {
    /// Wrap bytes that are already secret: they are moved into protected
    /// storage and `bytes`' buffer is zeroized.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(ProtectedBytes::from_vec(bytes))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.expose()
    }

    /// The secret as UTF-8 text (QEMU's `qcrypto_secret_lookup_as_utf8`).
    pub fn as_utf8(&self, id: &str) -> Result<&str, SecretError> {
        std::str::from_utf8(self.0.expose())
            .map_err(|_| SecretError::NotUtf8 { id: id.to_string() })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted, {} bytes>)", self.0.len())
    }
}

/// `format=` of a secret.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretFormat {
    /// Bytes used as they are (QEMU's default).
    #[default]
    Raw,
    /// Base64 text, decoded (newlines allowed, as in QEMU).
    Base64,
}

impl SecretFormat {
    /// Parse QEMU's `format=` value.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        match s {
            "raw" => Ok(SecretFormat::Raw),
            "base64" => Ok(SecretFormat::Base64),
            other => Err(SecretError::BadFormat(other.to_string())),
        }
    }
}

/// The properties of a `secret` object, before loading.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretSpec {
    /// Inline value (`data=`). May itself be a plaintext secret, so `Debug` hides it.
    pub data: Option<Zeroizing<String>>,
    /// File holding the value (`file=`).
    pub file: Option<PathBuf>,
    /// `format=`.
    pub format: SecretFormat,
    /// Id of the 32-byte master key secret (`keyid=`).
    pub keyid: Option<String>,
    /// Base64 16-byte IV (`iv=`).
    pub iv: Option<String>,
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSpec")
            .field("data", &self.data.as_ref().map(|_| "<redacted>"))
            .field("file", &self.file)
            .field("format", &self.format)
            .field("keyid", &self.keyid)
            .field("iv", &self.iv)
            .finish()
    }
}

/// Why a secret could not be loaded. Never carries secret bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("'file' and 'data' are mutually exclusive")]
    BothDataAndFile,
    #[error("Either 'file' or 'data' must be provided")]
    NeitherDataNorFile,
    #[error("Unable to read {path}: {reason}")]
    UnreadableFile { path: String, reason: String },
    #[error("Unable to read {path}: file is larger than {MAX_SECRET_FILE} bytes")]
    FileTooLarge { path: String },
    #[error("No secret with id '{0}'")]
    UnknownKeyId(String),
    #[error("Key should be 32 bytes in length")]
    BadKeyLength,
    #[error("IV is required to decrypt secret")]
    MissingIv,
    #[error("IV should be 16 bytes in length not {0}")]
    BadIvLength(usize),
    #[error("Base64 data contains invalid characters")]
    Base64InvalidChars,
    #[error("Base64 data has a truncated final group or bad '=' padding")]
    Base64BadLength,
    #[error("Length {0} must be a multiple of block size 16")]
    CiphertextLength(usize),
    #[error(
        "Incorrect number of padding bytes ({0}) found on decrypted data \
         (wrong master key, wrong IV or corrupted ciphertext?)"
    )]
    BadPadding(u8),
    #[error("Invalid parameter 'format': '{0}' (expected 'raw' or 'base64')")]
    BadFormat(String),
    #[error("Data from secret {id} is not valid UTF-8")]
    NotUtf8 { id: String },
}

/// Decode base64 the way QEMU's `qbase64_decode()` accepts it: the standard
/// alphabet, `=` padding, and `\n` line breaks anywhere.
pub fn qbase64_decode(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let valid = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'\n');
    if !text.iter().all(valid) {
        return Err(SecretError::Base64InvalidChars);
    }
    let compact: Zeroizing<Vec<u8>> =
        Zeroizing::new(text.iter().copied().filter(|&c| c != b'\n').collect());
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut out = Zeroizing::new(Vec::with_capacity(compact.len() / 4 * 3 + 3));
    match engine.decode_vec(&compact[..], &mut out) {
        Ok(()) => Ok(out),
        Err(base64::DecodeError::InvalidByte(..)) => Err(SecretError::Base64InvalidChars),
        Err(_) => Err(SecretError::Base64BadLength),
    }
}

fn read_file(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| SecretError::UnreadableFile {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(unreadable)?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretError::FileTooLarge { path: shown });
    }
    Ok(buf)
}

/// AES-256-CBC decrypt + PKCS#7 unpad, as `qcrypto_secret_decrypt()`, but checking
/// every padding byte (QEMU only checks the last one).
fn decrypt(key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(SecretError::CiphertextLength(ciphertext.len()));
    }
    let dec = Aes256CbcDec::new_from_slices(key, iv).map_err(|_| SecretError::BadKeyLength)?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    dec.decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut buf)
        .map_err(|_| SecretError::CiphertextLength(ciphertext.len()))?;
    let pad = *buf.last().unwrap_or(&0);
    let n = usize::from(pad);
    if n == 0 || n > 16 || n > buf.len() || !buf[buf.len() - n..].iter().all(|&b| b == pad) {
        return Err(SecretError::BadPadding(pad));
    }
    let len = buf.len() - n;
    buf[len..].zeroize();
    buf.truncate(len);
    Ok(buf)
}

impl SecretSpec {
    /// Load the secret's value. `lookup` resolves `keyid=` to an already loaded
    /// secret (QEMU's `qcrypto_secret_lookup`), so nesting works by loading the
    /// master first.
    pub fn load(&self, lookup: &dyn Fn(&str) -> Option<Secret>) -> Result<Secret, SecretError> {
        let input: Zeroizing<Vec<u8>> = match (&self.data, &self.file) {
            (Some(_), Some(_)) => return Err(SecretError::BothDataAndFile),
            (None, None) => return Err(SecretError::NeitherDataNorFile),
            (Some(d), None) => Zeroizing::new(d.as_bytes().to_vec()),
            (None, Some(path)) => read_file(path)?,
        };
        let value = match &self.keyid {
            Some(keyid) => {
                let key = lookup(keyid).ok_or_else(|| SecretError::UnknownKeyId(keyid.clone()))?;
                if key.len() != 32 {
                    return Err(SecretError::BadKeyLength);
                }
                let iv_text = self.iv.as_ref().ok_or(SecretError::MissingIv)?;
                let iv = qbase64_decode(iv_text.as_bytes())?;
                if iv.len() != 16 {
                    return Err(SecretError::BadIvLength(iv.len()));
                }
                let ciphertext = match self.format {
                    SecretFormat::Base64 => qbase64_decode(&input)?,
                    SecretFormat::Raw => input,
                };
                decrypt(key.expose(), &iv, &ciphertext)?
            }
            None => match self.format {
                SecretFormat::Base64 => qbase64_decode(&input)?,
                SecretFormat::Raw => input,
            },
        };
        // Move the bytes out without leaving an unzeroized copy behind.
        let mut value = value;
        Ok(Secret::new(std::mem::take(&mut *value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = Secret::new(b"letmein".to_vec());
        let shown = format!("{s:?}");
        assert!(!shown.contains("letmein"), "{shown}");
        let spec = SecretSpec {
            data: Some(Zeroizing::new("letmein".into())),
            ..Default::default()
        };
        let shown = format!("{spec:?}");
        assert!(!shown.contains("letmein"), "{shown}");
    }

    #[test]
    fn qbase64_accepts_newlines_and_rejects_garbage() {
        assert_eq!(
            &qbase64_decode(b"bGV0\nbWVpbg==\n").unwrap()[..],
            b"letmein"
        );
        assert_eq!(
            qbase64_decode(b"bGV0 bWVpbg==").unwrap_err(),
            SecretError::Base64InvalidChars
        );
        assert_eq!(
            qbase64_decode(b"bGV0b").unwrap_err(),
            SecretError::Base64BadLength
        );
    }

    #[test]
    fn bad_padding_detected() {
        // A key/IV pair that was not used to encrypt: padding check must fail
        // (checked against many random-looking blocks to make it deterministic).
        let key = [7u8; 32];
        let iv = [1u8; 16];
        let mut failures = 0;
        for i in 0..64u8 {
            let ct = [i; 32];
            if let Err(SecretError::BadPadding(_)) = decrypt(&key, &iv, &ct) {
                failures += 1;
            }
        }
        assert!(failures > 50, "{failures}");
    }
}
