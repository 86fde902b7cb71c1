//! Authorization of a TLS peer's distinguished name: QEMU's `authz-simple`,
//! `authz-list` and `authz-listfile`.
//!
//! * `authz-simple,identity=DN`: allowed iff the DN is exactly `identity`.
//! * `authz-list,policy=allow|deny,rules=[{"match":M,"policy":P,"format":F}]`:
//!   the first rule whose `match` equals the DN (`format=exact`, the default) or
//!   matches it as a glob (`format=glob`: `*` and `?` only, as glib's
//!   `g_pattern_match_simple`) decides; otherwise `policy` (default `deny`).
//! * `authz-listfile,filename=F[,refresh=on]`: the same list read from a JSON
//!   file holding the `authz-list` properties, e.g.
//!   `{"policy":"deny","rules":[{"match":"CN=*","policy":"allow","format":"glob"}]}`.
//!   The supervisor reads the file ([`ListFile`]) and re-reads it when it changes
//!   (`refresh`); services only ever receive the parsed [`AuthzList`]. A reload
//!   that fails leaves an empty deny-all list, as QEMU fails every check until the
//!   file loads again.
//!
//! DNs are compared in the form produced by [`crate::dn`] (gnutls/QEMU format).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Largest ACL file read.
const MAX_LIST_FILE: u64 = 1 << 20;
/// Most rules in one list (far above real use; bounds work per check).
pub const MAX_RULES: usize = 4096;

/// `policy` of a rule or of a whole list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Deny,
    Allow,
}

/// `format` of a rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleFormat {
    #[default]
    Exact,
    Glob,
}

/// One `authz-list` rule (QEMU's `QAuthZListRule`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "match")]
    pub matches: String,
    pub policy: Policy,
    #[serde(default)]
    pub format: RuleFormat,
}

/// An ordered rule list with a default policy (QEMU's `authz-list` properties).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzList {
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A ready authorization check, as handed to a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Authz {
    /// `authz-simple`.
    Simple { identity: String },
    /// `authz-list`, or the current contents of an `authz-listfile`.
    List(AuthzList),
}

impl Authz {
    /// Is the peer with this DN allowed?
    pub fn is_allowed(&self, dn: &str) -> bool {
        match self {
            Authz::Simple { identity } => identity == dn,
            Authz::List(list) => list.is_allowed(dn),
        }
    }
}

/// Why an ACL could not be parsed or read.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("Unable to read '{path}': {reason}")]
    Unreadable { path: String, reason: String },
    #[error("File '{0}' must contain a JSON object")]
    NotObject(String),
    #[error("Invalid authz-list in '{path}': {reason}")]
    Invalid { path: String, reason: String },
    #[error("too many rules ({0}, at most {MAX_RULES})")]
    TooManyRules(usize),
}

impl AuthzList {
    /// First matching rule decides, else the default policy.
    pub fn is_allowed(&self, dn: &str) -> bool {
        for rule in &self.rules {
            let hit = match rule.format {
                RuleFormat::Exact => rule.matches == dn,
                RuleFormat::Glob => glob_match(&rule.matches, dn),
            };
            if hit {
                return rule.policy == Policy::Allow;
            }
        }
        self.policy == Policy::Allow
    }

    /// Parse the JSON form (an `authz-listfile` file, or `object-add` arguments
    /// without `qom-type`/`id`).
    pub fn from_json(text: &str, source: &str) -> Result<Self, AuthzError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| AuthzError::Invalid {
                path: source.to_string(),
                reason: e.to_string(),
            })?;
        if !value.is_object() {
            return Err(AuthzError::NotObject(source.to_string()));
        }
        let list: AuthzList = serde_json::from_value(value).map_err(|e| AuthzError::Invalid {
            path: source.to_string(),
            reason: e.to_string(),
        })?;
        if list.rules.len() > MAX_RULES {
            return Err(AuthzError::TooManyRules(list.rules.len()));
        }
        Ok(list)
    }
}

/// glib's `g_pattern_match_simple`: `*` matches any run of characters
/// (including none), `?` exactly one character; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with single-star backtracking: O(len(p) * len(t)) worst case.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// What identifies one version of the file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// An `authz-listfile` in the supervisor: reads the file, and with `refresh`
/// notices changes (modification time, size or inode, so `mv new acl.json`
/// counts) when [`ListFile::refresh_if_changed`] is called.
#[derive(Debug)]
pub struct ListFile {
    path: PathBuf,
    refresh: bool,
    stamp: Option<Stamp>,
    current: AuthzList,
}

impl ListFile {
    /// Read the file now (QEMU fails object creation if this fails).
    pub fn load(path: &Path, refresh: bool) -> Result<Self, AuthzError> {
        let stamp = stamp(path);
        let current = read_list(path)?;
        Ok(ListFile {
            path: path.to_path_buf(),
            refresh,
            stamp,
            current,
        })
    }

    /// The rules currently in force.
    pub fn list(&self) -> &AuthzList {
        &self.current
    }

    /// The path given as `filename=`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// With `refresh=on`: if the file changed since the last read, re-read it.
    /// Returns `Ok(true)` when the rules were replaced (services must be given
    /// the new list). A failed re-read installs a deny-all list and returns the
    /// error, so nothing is allowed until the file is fixed.
    pub fn refresh_if_changed(&mut self) -> Result<bool, AuthzError> {
        if !self.refresh {
            return Ok(false);
        }
        let now = stamp(&self.path);
        if now == self.stamp {
            return Ok(false);
        }
        self.stamp = now;
        match read_list(&self.path) {
            Ok(list) => {
                self.current = list;
                Ok(true)
            }
            Err(e) => {
                self.current = AuthzList {
                    policy: Policy::Deny,
                    rules: Vec::new(),
                };
                Err(e)
            }
        }
    }
}

fn read_list(path: &Path) -> Result<AuthzList, AuthzError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| AuthzError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let f = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = String::new();
    f.take(MAX_LIST_FILE + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_LIST_FILE {
        return Err(AuthzError::Unreadable {
            path: shown,
            reason: "file too large".into(),
        });
    }
    AuthzList::from_json(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_like_glib() {
        assert!(glob_match(
            "CN=*,O=Example,C=GB",
            "CN=client.test,O=Example,C=GB"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*.test*", "C=GB,CN=x.test"));
        assert!(
            !glob_match("[ab]", "a"),
            "brackets are literal in glib simple patterns"
        );
        assert!(glob_match("[ab]", "[ab]"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("ünï*", "ünïcode"));
    }

    #[test]
    fn simple_is_exact() {
        let a = Authz::Simple {
            identity: "C=GB,O=Bulkhead Test,CN=client.test".into(),
        };
        assert!(a.is_allowed("C=GB,O=Bulkhead Test,CN=client.test"));
        assert!(!a.is_allowed("CN=client.test,O=Bulkhead Test,C=GB"));
        assert!(!a.is_allowed("C=GB,O=Bulkhead Test,CN=client.test2"));
    }

    #[test]
    fn list_first_match_wins_then_default() {
        // The example from QEMU's authz-listfile documentation.
        let json = r#"{
          "rules": [
            { "match": "fred", "policy": "allow", "format": "exact" },
            { "match": "bob", "policy": "allow", "format": "exact" },
            { "match": "danb", "policy": "deny", "format": "glob" },
            { "match": "dan*", "policy": "allow", "format": "exact" }
          ],
          "policy": "deny"
        }"#;
        let l = AuthzList::from_json(json, "acl.json").unwrap();
        assert!(l.is_allowed("fred"));
        assert!(l.is_allowed("bob"));
        assert!(!l.is_allowed("danb"));
        assert!(!l.is_allowed("dan"), "exact rule 'dan*' does not glob");
        assert!(l.is_allowed("dan*"));
        assert!(!l.is_allowed("nobody"));
        let allow_default = AuthzList::from_json(r#"{"policy":"allow"}"#, "x").unwrap();
        assert!(allow_default.is_allowed("anyone"));
        let deny_default = AuthzList::from_json(r#"{}"#, "x").unwrap();
        assert!(!deny_default.is_allowed("anyone"));
        let glob = AuthzList::from_json(
            r#"{"rules":[{"match":"C=GB,O=Bulkhead Test,CN=*","policy":"allow","format":"glob"}]}"#,
            "x",
        )
        .unwrap();
        assert!(glob.is_allowed("C=GB,O=Bulkhead Test,CN=client.test"));
        assert!(!glob.is_allowed("C=FR,O=Bulkhead Test,CN=client.test"));
    }

    #[test]
    fn list_json_errors() {
        assert!(matches!(
            AuthzList::from_json("[1]", "f"),
            Err(AuthzError::NotObject(_))
        ));
        assert!(matches!(
            AuthzList::from_json("{", "f"),
            Err(AuthzError::Invalid { .. })
        ));
        let e =
            AuthzList::from_json(r#"{"rules":[{"match":"a","policy":"maybe"}]}"#, "f").unwrap_err();
        assert!(e.to_string().contains("maybe"), "{e}");
        let e = AuthzList::from_json(r#"{"rules":[{"match":"a"}]}"#, "f").unwrap_err();
        assert!(e.to_string().contains("policy"), "{e}");
        let e = AuthzList::from_json(r#"{"policy":"deny","extra":1}"#, "f").unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
    }

    #[test]
    fn listfile_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl.json");
        std::fs::write(
            &path,
            r#"{"policy":"deny","rules":[{"match":"a","policy":"allow"}]}"#,
        )
        .unwrap();
        let mut lf = ListFile::load(&path, true).unwrap();
        assert!(lf.list().is_allowed("a"));
        assert!(!lf.refresh_if_changed().unwrap(), "unchanged file");
        // Replace atomically, as editors and config managers do.
        let tmp = dir.path().join("acl.json.new");
        std::fs::write(
            &tmp,
            r#"{"policy":"deny","rules":[{"match":"b","policy":"allow"}]}"#,
        )
        .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(lf.refresh_if_changed().unwrap());
        assert!(!lf.list().is_allowed("a"));
        assert!(lf.list().is_allowed("b"));
        // A broken file denies everything until fixed.
        std::fs::write(&path, "not json at all, and longer").unwrap();
        assert!(lf.refresh_if_changed().is_err());
        assert!(!lf.list().is_allowed("b"));
        // Without refresh nothing is re-read.
        let mut fixed = ListFile::load(dir.path().join("missing").as_path(), false)
            .map(|_| ())
            .unwrap_err();
        fixed = match fixed {
            AuthzError::Unreadable { .. } => fixed,
            other => panic!("{other}"),
        };
        assert!(fixed.to_string().starts_with("Unable to read '"), "{fixed}");
        std::fs::write(&path, r#"{"rules":[{"match":"c","policy":"allow"}]}"#).unwrap();
        let mut nr = ListFile::load(&path, false).unwrap();
        std::fs::write(&path, r#"{"rules":[{"match":"d","policy":"allow"}]}"#).unwrap();
        assert!(!nr.refresh_if_changed().unwrap());
        assert!(nr.list().is_allowed("c"));
    }
}
