//! Opaque streams: connections that are not HTTP (routed as `/tcp/<port>`), and HTTP/1.1
//! upgrades (WebSocket, CONNECT) once the endpoint agreed to switch. Both connect through
//! the endpoint's one connect path and end in the byte copier.

mod copy;
mod tcp;
mod upgrade;

pub(crate) use tcp::proxy;
pub(crate) use upgrade::{is_upgrade, switches_protocols, Upgrade};
