//! vCPU threads: the `KVM_RUN` loop, exit dispatch to the device buses, and
//! race-free parking for pause/resume.
//!
//! ```text
//!  controller (Vm::pause)                 vCPU thread
//!  ----------------------                 -----------
//!  ctl.paused = true, pause_req = true    loop:
//!  kick: pthread_kill(KICK_SIGNAL) ---->    immediate_exit = 0
//!        handler sets immediate_exit = 1    if pause_req: park (parked += 1, wait)
//!  wait until parked == alive               KVM_RUN  (returns EINTR when kicked,
//!                                                      or at once if immediate_exit)
//! ```
//! Clearing `immediate_exit` *before* testing `pause_req` closes the race
//! where the kick lands between the test and `KVM_RUN`. While parked, a
//! vCPU thread holds no lock on its `VcpuFd`, so the controller can get and
//! set its state from another thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::devices::bus::Bus;

/// The signal used to kick vCPU threads out of `KVM_RUN` (SIGRTMIN + 2).
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN() + 2
}

thread_local! {
    static KVM_RUN_PTR: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let p = KVM_RUN_PTR.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: `p` points at this thread's mmap'ed kvm_run, which stays
        // mapped while the thread runs (the pointer is cleared before the
        // VcpuFd can be dropped); a volatile byte store is signal-safe.
        unsafe { std::ptr::write_volatile(&mut (*p).immediate_exit, 1) };
    }
}

/// Install the kick signal handler once per process.
pub fn install_kick_handler() -> std::io::Result<()> {
    static ONCE: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .map_err(|e| e.errno())
    })
    .map_err(std::io::Error::from_raw_os_error)
}

/// Something only the VM as a whole can handle (a vCPU thread cannot pause
/// itself and the others, so it asks the VM's manager thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The guest asked for a reset (triple fault, i8042 0xFE, ...).
    Reset(String),
    /// The guest powered off (or asked for shutdown).
    Shutdown(String),
    /// The guest wrote its exit status to the debug-exit port.
    GuestExit(u32),
    /// KVM reported an error the guest cannot recover from.
    InternalError(String),
    /// Stop the manager thread.
    Quit,
}

#[derive(Debug, Default)]
struct Ctl {
    paused: bool,
    parked: usize,
    alive: usize,
}

/// Pause/resume/exit control shared by a VM's vCPU threads.
#[derive(Debug, Default)]
pub struct RunControl {
    pause_req: AtomicBool,
    exit_req: AtomicBool,
    ctl: Mutex<Ctl>,
    cv: Condvar,
}

impl RunControl {
    /// A control block where vCPUs start paused.
    pub fn new_paused() -> Self {
        let rc = Self::default();
        rc.pause_req.store(true, Ordering::SeqCst);
        rc.ctl.lock().unwrap_or_else(|p| p.into_inner()).paused = true;
        rc
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask every vCPU to park; `kick` interrupts `KVM_RUN`. Returns when all
    /// live vCPUs are parked.
    pub fn pause(&self, kick: &dyn Fn()) {
        {
            let mut c = self.lock();
            c.paused = true;
            self.pause_req.store(true, Ordering::SeqCst);
            self.cv.notify_all();
        }
        kick();
        let mut c = self.lock();
        while c.parked < c.alive {
            let (g, t) = self
                .cv
                .wait_timeout(c, Duration::from_millis(20))
                .unwrap_or_else(|p| p.into_inner());
            c = g;
            if t.timed_out() && c.parked < c.alive {
                drop(c);
                kick();
                c = self.lock();
            }
        }
    }

    /// Let parked vCPUs run again.
    pub fn resume(&self) {
        let mut c = self.lock();
        c.paused = false;
        self.pause_req.store(false, Ordering::SeqCst);
        self.cv.notify_all();
    }

    /// Make every vCPU thread return.
    pub fn exit(&self, kick: &dyn Fn()) {
        self.exit_req.store(true, Ordering::SeqCst);
        {
            let _c = self.lock();
            self.cv.notify_all();
        }
        kick();
    }

    /// Whether vCPUs are (asked to be) paused.
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    fn should_stop(&self) -> bool {
        self.pause_req.load(Ordering::SeqCst) || self.exit_req.load(Ordering::SeqCst)
    }

    fn park(&self) {
        let mut c = self.lock();
        c.parked += 1;
        self.cv.notify_all();
        while c.paused && !self.exit_req.load(Ordering::SeqCst) {
            c = self.cv.wait(c).unwrap_or_else(|p| p.into_inner());
        }
        c.parked -= 1;
    }

    /// Block until a pause (or exit) is requested.
    fn wait_for_pause(&self) {
        let mut c = self.lock();
        while !c.paused && !self.exit_req.load(Ordering::SeqCst) {
            c = self
                .cv
                .wait_timeout(c, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn enter(&self) {
        self.lock().alive += 1;
    }

    fn leave(&self) {
        let mut c = self.lock();
        c.alive -= 1;
        self.cv.notify_all();
    }
}

/// What a vCPU thread needs from its VM.
pub struct VcpuContext {
    /// vCPU index.
    pub id: u32,
    /// The vCPU; locked by the thread only while it is not parked.
    pub fd: Arc<Mutex<VcpuFd>>,
    /// Port-I/O bus.
    pub pio: Arc<RwLock<Bus>>,
    /// MMIO bus.
    pub mmio: Arc<RwLock<Bus>>,
    /// Pause/exit control.
    pub control: Arc<RunControl>,
    /// Requests to the VM manager.
    pub requests: Sender<Request>,
    /// Where the thread stores its Linux thread id (for `query-cpus-fast`).
    pub tid: Arc<std::sync::atomic::AtomicI32>,
}

/// Mark this thread as a live vCPU before it is spawned-and-running, so
/// `pause()` right after spawning waits for it.
pub fn register(control: &RunControl) {
    control.enter();
}

/// The vCPU thread body. `register` must have been called for it.
pub fn run(ctx: VcpuContext) {
    // SAFETY: gettid has no arguments and cannot fail.
    ctx.tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
    // The thread inherits its creator's signal mask; kicks must get through.
    if let Err(e) = vmm_sys_util::signal::unblock_signal(kick_signal()) {
        tracing::warn!("vcpu {}: cannot unblock the kick signal: {e}", ctx.id);
    }
    let kvm_run_ptr = {
        let mut fd = ctx.fd.lock().unwrap_or_else(|p| p.into_inner());
        fd.get_kvm_run() as *mut kvm_run
    };
    KVM_RUN_PTR.with(|c| c.set(kvm_run_ptr));
    // After a port/MMIO exit the instruction is only completed (result in
    // RAX, RIP advanced) by the next KVM_RUN; state saved before that would
    // replay the access. So before parking, re-enter once with
    // immediate_exit set: KVM completes the access and returns at once.
    let mut io_pending = false;
    loop {
        if ctx.control.should_stop() {
            if io_pending {
                let mut fd = ctx.fd.lock().unwrap_or_else(|p| p.into_inner());
                fd.set_kvm_immediate_exit(1);
                match fd.run() {
                    Err(e) if e.errno() == libc::EINTR => {}
                    other => tracing::warn!(
                        vcpu = ctx.id,
                        "completing I/O before pause: {:?}",
                        other.map(|_| ())
                    ),
                }
                io_pending = false;
            }
            if ctx.control.exit_req.load(Ordering::SeqCst) {
                break;
            }
            ctx.control.park();
            continue;
        }
        let mut fd = ctx.fd.lock().unwrap_or_else(|p| p.into_inner());
        fd.set_kvm_immediate_exit(0);
        std::sync::atomic::fence(Ordering::SeqCst);
        if ctx.control.should_stop() {
            continue;
        }
        let stop_reason = match fd.run() {
            Ok(exit) => {
                io_pending = matches!(
                    exit,
                    VcpuExit::IoIn(..)
                        | VcpuExit::IoOut(..)
                        | VcpuExit::MmioRead(..)
                        | VcpuExit::MmioWrite(..)
                );
                handle_exit(&ctx, exit)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
            Err(e) => Some(Request::InternalError(format!(
                "vcpu {}: KVM_RUN failed: {e}",
                ctx.id
            ))),
        };
        drop(fd);
        if let Some(req) = stop_reason {
            tracing::debug!(vcpu = ctx.id, ?req, "vcpu stops");
            io_pending = false;
            let _ = ctx.requests.send(req);
            ctx.control.wait_for_pause();
        }
    }
    KVM_RUN_PTR.with(|c| c.set(std::ptr::null_mut()));
    ctx.control.leave();
}

fn handle_exit(ctx: &VcpuContext, exit: VcpuExit<'_>) -> Option<Request> {
    match exit {
        VcpuExit::IoOut(port, data) => {
            ctx.pio
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .write(u64::from(port), data);
            None
        }
        VcpuExit::IoIn(port, data) => {
            ctx.pio
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .read(u64::from(port), data);
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            ctx.mmio
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .write(addr, data);
            None
        }
        VcpuExit::MmioRead(addr, data) => {
            ctx.mmio
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .read(addr, data);
            None
        }
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => None,
        // With the in-kernel irqchip HLT is handled in KVM; if it does reach
        // us, yield briefly instead of spinning.
        VcpuExit::Hlt => {
            std::thread::sleep(Duration::from_millis(1));
            None
        }
        VcpuExit::Shutdown => Some(Request::Reset("guest-reset (triple fault)".into())),
        VcpuExit::SystemEvent(kind, _) => match kind {
            kvm_bindings::KVM_SYSTEM_EVENT_RESET => Some(Request::Reset("guest-reset".into())),
            kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => {
                Some(Request::Shutdown("guest-shutdown".into()))
            }
            k => Some(Request::InternalError(format!(
                "vcpu {}: unhandled system event {k}",
                ctx.id
            ))),
        },
        VcpuExit::FailEntry(reason, cpu) => Some(Request::InternalError(format!(
            "vcpu {}: entry failed, reason {reason:#x} (cpu {cpu})",
            ctx.id
        ))),
        VcpuExit::InternalError => Some(Request::InternalError(format!(
            "vcpu {}: KVM internal error",
            ctx.id
        ))),
        other => Some(Request::InternalError(format!(
            "vcpu {}: unhandled exit {other:?}",
            ctx.id
        ))),
    }
}
