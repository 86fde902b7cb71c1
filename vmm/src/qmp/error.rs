//! QMP errors: QEMU's error classes with a human-readable desc.

use std::fmt;

/// QEMU's `QapiErrorClass` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Most errors.
    GenericError,
    /// Unknown command, or a command before negotiation.
    CommandNotFound,
    /// A device (or drive, chardev) named in the arguments does not exist.
    DeviceNotFound,
    /// The device exists but is not active.
    DeviceNotActive,
    /// The accelerator lacks a capability the command needs.
    KVMMissingCap,
}

impl ErrorClass {
    /// The class name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::KVMMissingCap => "KVMMissingCap",
        }
    }
}

/// An error reply: `{"error": {"class": ..., "desc": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{desc}")]
pub struct QmpError {
    /// Error class.
    pub class: ErrorClass,
    /// Human-readable description (never contains secrets).
    pub desc: String,
}

impl QmpError {
    /// A `GenericError`.
    pub fn generic(desc: impl fmt::Display) -> Self {
        QmpError {
            class: ErrorClass::GenericError,
            desc: desc.to_string(),
        }
    }

    /// A `CommandNotFound` error.
    pub fn command_not_found(desc: impl fmt::Display) -> Self {
        QmpError {
            class: ErrorClass::CommandNotFound,
            desc: desc.to_string(),
        }
    }

    /// QEMU's `DeviceNotFound`: "Device 'ID' not found".
    pub fn device_not_found(id: &str) -> Self {
        QmpError {
            class: ErrorClass::DeviceNotFound,
            desc: format!("Device '{id}' not found"),
        }
    }

    /// QEMU's "Parameter 'NAME' does not accept value 'VALUE'".
    pub fn bad_value(param: &str, value: &str) -> Self {
        QmpError::generic(format!(
            "Parameter '{param}' does not accept value '{value}'"
        ))
    }

    /// QEMU's "Parameter 'NAME' is missing".
    pub fn missing(param: &str) -> Self {
        QmpError::generic(format!("Parameter '{param}' is missing"))
    }
}
