//! `-chardev null`: output discarded, no input.

use super::CharBackend;

/// Discards everything.
#[derive(Debug, Default)]
pub struct NullBackend;

impl CharBackend for NullBackend {
    fn write(&mut self, _data: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "null".into()
    }
}
