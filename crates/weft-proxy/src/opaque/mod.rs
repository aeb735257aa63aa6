//! Opaque streams: connections that are not HTTP (routed as `/tcp/<port>`), and HTTP/1.1
//! upgrades (WebSocket, CONNECT) once the endpoint agreed to switch. Both connect through
//! the endpoint's one connect path and end in the byte copier.

mod copy;
mod tcp;
mod upgrade;

pub(crate) use tcp::proxy;

/// The server's connection tracker, carried with the downstream connection: a spliced
/// tunnel outlives the HTTP/1 connection it came from, and a drain must wait for it (up to
/// the shutdown grace) like for any connection.
#[derive(Clone, Debug)]
pub(crate) struct Tunnels(pub(crate) tokio_util::task::TaskTracker);
pub(crate) use upgrade::{is_upgrade, switches_protocols, Upgrade};
