//! `bulkhead pki init DIR [--hostname H]... [--ip A]... [--client-cn CN]
//! [--organization O] [--days N] [--force]`: makes a CA, a server and a
//! client certificate in QEMU's `tls-creds-x509` directory layout
//! (`creds::pki` does the work; this module only parses arguments).

use std::net::IpAddr;

use creds::pki::{init, PkiOptions};

/// Usage text of the `pki` subcommand.
pub const USAGE: &str = "\
Usage: bulkhead pki init DIR [options]

Creates ca-cert.pem, ca-key.pem, server-cert.pem, server-key.pem,
client-cert.pem and client-key.pem in DIR (the layout -object
tls-creds-x509,dir=DIR reads). Key files are created with mode 0600.

Options:
  --hostname NAME     DNS name for the server certificate (repeatable)
  --ip ADDR           IP address for the server certificate (repeatable)
  --client-cn CN      common name of the client certificate (default: client)
  --organization O    O= of every certificate (default: Bulkhead)
  --days N            validity in days (default: 365)
  --force             overwrite existing files
";

/// Parses `pki` subcommand arguments (after `pki`).
pub fn parse(args: &[String]) -> Result<PkiOptions, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("init") => {}
        Some("-h" | "--help") | None => return Err(USAGE.to_owned()),
        Some(other) => return Err(format!("pki: unknown command '{other}'\n{USAGE}")),
    }
    let mut dir = None;
    let mut o = PkiOptions::new("");
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("pki init: {name} needs a value"))
        };
        match a.as_str() {
            "--hostname" => o.hostnames.push(val("--hostname")?),
            "--ip" => {
                let v = val("--ip")?;
                let ip: IpAddr = v
                    .parse()
                    .map_err(|_| format!("pki init: --ip: '{v}' is not an IP address"))?;
                o.ips.push(ip);
            }
            "--client-cn" => o.client_cn = val("--client-cn")?,
            "--organization" => o.organization = val("--organization")?,
            "--days" => {
                let v = val("--days")?;
                o.days =
                    v.parse().ok().filter(|d| *d > 0).ok_or_else(|| {
                        format!("pki init: --days: '{v}' is not a positive number")
                    })?;
            }
            "--force" => o.force = true,
            s if s.starts_with('-') => return Err(format!("pki init: unknown option '{s}'")),
            s => {
                if dir.replace(s.to_owned()).is_some() {
                    return Err("pki init: only one DIR may be given".into());
                }
            }
        }
    }
    o.dir = dir
        .ok_or_else(|| format!("pki init: DIR is required\n{USAGE}"))?
        .into();
    Ok(o)
}

/// Runs the subcommand; returns the process exit code.
pub fn main(args: &[String]) -> std::process::ExitCode {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return std::process::ExitCode::from(1);
        }
    };
    match init(&opts) {
        Ok(files) => {
            println!("created in {}:", opts.dir.display());
            for f in &files.written {
                println!("  {}", f.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bulkhead: pki init: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        let o = parse(&s(&[
            "init",
            "/tmp/x",
            "--hostname",
            "a.test",
            "--hostname",
            "b.test",
            "--ip",
            "127.0.0.1",
            "--client-cn",
            "c",
            "--days",
            "10",
            "--force",
        ]))
        .unwrap();
        assert_eq!(o.dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(o.hostnames, ["a.test", "b.test"]);
        assert_eq!(o.ips.len(), 1);
        assert_eq!(o.client_cn, "c");
        assert_eq!(o.days, 10);
        assert!(o.force);
    }

    #[test]
    fn bad_options_are_named() {
        assert!(parse(&s(&["init"]))
            .unwrap_err()
            .contains("DIR is required"));
        assert!(parse(&s(&["init", "d", "--ip", "x"]))
            .unwrap_err()
            .contains("--ip"));
        assert!(parse(&s(&["init", "d", "--bogus"]))
            .unwrap_err()
            .contains("--bogus"));
        assert!(parse(&s(&["frob"])).unwrap_err().contains("frob"));
        assert!(parse(&s(&["init", "d", "e"]))
            .unwrap_err()
            .contains("only one DIR"));
    }
}
