//! Every socket chardev of the VM, by id: started from the command line or
//! by `chardev-add`, listed by `query-chardev`, removed by
//! `chardev-remove`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::qmp::backend::ChardevInfo;
use crate::services::ServiceManager;

use super::config::Role;
use super::{SocketBackend, SocketChardev, SocketConfig};

/// How long a client-mode chardev without `reconnect=` may take to connect
/// (brokered connect plus TLS handshake).
const FIRST_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

struct Entry {
    dev: SocketChardev,
    /// A serial port uses it (QEMU's `frontend-open`).
    frontend: bool,
}

/// The socket chardevs and the service manager that runs them.
pub struct SocketChardevs {
    services: Arc<ServiceManager>,
    map: Mutex<BTreeMap<String, Entry>>,
}

impl SocketChardevs {
    /// An empty set whose services run under `services`.
    pub fn new(services: Arc<ServiceManager>) -> Self {
        SocketChardevs {
            services,
            map: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service manager.
    pub fn services(&self) -> &Arc<ServiceManager> {
        &self.services
    }

    /// Starts a socket chardev's service. In client mode without
    /// `reconnect=` the first connection must succeed, as in QEMU.
    pub fn add(&self, cfg: SocketConfig) -> Result<(), String> {
        let id = cfg.id.clone();
        let must_connect = match &cfg.role {
            Role::Client {
                addr,
                reconnect_secs: 0,
            } => Some(match addr {
                ipc::SocketAddress::Tcp { host, port } => format!("{host}:{port}"),
                ipc::SocketAddress::Unix { path } => path.clone(),
            }),
            _ => None,
        };
        let dev = SocketChardev::start(&self.services, cfg)
            .map_err(|e| format!("cannot start svc-chardev: {e}"))?;
        if let Some(target) = must_connect {
            if let Err(why) = dev.wait_first_connection(FIRST_CONNECT_TIMEOUT) {
                dev.stop();
                return Err(format!("Failed to connect to '{target}': {why}"));
            }
        }
        self.lock().insert(
            id,
            Entry {
                dev,
                frontend: false,
            },
        );
        Ok(())
    }

    /// Whether `id` is a socket chardev.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Attaches a frontend (serial port) to `id` and returns its backend.
    pub fn attach(&self, id: &str) -> Option<std::io::Result<SocketBackend>> {
        let mut map = self.lock();
        let e = map.get_mut(id)?;
        e.frontend = true;
        Some(e.dev.backend())
    }

    /// Runs `f` on chardev `id`.
    pub fn with<R>(&self, id: &str, f: impl FnOnce(&SocketChardev) -> R) -> Option<R> {
        self.lock().get(id).map(|e| f(&e.dev))
    }

    /// `query-chardev` rows.
    pub fn infos(&self) -> Vec<ChardevInfo> {
        self.lock()
            .iter()
            .map(|(id, e)| ChardevInfo {
                label: id.clone(),
                filename: e.dev.filename(),
                frontend_open: e.frontend,
            })
            .collect()
    }

    /// `chardev-remove`: QEMU refuses a chardev in use by a frontend.
    pub fn remove(&self, id: &str) -> Result<(), String> {
        let entry = {
            let mut map = self.lock();
            match map.get(id) {
                None => return Err(format!("Chardev '{id}' not found")),
                Some(e) if e.frontend => return Err(format!("Chardev '{id}' is busy")),
                Some(_) => map.remove(id),
            }
        };
        if let Some(e) = entry {
            e.dev.stop();
        }
        Ok(())
    }

    /// Hands new rules of authz object `object_id` to every chardev whose
    /// `tls-authz=` names it. Returns how many did.
    pub fn update_authz(&self, object_id: &str, rules: &ipc::AuthzRules) -> usize {
        let map = self.lock();
        let mut n = 0;
        for e in map.values() {
            if e.dev.authz_id() == Some(object_id) {
                e.dev.update_authz(rules.clone());
                n += 1;
            }
        }
        n
    }

    /// Stops every service.
    pub fn stop_all(&self) {
        let all = std::mem::take(&mut *self.lock());
        for e in all.values() {
            e.dev.stop();
        }
    }
}
