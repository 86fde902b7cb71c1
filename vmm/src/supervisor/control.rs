//! [`Control`]: the monitor backend (QMP and HMP) over the real VM, its
//! platform devices and the object registry.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::chardev::socket::config::LogFile;
use crate::chardev::socket::{SocketChardevs, SocketConfig};
use crate::cli::{ChardevBackend, ChardevSpec, Config, ObjectSpec, SocketChardev};
use crate::devices::platform::PlatformDevices;
use crate::devices::pointer::{Axis, Button, PointerInput};
use crate::objects::ObjectRegistry;
use crate::qmp::backend::{
    BlockInfo, ChardevInfo, CpuInfo, InputEvent, KeyValue, KvmInfo, MachineControl, RunState,
    Screenshot,
};
use crate::qmp::{EventBus, QmpError, ShutdownCause};
use crate::vm::{RunState as VmState, Vm};

use super::setup::DriveInfo;
use super::ExitRequest;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The machine as the monitors see it.
pub struct Control {
    name: Option<String>,
    vm: Vm,
    devices: PlatformDevices,
    drives: Vec<DriveInfo>,
    chardevs: Vec<ChardevInfo>,
    sockets: Arc<SocketChardevs>,
    objects: Mutex<ObjectRegistry>,
    bus: EventBus,
    exit: Mutex<Sender<ExitRequest>>,
    /// Serialises state-changing commands so events and states match.
    ops: Mutex<()>,
}

impl Control {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cfg: &Config,
        vm: Vm,
        devices: PlatformDevices,
        objects: ObjectRegistry,
        chardevs: Vec<ChardevInfo>,
        sockets: Arc<SocketChardevs>,
        bus: EventBus,
        exit: Sender<ExitRequest>,
    ) -> Self {
        let drives = super::setup::drive_infos(cfg, &devices);
        let mut objects = objects;
        for spec in &cfg.chardevs {
            if let ChardevBackend::Socket(sock) = &spec.backend {
                acquire_socket_objects(&mut objects, &spec.id, sock);
            }
        }
        Self {
            name: cfg.name.clone(),
            vm,
            devices,
            drives,
            chardevs,
            sockets,
            objects: Mutex::new(objects),
            bus,
            exit: Mutex::new(exit),
            ops: Mutex::new(()),
        }
    }

    /// The VM core.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Re-reads changed `authz-listfile` files (`refresh=on`) and hands the
    /// new rules to the socket chardevs that use them. Lock order: the
    /// object registry is released before the chardev registry is taken.
    pub fn refresh_authz_files(&self) {
        let updates: Vec<(String, ipc::AuthzRules)> = {
            let mut objects = lock(&self.objects);
            // Reload errors are logged there; such a list now denies all.
            let (changed, _errors) = objects.refresh_authz_files();
            changed
                .into_iter()
                .filter_map(|id| {
                    let rules = creds::wire::authz_to_wire(&objects.authz(&id).ok()?);
                    Some((id, rules))
                })
                .collect()
        };
        for (id, rules) in updates {
            let n = self.sockets.update_authz(&id, &rules);
            tracing::info!(object = %id, chardevs = n, "authz-listfile changed; rules updated");
        }
    }

    /// Starts the vCPUs at launch (no `-S`); no `RESUME` event, as QEMU.
    pub fn start_vcpus(&self) -> Result<(), crate::vm::VmError> {
        let _g = lock(&self.ops);
        self.vm.start()
    }

    fn key(&self, key: &KeyValue, down: bool) -> Result<(), QmpError> {
        let mut kbd = lock(&self.devices.i8042);
        match key {
            KeyValue::QCode(q) => kbd
                .send_qcode(q, down)
                .map_err(|e| QmpError::generic(e.to_string())),
            KeyValue::Number(n) => {
                let qnum = u16::try_from(*n)
                    .map_err(|_| QmpError::generic(format!("invalid key number {n}")))?;
                kbd.send_key(qnum, down);
                Ok(())
            }
        }
    }
}

fn chardev_user(id: &str) -> String {
    format!("chardev:{id}")
}

/// A socket chardev holds its `tls-creds` and `tls-authz` objects, so
/// `object-del` refuses them until the chardev is removed (as QEMU does).
fn acquire_socket_objects(objects: &mut ObjectRegistry, id: &str, sock: &SocketChardev) {
    for obj in [&sock.tls_creds, &sock.tls_authz].into_iter().flatten() {
        // The chardev was configured from these objects a moment ago, so
        // they exist; a failure here only means nothing to hold.
        let _ = objects.acquire(obj, &chardev_user(id));
    }
}

fn to_qmp_state(s: VmState) -> RunState {
    match s {
        VmState::Prelaunch => RunState::Prelaunch,
        VmState::Running => RunState::Running,
        VmState::Paused => RunState::Paused,
        VmState::FinishMigrate => RunState::FinishMigrate,
        VmState::PostMigrate => RunState::PostMigrate,
        VmState::InMigrate => RunState::InMigrate,
        VmState::Shutdown => RunState::Shutdown,
        VmState::InternalError => RunState::InternalError,
    }
}

impl MachineControl for Control {
    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn query_status(&self) -> RunState {
        to_qmp_state(self.vm.run_state())
    }

    fn stop(&self) -> Result<(), QmpError> {
        let _g = lock(&self.ops);
        if self.vm.run_state() == VmState::Running {
            self.vm.pause();
            self.bus.stop();
        }
        Ok(())
    }

    fn cont(&self) -> Result<(), QmpError> {
        let _g = lock(&self.ops);
        let before = self.vm.run_state();
        self.vm
            .resume()
            .map_err(|e| QmpError::generic(e.to_string()))?;
        if before != VmState::Running {
            self.bus.resume();
        }
        Ok(())
    }

    fn system_reset(&self) -> Result<(), QmpError> {
        let _g = lock(&self.ops);
        self.bus.reset(ShutdownCause::HostQmpSystemReset);
        self.vm
            .reset()
            .map_err(|e| QmpError::generic(e.to_string()))
    }

    fn system_powerdown(&self) -> Result<(), QmpError> {
        self.bus.powerdown();
        self.vm.request_powerdown();
        Ok(())
    }

    fn quit(&self) -> Result<(), QmpError> {
        self.bus.shutdown(ShutdownCause::HostQmpQuit);
        tracing::info!("quit requested on a monitor");
        let _ = lock(&self.exit).send(ExitRequest::Quit);
        Ok(())
    }

    fn query_kvm(&self) -> KvmInfo {
        KvmInfo {
            enabled: true,
            present: true,
        }
    }

    fn query_cpus(&self) -> Vec<CpuInfo> {
        self.vm
            .vcpu_thread_ids()
            .into_iter()
            .enumerate()
            .map(|(i, tid)| CpuInfo {
                cpu_index: i as u32,
                thread_id: i64::from(tid),
                socket_id: i as u32,
                core_id: 0,
                thread_in_core: 0,
            })
            .collect()
    }

    fn query_block(&self) -> Vec<BlockInfo> {
        self.drives
            .iter()
            .map(|d| BlockInfo {
                device: d.id.clone(),
                qdev: Some(format!("/machine/peripheral-anon/virtio-mmio-{}", d.slot)),
                node_name: format!("#block{:03}", d.slot),
                file: d.file.clone(),
                drv: "raw".into(),
                ro: d.read_only,
                virtual_size: d.size,
                actual_size: d.actual_size,
            })
            .collect()
    }

    fn query_chardev(&self) -> Vec<ChardevInfo> {
        let mut all = self.chardevs.clone();
        all.extend(self.sockets.infos());
        all
    }

    fn screendump(&self, device: Option<&str>, head: Option<u32>) -> Result<Screenshot, QmpError> {
        if let Some(d) = device {
            if d != "video0" && d != "framebuffer" {
                return Err(QmpError::device_not_found(d));
            }
        }
        if head.is_some_and(|h| h != 0) {
            return Err(QmpError::generic("Head 1 not found"));
        }
        let img = self.devices.framebuffer.screendump();
        Ok(Screenshot {
            width: img.width,
            height: img.height,
            rgb: img.rgb,
        })
    }

    fn send_key(&self, keys: &[KeyValue], hold_time_ms: u32) -> Result<(), QmpError> {
        for k in keys {
            self.key(k, true)?;
        }
        std::thread::sleep(Duration::from_millis(u64::from(hold_time_ms.min(10_000))));
        for k in keys.iter().rev() {
            self.key(k, false)?;
        }
        Ok(())
    }

    fn input_send_event(
        &self,
        _device: Option<&str>,
        _head: Option<u32>,
        events: &[InputEvent],
    ) -> Result<(), QmpError> {
        let mut pointer = Vec::new();
        for ev in events {
            match ev {
                InputEvent::Key { down, key } => self.key(key, *down)?,
                InputEvent::Btn { down, button } => {
                    let b = Button::from_qmp(button).ok_or_else(|| {
                        QmpError::generic(format!("button '{button}' is not supported"))
                    })?;
                    pointer.push(PointerInput::Btn(b, *down));
                }
                InputEvent::Abs { axis, value } => {
                    let a = match axis.as_str() {
                        "x" => Axis::X,
                        "y" => Axis::Y,
                        other => {
                            return Err(QmpError::generic(format!(
                                "axis '{other}' is not supported"
                            )))
                        }
                    };
                    pointer.push(PointerInput::Abs(a, *value));
                }
                InputEvent::Rel { .. } => {
                    return Err(QmpError::generic(
                        "relative pointer events are not supported: the pointer is absolute",
                    ))
                }
            }
        }
        if !pointer.is_empty() {
            lock(&self.devices.pointer).input(&pointer);
        }
        Ok(())
    }

    fn object_add(&self, spec: ObjectSpec) -> Result<(), QmpError> {
        lock(&self.objects)
            .add(&spec.qom_type, &spec.id, &spec.props, spec.from_keyval)
            .map_err(|e| QmpError::generic(e.to_string()))
    }

    fn object_del(&self, id: &str) -> Result<(), QmpError> {
        lock(&self.objects)
            .del(id)
            .map_err(|e| QmpError::generic(e.to_string()))
    }

    fn chardev_add(&self, spec: ChardevSpec) -> Result<serde_json::Value, QmpError> {
        let _g = lock(&self.ops);
        let id = spec.id.as_str();
        if self.chardevs.iter().any(|c| c.label == id) || self.sockets.contains(id) {
            return Err(QmpError::generic(format!(
                "Chardev with id '{id}' already exists"
            )));
        }
        let fail = |msg: String| QmpError::generic(format!("Failed to add chardev '{id}': {msg}"));
        let ChardevBackend::Socket(sock) = &spec.backend else {
            return Err(fail(
                "only socket chardevs can be added by this build".into(),
            ));
        };
        let logfile = spec.logfile.as_ref().map(|p| LogFile {
            path: p.clone(),
            append: spec.logappend,
        });
        let mut objects = lock(&self.objects);
        let conf = SocketConfig::new(id, sock, logfile, &objects).map_err(fail)?;
        self.sockets.add(conf).map_err(fail)?;
        acquire_socket_objects(&mut objects, id, sock);
        Ok(serde_json::json!({}))
    }

    fn chardev_remove(&self, id: &str) -> Result<(), QmpError> {
        let _g = lock(&self.ops);
        if self.chardevs.iter().any(|c| c.label == id) {
            // Command-line chardevs other than sockets are owned by their
            // frontends or monitors in this build.
            return Err(QmpError::generic(format!("Chardev '{id}' is busy")));
        }
        self.sockets.remove(id).map_err(QmpError::generic)?;
        lock(&self.objects).release_all(&chardev_user(id));
        Ok(())
    }
}
