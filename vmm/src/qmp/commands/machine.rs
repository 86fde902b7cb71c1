//! Run state and machine information: `query-status`, `stop`, `cont`,
//! `system_reset`, `system_powerdown`, `quit`, `query-name`, `query-kvm`,
//! `query-target`, `query-machines`, `query-cpus-fast`.

use serde_json::{json, Map, Value};

use super::super::dispatch::{Command, Ctx};
use super::super::error::QmpError;
use super::super::schema::ArgSpec;
use super::empty;
use crate::cli::machine::{MACHINES, MAX_CPUS};

/// This group.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "query-status",
        args: ArgSpec::NONE,
        run: query_status,
    },
    Command {
        name: "stop",
        args: ArgSpec::NONE,
        run: stop,
    },
    Command {
        name: "cont",
        args: ArgSpec::NONE,
        run: cont,
    },
    Command {
        name: "system_reset",
        args: ArgSpec::NONE,
        run: system_reset,
    },
    Command {
        name: "system_powerdown",
        args: ArgSpec::NONE,
        run: system_powerdown,
    },
    Command {
        name: "quit",
        args: ArgSpec::NONE,
        run: quit,
    },
    Command {
        name: "query-name",
        args: ArgSpec::NONE,
        run: query_name,
    },
    Command {
        name: "query-kvm",
        args: ArgSpec::NONE,
        run: query_kvm,
    },
    Command {
        name: "query-target",
        args: ArgSpec::NONE,
        run: query_target,
    },
    Command {
        name: "query-machines",
        args: ArgSpec::NONE,
        run: query_machines,
    },
    Command {
        name: "query-cpus-fast",
        args: ArgSpec::NONE,
        run: query_cpus_fast,
    },
];

fn query_status(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    let st = ctx.backend.query_status();
    Ok(json!({"status": st.as_str(), "singlestep": false, "running": st.is_running()}))
}

fn stop(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    ctx.backend.stop().map(|_| empty())
}

fn cont(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    ctx.backend.cont().map(|_| empty())
}

fn system_reset(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    ctx.backend.system_reset().map(|_| empty())
}

fn system_powerdown(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    ctx.backend.system_powerdown().map(|_| empty())
}

fn quit(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    ctx.backend.quit()?;
    ctx.close_after_reply = true;
    Ok(empty())
}

fn query_name(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    Ok(match ctx.backend.name() {
        Some(n) => json!({ "name": n }),
        None => empty(),
    })
}

fn query_kvm(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    let k = ctx.backend.query_kvm();
    Ok(json!({"enabled": k.enabled, "present": k.present}))
}

fn query_target(_: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    Ok(json!({"arch": "x86_64"}))
}

fn query_machines(_: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    let list = MACHINES
        .iter()
        .map(|m| {
            let mut v = json!({
                "name": m.name,
                "hotpluggable-cpus": false,
                "numa-mem-supported": false,
                "default-cpu-type": "host-x86_64-cpu",
                "cpu-max": MAX_CPUS,
                "deprecated": false,
                "default-ram-id": "pc.ram",
            });
            if let Some(alias) = m.alias {
                v["alias"] = json!(alias);
            }
            if m.is_default {
                v["is-default"] = json!(true);
            }
            v
        })
        .collect();
    Ok(Value::Array(list))
}

fn query_cpus_fast(ctx: &mut Ctx<'_>, _: Map<String, Value>) -> Result<Value, QmpError> {
    let list = ctx
        .backend
        .query_cpus()
        .into_iter()
        .map(|c| {
            json!({
                "cpu-index": c.cpu_index,
                "qom-path": format!("/machine/unattached/device[{}]", c.cpu_index),
                "thread-id": c.thread_id,
                "target": "x86_64",
                "props": {"socket-id": c.socket_id, "core-id": c.core_id, "thread-id": c.thread_in_core},
            })
        })
        .collect();
    Ok(Value::Array(list))
}
