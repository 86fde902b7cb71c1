//! Private keys as certtool writes them.
//!
//! **Encrypted PKCS#8** (`ENCRYPTED PRIVATE KEY`): `certtool --to-p8 --password PW`
//! (gnutls 3.7) writes PBES2 with PBKDF2-HMAC-SHA256 (600 000 iterations, the PRF
//! AlgorithmIdentifier without a NULL parameter) and AES-128-CBC;
//! `--pkcs-cipher aes-192|aes-256` changes the cipher, `3des` uses PBES2 +
//! DES-EDE3-CBC, and `3des-pkcs12`, `rc2-40`, `arcfour` use PKCS#12 PBES1 schemes.
//! OpenSSL's `pkcs8 -topk8 -v2 aes256` writes PBES2 + PBKDF2-HMAC-SHA256 too. We
//! support PBES2 + PBKDF2 (HMAC-SHA1/256/384/512) + AES-128/192/256-CBC and name
//! the others in the error with the command that re-encrypts the key.
//! PBKDF2 runs on `ring` (optimised assembly even in debug builds).
//!
//! **EC keys**: gnutls encodes the SEC1 private scalar as a signed integer, so
//! about half its P-256 keys carry a 33-byte scalar with a leading zero, which
//! `ring` refuses. [`repair_ec_key`] strips that byte (in SEC1 and inside PKCS#8).
//!
//! ```text
//! EncryptedPrivateKeyInfo ::= SEQUENCE {
//!   encryptionAlgorithm SEQUENCE { OID pbes2, SEQUENCE {
//!       keyDerivationFunc SEQUENCE { OID pbkdf2, SEQUENCE {
//!           salt OCTET STRING, iterationCount INTEGER, keyLength INTEGER OPTIONAL,
//!           prf SEQUENCE { OID hmacWithSHAx, NULL OPTIONAL } DEFAULT hmacWithSHA1 } },
//!       encryptionScheme SEQUENCE { OID aesNNN-CBC, iv OCTET STRING } } },
//!   encryptedData OCTET STRING }
//! ```

use std::num::NonZeroU32;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use zeroize::Zeroizing;

use crate::asn1::{self, expect, OCTET_STRING, OID, SEQUENCE};

/// Refuse absurd iteration counts (a key file that would hang the loader).
const MAX_ITERATIONS: u64 = 20_000_000;

const PBES2: &str = "1.2.840.113549.1.5.13";
const PBKDF2: &str = "1.2.840.113549.1.5.12";

/// Why an encrypted key could not be decrypted. Never carries the password.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
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

fn scheme_name(oid: &str) -> String {
    let known = match oid {
        "1.2.840.113549.1.12.1.3" => "PKCS#12 pbeWithSHAAnd3-KeyTripleDES-CBC",
        "1.2.840.113549.1.12.1.6" => "PKCS#12 pbeWithSHAAnd40BitRC2-CBC",
        "1.2.840.113549.1.12.1.1" => "PKCS#12 pbeWithSHAAnd128BitRC4",
        "1.2.840.113549.3.7" => "DES-EDE3-CBC",
        "1.3.6.1.4.1.11591.4.11" => "scrypt",
        _ => "",
    };
    if known.is_empty() {
        format!("OID {oid}")
    } else {
        format!("{known}, OID {oid}")
    }
}

struct Pbes2<'a> {
    salt: &'a [u8],
    iterations: u64,
    key_length: Option<u64>,
    prf: ring::pbkdf2::Algorithm,
    key_len: usize,
    iv: &'a [u8],
    data: &'a [u8],
}

fn parse(der: &[u8]) -> Result<Pbes2<'_>, P8Error> {
    let m = P8Error::Malformed;
    let (epki, _) = expect(der, SEQUENCE).ok_or(m.clone())?;
    let (alg, rest) = expect(epki, SEQUENCE).ok_or(m.clone())?;
    let (data, _) = expect(rest, OCTET_STRING).ok_or(m.clone())?;
    let (scheme, params) = expect(alg, OID).ok_or(m.clone())?;
    let scheme = asn1::oid_string(scheme);
    if scheme != PBES2 {
        return Err(P8Error::Unsupported(scheme_name(&scheme)));
    }
    let (params, _) = expect(params, SEQUENCE).ok_or(m.clone())?;
    let (kdf, rest) = expect(params, SEQUENCE).ok_or(m.clone())?;
    let (enc, _) = expect(rest, SEQUENCE).ok_or(m.clone())?;
    let (kdf_oid, kdf_params) = expect(kdf, OID).ok_or(m.clone())?;
    let kdf_oid = asn1::oid_string(kdf_oid);
    if kdf_oid != PBKDF2 {
        return Err(P8Error::Unsupported(format!(
            "key derivation {}",
            scheme_name(&kdf_oid)
        )));
    }
    let (kp, _) = expect(kdf_params, SEQUENCE).ok_or(m.clone())?;
    let (salt, rest) = expect(kp, OCTET_STRING).ok_or(m.clone())?;
    let (iters, mut rest) = expect(rest, asn1::INTEGER).ok_or(m.clone())?;
    let iterations = asn1::uint(iters).ok_or(m.clone())?;
    let mut key_length = None;
    if let Some((t, r)) = asn1::read(rest) {
        if t.tag == asn1::INTEGER {
            key_length = Some(asn1::uint(t.content).ok_or(m.clone())?);
            rest = r;
        }
    }
    let prf = match expect(rest, SEQUENCE) {
        None => ring::pbkdf2::PBKDF2_HMAC_SHA1,
        Some((prf, _)) => {
            let (oid, _) = expect(prf, OID).ok_or(m.clone())?;
            match asn1::oid_string(oid).as_str() {
                "1.2.840.113549.2.7" => ring::pbkdf2::PBKDF2_HMAC_SHA1,
                "1.2.840.113549.2.9" => ring::pbkdf2::PBKDF2_HMAC_SHA256,
                "1.2.840.113549.2.10" => ring::pbkdf2::PBKDF2_HMAC_SHA384,
                "1.2.840.113549.2.11" => ring::pbkdf2::PBKDF2_HMAC_SHA512,
                other => return Err(P8Error::Unsupported(format!("PBKDF2 PRF OID {other}"))),
            }
        }
    };
    let (cipher, enc_params) = expect(enc, OID).ok_or(m.clone())?;
    let key_len = match asn1::oid_string(cipher).as_str() {
        "2.16.840.1.101.3.4.1.2" => 16,
        "2.16.840.1.101.3.4.1.22" => 24,
        "2.16.840.1.101.3.4.1.42" => 32,
        other => {
            return Err(P8Error::Unsupported(format!(
                "cipher {}",
                scheme_name(other)
            )))
        }
    };
    let (iv, _) = expect(enc_params, OCTET_STRING).ok_or(m.clone())?;
    if iv.len() != 16 {
        return Err(m);
    }
    Ok(Pbes2 {
        salt,
        iterations,
        key_length,
        prf,
        key_len,
        iv,
        data,
    })
}

/// Decrypt an `ENCRYPTED PRIVATE KEY` DER blob into plain PKCS#8 DER.
pub fn decrypt(der: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, P8Error> {
    let p = parse(der)?;
    if p.iterations > MAX_ITERATIONS {
        return Err(P8Error::Unsupported(format!(
            "PBKDF2 iteration count {} above {MAX_ITERATIONS}",
            p.iterations
        )));
    }
    if p.key_length.is_some_and(|l| l != p.key_len as u64) {
        return Err(P8Error::Malformed);
    }
    let iterations = NonZeroU32::new(p.iterations as u32).ok_or(P8Error::Malformed)?;
    let mut key = Zeroizing::new([0u8; 32]);
    ring::pbkdf2::derive(p.prf, iterations, p.salt, password, &mut key[..p.key_len]);
    let mut buf = Zeroizing::new(p.data.to_vec());
    let k = &key[..p.key_len];
    let plain_len = match p.key_len {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(k, p.iv)
            .map_err(|_| P8Error::Malformed)?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|x| x.len()),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(k, p.iv)
            .map_err(|_| P8Error::Malformed)?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|x| x.len()),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(k, p.iv)
            .map_err(|_| P8Error::Malformed)?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(|x| x.len()),
    }
    .map_err(|_| P8Error::WrongPassword)?;
    buf.truncate(plain_len);
    // A wrong password passes the padding check about 1 time in 256: the result
    // must also look like a PrivateKeyInfo (SEQUENCE { INTEGER 0|1, SEQUENCE ... }).
    let looks_ok = expect(&buf, SEQUENCE)
        .and_then(|(c, rest)| rest.is_empty().then_some(c))
        .and_then(|c| expect(c, asn1::INTEGER))
        .and_then(|(_, r)| expect(r, SEQUENCE))
        .is_some();
    if !looks_ok {
        return Err(P8Error::WrongPassword);
    }
    Ok(buf)
}

fn curve_len(oid: &str) -> Option<usize> {
    match oid {
        "1.2.840.10045.3.1.7" => Some(32),
        "1.3.132.0.34" => Some(48),
        "1.3.132.0.35" => Some(66),
        _ => None,
    }
}

/// Repair a SEC1 `ECPrivateKey` whose scalar has a leading zero byte (gnutls).
/// `curve` comes from the PKCS#8 wrapper when the SEC1 structure omits it.
fn repair_sec1(der: &[u8], curve: Option<&str>) -> Option<Vec<u8>> {
    let (seq, _) = expect(der, SEQUENCE)?;
    let (version, rest) = expect(seq, asn1::INTEGER)?;
    let (scalar, tail) = expect(rest, OCTET_STRING)?;
    let mut want = curve.and_then(curve_len);
    if let Some((t, _)) = asn1::read(tail) {
        if t.tag == 0xa0 {
            if let Some((oid, _)) = expect(t.content, OID) {
                want = curve_len(&asn1::oid_string(oid)).or(want);
            }
        }
    }
    let want = want?;
    if scalar.len() <= want || scalar[..scalar.len() - want].iter().any(|&b| b != 0) {
        return None;
    }
    let mut body = Vec::new();
    asn1::write(asn1::INTEGER, version, &mut body);
    asn1::write(OCTET_STRING, &scalar[scalar.len() - want..], &mut body);
    body.extend_from_slice(tail);
    let mut out = Vec::new();
    asn1::write(SEQUENCE, &body, &mut out);
    Some(out)
}

/// If `der` (SEC1 or PKCS#8) holds an EC key with an over-long scalar, return
/// the repaired encoding; `None` when nothing needs repairing.
pub fn repair_ec_key(der: &[u8], pkcs8: bool) -> Option<Zeroizing<Vec<u8>>> {
    if !pkcs8 {
        return repair_sec1(der, None).map(Zeroizing::new);
    }
    let (seq, _) = expect(der, SEQUENCE)?;
    let (version, rest) = expect(seq, asn1::INTEGER)?;
    let (alg, rest) = expect(rest, SEQUENCE)?;
    let (key, tail) = expect(rest, OCTET_STRING)?;
    let (alg_oid, alg_params) = expect(alg, OID)?;
    if asn1::oid_string(alg_oid) != "1.2.840.10045.2.1" {
        return None;
    }
    let curve = expect(alg_params, OID).map(|(c, _)| asn1::oid_string(c));
    let fixed = Zeroizing::new(repair_sec1(key, curve.as_deref())?);
    let mut body = Zeroizing::new(Vec::new());
    asn1::write(asn1::INTEGER, version, &mut body);
    asn1::write(SEQUENCE, alg, &mut body);
    asn1::write(OCTET_STRING, &fixed, &mut body);
    body.extend_from_slice(tail);
    let mut out = Zeroizing::new(Vec::new());
    asn1::write(SEQUENCE, &body, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed_not_panic() {
        assert_eq!(decrypt(&[], b"pw").unwrap_err(), P8Error::Malformed);
        assert_eq!(
            decrypt(&[0x30, 0x03, 0x30, 0x01, 0x06], b"pw").unwrap_err(),
            P8Error::Malformed
        );
        assert!(repair_ec_key(&[0x30, 0x00], true).is_none());
    }

    #[test]
    fn sec1_leading_zero_stripped() {
        // SEQUENCE { INTEGER 1, OCTET STRING 00||32 bytes, [0] { OID prime256v1 } }
        let mut body = Vec::new();
        asn1::write(asn1::INTEGER, &[1], &mut body);
        let mut scalar = vec![0u8];
        scalar.extend_from_slice(&[0x9a; 32]);
        asn1::write(OCTET_STRING, &scalar, &mut body);
        let mut oid = Vec::new();
        asn1::write(
            OID,
            &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            &mut oid,
        );
        asn1::write(0xa0, &oid, &mut body);
        let mut der = Vec::new();
        asn1::write(SEQUENCE, &body, &mut der);
        let fixed = repair_ec_key(&der, false).unwrap();
        assert_eq!(fixed.len(), der.len() - 1);
        let (seq, _) = expect(&fixed, SEQUENCE).unwrap();
        let (_, rest) = expect(seq, asn1::INTEGER).unwrap();
        let (s, _) = expect(rest, OCTET_STRING).unwrap();
        assert_eq!(s, &[0x9a; 32]);
    }
}
