//! The identity's files as a reloadable source: read together, validated into
//! [`Material`], and shared (as [`State`]) with the rustls hooks that read the current one.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;

use crate::material::Material;
use crate::reload::{Reloading, Source};
use crate::{IdentityConfig, TlsError};

/// The identity's reloading material, shared with the rustls hooks that read it.
pub(crate) type State = Reloading<IdentityFiles>;

/// The files of an identity (certificate, key, bundle, federated bundles) and the provider
/// that validates them.
pub(crate) struct IdentityFiles {
    cfg: IdentityConfig,
    /// cert, key, bundle, then one bundle per federated trust domain.
    paths: Vec<PathBuf>,
    pub(crate) provider: Arc<CryptoProvider>,
}

impl IdentityFiles {
    pub(crate) fn new(cfg: &IdentityConfig, provider: Arc<CryptoProvider>) -> IdentityFiles {
        IdentityFiles {
            cfg: cfg.clone(),
            paths: [&cfg.cert, &cfg.key, &cfg.trust_bundle]
                .into_iter()
                .chain(cfg.federation.iter().map(|f| &f.trust_bundle))
                .cloned()
                .collect(),
            provider,
        }
    }
}

impl Source for IdentityFiles {
    type Material = Material;
    const WHAT: &'static str = "identity";

    fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    fn build(&self, files: &[Vec<u8>], now: UnixTime) -> Result<Material, TlsError> {
        let [cert, key, bundle, federated @ ..] = files else {
            return Err(TlsError::new("identity: expected three files"));
        };
        Material::build(
            &self.cfg,
            [cert, key, bundle],
            federated,
            &self.provider,
            now,
        )
    }

    fn applied(&self, m: &Material) {
        tracing::info!(
            spiffe_id = %m.spiffe_id,
            serial = %m.serial_hex,
            not_after = m.not_after,
            "identity reloaded"
        );
    }

    fn expiry(&self, m: &Material) -> (i64, String) {
        (m.not_after, m.spiffe_id.clone())
    }
}

impl State {
    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.source().provider
    }
}
