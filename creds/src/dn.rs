//! X.509 distinguished names as QEMU shows and matches them.
//!
//! QEMU's `tls-authz` check uses `gnutls_x509_crt_get_dn()`, which prints the
//! subject in **certificate order** (the "compat" format, not the reversed RFC 4514
//! order that `certtool -i` prints): a certificate made with `country = GB`,
//! `organization = Bulkhead Test`, `cn = client.test` reads
//! `C=GB,O=Bulkhead Test,CN=client.test`. RDNs are joined with `,`, the values of
//! a multi-valued RDN with `+`, attribute names are gnutls' short names, values
//! are escaped as in RFC 4514, and attributes with unknown OIDs or non-string
//! values print as `OID=#HEXDER`.

use x509_parser::prelude::*;

/// gnutls' LDAP names for the attribute OIDs it knows (lib/x509/common.c).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.6" => "C",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.17" => "postalCode",
        "2.5.4.5" => "serialNumber",
        "2.5.4.12" => "title",
        "2.5.4.4" => "surName",
        "2.5.4.42" => "givenName",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.41" => "name",
        "2.5.4.15" => "businessCategory",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "EMAIL",
        _ => return None,
    })
}

/// RFC 4514 value escaping as gnutls applies it.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

fn hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
}

/// Format a parsed X.509 name the way `gnutls_x509_crt_get_dn()` does.
pub fn format_name(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter_rdn().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, ava) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = ava.attr_type().to_id_string();
            let value: Option<std::borrow::Cow<'_, str>> = match ava.as_str() {
                Ok(v) => Some(v.into()),
                Err(_) => {
                    // gnutls also converts TeletexString (ASCII in practice) and
                    // BMPString (UTF-16BE) to text.
                    let any = ava.attr_value();
                    match any.tag() {
                        x509_parser::der_parser::asn1_rs::Tag::T61String => {
                            std::str::from_utf8(any.data).ok().map(Into::into)
                        }
                        x509_parser::der_parser::asn1_rs::Tag::BmpString
                            if any.data.len() % 2 == 0 =>
                        {
                            let units =
                                any.data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                            char::decode_utf16(units)
                                .collect::<Result<String, _>>()
                                .ok()
                                .map(Into::into)
                        }
                        _ => None,
                    }
                }
            };
            match (short_name(&oid), value) {
                (Some(short), Some(v)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_value(&v, &mut out);
                }
                _ => {
                    out.push_str(&oid);
                    out.push_str("=#");
                    // The whole DER TLV of the value.
                    let any = ava.attr_value();
                    let mut der = Vec::new();
                    der.push(
                        (any.tag().0 & 0x1f) as u8
                            | if any.header.is_constructed() { 0x20 } else { 0 },
                    );
                    let len = any.data.len();
                    if len < 0x80 {
                        der.push(len as u8);
                    } else {
                        let bytes = len.to_be_bytes();
                        let skip = bytes.iter().take_while(|&&b| b == 0).count();
                        der.push(0x80 | (bytes.len() - skip) as u8);
                        der.extend_from_slice(&bytes[skip..]);
                    }
                    der.extend_from_slice(any.data);
                    hex(&der, &mut out);
                }
            }
        }
    }
    out
}

/// The subject DN of a DER certificate, as QEMU shows it, or `None` if the
/// bytes are not a certificate.
pub fn subject_dn(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    Some(format_name(cert.subject()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_value("#a, b+c ", &mut s);
        assert_eq!(s, "\\#a\\, b\\+c\\ ");
    }

    #[test]
    fn special_values() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        dn.push(
            rcgen::DnType::CommonName,
            rcgen::DnValue::BmpString("bmp-ü".try_into().unwrap()),
        );
        dn.push(
            rcgen::DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 99999, 1]),
            "x",
        );
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_dn(cert.der()).unwrap(),
            "O=Example\\, Inc.,CN=bmp-ü,1.3.6.1.4.1.99999.1=#0c0178"
        );
        assert_eq!(subject_dn(b"not a certificate"), None);
    }

    #[test]
    fn rcgen_name_in_certificate_order() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "GB");
        dn.push(rcgen::DnType::OrganizationName, "Bulkhead Test");
        dn.push(rcgen::DnType::CommonName, "client.test");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_dn(cert.der()).unwrap(),
            "C=GB,O=Bulkhead Test,CN=client.test"
        );
    }
}
