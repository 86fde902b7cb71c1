//! Character devices: `query-chardev`, `chardev-add`, `chardev-remove`.
//!
//! `chardev-add` takes QEMU's `ChardevBackend` shape:
//! ```text
//! {"id": "s1", "backend": {"type": "socket", "data": {
//!     "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "4444"}},
//!     "server": true, "wait": false, "tls-creds": "tls0", "tls-authz": "auth0"}}}
//! ```
//! QAPI defaults for sockets: `server` true, `wait` false. Only the
//! `socket` backend can be added at run time by this build.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::schema::{opt, req, ArgSpec, Field, Ty};
use super::{empty, req_str};
use crate::cli::{ChardevBackend, ChardevSpec, SocketAddr, SocketChardev};

const INET: &[Field] = &[
    req("host", Ty::Str),
    req("port", Ty::Str),
    opt("numeric", Ty::Bool),
    opt("to", Ty::Int),
    opt("ipv4", Ty::Bool),
    opt("ipv6", Ty::Bool),
    opt("keep-alive", Ty::Bool),
    opt("mptcp", Ty::Bool),
];
const UNIX: &[Field] = &[
    req("path", Ty::Str),
    opt("abstract", Ty::Bool),
    opt("tight", Ty::Bool),
];
const FD: &[Field] = &[req("str", Ty::Str)];
const VSOCK: &[Field] = &[req("cid", Ty::Str), req("port", Ty::Str)];
const ADDR: Ty = Ty::Union {
    tag: "type",
    variants: &[
        ("inet", &[req("data", Ty::Struct(INET))]),
        ("unix", &[req("data", Ty::Struct(UNIX))]),
        ("vsock", &[req("data", Ty::Struct(VSOCK))]),
        ("fd", &[req("data", Ty::Struct(FD))]),
    ],
};
const SOCKET: &[Field] = &[
    req("addr", ADDR),
    opt("tls-creds", Ty::Str),
    opt("tls-authz", Ty::Str),
    opt("server", Ty::Bool),
    opt("wait", Ty::Bool),
    opt("nodelay", Ty::Bool),
    opt("telnet", Ty::Bool),
    opt("tn3270", Ty::Bool),
    opt("websocket", Ty::Bool),
    opt("reconnect", Ty::Int),
    opt("logfile", Ty::Str),
    opt("logappend", Ty::Bool),
];
/// Backends QEMU knows; their members are checked when they are supported.
const OTHER: &[Field] = &[req("data", Ty::Any)];
const BACKEND: Ty = Ty::Union {
    tag: "type",
    variants: &[
        ("socket", &[req("data", Ty::Struct(SOCKET))]),
        ("file", OTHER),
        ("serial", OTHER),
        ("parallel", OTHER),
        ("pipe", OTHER),
        ("udp", OTHER),
        ("pty", OTHER),
        ("null", OTHER),
        ("mux", OTHER),
        ("msmouse", OTHER),
        ("wctablet", OTHER),
        ("braille", OTHER),
        ("testdev", OTHER),
        ("stdio", OTHER),
        ("console", OTHER),
        ("spicevmc", OTHER),
        ("spiceport", OTHER),
        ("qemu-vdagent", OTHER),
        ("dbus", OTHER),
        ("vc", OTHER),
        ("ringbuf", OTHER),
        ("memory", OTHER),
    ],
};

/// This group.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "query-chardev",
        args: ArgSpec::NONE,
        run: query_chardev,
    },
    Command {
        name: "chardev-add",
        args: ArgSpec::fields(&[req("id", Ty::Str), req("backend", BACKEND)]),
        run: chardev_add,
    },
    Command {
        name: "chardev-remove",
        args: ArgSpec::fields(&[req("id", Ty::Str)]),
        run: chardev_remove,
    },
];

fn query_chardev(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    let list = ctx
        .backend
        .query_chardev()
        .into_iter()
        .map(
            |c| json!({"label": c.label, "filename": c.filename, "frontend-open": c.frontend_open}),
        )
        .collect();
    Ok(Value::Array(list))
}

fn chardev_add(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    let spec = spec_from_args(&args)?;
    ctx.backend.chardev_add(spec)
}

fn chardev_remove(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    ctx.backend.chardev_remove(req_str(&args, "id")?)?;
    Ok(empty())
}

fn flag(o: &Map<String, Value>, name: &str, default: bool) -> bool {
    o.get(name).and_then(Value::as_bool).unwrap_or(default)
}

fn text<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    o.get(name).and_then(Value::as_str)
}

/// Turns schema-checked `chardev-add` arguments into a [`ChardevSpec`].
pub fn spec_from_args(args: &Map<String, Value>) -> Result<ChardevSpec, QmpError> {
    let id = req_str(args, "id")?.to_owned();
    // QEMU's qmp_chardev_add prefixes the backend's own errors.
    let fail = |msg: String| QmpError::generic(format!("Failed to add chardev '{id}': {msg}"));
    let backend = args
        .get("backend")
        .and_then(Value::as_object)
        .ok_or_else(|| QmpError::missing("backend"))?;
    let kind = text(backend, "type").unwrap_or_default();
    if kind != "socket" {
        return Err(fail(format!(
            "backend type '{kind}' is not supported by this build (socket only)"
        )));
    }
    let data = backend
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| QmpError::missing("backend.data"))?;
    let addr = data
        .get("addr")
        .and_then(Value::as_object)
        .ok_or_else(|| QmpError::missing("backend.data.addr"))?;
    let addr_data = addr
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| QmpError::missing("backend.data.addr.data"))?;
    let addr = match text(addr, "type").unwrap_or_default() {
        "inet" => {
            let host = text(addr_data, "host").unwrap_or_default().to_owned();
            let port_text = text(addr_data, "port").unwrap_or_default();
            let port = port_text.parse::<u16>().map_err(|_| {
                fail(format!(
                    "address resolution failed for {host}:{port_text}: \
                     Servname not supported for ai_socktype"
                ))
            })?;
            SocketAddr::Tcp { host, port }
        }
        "unix" => {
            if flag(addr_data, "abstract", false) {
                return Err(fail(
                    "abstract unix sockets are not supported by this build".into(),
                ));
            }
            SocketAddr::Unix(PathBuf::from(text(addr_data, "path").unwrap_or_default()))
        }
        other => {
            return Err(fail(format!(
                "'{other}' socket addresses are not supported by this build"
            )))
        }
    };
    let server = flag(data, "server", true);
    if !server && data.contains_key("wait") {
        return Err(fail(
            "'wait' option is incompatible with socket in client connect mode".into(),
        ));
    }
    let reconnect = match data.get("reconnect") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            QmpError::generic("Parameter 'backend.data.reconnect' expects uint64")
        })?),
    }
    .filter(|&r| r > 0);
    if server && reconnect.is_some() {
        return Err(fail(
            "'reconnect' option is incompatible with socket in server listen mode".into(),
        ));
    }
    let tls_creds = text(data, "tls-creds").map(str::to_owned);
    let tls_authz = text(data, "tls-authz").map(str::to_owned);
    if tls_authz.is_some() && tls_creds.is_none() {
        return Err(fail(
            "'tls_authz' option requires 'tls_creds' option".into(),
        ));
    }
    for unsupported in ["tn3270", "websocket"] {
        if flag(data, unsupported, false) {
            return Err(fail(format!(
                "{unsupported}=on is not supported by this build"
            )));
        }
    }
    Ok(ChardevSpec {
        id,
        backend: ChardevBackend::Socket(SocketChardev {
            addr,
            server,
            wait: server && flag(data, "wait", false),
            telnet: flag(data, "telnet", false),
            reconnect,
            nodelay: flag(data, "nodelay", false),
            tls_creds,
            tls_authz,
        }),
        logfile: text(data, "logfile").map(PathBuf::from),
        logappend: flag(data, "logappend", false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<ChardevSpec, String> {
        let args = v.as_object().unwrap().clone();
        COMMANDS[1].args.validate(&args).map_err(|e| e.desc)?;
        spec_from_args(&args).map_err(|e| e.desc)
    }

    #[test]
    fn qemu_shapes_parse() {
        let s = check(json!({"id": "s1", "backend": {"type": "socket", "data": {
            "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "4444"}},
            "wait": false, "tls-creds": "tls0"}}}))
        .unwrap();
        let ChardevBackend::Socket(sock) = s.backend else {
            panic!()
        };
        assert!(sock.server, "QAPI default server=true");
        assert!(!sock.wait);
        assert_eq!(
            sock.addr,
            SocketAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 4444
            }
        );
        assert_eq!(sock.tls_creds.as_deref(), Some("tls0"));
    }

    #[test]
    fn bad_arguments_give_qemu_errors() {
        let sock = |data: Value| json!({"id": "x", "backend": {"type": "socket", "data": data}});
        let inet = json!({"type": "inet", "data": {"host": "127.0.0.1", "port": "1"}});
        for (args, want) in [
            (json!({"backend": {}}), "Parameter 'id' is missing"),
            (json!({"id": "x"}), "Parameter 'backend' is missing"),
            (
                json!({"id": "x", "backend": {"type": "bogus"}}),
                "Parameter 'type' does not accept value 'bogus'",
            ),
            (sock(json!({})), "Parameter 'backend.data.addr' is missing"),
            (
                sock(json!({"addr": {"type": "inet", "data": {"host": "h", "port": 1}}})),
                "Invalid parameter type for 'backend.data.addr.data.port', expected: string",
            ),
            (
                sock(json!({"addr": inet, "bogus": 1})),
                "Parameter 'backend.data.bogus' is unexpected",
            ),
            (
                sock(json!({"addr": inet, "server": "yes"})),
                "Invalid parameter type for 'backend.data.server', expected: boolean",
            ),
            (
                sock(json!({"addr": inet, "reconnect": 1})),
                "Failed to add chardev 'x': \
                 'reconnect' option is incompatible with socket in server listen mode",
            ),
            (
                sock(json!({"addr": inet, "server": false, "wait": false})),
                "Failed to add chardev 'x': \
                 'wait' option is incompatible with socket in client connect mode",
            ),
            (
                sock(json!({"addr": inet, "tls-authz": "a"})),
                "Failed to add chardev 'x': 'tls_authz' option requires 'tls_creds' option",
            ),
        ] {
            assert_eq!(check(args.clone()).unwrap_err(), want, "{args}");
        }
    }
}
