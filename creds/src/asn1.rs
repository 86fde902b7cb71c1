//! Just enough DER to read PBES2 parameters and to repair gnutls' EC private
//! keys. Bounded: every length is checked against the remaining input.

/// One TLV: tag byte, content, and the whole encoding.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
}

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;

/// Read one TLV from the front of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags never occur in these structures
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

/// Read a TLV that must have `tag`.
pub fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, rest) = read(input)?;
    (t.tag == tag).then_some((t.content, rest))
}

/// Encode a TLV.
pub fn write(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// Decode a non-negative INTEGER that fits in u64.
pub fn uint(content: &[u8]) -> Option<u64> {
    if content.first().is_none_or(|&b| b & 0x80 != 0) {
        return None; // empty or negative
    }
    let c = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        c => c,
    };
    if c.len() > 8 {
        return None;
    }
    Some(c.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Dotted-decimal form of an OID's content bytes.
pub fn oid_string(content: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in content {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bounds() {
        let mut out = Vec::new();
        write(OCTET_STRING, &[7u8; 300], &mut out);
        let (t, rest) = read(&out).unwrap();
        assert_eq!((t.tag, t.content.len(), rest.len()), (OCTET_STRING, 300, 0));
        assert!(read(&out[..out.len() - 1]).is_none());
        assert!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert_eq!(uint(&[0x00, 0x80]), Some(128));
        assert_eq!(uint(&[0x80]), None);
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d]),
            "1.2.840.113549.1.5.13"
        );
    }
}
