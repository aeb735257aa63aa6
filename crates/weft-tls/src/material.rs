//! Loading and validating one set of identity files: pure over the files' bytes and a time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, RootCertStore};

use crate::{spiffe, IdentityConfig, TlsError};

/// One validated set of identity material.
pub(crate) struct Material {
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
    /// The anchors of each federated trust domain, by trust domain name.
    pub(crate) federated: HashMap<String, Anchors>,
    pub(crate) spiffe_id: String,
    pub(crate) trust_domain: String,
    pub(crate) not_after: i64,
    pub(crate) serial_hex: String,
}

/// The trust anchors of one federated trust domain, and a verifier of client chains to them.
pub(crate) struct Anchors {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
}

impl Material {
    /// Validates the bytes of the `[cert, key, bundle]` files (and one bundle per
    /// `cfg.federation` entry, in order, in `federated`): the key matches the leaf
    /// certificate, the leaf carries a SPIFFE ID, and the chain leads to the bundle and is
    /// valid at `now` for server and client use.
    pub(crate) fn build(
        cfg: &IdentityConfig,
        [cert, key, bundle]: [&[u8]; 3],
        federated: &[Vec<u8>],
        provider: &Arc<CryptoProvider>,
        now: UnixTime,
    ) -> Result<Material, TlsError> {
        let chain = certs(cert, &cfg.cert)?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| TlsError::file(&cfg.key, format!("no usable PEM private key: {e:?}")))?;
        let roots = root_store(bundle, &cfg.trust_bundle)?;
        let federated = cfg
            .federation
            .iter()
            .zip(federated)
            .map(|(f, bytes)| {
                let roots = root_store(bytes, &f.trust_bundle)?;
                let client_verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| {
                            TlsError::file(&f.trust_bundle, format!("unusable trust bundle: {e}"))
                        })?;
                let anchors = Anchors {
                    roots,
                    client_verifier,
                };
                Ok((f.trust_domain.clone(), anchors))
            })
            .collect::<Result<HashMap<_, _>, TlsError>>()?;
        let signing = provider.key_provider.load_private_key(key).map_err(|e| {
            TlsError::file(&cfg.key, format!("unsupported private key: {e}")).with_source(e)
        })?;
        let certified = CertifiedKey::new(chain.clone(), signing);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => {
                return Err(TlsError::file(
                    &cfg.key,
                    format!(
                        "private key does not match the certificate in {}",
                        cfg.cert.display()
                    ),
                ))
            }
        }
        let info = spiffe::cert_info(&chain[0]).map_err(|e| TlsError::file(&cfg.cert, e))?;
        let spiffe_id = info.spiffe_id.ok_or_else(|| {
            TlsError::file(
                &cfg.cert,
                "certificate has no SPIFFE ID (exactly one spiffe:// URI SAN)",
            )
        })?;
        let trust_domain = spiffe::trust_domain(&spiffe_id)
            .map_err(|e| TlsError::file(&cfg.cert, e.problem()))?
            .to_string();

        if let Some(f) = cfg
            .federation
            .iter()
            .find(|f| f.trust_domain == trust_domain)
        {
            return Err(TlsError::file(
                &f.trust_bundle,
                format!("federates with {trust_domain:?}, the proxy's own trust domain"),
            ));
        }
        let leaf = ParsedCertificate::try_from(&chain[0])
            .map_err(|e| TlsError::file(&cfg.cert, format!("bad certificate: {e}")))?;
        verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &roots,
            &chain[1..],
            now,
            provider.signature_verification_algorithms.all,
        )
        .map_err(|e| chain_error(cfg, &e, "server"))?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| {
                    TlsError::file(&cfg.trust_bundle, format!("unusable trust bundle: {e}"))
                })?;
        client_verifier
            .verify_client_cert(&chain[0], &chain[1..], now)
            .map_err(|e| chain_error(cfg, &e, "client"))?;

        Ok(Material {
            certified: Arc::new(certified),
            roots,
            client_verifier,
            federated,
            spiffe_id,
            trust_domain,
            not_after: info.not_after,
            serial_hex: info.serial_hex,
        })
    }

    /// The anchors a peer whose SPIFFE ID is in `trust_domain` must chain to: ours for our
    /// own trust domain, the federated bundle for a federated one, none otherwise.
    pub(crate) fn anchors_for(
        &self,
        trust_domain: &str,
    ) -> Option<(&Arc<RootCertStore>, &Arc<dyn ClientCertVerifier>)> {
        if trust_domain == self.trust_domain {
            return Some((&self.roots, &self.client_verifier));
        }
        let a = self.federated.get(trust_domain)?;
        Some((&a.roots, &a.client_verifier))
    }
}

/// The trust anchors in a bundle file's `bytes` (at least one certificate).
fn root_store(bytes: &[u8], path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(bytes, path)? {
        roots
            .add(c)
            .map_err(|e| TlsError::file(path, format!("bad trust anchor: {e}")).with_source(e))?;
    }
    Ok(Arc::new(roots))
}

/// All PEM certificates in `bytes`, at least one.
pub(crate) fn certs(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(path, format!("bad PEM: {e:?}")))?;
    if certs.is_empty() {
        return Err(TlsError::file(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn chain_error(cfg: &IdentityConfig, e: &rustls::Error, role: &str) -> TlsError {
    let problem = match e {
        rustls::Error::InvalidCertificate(CertificateError::Expired) => {
            "certificate has expired".to_string()
        }
        rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { time, not_after }) => {
            format!(
                "certificate expired at {} (now {})",
                rfc3339(not_after.as_secs()),
                rfc3339(time.as_secs())
            )
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "certificate is not valid yet".to_string(),
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "certificate does not chain to the trust bundle {}",
            cfg.trust_bundle.display()
        ),
        other => format!("certificate is not valid for {role} authentication: {other}"),
    };
    TlsError::file(&cfg.cert, problem)
}

/// Seconds since the Unix epoch as RFC 3339 UTC, for messages.
pub(crate) fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
