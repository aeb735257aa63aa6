//! Telling mesh TLS from application TLS before terminating anything: the first TLS
//! record's ClientHello is parsed from a copy, and its SNI says whether it asks for a mesh
//! identity of our trust domain.

use weft_tls::Identity;

/// What the first TLS record of a connection holds.
#[derive(Debug)]
pub(crate) enum Hello {
    /// A ClientHello, with the SNI it asks for (if any).
    Sni(Option<String>),
    /// The start of a ClientHello that goes on in later records.
    Incomplete,
    /// Not a ClientHello.
    Invalid(rustls::Error),
}

/// Parses a copy of the first TLS record (`record`) with rustls, so the stream itself is
/// left untouched.
pub(crate) fn inspect_client_hello(record: &[u8]) -> Hello {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut reader = record;
    if let Err(e) = acceptor.read_tls(&mut reader) {
        return Hello::Invalid(rustls::Error::General(e.to_string()));
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Hello::Sni(accepted.client_hello().server_name().map(str::to_string)),
        Ok(None) => Hello::Incomplete,
        Err((e, _alert)) => Hello::Invalid(e),
    }
}

/// True if `sni` names a mesh identity of our trust domain
/// (`<sa>.<ns>.serviceaccount.identity.<trust-domain>`, see `weft_tls::server_name_for`).
pub(crate) fn is_mesh_sni(identity: &Identity, sni: &str) -> bool {
    let id = identity.spiffe_id();
    let trust_domain = id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    !trust_domain.is_empty() && sni.ends_with(&format!(".identity.{trust_domain}"))
}
