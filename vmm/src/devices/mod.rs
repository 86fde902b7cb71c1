//! Guest-visible device models. Each one is a `bus::BusDevice` mapped by the
//! VM builder at the addresses in `crate::layout`.

pub mod bus;
pub mod debug_exit;
pub mod framebuffer;
pub mod i8042;
pub mod input;
pub mod platform;
pub mod pointer;
pub mod power_button;
pub mod serial;
pub mod virtio;
