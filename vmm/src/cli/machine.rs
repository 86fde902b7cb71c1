//! The machine type: Bulkhead has one, accepted under QEMU's common names.

/// A machine type name as listed by `query-machines` / `-machine help`.
#[derive(Debug, Clone, Copy)]
pub struct MachineType {
    /// Name.
    pub name: &'static str,
    /// Alias QEMU tools may use.
    pub alias: Option<&'static str>,
    /// Whether it is the default.
    pub is_default: bool,
    /// One-line description.
    pub desc: &'static str,
}

/// The names of our single machine model.
pub const MACHINES: &[MachineType] = &[
    MachineType {
        name: "bulkhead",
        alias: Some("pc"),
        is_default: true,
        desc: "Bulkhead x86-64 machine (virtio-mmio, 16550, i8042, framebuffer)",
    },
    MachineType {
        name: "q35",
        alias: None,
        is_default: false,
        desc: "Alias of bulkhead",
    },
    MachineType {
        name: "microvm",
        alias: None,
        is_default: false,
        desc: "Alias of bulkhead",
    },
];

/// Most vCPUs a machine accepts.
pub const MAX_CPUS: u32 = 64;

/// Whether `name` selects our machine: the names above, their aliases, and
/// QEMU's versioned names libvirt passes (`pc-i440fx-7.2`, `pc-q35-7.2`).
pub fn is_known_machine(name: &str) -> bool {
    MACHINES
        .iter()
        .any(|m| m.name == name || m.alias == Some(name))
        || name.starts_with("pc-i440fx-")
        || name.starts_with("pc-q35-")
}

/// `-machine help` text.
pub fn help_text() -> String {
    let mut s = String::from("Supported machines are:\n");
    for m in MACHINES {
        if let Some(a) = m.alias {
            s.push_str(&format!("{a:<20} {} (alias of {})\n", m.desc, m.name));
        }
        let def = if m.is_default { " (default)" } else { "" };
        s.push_str(&format!("{:<20} {}{def}\n", m.name, m.desc));
    }
    s
}
