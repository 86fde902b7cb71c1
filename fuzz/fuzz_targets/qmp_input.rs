//! Fuzzes everything a QMP client controls: the stream splitter (with the
//! input cut into arbitrary chunks), the JSON parser, request checks,
//! argument validation, every command handler and HMP via
//! human-monitor-command, plus the CLI's option-value parsers.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vmm::cli::ObjectSpec;
use vmm::qmp::stream::JsonStreamer;
use vmm::qmp::{
    BlockInfo, ChardevInfo, CpuInfo, InputEvent, KeyValue, KvmInfo, MachineControl, QmpError,
    Registry, RunState, Screenshot, Session,
};

/// A VM that accepts everything and never touches the host (screendump
/// fails, so no file is ever written).
struct NullVm;

impl MachineControl for NullVm {
    fn name(&self) -> Option<String> {
        Some("fuzz".into())
    }
    fn query_status(&self) -> RunState {
        RunState::Running
    }
    fn stop(&self) -> Result<(), QmpError> {
        Ok(())
    }
    fn cont(&self) -> Result<(), QmpError> {
        Ok(())
    }
    fn system_reset(&self) -> Result<(), QmpError> {
        Ok(())
    }
    fn system_powerdown(&self) -> Result<(), QmpError> {
        Ok(())
    }
    fn quit(&self) -> Result<(), QmpError> {
        Ok(())
    }
    fn query_kvm(&self) -> KvmInfo {
        KvmInfo {
            enabled: true,
            present: true,
        }
    }
    fn query_cpus(&self) -> Vec<CpuInfo> {
        vec![CpuInfo {
            cpu_index: 0,
            thread_id: 1,
            socket_id: 0,
            core_id: 0,
            thread_in_core: 0,
        }]
    }
    fn query_block(&self) -> Vec<BlockInfo> {
        Vec::new()
    }
    fn query_chardev(&self) -> Vec<ChardevInfo> {
        Vec::new()
    }
    fn screendump(&self, _: Option<&str>, _: Option<u32>) -> Result<Screenshot, QmpError> {
        Err(QmpError::generic("no display"))
    }
    fn send_key(&self, _: &[KeyValue], _: u32) -> Result<(), QmpError> {
        Ok(())
    }
    fn input_send_event(
        &self,
        _: Option<&str>,
        _: Option<u32>,
        _: &[InputEvent],
    ) -> Result<(), QmpError> {
        Ok(())
    }
    fn object_add(&self, _: ObjectSpec) -> Result<(), QmpError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // Small limits so the fuzzer reaches the bounds quickly.
    let mut streamer = JsonStreamer::new(4096, 256);
    let mut session = Session::new(Arc::new(NullVm), Arc::new(Registry::standard()));
    let mut frames = Vec::new();
    let mut out_bytes = 0usize;
    // The first byte picks the chunk size, so splits land everywhere.
    let chunk = data.first().map_or(1, |&b| (b as usize % 64) + 1);
    for piece in data.get(1..).unwrap_or(&[]).chunks(chunk) {
        streamer.push(piece, &mut frames);
        for f in frames.drain(..) {
            session.handle_frame(f, &mut |line| {
                assert!(line.ends_with(b"\r\n"));
                out_bytes += line.len();
            });
        }
    }
    let _ = out_bytes;
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = vmm::cli::opts::parse(text, Some("type"));
        let _ = vmm::cli::object::parse_object(text);
        let _ = vmm::cli::chardev::parse_chardev(text);
        let _ = vmm::cli::chardev::parse_legacy(text);
        let _ = vmm::hmp::parse_key_combo(text);
    }
});
