//! Ring 0 (assembly only) and the ring-3 primitives built on it.
//!
//! Ring 0 runs ~100x slower than ring 3 under nested PVM and cannot run some
//! instructions, so it only: loads the GDT (kernel/user segments, a TSS whose
//! I/O bitmap grants ring 3 the device ports), fills a 48-entry IDT, programs
//! the PIC, and `iretq`s to ring 3 (`guest_main`). Afterwards ring 0 runs only
//! on interrupts and exceptions:
//!
//! - IRQ n (vector 32+n): count it in the status page; IRQ 4 also drains the
//!   UART into `RX_RING` (so input needs no exits from ring 3); EOI.
//! - `#UD` from ring 3 with `rax == WAIT_MAGIC` is the "wait for interrupt"
//!   call: if no interrupt arrived since ring 3 read `irq_total()` (passed in
//!   `rdi`), `sti; hlt`; then return past the `ud2`. (`int n`/`syscall` from
//!   ring 3 do not reach ring 0 under PVM; exceptions do.)
//! - Any other exception: record vector/rip/error/cr2 in the status page and
//!   write `0xDEAD0000 | vector` to the debug-exit port.

use core::arch::{asm, global_asm};

/// Guest status page (fixed, see docs/platform.md).
pub const STATUS: usize = 0x2000;
/// Status page word offsets.
pub mod status {
    /// "BHSTATUS" once the shell runs.
    pub const MAGIC: usize = 0x00;
    /// Heartbeat / dirtier pass counter.
    pub const HEARTBEAT: usize = 0x08;
    /// Fault vector, rip, error code, cr2.
    pub const FAULT: usize = 0x10;
    /// Total interrupts taken.
    pub const IRQ_TOTAL: usize = 0x30;
    /// Shell state: 1 = waiting at the prompt.
    pub const AT_PROMPT: usize = 0x38;
    /// Per-IRQ counters (16 x u64).
    pub const IRQ_COUNT: usize = 0x40;
}

/// `rax` value marking the wait call.
pub const WAIT_MAGIC: u64 = 0x5741_4954;

/// COM1.
pub const COM1: u16 = 0x3f8;
/// Debug-exit port.
pub const DEBUG_EXIT: u16 = 0x501;

/// Ports ring 3 may access (bitmap bits cleared).
const USER_PORTS: &[(u16, u16)] = &[
    (0x20, 2),    // PIC master (mask changes)
    (0x60, 1),    // i8042 data
    (0x64, 1),    // i8042 status/command
    (0xa0, 2),    // PIC slave
    (0x3f8, 8),   // COM1
    (0x501, 4),   // debug exit
    (0x505, 1),   // power button
];

#[repr(C, packed)]
struct Tss {
    _r0: u32,
    rsp0: u64,
    _rsp12: [u64; 2],
    _r1: u64,
    _ist: [u64; 7],
    _r2: u64,
    _r3: u16,
    iomap_base: u16,
    iomap: [u8; 8193],
}

const fn build_tss() -> Tss {
    let mut iomap = [0xffu8; 8193];
    let mut i = 0;
    while i < USER_PORTS.len() {
        let (base, len) = USER_PORTS[i];
        let mut p = base as usize;
        while p < base as usize + len as usize {
            iomap[p / 8] &= !(1 << (p % 8));
            p += 1;
        }
        i += 1;
    }
    Tss {
        _r0: 0,
        rsp0: 0,
        _rsp12: [0; 2],
        _r1: 0,
        _ist: [0; 7],
        _r2: 0,
        _r3: 0,
        iomap_base: 104,
        iomap,
    }
}

const TSS_LIMIT: usize = core::mem::size_of::<Tss>() - 1;

#[no_mangle]
static mut TSS: Tss = build_tss();

/// null, kcode 0x08, kdata 0x10, udata 0x18, ucode 0x20, TSS 0x28 (2 slots).
/// Accessed bits preset so the CPU does not write descriptors.
#[no_mangle]
static mut GDT: [u64; 7] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x00cf_f300_0000_ffff,
    0x00af_fb00_0000_ffff,
    0,
    0,
];

#[no_mangle]
static mut IDT: [u64; 96] = [0; 96];

const KSTACK_SIZE: usize = 16 * 1024;
const USTACK_SIZE: usize = 128 * 1024;

#[repr(C, align(16))]
struct Stack<const N: usize>([u8; N]);

#[no_mangle]
static mut KSTACK: Stack<KSTACK_SIZE> = Stack([0; KSTACK_SIZE]);
#[no_mangle]
static mut USTACK: Stack<USTACK_SIZE> = Stack([0; USTACK_SIZE]);

/// UART receive ring, written by the IRQ 4 handler, read by ring 3.
#[no_mangle]
static mut RX_RING: [u8; 256] = [0; 256];
#[no_mangle]
static mut RX_HEAD: u32 = 0;
#[no_mangle]
static mut RX_TAIL: u32 = 0;
#[no_mangle]
static mut RX_STALLED: u32 = 0;

global_asm!(
    r#"
.section .text.entry, "ax"
.global _start
_start:
    cli
    mov r12, rdi
    lea rsp, [rip + KSTACK + {kstack}]
    lea rax, [rip + KSTACK + {kstack}]
    mov qword ptr [rip + TSS + 4], rax

    lea rax, [rip + TSS]
    mov rcx, rax
    and rcx, 0xffffff
    shl rcx, 16
    mov rdx, {tss_limit}
    or rcx, rdx
    mov rdx, 0x89
    shl rdx, 40
    or rcx, rdx
    mov rdx, rax
    shr rdx, 24
    and rdx, 0xff
    shl rdx, 56
    or rcx, rdx
    mov qword ptr [rip + GDT + 40], rcx
    shr rax, 32
    mov qword ptr [rip + GDT + 48], rax

    sub rsp, 16
    mov word ptr [rsp + 6], 55
    lea rax, [rip + GDT]
    mov qword ptr [rsp + 8], rax
    lgdt [rsp + 6]

    lea rdi, [rip + IDT]
    lea rsi, [rip + ISR_TABLE]
    mov ecx, 48
2:
    mov rax, qword ptr [rsi]
    mov rdx, rax
    and rdx, 0xffff
    or rdx, 0x80000
    mov r8, 0x8e00
    shl r8, 32
    or rdx, r8
    mov r8, rax
    shr r8, 16
    and r8, 0xffff
    shl r8, 48
    or rdx, r8
    mov qword ptr [rdi], rdx
    shr rax, 32
    mov qword ptr [rdi + 8], rax
    add rdi, 16
    add rsi, 8
    dec ecx
    jnz 2b
    mov word ptr [rsp + 6], 767
    lea rax, [rip + IDT]
    mov qword ptr [rsp + 8], rax
    lidt [rsp + 6]
    add rsp, 16

    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov ax, 0x28
    ltr ax

    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1
    out 0x21, al
    out 0xa1, al
    mov al, 0xeb
    out 0x21, al
    mov al, 0xff
    out 0xa1, al

    push 0x1b
    lea rax, [rip + USTACK + {ustack} - 8]
    push rax
    push 0x202
    push 0x23
    lea rax, [rip + guest_main]
    push rax
    mov rdi, r12
    iretq

.macro EXC n
exc_\n:
    .if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    push 0
    .endif
    push \n
    jmp exc_common
.endm

.macro IRQ n
irq_\n:
    push \n
    jmp irq_common
.endm

.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    EXC \n
.endr
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    IRQ \n
.endr

exc_common:
    cmp qword ptr [rsp], 6
    jne 5f
    test qword ptr [rsp + 24], 3
    jz 5f
    cmp rax, {wait_magic}
    jne 5f
    cmp rdi, qword ptr [{status} + {irq_total}]
    jne 4f
    sti
    hlt
    cli
4:
    add qword ptr [rsp + 16], 2
    add rsp, 16
    iretq
5:
    mov rax, qword ptr [rsp]
    mov qword ptr [{status} + {fault}], rax
    mov rax, qword ptr [rsp + 16]
    mov qword ptr [{status} + {fault} + 8], rax
    mov rax, qword ptr [rsp + 8]
    mov qword ptr [{status} + {fault} + 16], rax
    mov rax, cr2
    mov qword ptr [{status} + {fault} + 24], rax
    mov eax, dword ptr [rsp]
    or eax, 0xdead0000
    mov dx, 0x501
    out dx, eax
6:
    cli
    hlt
    jmp 6b

irq_common:
    push rax
    push rcx
    push rdx
    push rsi
    mov rax, qword ptr [rsp + 32]
    inc qword ptr [8 * rax + {status} + {irq_count}]
    inc qword ptr [{status} + {irq_total}]
    cmp rax, 4
    jne 7f
    call uart_drain
7:
    mov al, 0x20
    cmp qword ptr [rsp + 32], 8
    jb 8f
    out 0xa0, al
8:
    out 0x20, al
    pop rsi
    pop rdx
    pop rcx
    pop rax
    add rsp, 8
    iretq

uart_drain:
    mov dx, 0x3fd
    in al, dx
    test al, 1
    jz 12f
    mov ecx, dword ptr [rip + RX_HEAD]
    mov esi, dword ptr [rip + RX_TAIL]
    mov eax, ecx
    sub eax, esi
    cmp eax, 256
    jae 11f
    mov dx, 0x3f8
    in al, dx
    and ecx, 255
    lea rsi, [rip + RX_RING]
    mov byte ptr [rsi + rcx], al
    inc dword ptr [rip + RX_HEAD]
    jmp uart_drain
11:
    mov dword ptr [rip + RX_STALLED], 1
12:
    ret

.section .rodata
.balign 8
ISR_TABLE:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_\n
.endr
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .quad irq_\n
.endr
.text
"#,
    kstack = const KSTACK_SIZE,
    ustack = const USTACK_SIZE,
    tss_limit = const TSS_LIMIT,
    wait_magic = const WAIT_MAGIC,
    status = const STATUS,
    irq_total = const status::IRQ_TOTAL,
    irq_count = const status::IRQ_COUNT,
    fault = const status::FAULT,
);

/// Read a byte from a port (ring 3: allowed ports only).
#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O on a port granted by the TSS bitmap; no memory effects.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Write a byte to a port.
#[inline(always)]
pub fn outb(port: u16, v: u8) {
    // SAFETY: as inb.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}

/// Write a dword to a port.
#[inline(always)]
pub fn outl(port: u16, v: u32) {
    // SAFETY: as inb.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) };
}

/// Read a u64 of the status page.
#[inline(always)]
pub fn status_read(off: usize) -> u64 {
    // SAFETY: the status page is identity-mapped, user-accessible guest RAM.
    unsafe { core::ptr::read_volatile((STATUS + off) as *const u64) }
}

/// Write a u64 of the status page.
#[inline(always)]
pub fn status_write(off: usize, v: u64) {
    // SAFETY: as status_read.
    unsafe { core::ptr::write_volatile((STATUS + off) as *mut u64, v) }
}

/// Interrupts taken so far.
#[inline(always)]
pub fn irq_total() -> u64 {
    status_read(status::IRQ_TOTAL)
}

/// Sleep until an interrupt arrives, unless one arrived since `seen` was
/// read from [`irq_total`].
pub fn wait_irq(seen: u64) {
    // SAFETY: `ud2` traps to the ring-0 #UD handler, which recognises
    // WAIT_MAGIC in rax and returns past the instruction.
    unsafe { asm!("ud2", in("rax") WAIT_MAGIC, in("rdi") seen, options(nostack)) };
}

/// Time stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: rdtsc has no memory effects.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Pop a byte from the UART receive ring.
pub fn rx_pop() -> Option<u8> {
    // SAFETY: single consumer (ring 3); the producer (IRQ handler) only
    // writes RX_HEAD and ring slots between tail and tail+256.
    unsafe {
        let head = core::ptr::read_volatile(core::ptr::addr_of!(RX_HEAD));
        let tail = core::ptr::read_volatile(core::ptr::addr_of!(RX_TAIL));
        if head == tail {
            return None;
        }
        let b = core::ptr::read_volatile(core::ptr::addr_of!(RX_RING[(tail & 255) as usize]));
        core::ptr::write_volatile(core::ptr::addr_of_mut!(RX_TAIL), tail.wrapping_add(1));
        Some(b)
    }
}

/// Whether input is waiting in the ring.
pub fn rx_pending() -> bool {
    // SAFETY: plain volatile reads of two u32 statics.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(RX_HEAD)) != core::ptr::read_volatile(core::ptr::addr_of!(RX_TAIL)) }
}

/// Take (and clear) the flag the IRQ handler sets when the ring was full.
pub fn rx_take_stalled() -> bool {
    // SAFETY: volatile access to a u32 static shared with the IRQ handler.
    unsafe {
        let s = core::ptr::read_volatile(core::ptr::addr_of!(RX_STALLED));
        if s != 0 {
            core::ptr::write_volatile(core::ptr::addr_of_mut!(RX_STALLED), 0);
        }
        s != 0
    }
}

/// End the VM with `code` through the debug-exit port.
pub fn debug_exit(code: u32) -> ! {
    outl(DEBUG_EXIT, code);
    loop {
        core::hint::spin_loop();
    }
}

#[allow(dead_code)]
/// Unmask PIC line `irq` (ring 3 has the PIC mask ports).
pub fn pic_unmask(irq: u8) {
    if irq < 8 {
        outb(0x21, inb(0x21) & !(1 << irq));
    } else {
        outb(0xa1, inb(0xa1) & !(1 << (irq - 8)));
        outb(0x21, inb(0x21) & !(1 << 2));
    }
}
