//! Where a proxy's identity lives: [`IdentityConfig`], the file paths `weft-tls` loads.

use std::path::PathBuf;

/// Where a proxy's identity lives: three PEM files, and one more per federated trust domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The certificate chain: the leaf (with the SPIFFE ID as its URI SAN) first, then any
    /// intermediates (the issuer).
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// The trust anchors (one or more self-signed roots) that peers' chains must lead to.
    pub trust_bundle: PathBuf,
    /// Other trust domains whose peers are accepted, each with its own anchors (SPIFFE
    /// federation: a peer's chain must lead to the bundle of the trust domain its SPIFFE ID
    /// names). Empty: only peers of our own trust domain.
    pub federation: Vec<FederatedBundle>,
}

/// A federated trust domain and the file holding its trust anchors (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedBundle {
    /// The trust domain, e.g. `cluster-b.example` (the host part of its SPIFFE IDs).
    pub trust_domain: String,
    /// PEM file of the trust domain's anchors, watched and reloaded with the identity.
    pub trust_bundle: PathBuf,
}
