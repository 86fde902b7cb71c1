//! Absolute pointer (tablet) with a small event ring the guest polls.
//!
//! Coordinates are QEMU's absolute input scale, `0..=0x7fff` on each axis
//! (what `input-send-event` abs events and usb-tablet use), independent of
//! the display mode; the guest scales them to its screen.
//!
//! ```text
//!  host: input-send-event [abs x, abs y, btn left down, ...] ─▶ sync()
//!        ─▶ one Event {x, y, buttons, wheel} appended to the ring (64 deep;
//!           when full, the oldest event is dropped)
//!  guest MMIO at layout::POINTER_REGS_BASE:
//!    0x00 MAGIC "BHPT"  0x04 VERSION 1
//!    0x08 COUNT   (r: events waiting)
//!    0x10 EVENT   (r, 4 or 8 bytes: pops one event)
//!                 bits 0..15 x, 16..31 y | 32..39 buttons, 40..47 wheel (i8),
//!                 63 valid; a 4-byte read returns the low half and latches
//!                 the high half in
//!    0x14 EVENT_HI (r: high half of the last popped event)
//!    0x18 STATE_XY (r: current x | y << 16)  0x1c STATE_BTN (r: buttons)
//!    0x20 DROPPED  (r: events lost to overflow)
//! ```
//! Buttons: bit 0 left, 1 right, 2 middle, 3 side, 4 extra. Wheel: +1 per
//! `wheel-up` press, -1 per `wheel-down` press.
//!
//! With an irq eventfd (`layout::POINTER_IRQ`), every queued event raises
//! the line once (edge), so a guest can sleep instead of polling.

use std::collections::VecDeque;

use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;

/// "BHPT".
pub const POINTER_MAGIC: u32 = 0x5450_4842;
/// Largest coordinate (QEMU's `INPUT_EVENT_ABS_MAX`).
pub const ABS_MAX: u32 = 0x7fff;
/// Events kept for the guest.
pub const RING_LEN: usize = 64;
/// Bit 63 of a popped event: the event is valid (ring was not empty).
pub const EVENT_VALID: u64 = 1 << 63;

/// A pointer button, named as QMP's `InputButton`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Button {
    /// `left`.
    Left,
    /// `right`.
    Right,
    /// `middle`.
    Middle,
    /// `wheel-up`.
    WheelUp,
    /// `wheel-down`.
    WheelDown,
    /// `side`.
    Side,
    /// `extra`.
    Extra,
}

impl Button {
    /// Parse QMP's name.
    pub fn from_qmp(name: &str) -> Option<Self> {
        Some(match name {
            "left" => Button::Left,
            "right" => Button::Right,
            "middle" => Button::Middle,
            "wheel-up" => Button::WheelUp,
            "wheel-down" => Button::WheelDown,
            "side" => Button::Side,
            "extra" => Button::Extra,
            _ => return None,
        })
    }

    fn bit(self) -> u8 {
        match self {
            Button::Left => 1,
            Button::Right => 2,
            Button::Middle => 4,
            Button::Side => 8,
            Button::Extra => 16,
            Button::WheelUp | Button::WheelDown => 0,
        }
    }
}

/// An axis of an absolute event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// `x`.
    X,
    /// `y`.
    Y,
}

/// One `input-send-event` pointer event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointerInput {
    /// `{"type":"abs","data":{"axis":..,"value":..}}`; clamped to `0..=ABS_MAX`.
    Abs(Axis, i64),
    /// `{"type":"btn","data":{"button":..,"down":..}}`.
    Btn(Button, bool),
}

/// What the guest pops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// 0..=0x7fff.
    pub x: u16,
    /// 0..=0x7fff.
    pub y: u16,
    /// Button bits.
    pub buttons: u8,
    /// Wheel steps since the previous event (+ up).
    pub wheel: i8,
}

impl Event {
    /// Packed register form.
    pub fn pack(self) -> u64 {
        u64::from(self.x)
            | (u64::from(self.y) << 16)
            | (u64::from(self.buttons) << 32)
            | (u64::from(self.wheel as u8) << 40)
            | EVENT_VALID
    }

    /// Inverse of [`Event::pack`] (guest side, tests); `None` if not valid.
    pub fn unpack(v: u64) -> Option<Self> {
        (v & EVENT_VALID != 0).then_some(Self {
            x: v as u16,
            y: (v >> 16) as u16,
            buttons: (v >> 32) as u8,
            wheel: (v >> 40) as u8 as i8,
        })
    }
}

/// Pointer state for migration/snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PointerState {
    /// Current x.
    pub x: u16,
    /// Current y.
    pub y: u16,
    /// Current buttons.
    pub buttons: u8,
    /// Wheel steps not yet synced.
    pub wheel: i8,
    /// Unsynced changes.
    pub dirty: bool,
    /// Queued events, packed as the EVENT register returns them.
    pub ring: Vec<u64>,
    /// Dropped-event counter.
    pub dropped: u32,
    /// Latched high half.
    pub latched_hi: u32,
}

/// The absolute pointer device.
#[derive(Debug, Default)]
pub struct Pointer {
    irq: Option<EventFd>,
    x: u16,
    y: u16,
    buttons: u8,
    wheel: i8,
    dirty: bool,
    ring: VecDeque<Event>,
    dropped: u32,
    latched_hi: u32,
}

impl Pointer {
    /// A pointer at (0, 0), no buttons, polled by the guest.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pointer that raises `irq` for each queued event.
    pub fn with_irq(irq: EventFd) -> Self {
        Self {
            irq: Some(irq),
            ..Self::default()
        }
    }

    /// Power-on state (system_reset); keeps the irq.
    pub fn reset(&mut self) {
        let irq = self.irq.take();
        *self = Self {
            irq,
            ..Self::default()
        };
    }

    /// Apply one event (takes effect for the guest at [`Pointer::sync`]).
    pub fn event(&mut self, ev: PointerInput) {
        match ev {
            PointerInput::Abs(axis, v) => {
                let v = v.clamp(0, i64::from(ABS_MAX)) as u16;
                match axis {
                    Axis::X => self.x = v,
                    Axis::Y => self.y = v,
                }
            }
            PointerInput::Btn(Button::WheelUp, true) => self.wheel = self.wheel.saturating_add(1),
            PointerInput::Btn(Button::WheelDown, true) => self.wheel = self.wheel.saturating_sub(1),
            PointerInput::Btn(Button::WheelUp | Button::WheelDown, false) => {}
            PointerInput::Btn(b, down) => {
                if down {
                    self.buttons |= b.bit();
                } else {
                    self.buttons &= !b.bit();
                }
            }
        }
        self.dirty = true;
    }

    /// End of an event batch (QEMU's input sync): queue the state.
    pub fn sync(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        if self.ring.len() == RING_LEN {
            self.ring.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.ring.push_back(Event {
            x: self.x,
            y: self.y,
            buttons: self.buttons,
            wheel: self.wheel,
        });
        self.wheel = 0;
        if let Some(irq) = &self.irq {
            if let Err(e) = irq.write(1) {
                tracing::warn!("pointer: irq eventfd: {e}");
            }
        }
    }

    /// `input-send-event`: apply all events, then sync.
    pub fn input(&mut self, events: &[PointerInput]) {
        for &e in events {
            self.event(e);
        }
        self.sync();
    }

    /// Snapshot.
    pub fn state(&self) -> PointerState {
        PointerState {
            x: self.x,
            y: self.y,
            buttons: self.buttons,
            wheel: self.wheel,
            dirty: self.dirty,
            ring: self.ring.iter().map(|e| e.pack()).collect(),
            dropped: self.dropped,
            latched_hi: self.latched_hi,
        }
    }

    /// Load a snapshot (untrusted: ring length and coordinates checked).
    pub fn restore(&mut self, s: &PointerState) -> Result<(), String> {
        let ring: Option<VecDeque<Event>> = s.ring.iter().map(|&v| Event::unpack(v)).collect();
        let ring = ring.ok_or("invalid pointer event")?;
        if ring.len() > RING_LEN
            || ring.iter().any(|e| u32::from(e.x.max(e.y)) > ABS_MAX)
            || u32::from(s.x.max(s.y)) > ABS_MAX
        {
            return Err("pointer state out of range".into());
        }
        self.x = s.x;
        self.y = s.y;
        self.buttons = s.buttons;
        self.wheel = s.wheel;
        self.dirty = s.dirty;
        self.ring = ring;
        self.dropped = s.dropped;
        self.latched_hi = s.latched_hi;
        Ok(())
    }

    /// Events waiting for the guest.
    pub fn pending(&self) -> usize {
        self.ring.len()
    }

    fn pop(&mut self) -> u64 {
        let v = self.ring.pop_front().map_or(0, Event::pack);
        self.latched_hi = (v >> 32) as u32;
        v
    }
}

impl BusDevice for Pointer {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v: u64 = match (offset, data.len()) {
            (0x10, 8) => self.pop(),
            (0x10, 4) => self.pop() & 0xffff_ffff,
            (_, 4) => u64::from(match offset {
                0x00 => POINTER_MAGIC,
                0x04 => 1,
                0x08 => self.ring.len() as u32,
                0x14 => self.latched_hi,
                0x18 => u32::from(self.x) | (u32::from(self.y) << 16),
                0x1c => u32::from(self.buttons),
                0x20 => self.dropped,
                _ => 0,
            }),
            _ => 0,
        };
        let b = v.to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&b[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: &mut Pointer, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        p.read(off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    #[test]
    fn pointer_events_reach_ring() {
        let mut p = Pointer::new();
        assert_eq!(r(&mut p, 0, 4), u64::from(POINTER_MAGIC));
        p.input(&[
            PointerInput::Abs(Axis::X, 0x4000),
            PointerInput::Abs(Axis::Y, 99_999),
            PointerInput::Btn(Button::Left, true),
        ]);
        p.input(&[
            PointerInput::Btn(Button::WheelUp, true),
            PointerInput::Btn(Button::WheelUp, false),
        ]);
        p.input(&[
            PointerInput::Btn(Button::Left, false),
            PointerInput::Abs(Axis::X, -5),
        ]);
        assert_eq!(r(&mut p, 0x08, 4), 3);
        let e = Event::unpack(r(&mut p, 0x10, 8)).unwrap();
        assert_eq!(
            e,
            Event {
                x: 0x4000,
                y: 0x7fff,
                buttons: 1,
                wheel: 0
            }
        );
        // 4-byte pop + latched high half.
        let lo = r(&mut p, 0x10, 4);
        let hi = r(&mut p, 0x14, 4);
        let e = Event::unpack(lo | (hi << 32)).unwrap();
        assert_eq!(
            e,
            Event {
                x: 0x4000,
                y: 0x7fff,
                buttons: 1,
                wheel: 1
            }
        );
        let e = Event::unpack(r(&mut p, 0x10, 8)).unwrap();
        assert_eq!(
            e,
            Event {
                x: 0,
                y: 0x7fff,
                buttons: 0,
                wheel: 0
            }
        );
        assert_eq!(Event::unpack(r(&mut p, 0x10, 8)), None);
        assert_eq!(r(&mut p, 0x18, 4), 0x7fff << 16);
        assert_eq!(Button::from_qmp("wheel-down"), Some(Button::WheelDown));
        assert_eq!(Button::from_qmp("thumb"), None);
    }

    #[test]
    fn pointer_irq_per_event_and_reset() {
        let irq = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let probe = irq.try_clone().unwrap();
        let mut p = Pointer::with_irq(irq);
        p.input(&[PointerInput::Abs(Axis::X, 1)]);
        p.input(&[PointerInput::Abs(Axis::X, 2)]);
        assert_eq!(probe.read().unwrap(), 2);
        p.reset();
        assert_eq!(p.pending(), 0);
        p.input(&[PointerInput::Btn(Button::Right, true)]);
        assert_eq!(probe.read().unwrap(), 1);
    }

    #[test]
    fn pointer_state_round_trip() {
        let mut p = Pointer::new();
        p.input(&[
            PointerInput::Abs(Axis::X, 10),
            PointerInput::Btn(Button::Middle, true),
        ]);
        p.event(PointerInput::Abs(Axis::Y, 20));
        let s = p.state();
        let mut q = Pointer::new();
        q.restore(&s).unwrap();
        assert_eq!(q.state(), s);
        q.sync();
        assert_eq!(q.pending(), 2);
        let mut bad = s.clone();
        bad.ring = vec![0; 3];
        assert!(q.restore(&bad).is_err());
        let mut bad = s;
        bad.ring = vec![
            Event {
                x: 1,
                y: 1,
                buttons: 0,
                wheel: 0
            }
            .pack();
            RING_LEN + 1
        ];
        assert!(q.restore(&bad).is_err());
    }

    #[test]
    fn pointer_ring_is_bounded() {
        let mut p = Pointer::new();
        for i in 0..1000 {
            p.input(&[PointerInput::Abs(Axis::X, i)]);
        }
        assert_eq!(p.pending(), RING_LEN);
        assert_eq!(r(&mut p, 0x20, 4), (1000 - RING_LEN) as u64);
        // Oldest dropped: the first one left is x = 1000 - 64.
        let e = Event::unpack(r(&mut p, 0x10, 8)).unwrap();
        assert_eq!(e.x as usize, 1000 - RING_LEN);
        // sync without changes adds nothing.
        let n = p.pending();
        p.sync();
        assert_eq!(p.pending(), n);
    }
}
