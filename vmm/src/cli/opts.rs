//! QEMU's option-value syntax (QemuOpts / keyval):
//! `[implied-value,]key=value,key2=value2` with `,,` standing for a literal
//! comma, booleans spelled on/off (also yes/no/true/false/y/n), and sizes
//! with binary suffixes (`512M`, `2G`, `1.5G`).

/// A parsed option value: `key=value` pairs in order (a key may repeat;
/// the last one wins, as in QEMU).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Opts {
    entries: Vec<(String, String)>,
}

/// Splits `text` into key=value pairs. The first element may omit `key=`
/// when `implied` names its key (e.g. `-m 512M` → `size=512M`,
/// `-chardev socket,...` → `backend=socket`). Without `implied`, a bare
/// `key` means `key=on` (QEMU's boolean shorthand).
pub fn parse(text: &str, implied: Option<&str>) -> Result<Opts, String> {
    let mut entries = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    let mut first = true;
    if text.is_empty() {
        return Ok(Opts { entries });
    }
    while i <= b.len() {
        // Key: up to '=' or ',' (no escaping in keys).
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let has_eq = i < b.len() && b[i] == b'=';
        if !has_eq && first && implied.is_some() {
            // Implied key: the value runs to the next single ',' with ',,' escaping.
            i = start;
            let v = read_value(b, &mut i);
            entries.push((implied.unwrap_or_default().to_string(), v));
        } else if !has_eq {
            let key = &text[start..i];
            if key.is_empty() {
                return Err("Invalid parameter ''".to_string());
            }
            entries.push((key.to_string(), "on".to_string()));
            i += 1; // skip ','
        } else {
            let key = text[start..i].to_string();
            if key.is_empty() {
                return Err("Invalid parameter ''".to_string());
            }
            i += 1; // '='
            let v = read_value(b, &mut i);
            entries.push((key, v));
        }
        first = false;
        if i >= b.len() {
            break;
        }
    }
    Ok(Opts { entries })
}

/// Reads a value up to an unescaped ',' (consumed); `,,` yields ','.
fn read_value(b: &[u8], i: &mut usize) -> String {
    let mut out = Vec::new();
    while *i < b.len() {
        if b[*i] == b',' {
            if b.get(*i + 1) == Some(&b',') {
                out.push(b',');
                *i += 2;
                continue;
            }
            *i += 1;
            return String::from_utf8_lossy(&out).into_owned();
        }
        out.push(b[*i]);
        *i += 1;
    }
    *i = b.len() + 1;
    String::from_utf8_lossy(&out).into_owned()
}

/// QEMU's boolean spellings.
pub fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(format!("Parameter '{key}' expects 'on' or 'off'")),
    }
}

/// QEMU's `qemu_strtosz`: a non-negative decimal (fraction allowed with a
/// suffix), optional suffix B/K/M/G/T/P/E (any case, binary multiples);
/// `default_shift` applies without a suffix (20 for `-m`, 0 for bytes).
pub fn parse_size(key: &str, v: &str, default_shift: u32) -> Result<u64, String> {
    let bad = || {
        format!(
            "Parameter '{key}' expects a non-negative number below 2^64\n\
             Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
             and exabytes, respectively."
        )
    };
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let shift = match suffix {
        "" => default_shift,
        "b" | "B" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        "p" | "P" => 50,
        "e" | "E" => 60,
        _ => return Err(bad()),
    };
    if let Some((int, frac)) = num.split_once('.') {
        if suffix.is_empty() || frac.is_empty() {
            return Err(bad());
        }
        let int: u64 = int.parse().map_err(|_| bad())?;
        let frac_val: f64 = format!("0.{frac}").parse().map_err(|_| bad())?;
        let whole = int
            .checked_shl(shift)
            .filter(|w| w >> shift == int)
            .ok_or_else(bad)?;
        let part = (frac_val * (1u64 << shift) as f64) as u64;
        return whole.checked_add(part).ok_or_else(bad);
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_shl(shift)
        .filter(|w| w >> shift == n)
        .ok_or_else(bad)
}

impl Opts {
    /// Builds from pairs (for tests and JSON conversion).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Opts { entries: pairs }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Removes every `key` and returns the last value.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let v = self.get(key).map(str::to_string);
        self.entries.retain(|(k, _)| k != key);
        v
    }

    /// Takes a boolean.
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        self.take(key).map(|v| parse_bool(key, &v)).transpose()
    }

    /// Takes a size (see [`parse_size`]).
    pub fn take_size(&mut self, key: &str, default_shift: u32) -> Result<Option<u64>, String> {
        self.take(key)
            .map(|v| parse_size(key, &v, default_shift))
            .transpose()
    }

    /// Takes an unsigned number.
    pub fn take_u64(&mut self, key: &str) -> Result<Option<u64>, String> {
        self.take(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("Parameter '{key}' expects a number"))
            })
            .transpose()
    }

    /// Whether no pairs are left.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remaining pairs, in order.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.entries
    }

    /// Fails with QEMU's "Invalid parameter 'x'" if anything is left.
    pub fn finish(self) -> Result<(), String> {
        match self.entries.first() {
            None => Ok(()),
            Some((k, _)) => Err(format!("Invalid parameter '{k}'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(o: &Opts) -> Vec<(&str, &str)> {
        o.entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn implied_key_and_escaping() {
        let o = parse("socket,id=c0,path=/tmp/a,,b,server=on", Some("backend")).unwrap();
        assert_eq!(
            pairs(&o),
            vec![
                ("backend", "socket"),
                ("id", "c0"),
                ("path", "/tmp/a,b"),
                ("server", "on")
            ]
        );
        let o = parse("/tmp/x,,y.img", Some("file")).unwrap();
        assert_eq!(pairs(&o), vec![("file", "/tmp/x,y.img")]);
        let o = parse("id=a,b", None).unwrap();
        assert_eq!(pairs(&o), vec![("id", "a"), ("b", "on")]);
        let o = parse("size=1G", Some("size")).unwrap();
        assert_eq!(pairs(&o), vec![("size", "1G")]);
        let o = parse("a=,b=2", None).unwrap();
        assert_eq!(pairs(&o), vec![("a", ""), ("b", "2")]);
        assert!(parse(",a=1", None).is_err());
    }

    #[test]
    fn booleans() {
        for t in ["on", "yes", "true", "y"] {
            assert_eq!(parse_bool("x", t), Ok(true));
        }
        for f in ["off", "no", "false", "n"] {
            assert_eq!(parse_bool("x", f), Ok(false));
        }
        assert_eq!(
            parse_bool("timestamp", "maybe").unwrap_err(),
            "Parameter 'timestamp' expects 'on' or 'off'"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("size", "512", 20), Ok(512 << 20));
        assert_eq!(parse_size("size", "512M", 20), Ok(512 << 20));
        assert_eq!(parse_size("size", "2G", 20), Ok(2 << 30));
        assert_eq!(parse_size("size", "2g", 0), Ok(2 << 30));
        assert_eq!(parse_size("size", "1.5G", 20), Ok(3 << 29));
        assert_eq!(parse_size("size", "4096", 0), Ok(4096));
        assert_eq!(parse_size("size", "64k", 0), Ok(64 << 10));
        assert!(parse_size("size", "512x", 20)
            .unwrap_err()
            .starts_with("Parameter 'size' expects a non-negative number below 2^64"));
        assert!(parse_size("size", "-1", 20).is_err());
        assert!(parse_size("size", "99999999999999999999", 0).is_err());
        assert!(parse_size("size", "17179869184G", 20).is_err());
        assert!(parse_size("size", "", 20).is_err());
        assert!(parse_size("size", "1.5", 20).is_err());
    }
}
