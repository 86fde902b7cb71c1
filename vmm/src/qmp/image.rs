//! Screenshot encoders for `screendump`: binary PPM (P6, QEMU's default) and
//! PNG (8-bit RGB, zlib stream of stored deflate blocks, so no compression
//! library is needed; every PNG reader accepts it).

use super::backend::Screenshot;

/// Encodes a screenshot as binary PPM.
pub fn to_ppm(s: &Screenshot) -> Vec<u8> {
    let mut out = format!("P6\n{} {}\n255\n", s.width, s.height).into_bytes();
    out.extend_from_slice(&s.rgb);
    out
}

fn crc32(data: &[u8], mut crc: u32) -> u32 {
    crc = !crc;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(data, crc32(kind, 0));
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Encodes a screenshot as PNG.
pub fn to_png(s: &Screenshot) -> Vec<u8> {
    let row = s.width as usize * 3;
    // Filter byte 0 (None) before each row.
    let mut raw = Vec::with_capacity((row + 1) * s.height as usize);
    for y in 0..s.height as usize {
        raw.push(0);
        let start = y * row;
        match s.rgb.get(start..start + row) {
            Some(r) => raw.extend_from_slice(r),
            None => raw.resize(raw.len() + row, 0),
        }
    }
    // zlib: header, stored blocks of up to 65535 bytes, Adler-32.
    let mut z = vec![0x78, 0x01];
    let mut chunks = raw.chunks(65535).peekable();
    if chunks.peek().is_none() {
        z.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        z.push(if chunks.peek().is_none() { 1 } else { 0 });
        let len = c.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&s.width.to_be_bytes());
    ihdr.extend_from_slice(&s.height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_reference() {
        assert_eq!(crc32(b"123456789", 0), 0xcbf4_3926);
    }

    #[test]
    fn ppm_layout() {
        let s = Screenshot {
            width: 2,
            height: 1,
            rgb: vec![1, 2, 3, 4, 5, 6],
        };
        assert_eq!(to_ppm(&s), b"P6\n2 1\n255\n\x01\x02\x03\x04\x05\x06");
    }

    #[test]
    fn png_structure() {
        // Structural check; the Python interop test decodes a real file.
        let s = Screenshot {
            width: 300,
            height: 300,
            rgb: vec![7; 300 * 300 * 3],
        };
        let png = to_png(&s);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]), "IEND crc");
    }
}
