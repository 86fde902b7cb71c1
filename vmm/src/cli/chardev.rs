//! `-chardev` and the legacy chardev strings of `-serial`, `-qmp`,
//! `-monitor` (`stdio`, `null`, `file:PATH`, `pty`, `tcp:HOST:PORT,...`,
//! `telnet:HOST:PORT,...`, `unix:PATH,...`).

use std::path::PathBuf;

use super::opts::{self, Opts};

/// Where a socket chardev listens or connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddr {
    /// TCP host and port (port may be a service name in QEMU; we need a number).
    Tcp {
        /// Host name or address (empty = any).
        host: String,
        /// Port.
        port: u16,
    },
    /// Unix socket path.
    Unix(PathBuf),
    /// An inherited socket fd (libvirt passes a listening socket).
    Fd(i32),
}

/// A socket chardev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketChardev {
    /// Address.
    pub addr: SocketAddr,
    /// Listen (true) or connect.
    pub server: bool,
    /// For servers: block startup until a client connects (QEMU default on).
    pub wait: bool,
    /// Telnet protocol on top.
    pub telnet: bool,
    /// For clients: reconnect after this many seconds.
    pub reconnect: Option<u64>,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// `tls-creds-x509` object id.
    pub tls_creds: Option<String>,
    /// `authz-*` object id checked against the client certificate.
    pub tls_authz: Option<String>,
}

/// Chardev backends this build supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChardevBackend {
    /// Discards output, never has input.
    Null,
    /// The process's stdin/stdout.
    Stdio {
        /// Whether ^C raises a signal (`signal=on`, QEMU default).
        signal: bool,
    },
    /// Output to a file.
    File {
        /// Path.
        path: PathBuf,
        /// Append instead of truncate.
        append: bool,
    },
    /// A new pseudo-terminal.
    Pty,
    /// A socket.
    Socket(SocketChardev),
}

/// One character device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevSpec {
    /// Id (unique).
    pub id: String,
    /// Backend.
    pub backend: ChardevBackend,
    /// Also log all output to this file.
    pub logfile: Option<PathBuf>,
    /// Append to the log file.
    pub logappend: bool,
}

fn socket_from_opts(
    o: &mut Opts,
    legacy_addr: Option<SocketAddr>,
) -> Result<SocketChardev, String> {
    let path = o.take("path");
    let host = o.take("host");
    let port = o.take("port");
    let fd = o.take("fd");
    let addr = if let Some(a) = legacy_addr {
        a
    } else if let Some(fd) = fd {
        let n: i32 = fd
            .parse()
            .map_err(|_| format!("Unable to parse FD number {fd}"))?;
        if n < 0 {
            return Err(format!("Unable to parse FD number {fd}"));
        }
        SocketAddr::Fd(n)
    } else if let Some(p) = path {
        SocketAddr::Unix(PathBuf::from(p))
    } else if let Some(port) = port {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("Parameter 'port' expects a port number, got '{port}'"))?;
        SocketAddr::Tcp {
            host: host.unwrap_or_default(),
            port,
        }
    } else if host.is_some() {
        return Err("chardev: socket: no port given".into());
    } else {
        return Err("Unable to parse FD number ".into());
    };
    let server = o.take_bool("server")?.unwrap_or(false);
    let wait = o.take_bool("wait")?.unwrap_or(true);
    let telnet = o.take_bool("telnet")?.unwrap_or(false);
    let nodelay = o.take_bool("nodelay")?.unwrap_or(false);
    let reconnect = o.take_u64("reconnect")?.filter(|&r| r > 0);
    let tls_creds = o.take("tls-creds");
    let tls_authz = o.take("tls-authz");
    if server && reconnect.is_some() {
        return Err("'reconnect' option is incompatible with socket in server listen mode".into());
    }
    if tls_authz.is_some() && tls_creds.is_none() {
        return Err("'tls_authz' option requires 'tls_creds' option".into());
    }
    if matches!(addr, SocketAddr::Fd(_)) && telnet {
        return Err("'telnet' option is incompatible with 'fd'".into());
    }
    Ok(SocketChardev {
        addr,
        server,
        wait: server && wait,
        telnet,
        reconnect,
        nodelay,
        tls_creds,
        tls_authz,
    })
}

fn backend_from_opts(kind: &str, o: &mut Opts) -> Result<ChardevBackend, String> {
    Ok(match kind {
        "null" => ChardevBackend::Null,
        "stdio" => ChardevBackend::Stdio {
            signal: o.take_bool("signal")?.unwrap_or(true),
        },
        "file" => {
            let path = o.take("path").ok_or("chardev: file: no filename given")?;
            let append = o.take_bool("append")?.unwrap_or(false);
            ChardevBackend::File {
                path: path.into(),
                append,
            }
        }
        "pty" => ChardevBackend::Pty,
        "socket" => ChardevBackend::Socket(socket_from_opts(o, None)?),
        "vc" | "udp" | "pipe" | "serial" | "tty" | "parallel" | "parport" | "ringbuf"
        | "memory" | "msmouse" | "wctablet" | "braille" | "testdev" | "spicevmc" | "spiceport"
        | "qemu-vdagent" | "dbus" | "mux" => {
            return Err(format!(
                "chardev backend '{kind}' is not supported by this build"
            ))
        }
        other => return Err(format!("'{other}' is not a valid char driver name")),
    })
}

/// Parses a `-chardev BACKEND,id=ID,...` value.
pub fn parse_chardev(text: &str) -> Result<ChardevSpec, String> {
    let mut o = opts::parse(text, Some("backend"))?;
    let kind = o.take("backend").ok_or("chardev: no backend given")?;
    let id = o.take("id").ok_or("chardev: no id specified")?;
    let logfile = o.take("logfile").map(PathBuf::from);
    let logappend = o.take_bool("logappend")?.unwrap_or(false);
    if o.take_bool("mux")?.unwrap_or(false) {
        return Err("chardev multiplexing (mux=on) is not supported by this build".into());
    }
    let backend = backend_from_opts(&kind, &mut o)?;
    o.finish()?;
    Ok(ChardevSpec {
        id,
        backend,
        logfile,
        logappend,
    })
}

fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not a valid char driver"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{s}' is not a valid char driver"))?;
    Ok((host.to_string(), port))
}

/// What a legacy chardev string denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyChardev {
    /// `none`: no device at all.
    None,
    /// `chardev:ID`: an existing `-chardev`.
    Ref(String),
    /// A new backend.
    Backend(ChardevBackend),
}

/// Parses QEMU's legacy chardev syntax (`-serial`, `-qmp`, `-monitor`).
pub fn parse_legacy(text: &str) -> Result<LegacyChardev, String> {
    let invalid = || format!("'{text}' is not a valid char driver");
    match text {
        "none" => return Ok(LegacyChardev::None),
        "null" => return Ok(LegacyChardev::Backend(ChardevBackend::Null)),
        "stdio" => {
            return Ok(LegacyChardev::Backend(ChardevBackend::Stdio {
                signal: true,
            }))
        }
        "pty" => return Ok(LegacyChardev::Backend(ChardevBackend::Pty)),
        _ => {}
    }
    let (scheme, rest) = text.split_once(':').ok_or_else(invalid)?;
    match scheme {
        "chardev" => {
            if rest.is_empty() {
                return Err(invalid());
            }
            Ok(LegacyChardev::Ref(rest.to_string()))
        }
        "file" => Ok(LegacyChardev::Backend(ChardevBackend::File {
            path: rest.into(),
            append: false,
        })),
        "tcp" | "telnet" => {
            let (addr, options) = match rest.split_once(',') {
                Some((a, o)) => (a, o),
                None => (rest, ""),
            };
            let (host, port) = split_host_port(addr).map_err(|_| invalid())?;
            let mut o = opts::parse(options, None)?;
            let mut s = socket_from_opts(&mut o, Some(SocketAddr::Tcp { host, port }))?;
            if scheme == "telnet" {
                s.telnet = true;
            }
            o.finish()?;
            Ok(LegacyChardev::Backend(ChardevBackend::Socket(s)))
        }
        "unix" => {
            let mut o = opts::parse(rest, Some("path"))?;
            let path = o
                .take("path")
                .filter(|p| !p.is_empty())
                .ok_or_else(invalid)?;
            let s = socket_from_opts(&mut o, Some(SocketAddr::Unix(path.into())))?;
            o.finish()?;
            Ok(LegacyChardev::Backend(ChardevBackend::Socket(s)))
        }
        "mon" | "vc" | "udp" | "pipe" | "COM1" | "/dev/ttyS0" => Err(format!(
            "chardev '{scheme}:' is not supported by this build"
        )),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chardev_backends() {
        let c = parse_chardev("socket,id=charmonitor,fd=23,server=on,wait=off").unwrap();
        assert_eq!(c.id, "charmonitor");
        assert_eq!(
            c.backend,
            ChardevBackend::Socket(SocketChardev {
                addr: SocketAddr::Fd(23),
                server: true,
                wait: false,
                telnet: false,
                reconnect: None,
                nodelay: false,
                tls_creds: None,
                tls_authz: None
            })
        );
        let c = parse_chardev("socket,id=s,host=127.0.0.1,port=4444,server=on,wait=off,tls-creds=tls0,tls-authz=auth0,logfile=/tmp/l").unwrap();
        let ChardevBackend::Socket(s) = c.backend else {
            panic!()
        };
        assert_eq!(
            s.addr,
            SocketAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 4444
            }
        );
        assert_eq!(
            (s.tls_creds.as_deref(), s.tls_authz.as_deref()),
            (Some("tls0"), Some("auth0"))
        );
        assert_eq!(c.logfile, Some(PathBuf::from("/tmp/l")));
        let c = parse_chardev("socket,id=s,host=h,port=1,reconnect=5").unwrap();
        let ChardevBackend::Socket(s) = c.backend else {
            panic!()
        };
        assert_eq!((s.server, s.wait, s.reconnect), (false, false, Some(5)));
        let c = parse_chardev("socket,id=u,path=/tmp/a,,b,server=on,telnet=on").unwrap();
        let ChardevBackend::Socket(s) = c.backend else {
            panic!()
        };
        assert_eq!(
            (s.addr, s.wait, s.telnet),
            (SocketAddr::Unix("/tmp/a,b".into()), true, true)
        );
        assert_eq!(
            parse_chardev("null,id=n").unwrap().backend,
            ChardevBackend::Null
        );
        assert_eq!(
            parse_chardev("stdio,id=n,signal=off").unwrap().backend,
            ChardevBackend::Stdio { signal: false }
        );
        assert_eq!(
            parse_chardev("pty,id=p").unwrap().backend,
            ChardevBackend::Pty
        );
        assert_eq!(
            parse_chardev("file,id=f,path=/tmp/o,append=on")
                .unwrap()
                .backend,
            ChardevBackend::File {
                path: "/tmp/o".into(),
                append: true
            }
        );
    }

    #[test]
    fn chardev_errors() {
        assert_eq!(
            parse_chardev("null").unwrap_err(),
            "chardev: no id specified"
        );
        assert_eq!(
            parse_chardev("file,id=x").unwrap_err(),
            "chardev: file: no filename given"
        );
        assert_eq!(
            parse_chardev("socket,id=c,path=/tmp/x,foo=1").unwrap_err(),
            "Invalid parameter 'foo'"
        );
        assert_eq!(
            parse_chardev("socket,id=c").unwrap_err(),
            "Unable to parse FD number "
        );
        assert!(parse_chardev("vc,id=c")
            .unwrap_err()
            .contains("not supported"));
        assert!(parse_chardev("bogus,id=c")
            .unwrap_err()
            .contains("not a valid char driver"));
        assert!(parse_chardev("socket,id=c,host=h,port=1,server=on,reconnect=2").is_err());
        assert!(parse_chardev("socket,id=c,path=/x,tls-authz=a").is_err());
    }

    #[test]
    fn legacy_strings() {
        assert_eq!(
            parse_legacy("stdio").unwrap(),
            LegacyChardev::Backend(ChardevBackend::Stdio { signal: true })
        );
        assert_eq!(parse_legacy("none").unwrap(), LegacyChardev::None);
        assert_eq!(
            parse_legacy("chardev:c0").unwrap(),
            LegacyChardev::Ref("c0".into())
        );
        assert_eq!(
            parse_legacy("file:/tmp/x").unwrap(),
            LegacyChardev::Backend(ChardevBackend::File {
                path: "/tmp/x".into(),
                append: false
            })
        );
        let LegacyChardev::Backend(ChardevBackend::Socket(s)) =
            parse_legacy("tcp:127.0.0.1:4444,server=on,wait=off").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (s.addr, s.server, s.wait),
            (
                SocketAddr::Tcp {
                    host: "127.0.0.1".into(),
                    port: 4444
                },
                true,
                false
            )
        );
        let LegacyChardev::Backend(ChardevBackend::Socket(s)) =
            parse_legacy("unix:/tmp/q.sock,server=on,wait=off").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (s.addr, s.server, s.wait),
            (SocketAddr::Unix("/tmp/q.sock".into()), true, false)
        );
        let LegacyChardev::Backend(ChardevBackend::Socket(s)) =
            parse_legacy("telnet::5555,server=on").unwrap()
        else {
            panic!()
        };
        assert!(s.telnet && s.wait);
        assert_eq!(
            parse_legacy("bogus:x").unwrap_err(),
            "'bogus:x' is not a valid char driver"
        );
        assert!(parse_legacy("mon:stdio").is_err());
        assert!(parse_legacy("unix:/x,foo=1").is_err());
    }
}
