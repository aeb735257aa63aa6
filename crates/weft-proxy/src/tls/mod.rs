//! TLS on the request path: the server side tells mesh TLS from application TLS by the
//! ClientHello's SNI ([`hello`]) and explains failed handshakes ([`handshake`]); the client
//! side originates mutual TLS to peer proxies or TLS to servers outside the mesh
//! ([`ClientTls`]). Certificates, verification and reload live in `weft-tls`; the accept
//! loop that terminates TLS is in `server`.

mod client;
pub(crate) mod handshake;
pub(crate) mod hello;

pub(crate) use client::{ClientIo, ClientTls};
