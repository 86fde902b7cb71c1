//! Decrypting password-protected PKCS#8 private keys (`ENCRYPTED PRIVATE KEY`).
//!
//! `certtool --to-p8 --password PW` (gnutls 3.7) writes PBES2 with PBKDF2-HMAC-SHA256
//! (600 000 iterations) and AES-128-CBC; `--pkcs-cipher aes-192|aes-256` changes
//! the cipher, `3des` uses PBES2 + DES-EDE3-CBC, and `3des-pkcs12`, `rc2-40`,
//! `arcfour` use the PKCS#12 PBES1 schemes. OpenSSL's `pkcs8 -topk8 -v2 aes256`
//! writes PBES2 with PBKDF2-HMAC-SHA256 too. We support PBES2 + PBKDF2 (HMAC-SHA1,
//! -SHA256, -SHA384, -SHA512) + AES-128/192/256-CBC, and name the others in the
//! error with the command that re-encrypts the key in a supported form.
//!
//! PBKDF2 runs on `ring` (optimised C/assembly even in debug builds), because
//! 600 000 HMAC iterations in unoptimised Rust would take many seconds.

use std::num::NonZeroU32;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use pkcs8::der::Decode;
use pkcs8::pkcs5::{pbes2, EncryptionScheme};
use zeroize::Zeroizing;

/// Refuse absurd iteration counts (a key file that would hang the loader).
const MAX_ITERATIONS: u32 = 20_000_000;

/// Why an encrypted key could not be decrypted. Never carries the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum P8Error {
    #[error("not a valid PKCS#8 EncryptedPrivateKeyInfo structure")]
    Malformed,
    #[error(
        "unsupported PKCS#8 encryption ({0}); re-encrypt the key with \
         `certtool --to-p8 --pkcs-cipher aes-256 --password ...`"
    )]
    Unsupported(String),
    #[error("wrong password (decryption produced invalid data)")]
    WrongPassword,
}

/// Decrypt an `ENCRYPTED PRIVATE KEY` DER blob into plain PKCS#8 DER.
pub fn decrypt(der: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, P8Error> {
    let info = pkcs8::EncryptedPrivateKeyInfo::from_der(der).map_err(|e| {
        // Unknown algorithm OIDs surface as decoding errors in the pkcs5 crate.
        let text = e.to_string();
        if text.contains("OID") || text.contains("unknown") {
            P8Error::Unsupported(format!("unrecognised algorithm: {text}"))
        } else {
            P8Error::Malformed
        }
    })?;
    let params = match &info.encryption_algorithm {
        EncryptionScheme::Pbes2(p) => p,
        EncryptionScheme::Pbes1(alg) => {
            return Err(P8Error::Unsupported(format!("PBES1 {:?}", alg.encryption)))
        }
        other => return Err(P8Error::Unsupported(format!("scheme {}", other.oid()))),
    };
    let kdf = match &params.kdf {
        pbes2::Kdf::Pbkdf2(k) => k,
        other => return Err(P8Error::Unsupported(format!("KDF {}", other.oid()))),
    };
    let prf = match kdf.prf {
        pbes2::Pbkdf2Prf::HmacWithSha1 => ring::pbkdf2::PBKDF2_HMAC_SHA1,
        pbes2::Pbkdf2Prf::HmacWithSha256 => ring::pbkdf2::PBKDF2_HMAC_SHA256,
        pbes2::Pbkdf2Prf::HmacWithSha384 => ring::pbkdf2::PBKDF2_HMAC_SHA384,
        pbes2::Pbkdf2Prf::HmacWithSha512 => ring::pbkdf2::PBKDF2_HMAC_SHA512,
        other => return Err(P8Error::Unsupported(format!("PBKDF2 PRF {:?}", other))),
    };
    if kdf.iteration_count > MAX_ITERATIONS {
        return Err(P8Error::Unsupported(format!(
            "PBKDF2 iteration count {} above {MAX_ITERATIONS}",
            kdf.iteration_count
        )));
    }
    let iterations = NonZeroU32::new(kdf.iteration_count).ok_or(P8Error::Malformed)?;
    let (key_len, iv) = match params.encryption {
        pbes2::EncryptionScheme::Aes128Cbc { iv } => (16, iv),
        pbes2::EncryptionScheme::Aes192Cbc { iv } => (24, iv),
        pbes2::EncryptionScheme::Aes256Cbc { iv } => (32, iv),
        other => return Err(P8Error::Unsupported(format!("cipher {}", other.oid()))),
    };
    if let Some(len) = kdf.key_length {
        if usize::from(len) != key_len {
            return Err(P8Error::Malformed);
        }
    }
    let mut key = Zeroizing::new([0u8; 32]);
    ring::pbkdf2::derive(prf, iterations, kdf.salt, password, &mut key[..key_len]);
    let mut buf = Zeroizing::new(info.encrypted_data.to_vec());
    let plain_len = match key_len {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key[..16], iv)
            .map_err(|_| P8Error::Malformed)?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|p| p.len()),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key[..24], iv)
            .map_err(|_| P8Error::Malformed)?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|p| p.len()),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key[..32], iv)
            .map_err(|_| P8Error::Malformed)?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|p| p.len()),
    }
    .map_err(|_| P8Error::WrongPassword)?;
    let mut out = Zeroizing::new(buf[..plain_len].to_vec());
    // A wrong password passes the padding check about 1 time in 256: the result
    // must also parse as a PrivateKeyInfo.
    if pkcs8::PrivateKeyInfo::from_der(&out).is_err() {
        zeroize::Zeroize::zeroize(&mut *out);
        return Err(P8Error::WrongPassword);
    }
    Ok(out)
}
