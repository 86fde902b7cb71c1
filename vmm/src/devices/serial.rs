//! COM1: a 16550A UART (`vm-superio`) wired to a chardev backend.
//!
//! ```text
//!  guest THR write --(vCPU thread)--> Serial --> BackendWriter --> CharBackend::write
//!  CharBackend input fd --(input thread, poll)--> enqueue_raw_bytes --> irqfd (GSI 4)
//!                    ^-- only as many bytes as the FIFO has room for; when it is
//!                        full the thread waits for the guest to drain it
//!                        (SerialEvents::in_buffer_empty -> eventfd)
//! ```

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vm_superio::serial::{SerialEvents, SerialState};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::bus::BusDevice;
use crate::chardev::CharBackend;

/// A shared backend.
pub type SharedBackend = Arc<Mutex<Box<dyn CharBackend>>>;

/// Raises the UART's interrupt through an irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Signals the input thread when the guest has drained the receive FIFO.
#[derive(Clone)]
pub struct FlowEvents(Arc<EventFd>);

impl SerialEvents for FlowEvents {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        let _ = self.0.write(1);
    }
}

/// `io::Write` adapter from the UART to the backend.
#[derive(Clone)]
pub struct BackendWriter(SharedBackend);

impl io::Write for BackendWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serialisable UART register state (mirror of `vm_superio::SerialState`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SerialSnapshot {
    /// DLL, DLM, IER, IIR, LCR, LSR, MCR, MSR, SCR.
    pub regs: [u8; 9],
    /// Pending receive FIFO.
    pub in_buffer: Vec<u8>,
}

type Uart = Serial<IrqTrigger, FlowEvents, BackendWriter>;

/// The UART as a bus device.
pub struct SerialDevice {
    uart: Uart,
    irq: EventFd,
    events: FlowEvents,
    writer: BackendWriter,
    write_errors: u64,
}

impl SerialDevice {
    /// A UART raising `irq` (an irqfd) and writing to `backend`.
    pub fn new(irq: EventFd, backend: SharedBackend) -> io::Result<Self> {
        let events = FlowEvents(Arc::new(EventFd::new(EFD_NONBLOCK)?));
        let writer = BackendWriter(backend);
        let uart =
            Serial::with_events(IrqTrigger(irq.try_clone()?), events.clone(), writer.clone());
        Ok(Self {
            uart,
            irq,
            events,
            writer,
            write_errors: 0,
        })
    }

    /// Back to power-on register state (input FIFO emptied).
    pub fn reset(&mut self) -> io::Result<()> {
        self.uart = Serial::with_events(
            IrqTrigger(self.irq.try_clone()?),
            self.events.clone(),
            self.writer.clone(),
        );
        let _ = self.events.0.write(1);
        Ok(())
    }

    /// Register state for migration.
    pub fn snapshot(&self) -> SerialSnapshot {
        let s = self.uart.state();
        SerialSnapshot {
            regs: [
                s.baud_divisor_low,
                s.baud_divisor_high,
                s.interrupt_enable,
                s.interrupt_identification,
                s.line_control,
                s.line_status,
                s.modem_control,
                s.modem_status,
                s.scratch,
            ],
            in_buffer: s.in_buffer,
        }
    }

    /// Restore register state (an oversized FIFO is rejected).
    pub fn restore(&mut self, snap: &SerialSnapshot) -> io::Result<()> {
        let r = snap.regs;
        let state = SerialState {
            baud_divisor_low: r[0],
            baud_divisor_high: r[1],
            interrupt_enable: r[2],
            interrupt_identification: r[3],
            line_control: r[4],
            line_status: r[5],
            modem_control: r[6],
            modem_status: r[7],
            scratch: r[8],
            in_buffer: snap.in_buffer.clone(),
        };
        self.uart = Serial::from_state(
            &state,
            IrqTrigger(self.irq.try_clone()?),
            self.events.clone(),
            self.writer.clone(),
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("serial state: {e:?}")))?;
        Ok(())
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(b) = data.first_mut() {
            *b = if offset < 8 {
                self.uart.read(offset as u8)
            } else {
                0
            };
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&b), true) = (data.first(), offset < 8) {
            if let Err(e) = self.uart.write(offset as u8, b) {
                // Once per device: a dead backend must not flood the log.
                if self.write_errors == 0 {
                    tracing::warn!("serial output lost: {e:?}");
                }
                self.write_errors += 1;
            }
        }
    }
}

/// COM1's registers as a migratable device state (JSON of [`SerialSnapshot`]).
pub struct SerialMigration(pub Arc<Mutex<SerialDevice>>);

impl crate::state::DeviceState for SerialMigration {
    fn save(&self) -> Result<Vec<u8>, String> {
        let snap = self.0.lock().unwrap_or_else(|p| p.into_inner()).snapshot();
        serde_json::to_vec(&snap).map_err(|e| e.to_string())
    }
    fn restore(&self, data: &[u8]) -> Result<(), String> {
        let snap: SerialSnapshot = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .restore(&snap)
            .map_err(|e| e.to_string())
    }
}

/// Feeds backend input into the UART; stops when dropped.
pub struct SerialInput {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Drop for SerialInput {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll_in(fds: &mut [libc::pollfd]) -> io::Result<()> {
    // SAFETY: poll over a valid slice of pollfds.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

impl SerialInput {
    /// Start the input thread for `dev`, reading from `backend` (no thread
    /// for output-only backends).
    pub fn start(
        dev: Arc<Mutex<SerialDevice>>,
        backend: SharedBackend,
    ) -> io::Result<Option<Self>> {
        let Some(in_fd) = backend.lock().unwrap_or_else(|p| p.into_inner()).input_fd() else {
            return Ok(None);
        };
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let stop2 = stop.try_clone()?;
        let room = dev
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .0
            .clone();
        let thread = std::thread::Builder::new()
            .name("serial-input".into())
            .spawn(move || input_loop(dev, backend, in_fd, &stop2, &room))?;
        Ok(Some(Self {
            stop,
            thread: Some(thread),
        }))
    }
}

fn input_loop(
    dev: Arc<Mutex<SerialDevice>>,
    backend: SharedBackend,
    in_fd: RawFd,
    stop: &EventFd,
    room: &EventFd,
) {
    let mut buf = [0u8; 64];
    let mut eof = false;
    loop {
        let cap = dev
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .uart
            .fifo_capacity();
        let mut fds = [
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: room.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if cap > 0 && !eof { in_fd } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Err(e) = poll_in(&mut fds) {
            tracing::warn!("serial input poll: {e}");
            return;
        }
        if fds[0].revents != 0 {
            return;
        }
        if fds[1].revents != 0 {
            let _ = room.read();
        }
        if fds[2].revents != 0 {
            let want = cap.min(buf.len());
            let r = backend
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read_input(&mut buf[..want]);
            match r {
                Ok(0) => eof = true,
                Ok(n) => {
                    let mut d = dev.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = d.uart.enqueue_raw_bytes(&buf[..n]) {
                        tracing::warn!("serial input lost: {e:?}");
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    tracing::warn!("serial input: {e}");
                    eof = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chardev::capture::capture;
    use std::time::{Duration, Instant};

    #[test]
    fn output_input_snapshot() {
        let (backend, handle) = capture().unwrap();
        let backend: SharedBackend = Arc::new(Mutex::new(Box::new(backend)));
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let dev = Arc::new(Mutex::new(
            SerialDevice::new(irq.try_clone().unwrap(), backend.clone()).unwrap(),
        ));
        dev.lock().unwrap().write(1, &[1]); // IER: receive interrupt on
        dev.lock().unwrap().write(0, b"A");
        assert_eq!(handle.output(), b"A");
        let _input = SerialInput::start(dev.clone(), backend).unwrap().unwrap();
        handle.send(&[b'x'; 100]).unwrap();
        // The input thread fills the 64-byte FIFO and no further.
        let deadline = Instant::now() + Duration::from_secs(5);
        while dev.lock().unwrap().uart.fifo_capacity() != 0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(irq.read().unwrap() >= 1);
        let snap = dev.lock().unwrap().snapshot();
        assert_eq!(snap.in_buffer.len(), 64);
        assert_eq!(snap.regs[2], 1);
        // Drain everything; the rest (36 bytes) follows once the FIFO empties.
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < 100 {
            assert!(Instant::now() < deadline, "got only {got}");
            let mut b = [0u8];
            dev.lock().unwrap().read(5, &mut b);
            if b[0] & 1 != 0 {
                dev.lock().unwrap().read(0, &mut b);
                assert_eq!(b[0], b'x');
                got += 1;
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Restoring the snapshot brings the 64 queued bytes back.
        dev.lock().unwrap().restore(&snap).unwrap();
        assert_eq!(dev.lock().unwrap().snapshot(), snap);
        let bad = SerialSnapshot {
            regs: snap.regs,
            in_buffer: vec![0; 65],
        };
        assert!(dev.lock().unwrap().restore(&bad).is_err());
    }
}
