//! Display: `screendump` (PPM by default, PNG with `"format": "png"`).

use serde_json::{Map, Value};
use std::io::Write;

use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::image;
use super::super::schema::{opt, req, ArgSpec, Ty};
use super::{empty, opt_str, opt_u32, req_str};

/// This group.
pub const COMMANDS: &[Command] = &[Command {
    name: "screendump",
    args: ArgSpec::fields(&[
        req("filename", Ty::Str),
        opt("device", Ty::Str),
        opt("head", Ty::Int),
        opt("format", Ty::Enum(&["ppm", "png"])),
    ]),
    run: screendump,
}];

/// Image format of a screendump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// Binary PPM (P6).
    Ppm,
    /// PNG.
    Png,
}

/// Captures the screen and writes it to `filename`.
pub fn write_screendump(
    ctx: &mut Ctx<'_>,
    filename: &str,
    device: Option<&str>,
    head: Option<u32>,
    format: ImageFormat,
) -> Result<(), QmpError> {
    if head.is_some() && device.is_none() {
        return Err(QmpError::generic(
            "'head' must be specified together with 'device'",
        ));
    }
    let shot = ctx.backend.screendump(device, head)?;
    let expected = shot.width as usize * shot.height as usize * 3;
    if shot.rgb.len() != expected {
        return Err(QmpError::generic(
            "screendump: display returned a malformed image",
        ));
    }
    let bytes = match format {
        ImageFormat::Ppm => image::to_ppm(&shot),
        ImageFormat::Png => image::to_png(&shot),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(filename)
        .map_err(|e| QmpError::generic(format!("Could not open '{filename}': {}", io_text(&e))))?;
    f.write_all(&bytes)
        .map_err(|e| QmpError::generic(format!("Could not write '{filename}': {}", io_text(&e))))?;
    Ok(())
}

/// strerror-style text ("No such file or directory") without Rust's suffix.
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn screendump(ctx: &mut Ctx<'_>, args: Map<String, Value>) -> Result<Value, QmpError> {
    let format = match opt_str(&args, "format") {
        Some("png") => ImageFormat::Png,
        _ => ImageFormat::Ppm,
    };
    let head = opt_u32(&args, "head")?;
    write_screendump(
        ctx,
        req_str(&args, "filename")?,
        opt_str(&args, "device"),
        head,
        format,
    )?;
    Ok(empty())
}
