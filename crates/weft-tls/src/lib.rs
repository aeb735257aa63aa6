//! weft's TLS material: the workload identity (SPIFFE IDs, certificates and trust bundles
//! loaded from PEM files and reloaded live) with the rustls configs for mutual TLS between
//! proxies; the configs for TLS to servers outside the mesh ([`Origination`]) and for TLS
//! termination of clients outside it ([`ServerCertificates`], picked by SNI); plain words for
//! handshake failures ([`explain`]); and a small built-in certificate authority ([`ca`]).
//!
//! It owns the TLS material and its validation; it does not own listeners, protocol detection
//! or connection pools (`weft-proxy` wraps its configs in `tokio_rustls` acceptors and
//! connectors). Everything uses rustls with the `ring` provider; there is no hand-written
//! cryptography.

pub mod ca;
mod config;
mod error;
mod explain;
mod files;
mod identity;
mod ingress;
mod material;
mod origin;
mod reload;
mod spiffe;
mod verify;

pub use config::{FederatedBundle, IdentityConfig};
pub use error::TlsError;
pub use explain::{cert_problem, explain, CertProblem};
pub use identity::Identity;
pub use ingress::ServerCertificates;
pub use origin::{Alpn, Origination};
pub use spiffe::server_name_for;

/// After a handshake: the peer's SPIFFE ID from its leaf certificate's URI SAN, if it has
/// exactly one valid `spiffe://` URI.
///
/// On the inbound side this is the client's identity (our server config requires one).
pub fn peer_spiffe_id(conn: &rustls::CommonState) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    spiffe::id_of(leaf)
}
