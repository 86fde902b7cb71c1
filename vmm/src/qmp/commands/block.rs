//! Block devices: `query-block`.

use serde_json::{json, Map, Value};

use super::super::backend::BlockInfo;
use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::schema::ArgSpec;

/// This group.
pub const COMMANDS: &[Command] = &[Command {
    name: "query-block",
    args: ArgSpec::NONE,
    run: query_block,
}];

/// One drive in QEMU 7.2's `BlockInfo` shape.
pub fn block_info_value(b: &BlockInfo) -> Value {
    let mut v = json!({
        "device": b.device,
        "locked": false,
        "removable": false,
        "io-status": "ok",
        "type": "unknown",
        "inserted": {
            "file": b.file,
            "node-name": b.node_name,
            "ro": b.ro,
            "drv": b.drv,
            "backing_file_depth": 0,
            "encrypted": false,
            "detect_zeroes": "off",
            "bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0,
            "write_threshold": 0,
            "cache": {"writeback": true, "direct": false, "no-flush": false},
            "image": {
                "filename": b.file,
                "format": b.drv,
                "virtual-size": b.virtual_size,
                "actual-size": b.actual_size,
                "dirty-flag": false,
            },
        },
    });
    if let Some(q) = &b.qdev {
        v["qdev"] = json!(q);
    }
    v
}

fn query_block(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    Ok(Value::Array(
        ctx.backend
            .query_block()
            .iter()
            .map(block_info_value)
            .collect(),
    ))
}
