//! Shared by the QMP tests: a fake VM behind `MachineControl` that records
//! what it was asked, and a raw line-oriented QMP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use vmm::cli::ObjectSpec;
use vmm::qmp::{
    BlockInfo, ChardevInfo, CpuInfo, EventBus, InputEvent, KeyValue, KvmInfo, MachineControl,
    QmpError, RunState, Screenshot, ShutdownCause,
};

/// What the fake VM was asked to do.
#[derive(Default, Debug)]
pub struct Recorded {
    pub keys: Vec<(Vec<KeyValue>, u32)>,
    pub input: Vec<InputEvent>,
    pub objects: Vec<ObjectSpec>,
    pub resets: usize,
    pub powerdowns: usize,
    pub quits: usize,
}

/// A VM that only keeps a run state and emits QEMU's events.
pub struct FakeVm {
    pub state: Mutex<RunState>,
    pub bus: EventBus,
    pub rec: Mutex<Recorded>,
}

impl FakeVm {
    pub fn new(bus: EventBus, state: RunState) -> Arc<FakeVm> {
        Arc::new(FakeVm {
            state: Mutex::new(state),
            bus,
            rec: Mutex::default(),
        })
    }
}

/// The fake's screen: a 4x2 gradient.
pub fn fake_screen() -> Screenshot {
    let (w, h) = (4u32, 2u32);
    let mut rgb = Vec::new();
    for y in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(&[(x * 60) as u8, (y * 100) as u8, 200]);
        }
    }
    Screenshot {
        width: w,
        height: h,
        rgb,
    }
}

impl MachineControl for FakeVm {
    fn name(&self) -> Option<String> {
        Some("testvm".into())
    }
    fn query_status(&self) -> RunState {
        *self.state.lock().unwrap()
    }
    fn stop(&self) -> Result<(), QmpError> {
        let mut st = self.state.lock().unwrap();
        if *st == RunState::Running {
            *st = RunState::Paused;
            self.bus.stop();
        } else if *st == RunState::Prelaunch {
            *st = RunState::Paused;
        }
        Ok(())
    }
    fn cont(&self) -> Result<(), QmpError> {
        let mut st = self.state.lock().unwrap();
        if *st != RunState::Running {
            *st = RunState::Running;
            self.bus.resume();
        }
        Ok(())
    }
    fn system_reset(&self) -> Result<(), QmpError> {
        self.rec.lock().unwrap().resets += 1;
        self.bus.reset(ShutdownCause::HostQmpSystemReset);
        Ok(())
    }
    fn system_powerdown(&self) -> Result<(), QmpError> {
        self.rec.lock().unwrap().powerdowns += 1;
        self.bus.powerdown();
        Ok(())
    }
    fn quit(&self) -> Result<(), QmpError> {
        self.rec.lock().unwrap().quits += 1;
        self.bus.shutdown(ShutdownCause::HostQmpQuit);
        Ok(())
    }
    fn query_kvm(&self) -> KvmInfo {
        KvmInfo {
            enabled: true,
            present: true,
        }
    }
    fn query_cpus(&self) -> Vec<CpuInfo> {
        (0..2)
            .map(|i| CpuInfo {
                cpu_index: i,
                thread_id: 1000 + i as i64,
                socket_id: 0,
                core_id: i,
                thread_in_core: 0,
            })
            .collect()
    }
    fn query_block(&self) -> Vec<BlockInfo> {
        vec![BlockInfo {
            device: "d0".into(),
            qdev: Some("/machine/peripheral-anon/device[0]/virtio-backend".into()),
            node_name: "#block100".into(),
            file: "/tmp/d.img".into(),
            drv: "raw".into(),
            ro: true,
            virtual_size: 1 << 20,
            actual_size: 0,
        }]
    }
    fn query_chardev(&self) -> Vec<ChardevInfo> {
        vec![ChardevInfo {
            label: "serial0".into(),
            filename: "stdio".into(),
            frontend_open: true,
        }]
    }
    fn screendump(&self, device: Option<&str>, _head: Option<u32>) -> Result<Screenshot, QmpError> {
        match device {
            Some(d) if d != "fb0" => Err(QmpError::device_not_found(d)),
            _ => Ok(fake_screen()),
        }
    }
    fn send_key(&self, keys: &[KeyValue], hold_time_ms: u32) -> Result<(), QmpError> {
        self.rec
            .lock()
            .unwrap()
            .keys
            .push((keys.to_vec(), hold_time_ms));
        Ok(())
    }
    fn input_send_event(
        &self,
        device: Option<&str>,
        _head: Option<u32>,
        events: &[InputEvent],
    ) -> Result<(), QmpError> {
        if let Some(d) = device {
            return Err(QmpError::device_not_found(d));
        }
        self.rec.lock().unwrap().input.extend_from_slice(events);
        Ok(())
    }
    fn object_add(&self, spec: ObjectSpec) -> Result<(), QmpError> {
        let mut rec = self.rec.lock().unwrap();
        if rec.objects.iter().any(|o| o.id == spec.id) {
            return Err(QmpError::generic(format!(
                "attempt to add duplicate property '{}' to object (type 'container')",
                spec.id
            )));
        }
        if spec.qom_type != "secret" {
            return Err(QmpError::bad_value("qom-type", &spec.qom_type));
        }
        rec.objects.push(spec);
        Ok(())
    }
    fn object_del(&self, id: &str) -> Result<(), QmpError> {
        let mut rec = self.rec.lock().unwrap();
        let n = rec.objects.len();
        rec.objects.retain(|o| o.id != id);
        if rec.objects.len() == n {
            return Err(QmpError::generic(format!("object '{id}' not found")));
        }
        Ok(())
    }
}

/// A unique socket path under the temp dir.
pub fn sock_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    std::env::temp_dir().join(format!("bh-qmp-{tag}-{}-{n}.sock", std::process::id()))
}

/// Raw QMP client: reads CRLF-terminated lines.
pub struct Client {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Connects, checks the greeting and negotiates.
    pub fn negotiated(path: &Path) -> Client {
        let mut c = Client::connect(path);
        let g = c.recv();
        assert!(g.get("QMP").is_some(), "greeting: {g}");
        c.send(r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#);
        assert_eq!(c.recv(), json!({"return": {}}));
        c
    }

    pub fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).unwrap();
    }

    /// The next raw line, CRLF included.
    pub fn recv_line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read reply");
        assert!(n > 0, "connection closed");
        assert!(line.ends_with("\r\n"), "line must end in CRLF: {line:?}");
        line
    }

    pub fn recv(&mut self) -> Value {
        let line = self.recv_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    /// Next non-event message.
    pub fn recv_reply(&mut self) -> Value {
        loop {
            let v = self.recv();
            if v.get("event").is_none() {
                return v;
            }
        }
    }

    pub fn cmd(&mut self, text: &str) -> Value {
        self.send(text);
        self.recv_reply()
    }

    /// Whether the peer closed (EOF) within the read timeout.
    pub fn at_eof(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

/// `{"error": {"class": C, "desc": D}}`, optionally with an id.
pub fn err(class: &str, desc: &str) -> Value {
    json!({"error": {"class": class, "desc": desc}})
}
