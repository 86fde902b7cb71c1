//! i8042 keyboard controller with a PS/2 keyboard behind it.
//!
//! Mapped at port `layout::I8042_DATA_PORT` (0x60) with length 5, so offset
//! 0 is the data port and offset 4 the command/status port (0x64); 0x61..0x63
//! read as 0 and ignore writes.
//!
//! ```text
//!  host send-key ─▶ qnum ─▶ scancodes (set 1 if the command byte's XLATE bit
//!                              is on, else the keyboard's set 2)
//!                         ─▶ keyboard queue ─▶ output buffer ─▶ port 0x60
//!                                              └▶ IRQ 1 (command byte bit 0)
//!  port 0x64 ◀─ command: 0x20/0x60 command byte, 0xAA self-test (0x55),
//!               0xAB, 0xAD/0xAE kbd off/on, 0xD0/0xD1 output port,
//!               0xD2 fake kbd byte, 0xFE (or 0xF0..0xFF with bit 0 clear)
//!               pulse reset ─▶ reset callback (system_reset)
//! ```

use std::collections::VecDeque;

use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;
use super::input;

/// Status: output buffer full.
pub const STAT_OBF: u8 = 0x01;
/// Status: system flag (self-test passed).
pub const STAT_SYS: u8 = 0x04;
/// Status: last write went to the command port.
pub const STAT_CMD: u8 = 0x08;
/// Status: keyboard not inhibited.
pub const STAT_UNLOCKED: u8 = 0x10;

/// Command byte: keyboard interrupt enable.
pub const CB_KBD_INT: u8 = 0x01;
/// Command byte: system flag.
pub const CB_SYS: u8 = 0x04;
/// Command byte: keyboard interface disabled.
pub const CB_KBD_DISABLE: u8 = 0x10;
/// Command byte: aux interface disabled.
pub const CB_AUX_DISABLE: u8 = 0x20;
/// Command byte: translate set 2 to set 1.
pub const CB_XLATE: u8 = 0x40;

/// Command byte after power-on (as firmware leaves it): IRQ on, SYS,
/// translation on.
pub const DEFAULT_CMD_BYTE: u8 = CB_KBD_INT | CB_SYS | CB_XLATE;

/// Keyboard bytes kept while the guest is not reading (like a real
/// keyboard's buffer, a little larger).
const KBD_QUEUE_MAX: usize = 256;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;

/// Controller and keyboard state for migration/snapshots.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct I8042State {
    /// Command byte.
    pub cmd_byte: u8,
    /// Self-test passed flag.
    pub sys_flag: bool,
    /// Last write was to the command port.
    pub last_was_cmd: bool,
    /// Output port.
    pub out_port: u8,
    /// Output buffer contents when full.
    pub outb: Option<u8>,
    /// Last byte read from the data port.
    pub last_out: u8,
    /// Pending controller replies.
    pub ctrl_queue: Vec<u8>,
    /// Pending keyboard bytes.
    pub kbd_queue: Vec<u8>,
    /// Controller command waiting for its data byte.
    pub pending_cmd: Option<u8>,
    /// Keyboard scanning enabled.
    pub kbd_scanning: bool,
    /// Keyboard scancode set (1..=3).
    pub kbd_set: u8,
    /// Keyboard LEDs.
    pub kbd_leds: u8,
    /// Keyboard command waiting for its parameter.
    pub kbd_pending: Option<u8>,
}

/// A saved state that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid i8042 state: {0}")]
pub struct I8042StateError(&'static str);

/// Callback for a reset pulse (the core maps it to `system_reset`).
pub type ResetCallback = Box<dyn FnMut() + Send>;

struct Keyboard {
    scanning: bool,
    set: u8,
    leds: u8,
    /// A command waiting for its parameter byte (0xED, 0xF0, 0xF3).
    pending: Option<u8>,
}

impl Keyboard {
    fn new() -> Self {
        Self {
            scanning: true,
            set: 2,
            leds: 0,
            pending: None,
        }
    }
}

/// The i8042 controller plus its PS/2 keyboard.
pub struct I8042 {
    reset: ResetCallback,
    irq: EventFd,
    cmd_byte: u8,
    sys_flag: bool,
    last_was_cmd: bool,
    out_port: u8,
    /// Byte in the output buffer, if full.
    outb: Option<u8>,
    last_out: u8,
    /// Controller replies (take priority over keyboard bytes).
    ctrl_queue: VecDeque<u8>,
    kbd_queue: VecDeque<u8>,
    pending_cmd: Option<u8>,
    kbd: Keyboard,
    dropped: u64,
}

impl I8042 {
    /// `reset` runs on a reset pulse; `irq` is the eventfd for IRQ 1.
    pub fn new(reset: ResetCallback, irq: EventFd) -> Self {
        Self {
            reset,
            irq,
            cmd_byte: DEFAULT_CMD_BYTE,
            sys_flag: true,
            last_was_cmd: false,
            out_port: 0x03,
            outb: None,
            last_out: 0,
            ctrl_queue: VecDeque::new(),
            kbd_queue: VecDeque::new(),
            pending_cmd: None,
            kbd: Keyboard::new(),
            dropped: 0,
        }
    }

    /// Inject a key press (`down`) or release, by qnum (see
    /// [`input::qcode_to_qnum`]). Dropped while the keyboard is not
    /// scanning or its buffer is full.
    pub fn send_key(&mut self, qnum: u16, down: bool) {
        if !self.kbd.scanning {
            return;
        }
        let translate = self.cmd_byte & CB_XLATE != 0;
        let bytes = if translate || self.kbd.set == 1 {
            input::set1_bytes(qnum, down)
        } else {
            input::set2_bytes(qnum, down)
        };
        if self.kbd_queue.len() + bytes.len() > KBD_QUEUE_MAX {
            self.dropped += 1;
            return;
        }
        self.kbd_queue.extend(bytes);
        self.refill();
    }

    /// Inject by QEMU qcode name; `unmapped` (no PC key) is accepted and
    /// sends nothing, as in QEMU.
    pub fn send_qcode(&mut self, qcode: &str, down: bool) -> Result<(), input::KeyError> {
        if !input::qcodes().any(|n| n == qcode) {
            return Err(input::KeyError::UnknownQcode(qcode.to_string()));
        }
        if let Some(q) = input::qcode_to_qnum(qcode) {
            self.send_key(q, down);
        }
        Ok(())
    }

    /// Key events dropped because the buffer was full.
    pub fn dropped_keys(&self) -> u64 {
        self.dropped
    }

    /// Power-on state (system_reset), keeping callback and irq.
    pub fn reset_state(&mut self) {
        self.cmd_byte = DEFAULT_CMD_BYTE;
        self.sys_flag = true;
        self.last_was_cmd = false;
        self.out_port = 0x03;
        self.outb = None;
        self.ctrl_queue.clear();
        self.kbd_queue.clear();
        self.pending_cmd = None;
        self.kbd = Keyboard::new();
    }

    fn status(&self) -> u8 {
        let mut s = STAT_UNLOCKED;
        if self.outb.is_some() {
            s |= STAT_OBF;
        }
        if self.sys_flag || self.cmd_byte & CB_SYS != 0 {
            s |= STAT_SYS;
        }
        if self.last_was_cmd {
            s |= STAT_CMD;
        }
        s
    }

    /// Move the next byte into the empty output buffer and raise IRQ 1.
    fn refill(&mut self) {
        if self.outb.is_some() {
            return;
        }
        let b = match self.ctrl_queue.pop_front() {
            Some(b) => b,
            None if self.cmd_byte & CB_KBD_DISABLE == 0 => match self.kbd_queue.pop_front() {
                Some(b) => b,
                None => return,
            },
            None => return,
        };
        self.outb = Some(b);
        if self.cmd_byte & CB_KBD_INT != 0 {
            if let Err(e) = self.irq.write(1) {
                tracing::warn!("i8042: irq eventfd: {e}");
            }
        }
    }

    fn ctrl_reply(&mut self, b: u8) {
        // Bounded: each command adds at most one byte and the guest's
        // commands arrive one exit at a time.
        if self.ctrl_queue.len() < 16 {
            self.ctrl_queue.push_back(b);
        }
        self.refill();
    }

    fn kbd_reply(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.kbd_queue.len() < KBD_QUEUE_MAX {
                self.kbd_queue.push_back(b);
            }
        }
        self.refill();
    }

    fn pulse_reset(&mut self) {
        tracing::info!("i8042: reset pulse");
        (self.reset)();
    }

    fn write_command(&mut self, c: u8) {
        match c {
            0x20 => self.ctrl_reply(self.cmd_byte),
            0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4 => self.pending_cmd = Some(c),
            0xa7 => self.cmd_byte |= CB_AUX_DISABLE,
            0xa8 => self.cmd_byte &= !CB_AUX_DISABLE,
            0xa9 | 0xab => self.ctrl_reply(0x00),
            0xaa => {
                self.sys_flag = true;
                self.ctrl_reply(0x55);
            }
            0xad => self.cmd_byte |= CB_KBD_DISABLE,
            0xae => {
                self.cmd_byte &= !CB_KBD_DISABLE;
                self.refill();
            }
            0xc0 => self.ctrl_reply(0x00),
            0xd0 => self.ctrl_reply(self.out_port),
            0xe0 => self.ctrl_reply(0x00),
            0xf0..=0xff => {
                if c & 1 == 0 {
                    self.pulse_reset();
                }
            }
            _ => tracing::debug!("i8042: unknown controller command {c:#x}"),
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.pending_cmd.take() {
            Some(0x60) => {
                self.cmd_byte = v;
                self.refill();
            }
            Some(0xd1) => {
                self.out_port = v;
                if v & 1 == 0 {
                    self.pulse_reset();
                }
            }
            Some(0xd2) => self.kbd_reply(&[v]),
            Some(_) => {} // aux (no mouse on this controller)
            None => self.keyboard_command(v),
        }
    }

    fn keyboard_command(&mut self, v: u8) {
        if let Some(p) = self.kbd.pending.take() {
            match p {
                0xed => {
                    self.kbd.leds = v;
                    self.kbd_reply(&[ACK]);
                }
                0xf3 => self.kbd_reply(&[ACK]),
                0xf0 => match v {
                    0 => {
                        let set = self.kbd.set;
                        self.kbd_reply(&[ACK, set]);
                    }
                    1..=3 => {
                        self.kbd.set = v;
                        self.kbd_reply(&[ACK]);
                    }
                    _ => self.kbd_reply(&[RESEND]),
                },
                _ => {}
            }
            return;
        }
        match v {
            0xed | 0xf0 | 0xf3 => {
                self.kbd.pending = Some(v);
                self.kbd_reply(&[ACK]);
            }
            0xee => self.kbd_reply(&[0xee]),
            0xf2 => {
                let id2 = if self.cmd_byte & CB_XLATE != 0 {
                    0x41
                } else {
                    0x83
                };
                self.kbd_reply(&[ACK, 0xab, id2]);
            }
            0xf4 => {
                self.kbd.scanning = true;
                self.kbd_reply(&[ACK]);
            }
            0xf5 => {
                self.kbd.scanning = false;
                self.kbd_queue.clear();
                self.kbd_reply(&[ACK]);
            }
            0xf6 => {
                self.kbd.set = 2;
                self.kbd.scanning = true;
                self.kbd_reply(&[ACK]);
            }
            0xff => {
                self.kbd = Keyboard::new();
                self.kbd_queue.clear();
                self.kbd_reply(&[ACK, 0xaa]);
            }
            _ => self.kbd_reply(&[RESEND]),
        }
    }

    /// Snapshot (vCPUs paused).
    pub fn state(&self) -> I8042State {
        I8042State {
            cmd_byte: self.cmd_byte,
            sys_flag: self.sys_flag,
            last_was_cmd: self.last_was_cmd,
            out_port: self.out_port,
            outb: self.outb,
            last_out: self.last_out,
            ctrl_queue: self.ctrl_queue.iter().copied().collect(),
            kbd_queue: self.kbd_queue.iter().copied().collect(),
            pending_cmd: self.pending_cmd,
            kbd_scanning: self.kbd.scanning,
            kbd_set: self.kbd.set,
            kbd_leds: self.kbd.leds,
            kbd_pending: self.kbd.pending,
        }
    }

    /// Load a snapshot (from an untrusted stream: bounds are checked).
    pub fn restore(&mut self, s: &I8042State) -> Result<(), I8042StateError> {
        if s.ctrl_queue.len() > 16 || s.kbd_queue.len() > KBD_QUEUE_MAX {
            return Err(I8042StateError("queue too long"));
        }
        if !(1..=3).contains(&s.kbd_set) {
            return Err(I8042StateError("scancode set"));
        }
        if s.pending_cmd
            .is_some_and(|c| !matches!(c, 0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4))
            || s.kbd_pending
                .is_some_and(|c| !matches!(c, 0xed | 0xf0 | 0xf3))
        {
            return Err(I8042StateError("pending command"));
        }
        self.cmd_byte = s.cmd_byte;
        self.sys_flag = s.sys_flag;
        self.last_was_cmd = s.last_was_cmd;
        self.out_port = s.out_port;
        self.outb = s.outb;
        self.last_out = s.last_out;
        self.ctrl_queue = s.ctrl_queue.iter().copied().collect();
        self.kbd_queue = s.kbd_queue.iter().copied().collect();
        self.pending_cmd = s.pending_cmd;
        self.kbd = Keyboard {
            scanning: s.kbd_scanning,
            set: s.kbd_set,
            leds: s.kbd_leds,
            pending: s.kbd_pending,
        };
        Ok(())
    }

    /// LED state last set by the guest (bit 0 scroll, 1 num, 2 caps).
    pub fn leds(&self) -> u8 {
        self.kbd.leds
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        match offset {
            0 => {
                if let Some(b) = self.outb.take() {
                    self.last_out = b;
                    self.refill();
                }
                // An empty buffer reads the last byte again, like hardware.
                *first = self.last_out;
            }
            4 => *first = self.status(),
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            0 => {
                self.last_was_cmd = false;
                self.write_data(v);
            }
            4 => {
                self.last_was_cmd = true;
                self.write_command(v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn dev() -> (I8042, Arc<AtomicU32>, EventFd) {
        let resets = Arc::new(AtomicU32::new(0));
        let r = resets.clone();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let probe = irq.try_clone().unwrap();
        let d = I8042::new(
            Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }),
            irq,
        );
        (d, resets, probe)
    }

    fn inb(d: &mut I8042, port: u64) -> u8 {
        let mut b = [0u8];
        d.read(port, &mut b);
        b[0]
    }

    fn drain(d: &mut I8042) -> Vec<u8> {
        let mut v = Vec::new();
        while inb(d, 4) & STAT_OBF != 0 {
            v.push(inb(d, 0));
        }
        v
    }

    #[test]
    fn i8042_reset_pulse_calls_back() {
        let (mut d, resets, _) = dev();
        d.write(4, &[0xfe]);
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        d.write(4, &[0xff]); // bit 0 set: no pulse
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        d.write(4, &[0xd1]);
        d.write(0, &[0x02]); // output port with reset line low
        assert_eq!(resets.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn i8042_controller_commands() {
        let (mut d, _, _) = dev();
        d.write(4, &[0xaa]);
        assert_eq!(drain(&mut d), [0x55]);
        assert_ne!(inb(&mut d, 4) & STAT_SYS, 0);
        d.write(4, &[0x20]);
        assert_eq!(drain(&mut d), [DEFAULT_CMD_BYTE]);
        d.write(4, &[0x60]);
        d.write(0, &[0x05]); // IRQ on, translation off
        d.write(4, &[0x20]);
        assert_eq!(drain(&mut d), [0x05]);
        d.write(4, &[0xab]);
        assert_eq!(drain(&mut d), [0x00]);
        d.write(4, &[0xd2]);
        d.write(0, &[0x42]);
        assert_eq!(drain(&mut d), [0x42]);
        assert_eq!(inb(&mut d, 4) & STAT_CMD, 0);
        d.write(4, &[0xad]);
        assert_ne!(inb(&mut d, 4) & STAT_CMD, 0);
    }

    #[test]
    fn i8042_keys_translated_to_set1_with_irq() {
        let (mut d, _, irq) = dev();
        d.send_qcode("a", true).unwrap();
        d.send_qcode("a", false).unwrap();
        d.send_key(input::qcode_to_qnum("up").unwrap(), true);
        assert!(irq.read().unwrap() >= 1);
        assert_eq!(drain(&mut d), [0x1e, 0x9e, 0xe0, 0x48]);
        assert!(d.send_qcode("nokey", true).is_err());
        d.send_qcode("unmapped", true).unwrap();
        d.send_qcode("f13", true).unwrap();
        assert_eq!(drain(&mut d), [0x5d]);
        // Translation off: the keyboard's set 2 comes through raw.
        d.write(4, &[0x60]);
        d.write(0, &[0x05]);
        d.send_qcode("a", true).unwrap();
        d.send_qcode("a", false).unwrap();
        assert_eq!(drain(&mut d), [0x1c, 0xf0, 0x1c]);
        // Keyboard disabled through the controller: bytes wait.
        d.write(4, &[0xad]);
        d.send_qcode("b", true).unwrap();
        assert_eq!(inb(&mut d, 4) & STAT_OBF, 0);
        d.write(4, &[0xae]);
        assert_eq!(drain(&mut d), [0x32]);
    }

    #[test]
    fn i8042_keyboard_commands() {
        let (mut d, _, _) = dev();
        d.write(0, &[0xff]);
        assert_eq!(drain(&mut d), [ACK, 0xaa]);
        d.write(0, &[0xf2]);
        assert_eq!(drain(&mut d), [ACK, 0xab, 0x41]);
        d.write(0, &[0xed]);
        d.write(0, &[0x04]);
        assert_eq!(drain(&mut d), [ACK, ACK]);
        assert_eq!(d.leds(), 4);
        d.write(0, &[0xf0]);
        d.write(0, &[0x00]);
        assert_eq!(drain(&mut d), [ACK, ACK, 2]);
        d.write(0, &[0xf5]);
        assert_eq!(drain(&mut d), [ACK]);
        d.send_qcode("a", true).unwrap();
        assert_eq!(drain(&mut d), Vec::<u8>::new());
        d.write(0, &[0xf4]);
        d.send_qcode("a", true).unwrap();
        assert_eq!(drain(&mut d), [ACK, 0x1e]);
        d.write(0, &[0xee]);
        assert_eq!(drain(&mut d), [0xee]);
        d.write(0, &[0x99]);
        assert_eq!(drain(&mut d), [RESEND]);
    }

    #[test]
    fn i8042_state_round_trip_and_validation() {
        let (mut d, _, _) = dev();
        d.write(0, &[0xed]); // keyboard waits for the LED byte
        d.send_qcode("a", true).unwrap();
        d.write(4, &[0x60]); // controller waits for the command byte
        let s = d.state();
        let (mut e, _, _) = dev();
        e.restore(&s).unwrap();
        assert_eq!(e.state(), s);
        e.write(0, &[0x47]); // completes the 0x60 command on both
        d.write(0, &[0x47]);
        assert_eq!(drain(&mut e), drain(&mut d));
        let mut bad = s.clone();
        bad.kbd_queue = vec![0; 10_000];
        assert!(e.restore(&bad).is_err());
        let mut bad = s;
        bad.kbd_set = 9;
        assert!(e.restore(&bad).is_err());
    }

    #[test]
    fn i8042_buffer_is_bounded() {
        let (mut d, _, _) = dev();
        for _ in 0..10_000 {
            d.send_key(0x1e, true);
        }
        assert!(d.dropped_keys() > 0);
        assert!(drain(&mut d).len() <= KBD_QUEUE_MAX + 1);
    }
}
