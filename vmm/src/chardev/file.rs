//! `-chardev file,path=PATH[,append=on]`: guest output to a file, no input.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::CharBackend;

/// Writes guest output to a file.
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    path: PathBuf,
}

impl FileBackend {
    /// Open (create; truncate unless `append`) `path`.
    pub fn open(path: &Path, append: bool) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl CharBackend for FileBackend {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)
    }
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }
}
