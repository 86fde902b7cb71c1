//! The one conversion between the supervisor's loaded credentials
//! ([`X509Material`], [`Authz`]) and their IPC wire form
//! ([`ipc::TlsMaterial`], [`ipc::AuthzRules`]), in both directions.
//!
//! ```text
//!   supervisor: X509Material::load(dir) ──to_wire()──► ipc::TlsMaterial ──Startup──►
//!   service:    ipc::TlsMaterial ──from_wire()──► X509Material ──server_config()/client_config()
//! ```
//! Key bytes are copied only between zeroizing buffers (`ProtectedBytes`
//! and `ipc::SecretBytes`), so no plain copy of a private key is left behind.

use ipc::{AuthzMatch, AuthzPolicy, AuthzRule, AuthzRules, KeyFormat, TlsEndpoint, TlsMaterial};

use crate::authz::{Authz, AuthzList, Policy, Rule, RuleFormat};
use crate::protected::ProtectedBytes;
use crate::x509::{Endpoint, KeyKind, PrivateKeyMaterial, X509Material};

/// `material` as sent to a service. `server_name` is, for a client endpoint,
/// the host name the server certificate must match.
pub fn tls_to_wire(material: &X509Material, server_name: Option<&str>) -> TlsMaterial {
    TlsMaterial {
        endpoint: match material.endpoint {
            Endpoint::Server => TlsEndpoint::Server,
            Endpoint::Client => TlsEndpoint::Client,
        },
        verify_peer: material.verify_peer,
        cert_chain: material
            .cert_chain
            .iter()
            .map(|c| c.clone().into())
            .collect(),
        private_key: material.key.as_ref().map(|k| ipc::PrivateKey {
            format: match k.kind {
                KeyKind::Pkcs8 => KeyFormat::Pkcs8,
                KeyKind::Pkcs1 => KeyFormat::Pkcs1,
                KeyKind::Sec1 => KeyFormat::Sec1,
            },
            der: ipc::SecretBytes::new(k.der.to_vec()),
        }),
        ca_certs: material.ca_certs.iter().map(|c| c.clone().into()).collect(),
        crls: material.crls.iter().map(|c| c.clone().into()).collect(),
        server_name: server_name.map(str::to_owned),
    }
}

/// The service side: material received in `Startup`, ready for
/// [`X509Material::server_config`] / [`X509Material::client_config`].
pub fn tls_from_wire(wire: &TlsMaterial) -> X509Material {
    X509Material {
        endpoint: match wire.endpoint {
            TlsEndpoint::Server => Endpoint::Server,
            TlsEndpoint::Client => Endpoint::Client,
        },
        verify_peer: wire.verify_peer,
        cert_chain: wire.cert_chain.iter().map(|c| c.0.clone()).collect(),
        key: wire.private_key.as_ref().map(|k| PrivateKeyMaterial {
            kind: match k.format {
                KeyFormat::Pkcs8 => KeyKind::Pkcs8,
                KeyFormat::Pkcs1 => KeyKind::Pkcs1,
                KeyFormat::Sec1 => KeyKind::Sec1,
            },
            der: ProtectedBytes::new(k.der.expose()),
        }),
        ca_certs: wire.ca_certs.iter().map(|c| c.0.clone()).collect(),
        crls: wire.crls.iter().map(|c| c.0.clone()).collect(),
    }
}

fn policy_to_wire(p: Policy) -> AuthzPolicy {
    match p {
        Policy::Allow => AuthzPolicy::Allow,
        Policy::Deny => AuthzPolicy::Deny,
    }
}

fn policy_from_wire(p: AuthzPolicy) -> Policy {
    match p {
        AuthzPolicy::Allow => Policy::Allow,
        AuthzPolicy::Deny => Policy::Deny,
    }
}

/// An authorization object as sent to a service (`authz-simple,identity=X`
/// becomes "X exact allow, default deny").
pub fn authz_to_wire(authz: &Authz) -> AuthzRules {
    match authz {
        Authz::Simple { identity } => AuthzRules {
            rules: vec![AuthzRule {
                identity: identity.clone(),
                format: AuthzMatch::Exact,
                policy: AuthzPolicy::Allow,
            }],
            default_policy: AuthzPolicy::Deny,
        },
        Authz::List(list) => AuthzRules {
            rules: list
                .rules
                .iter()
                .map(|r| AuthzRule {
                    identity: r.matches.clone(),
                    format: match r.format {
                        RuleFormat::Exact => AuthzMatch::Exact,
                        RuleFormat::Glob => AuthzMatch::Glob,
                    },
                    policy: policy_to_wire(r.policy),
                })
                .collect(),
            default_policy: policy_to_wire(list.policy),
        },
    }
}

/// The service side of [`authz_to_wire`]: the same decisions, as an
/// [`Authz`] list (first matching rule wins, else the default).
pub fn authz_from_wire(wire: &AuthzRules) -> Authz {
    Authz::List(AuthzList {
        policy: policy_from_wire(wire.default_policy),
        rules: wire
            .rules
            .iter()
            .map(|r| Rule {
                matches: r.identity.clone(),
                policy: policy_from_wire(r.policy),
                format: match r.format {
                    AuthzMatch::Exact => RuleFormat::Exact,
                    AuthzMatch::Glob => RuleFormat::Glob,
                },
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material() -> X509Material {
        X509Material {
            endpoint: Endpoint::Client,
            verify_peer: true,
            cert_chain: vec![vec![1, 2, 3], vec![4]],
            key: Some(PrivateKeyMaterial {
                kind: KeyKind::Sec1,
                der: ProtectedBytes::new(&[9, 9, 9]),
            }),
            ca_certs: vec![vec![5, 6]],
            crls: vec![vec![7]],
        }
    }

    #[test]
    fn tls_round_trip_keeps_every_field() {
        let m = material();
        let w = tls_to_wire(&m, Some("localhost"));
        assert_eq!(w.endpoint, TlsEndpoint::Client);
        assert_eq!(w.server_name.as_deref(), Some("localhost"));
        assert_eq!(w.private_key.as_ref().unwrap().format, KeyFormat::Sec1);
        assert!(
            !format!("{w:?}").contains("9, 9, 9"),
            "key must be redacted"
        );
        assert_eq!(tls_from_wire(&w), m);
        let mut server = m.clone();
        server.endpoint = Endpoint::Server;
        server.key = None;
        server.cert_chain.clear();
        assert_eq!(tls_from_wire(&tls_to_wire(&server, None)), server);
    }

    #[test]
    fn authz_decisions_survive_the_wire() {
        let simple = Authz::Simple {
            identity: "CN=a".into(),
        };
        let back = authz_from_wire(&authz_to_wire(&simple));
        for dn in ["CN=a", "CN=b", "CN=a,O=x", ""] {
            assert_eq!(back.is_allowed(dn), simple.is_allowed(dn), "{dn}");
        }
        let list = Authz::List(AuthzList {
            policy: Policy::Allow,
            rules: vec![
                Rule {
                    matches: "CN=bad*".into(),
                    policy: Policy::Deny,
                    format: RuleFormat::Glob,
                },
                Rule {
                    matches: "CN=exact".into(),
                    policy: Policy::Deny,
                    format: RuleFormat::Exact,
                },
            ],
        });
        assert_eq!(authz_from_wire(&authz_to_wire(&list)), list);
    }
}
