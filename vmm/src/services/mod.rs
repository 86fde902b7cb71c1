//! Service management: spawning, watching, restarting and brokering for the
//! sandboxed service processes.
//!
//! ```text
//!  ServiceManager::start::<P>(name, handler)
//!        |
//!        v   one monitor thread per service
//!  +--> spawn (sandbox::spawn: clone into namespaces, execve /proc/self/exe
//!  |          as svc-*, only the IPC fd open, empty environment)
//!  |    handshake (ipc::hello_core) -> Startup(handler.startup()) -> Ready
//!  |    serve: poll(IPC fd, pidfd, stop eventfd)
//!  |       common messages (Pong, Broker) handled here, the rest go to
//!  |       handler.on_message (untrusted input: the handler validates)
//!  |    exit (crash, SIGSYS, kill -9, bad message) -> ServiceEvent::Exited
//!  +--- backoff (doubling, capped) ----------------------------+
//! ```

pub mod broker;
pub mod manager;

pub use broker::{Broker, Grant};
pub use manager::{
    ServiceEvent, ServiceEventSink, ServiceHandle, ServiceHandler, ServiceLink, ServiceManager,
    ServiceSettings,
};
