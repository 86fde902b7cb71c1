//! The one error type of the crate.

use std::io;

/// Everything that can go wrong while spawning, confining or inspecting a
/// service. Messages name the failing step; they never carry secrets (nothing
/// the sandbox handles is secret).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The caller's [`crate::SpawnSpec`] or [`crate::Policy`] is unusable.
    #[error("invalid sandbox request: {0}")]
    Invalid(String),
    /// A system call made by the supervisor or by `confine` failed.
    #[error("{what} failed: {source}")]
    Sys {
        /// The step that failed.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The freshly cloned child failed before `execve` completed (reported
    /// back through a close-on-exec pipe).
    #[error("service child failed at `{step}` before exec: {source}")]
    ChildSetup {
        /// The child-side step that failed.
        step: &'static str,
        /// The OS error the child saw.
        #[source]
        source: io::Error,
    },
    /// Building or installing the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// Dropping capabilities failed.
    #[error("capabilities: {0}")]
    Caps(String),
    /// A `/proc` file did not have the expected shape.
    #[error("unexpected /proc content: {0}")]
    Proc(String),
}

impl SandboxError {
    /// Wraps the current `errno` for step `what`.
    pub(crate) fn last_os(what: &'static str) -> Self {
        SandboxError::Sys {
            what,
            source: io::Error::last_os_error(),
        }
    }

    /// Wraps an `io::Error` for step `what`.
    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        SandboxError::Sys { what, source }
    }
}
