//! The serial command shell.

use crate::arch;
use crate::bootinfo::BootInfo;
use crate::{mem, print, serial};

const PROMPT: &str = "bulkhead> ";

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// Read a line with echo and backspace; returns its length.
fn read_line(buf: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        let c = serial::getc();
        match c {
            b'\r' | b'\n' => {
                serial::puts("\r\n");
                return n;
            }
            0x08 | 0x7f if n > 0 => {
                n -= 1;
                serial::write(b"\x08 \x08");
            }
            0x20..=0x7e if n < buf.len() => {
                buf[n] = c;
                n += 1;
                serial::write(&[c]);
            }
            _ => {}
        }
    }
}

fn help() {
    serial::puts(
        "commands:\r\n  help            this list\r\n  echo TEXT       print TEXT\r\n  info            boot information\r\n  memtest N       write/verify a pattern over N MiB, print checksum\r\n  dirty [N]       keep dirtying N MiB (default 16) until a key is pressed\r\n  exit N          end the VM with status N (debug-exit port)\r\n  disk [info]     virtio-blk capacity\r\n  disk write|read|verify SECTOR COUNT [SEED]\r\n                  batched virtio-blk I/O with a checkable pattern\r\n  fb [WxH]        set a mode and draw the test card\r\n  fb anim [N]     bounce a square for N frames\r\n  input [N]       show N key/pointer events (q stops)\r\n",
    );
}

/// Run one command line.
pub fn run_command(bi: &BootInfo, line: &str) {
    let line = line.trim();
    let (cmd, arg) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_start()),
        None => (line, ""),
    };
    match cmd {
        "" => {}
        "help" => help(),
        "echo" => print!("{}\r\n", arg),
        "info" => print!(
            "ram {:#x} low_end {:#x} high {:#x}+{:#x} free {:#x} cpus {} tsc_khz {} fb {:#x}\r\n",
            bi.ram_size, bi.ram_low_end, bi.ram_high_start, bi.ram_high_size, bi.free_start, bi.nr_cpus, bi.tsc_khz, bi.fb_base
        ),
        "memtest" => match parse_u64(arg) {
            Some(n) => mem::memtest(bi, n),
            None => serial::puts("usage: memtest N (MiB)\r\n"),
        },
        "dirty" => mem::dirty(bi, if arg.is_empty() { 16 } else { parse_u64(arg).unwrap_or(16) }),
        "exit" => match parse_u64(arg) {
            Some(n) if n <= u64::from(u32::MAX) => arch::debug_exit(n as u32),
            _ => serial::puts("usage: exit N\r\n"),
        },
        "disk" => crate::virtio_blk::command(bi, arg),
        "fb" => crate::fb::command(bi, arg),
        "input" => crate::input::command(bi, arg),
        _ => print!("unknown command '{}' (try help)\r\n", cmd),
    }
}

/// The prompt loop.
pub fn run(bi: &BootInfo) -> ! {
    let mut buf = [0u8; 160];
    loop {
        serial::puts(PROMPT);
        arch::status_write(arch::status::AT_PROMPT, 1);
        let n = read_line(&mut buf);
        arch::status_write(arch::status::AT_PROMPT, 0);
        let line = core::str::from_utf8(&buf[..n]).unwrap_or("");
        run_command(bi, line);
    }
}
