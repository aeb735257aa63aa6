//! TLS for the HTTP API (`auth.tls`): the server certificate, and client certificates that
//! are optional but, when presented, verified against the trust bundle so that their SPIFFE
//! id can authorize writes (`auth.clientIds`).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use weft_config::ControlTls;

use crate::ControlError;

/// The rustls server config of the HTTP API: TLS 1.2 and 1.3 (ring), HTTP/2 and HTTP/1.1 by
/// ALPN, client certificates optional. The files are read once, at start.
pub(crate) fn server_config(tls: &ControlTls) -> Result<Arc<rustls::ServerConfig>, ControlError> {
    let fail = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        ControlError(format!("auth.tls: {}: {e}", what.display()))
    };
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(&tls.cert, &format!("{e:?}")))?;
    if chain.is_empty() {
        return Err(fail(&tls.cert, &"no CERTIFICATE block"));
    }
    let key =
        PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| fail(&tls.key, &format!("{e:?}")))?;
    let mut roots = RootCertStore::empty();
    let anchors = CertificateDer::pem_file_iter(&tls.trust_bundle)
        .map_err(|e| fail(&tls.trust_bundle, &format!("{e:?}")))?;
    for anchor in anchors {
        let anchor = anchor.map_err(|e| fail(&tls.trust_bundle, &format!("{e:?}")))?;
        roots.add(anchor).map_err(|e| fail(&tls.trust_bundle, &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| fail(&tls.trust_bundle, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| ControlError(format!("auth.tls: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| fail(&tls.cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
