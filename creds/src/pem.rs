//! Minimal PEM reader: every `-----BEGIN LABEL-----` ... `-----END LABEL-----`
//! block in a file, with its label, base64-decoded. Text outside blocks (such as
//! the human-readable dump `certtool` puts before a certificate) is ignored.

use base64::Engine as _;
use zeroize::Zeroizing;

/// One decoded PEM block.
pub struct PemBlock {
    /// The label, e.g. `CERTIFICATE`, `PRIVATE KEY`, `X509 CRL`.
    pub label: String,
    /// The decoded DER bytes (zeroized on drop: blocks can be private keys).
    pub der: Zeroizing<Vec<u8>>,
}

/// Why PEM text could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PemError {
    #[error("PEM block '{0}' has no matching END line")]
    Unterminated(String),
    #[error("PEM block '{0}' is not valid base64")]
    BadBase64(String),
}

/// Parse all PEM blocks in `text`.
pub fn parse(text: &[u8]) -> Result<Vec<PemBlock>, PemError> {
    let text = String::from_utf8_lossy(text);
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = Zeroizing::new(String::new());
        let mut terminated = false;
        for l in lines.by_ref() {
            let l = l.trim();
            if l == end {
                terminated = true;
                break;
            }
            // RFC 1421 headers (Proc-Type/DEK-Info) mark legacy OpenSSL encryption.
            if l.contains(':') {
                body.push_str("!legacy-header!");
            }
            body.push_str(l);
        }
        if !terminated {
            return Err(PemError::Unterminated(label.to_string()));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| PemError::BadBase64(label.to_string()))?;
        blocks.push(PemBlock {
            label: label.to_string(),
            der: Zeroizing::new(der),
        });
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_blocks_and_noise() {
        let text = b"Subject: x\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                     junk\n-----BEGIN X509 CRL-----\nAw==\n-----END X509 CRL-----\n";
        let b = parse(text).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].label, "CERTIFICATE");
        assert_eq!(&b[0].der[..], &[0, 1, 2]);
        assert_eq!(b[1].label, "X509 CRL");
        assert_eq!(&b[1].der[..], &[3]);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse(b"-----BEGIN A-----\nAAEC\n"),
            Err(PemError::Unterminated(_))
        ));
        assert!(matches!(
            parse(b"-----BEGIN A-----\n!!\n-----END A-----\n"),
            Err(PemError::BadBase64(_))
        ));
    }
}
