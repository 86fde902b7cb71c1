//! User-creatable objects (`-object TYPE,id=ID,...`, QMP `object-add` /
//! `object-del`, HMP `object_add` / `object_del`) for the credential types:
//! `secret`, `tls-creds-x509`, `authz-simple`, `authz-list`, `authz-listfile`.
//!
//! ```text
//!  props (keyval strings or QMP JSON) ─► Object::parse ─► ObjectRegistry::add
//!                                                          ├─ id checks (well-formed, unique)
//!                                                          ├─ load: secret value / X509Material /
//!                                                          │        authz rules (files read here,
//!                                                          │        in the supervisor, once)
//!                                                          └─ users: chardev/vnc/nbd/migration
//!                                                             acquire() ids; object-del refuses
//!                                                             an object that is in use
//! ```
//!
//! `keyid=` and `passwordid=` are resolved when the object is created (as in
//! QEMU), so deleting the master secret afterwards is allowed and harmless.
//! A credential change takes effect by deleting and re-adding the object and
//! restarting the service that uses it (services get material once at start);
//! `authz-listfile,refresh=on` rules are re-read by [`ObjectRegistry::refresh_authz_files`]
//! and pushed to running socket chardevs (`Control::refresh_authz_files`).

mod props;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use creds::authz::{Authz, AuthzList, ListFile};
use creds::secret::{Secret, SecretFormat, SecretSpec};
use creds::x509::{Endpoint, X509LoadOptions, X509Material};
use creds::zeroize::Zeroizing;
use serde_json::{Map, Value};

pub use props::id_wellformed;
use props::Props;

/// An object error, worded as QEMU words it (QMP `GenericError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct ObjectError {
    pub msg: String,
}

impl ObjectError {
    pub fn new(msg: impl Into<String>) -> Self {
        ObjectError { msg: msg.into() }
    }
}

/// `tls-creds-x509` properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsCredsX509 {
    pub dir: PathBuf,
    pub endpoint: Endpoint,
    pub verify_peer: bool,
    pub passwordid: Option<String>,
    /// Accepted and ignored: rustls chooses its own safe suites (docs/credentials.md).
    pub priority: Option<String>,
    pub sanity_check: bool,
}

/// A parsed `-object` / `object-add`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Secret(SecretSpec),
    TlsCredsX509(TlsCredsX509),
    AuthzSimple { identity: String },
    AuthzList(AuthzList),
    AuthzListFile { filename: PathBuf, refresh: bool },
}

impl Object {
    /// The QOM type name.
    pub fn qom_type(&self) -> &'static str {
        match self {
            Object::Secret(_) => "secret",
            Object::TlsCredsX509(_) => "tls-creds-x509",
            Object::AuthzSimple { .. } => "authz-simple",
            Object::AuthzList(_) => "authz-list",
            Object::AuthzListFile { .. } => "authz-listfile",
        }
    }

    /// Parse the properties of `qom_type` (everything but `qom-type` and `id`).
    /// `from_keyval`: the values came from a `key=value,...` string.
    pub fn parse(
        qom_type: &str,
        props: &Map<String, Value>,
        from_keyval: bool,
    ) -> Result<Object, ObjectError> {
        let mut p = Props::new(props, from_keyval);
        // `loaded` is a deprecated no-op property of secrets and tls-creds in QEMU.
        let obj = match qom_type {
            "secret" => {
                let _ = p.bool("loaded")?;
                let format = p.enumeration("format", &[("raw", SecretFormat::Raw), ("base64", SecretFormat::Base64)])?;
                Object::Secret(SecretSpec {
                    data: p.str("data")?.map(Zeroizing::new),
                    file: p.str("file")?.map(PathBuf::from),
                    format: format.unwrap_or_default(),
                    keyid: p.str("keyid")?,
                    iv: p.str("iv")?,
                })
            }
            "tls-creds-x509" => {
                let _ = p.bool("loaded")?;
                let endpoint =
                    p.enumeration("endpoint", &[("server", Endpoint::Server), ("client", Endpoint::Client)])?;
                let dir = p.str("dir")?;
                let creds = TlsCredsX509 {
                    dir: PathBuf::from(dir.unwrap_or_default()),
                    endpoint: endpoint.unwrap_or(Endpoint::Client),
                    verify_peer: p.bool("verify-peer")?.unwrap_or(true),
                    passwordid: p.str("passwordid")?,
                    priority: p.str("priority")?,
                    sanity_check: p.bool("sanity-check")?.unwrap_or(true),
                };
                Object::TlsCredsX509(creds)
            }
            "authz-simple" => Object::AuthzSimple { identity: p.req_str("identity")? },
            "authz-list" => {
                let policy = p.str("policy")?;
                let rules = p.list("rules")?;
                let mut json = Map::new();
                if let Some(policy) = policy {
                    json.insert("policy".into(), Value::String(policy));
                }
                if let Some(rules) = rules {
                    json.insert("rules".into(), rules);
                }
                let text = Value::Object(json).to_string();
                let list = AuthzList::from_json(&text, "authz-list")
                    .map_err(|e| ObjectError::new(e.to_string().replace("Invalid authz-list in 'authz-list': ", "")))?;
                Object::AuthzList(list)
            }
            "authz-listfile" => Object::AuthzListFile {
                filename: PathBuf::from(p.req_str("filename")?),
                refresh: p.bool("refresh")?.unwrap_or(true),
            },
            "tls-creds-anon" => {
                return Err(ObjectError::new(
                    "tls-creds-anon is not supported: anonymous TLS authenticates nobody and rustls does \
                     not offer it; use tls-creds-x509 (`bulkhead pki init DIR` makes the certificates)",
                ))
            }
            "tls-creds-psk" => {
                return Err(ObjectError::new(
                    "tls-creds-psk is not supported: rustls has no TLS pre-shared-key cipher suites; \
                     use tls-creds-x509 (`bulkhead pki init DIR` makes the certificates)",
                ))
            }
            "authz-pam" => {
                return Err(ObjectError::new(
                    "authz-pam is not supported: PAM cannot run inside the sandboxed services; \
                     use authz-simple, authz-list or authz-listfile",
                ))
            }
            other => return Err(ObjectError::new(format!("Parameter 'qom-type' does not accept value '{other}'"))),
        };
        if from_keyval {
            // QEMU's command line says "Invalid parameter 'x'" for unknown keys.
            p.finish().map_err(|e| {
                ObjectError::new(
                    e.msg
                        .replace("Parameter '", "Invalid parameter '")
                        .replace("' is unexpected", "'"),
                )
            })?;
        } else {
            p.finish()?;
        }
        Ok(obj)
    }
}

/// What an object holds once created.
enum Loaded {
    Secret(Secret),
    TlsCreds(X509Material),
    Authz(Authz),
    ListFile(ListFile),
}

struct Entry {
    object: Object,
    loaded: Loaded,
    users: BTreeSet<String>,
}

/// The `/objects` container: ids to created objects and who uses them.
#[derive(Default)]
pub struct ObjectRegistry {
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for ObjectRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids and types only: never the loaded values.
        f.debug_map()
            .entries(self.entries.iter().map(|(id, e)| (id, e.object.qom_type())))
            .finish()
    }
}

impl ObjectRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse, check and create an object (`-object` when `from_keyval`, else
    /// QMP `object-add`). Files are read here.
    pub fn add(
        &mut self,
        qom_type: &str,
        id: &str,
        props: &Map<String, Value>,
        from_keyval: bool,
    ) -> Result<(), ObjectError> {
        if !id_wellformed(id) {
            return Err(ObjectError::new("Parameter 'id' expects an identifier"));
        }
        let object = Object::parse(qom_type, props, from_keyval)?;
        self.insert(id, object, from_keyval)
    }

    /// Create an already parsed object.
    pub fn insert(
        &mut self,
        id: &str,
        object: Object,
        from_keyval: bool,
    ) -> Result<(), ObjectError> {
        if self.entries.contains_key(id) {
            return Err(ObjectError::new(if from_keyval {
                format!("Duplicate ID '{id}' for object")
            } else {
                format!("attempt to add duplicate property '{id}' to object (type 'container')")
            }));
        }
        let loaded = self.load(&object)?;
        tracing::info!(id, qom_type = object.qom_type(), "object created");
        self.entries.insert(
            id.to_string(),
            Entry {
                object,
                loaded,
                users: BTreeSet::new(),
            },
        );
        Ok(())
    }

    fn load(&self, object: &Object) -> Result<Loaded, ObjectError> {
        let err = |e: &dyn std::fmt::Display| ObjectError::new(e.to_string());
        Ok(match object {
            Object::Secret(spec) => {
                let lookup = |id: &str| match self.entries.get(id).map(|e| &e.loaded) {
                    Some(Loaded::Secret(s)) => Some(s.clone()),
                    _ => None,
                };
                if let Some(keyid) = &spec.keyid {
                    if let Some(e) = self.entries.get(keyid) {
                        if !matches!(e.loaded, Loaded::Secret(_)) {
                            return Err(ObjectError::new(format!(
                                "Object with id '{keyid}' is not a secret"
                            )));
                        }
                    }
                }
                Loaded::Secret(spec.load(&lookup).map_err(|e| err(&e))?)
            }
            Object::TlsCredsX509(t) => {
                if t.dir.as_os_str().is_empty() {
                    return Err(ObjectError::new("Missing 'dir' property value"));
                }
                let password = match &t.passwordid {
                    Some(pid) => Some(self.secret(pid)?),
                    None => None,
                };
                if let Some(p) = &t.priority {
                    tracing::info!(priority = %p, "tls-creds-x509 priority= accepted but not used: rustls picks its own suites");
                }
                let material = X509Material::load_with(&X509LoadOptions {
                    dir: &t.dir,
                    endpoint: t.endpoint,
                    verify_peer: t.verify_peer,
                    password,
                    sanity_check: t.sanity_check,
                })
                .map_err(|e| err(&e))?;
                Loaded::TlsCreds(material)
            }
            Object::AuthzSimple { identity } => Loaded::Authz(Authz::Simple {
                identity: identity.clone(),
            }),
            Object::AuthzList(list) => Loaded::Authz(Authz::List(list.clone())),
            Object::AuthzListFile { filename, refresh } => {
                Loaded::ListFile(ListFile::load(filename, *refresh).map_err(|e| err(&e))?)
            }
        })
    }

    /// `object-del`: refuses unknown ids and objects in use.
    pub fn del(&mut self, id: &str) -> Result<(), ObjectError> {
        let entry = self
            .entries
            .get(id)
            .ok_or_else(|| ObjectError::new(format!("object '{id}' not found")))?;
        if !entry.users.is_empty() {
            return Err(ObjectError::new(format!(
                "object '{id}' is in use, can not be deleted"
            )));
        }
        self.entries.remove(id);
        tracing::info!(id, "object deleted");
        Ok(())
    }

    /// Record that `user` (e.g. `chardev:serial0`, `vnc`, `migration`) uses `id`.
    pub fn acquire(&mut self, id: &str, user: &str) -> Result<(), ObjectError> {
        let entry = self
            .entries
            .get_mut(id)
            .ok_or_else(|| ObjectError::new(format!("object '{id}' not found")))?;
        entry.users.insert(user.to_string());
        Ok(())
    }

    /// `user` no longer uses `id` (unknown ids and users are ignored).
    pub fn release(&mut self, id: &str, user: &str) {
        if let Some(e) = self.entries.get_mut(id) {
            e.users.remove(user);
        }
    }

    /// Release everything `user` holds (a chardev or service going away).
    pub fn release_all(&mut self, user: &str) {
        for e in self.entries.values_mut() {
            e.users.remove(user);
        }
    }

    /// Is `id` used by anyone?
    pub fn in_use(&self, id: &str) -> bool {
        self.entries.get(id).is_some_and(|e| !e.users.is_empty())
    }

    /// Ids and QOM types, for `qom-list /objects`-style listings.
    pub fn list(&self) -> Vec<(String, &'static str)> {
        self.entries
            .iter()
            .map(|(id, e)| (id.clone(), e.object.qom_type()))
            .collect()
    }

    /// The parsed object (properties), if any.
    pub fn object(&self, id: &str) -> Option<&Object> {
        self.entries.get(id).map(|e| &e.object)
    }

    /// A secret's value (`password-secret=`, `passwordid=`, ...).
    pub fn secret(&self, id: &str) -> Result<&Secret, ObjectError> {
        match self.entries.get(id).map(|e| &e.loaded) {
            Some(Loaded::Secret(s)) => Ok(s),
            Some(_) => Err(ObjectError::new(format!(
                "Object with id '{id}' is not a secret"
            ))),
            None => Err(ObjectError::new(format!("No secret with id '{id}'"))),
        }
    }

    /// TLS material for `tls-creds=ID`; with `endpoint`, it must match
    /// (QEMU: "Expecting TLS credentials with a server endpoint").
    pub fn tls_creds(
        &self,
        id: &str,
        endpoint: Option<Endpoint>,
    ) -> Result<&X509Material, ObjectError> {
        let m = match self.entries.get(id).map(|e| &e.loaded) {
            Some(Loaded::TlsCreds(m)) => m,
            Some(_) => {
                return Err(ObjectError::new(format!(
                    "Object with id '{id}' is not TLS credentials"
                )))
            }
            None => {
                return Err(ObjectError::new(format!(
                    "No TLS credentials with id '{id}'"
                )))
            }
        };
        match endpoint {
            Some(want) if want != m.endpoint => Err(ObjectError::new(format!(
                "Expecting TLS credentials with a {} endpoint",
                if want == Endpoint::Server {
                    "server"
                } else {
                    "client"
                }
            ))),
            _ => Ok(m),
        }
    }

    /// The current rules of `tls-authz=ID`, ready to hand to a service.
    pub fn authz(&self, id: &str) -> Result<Authz, ObjectError> {
        match self.entries.get(id).map(|e| &e.loaded) {
            Some(Loaded::Authz(a)) => Ok(a.clone()),
            Some(Loaded::ListFile(f)) => Ok(Authz::List(f.list().clone())),
            Some(_) => Err(ObjectError::new(format!(
                "Object with id '{id}' is not an authorization object"
            ))),
            None => Err(ObjectError::new(format!(
                "No authorization object with id '{id}'"
            ))),
        }
    }

    /// Re-read changed `authz-listfile` files (`refresh=on`). Returns the ids
    /// whose rules changed (their users must be given the new rules) and the
    /// errors of files that failed to load (those lists now deny everyone).
    pub fn refresh_authz_files(&mut self) -> (Vec<String>, Vec<ObjectError>) {
        let mut changed = Vec::new();
        let mut errors = Vec::new();
        for (id, e) in self.entries.iter_mut() {
            if let Loaded::ListFile(f) = &mut e.loaded {
                match f.refresh_if_changed() {
                    Ok(true) => changed.push(id.clone()),
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(id = %id, error = %err, "authz-listfile reload failed; denying all");
                        changed.push(id.clone());
                        errors.push(ObjectError::new(err.to_string()));
                    }
                }
            }
        }
        (changed, errors)
    }
}

#[cfg(test)]
mod tests;
