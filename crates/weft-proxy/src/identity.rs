//! The proxy's mesh identity: its certificate files, loaded and watched, and, with an
//! `identity.issuer`, obtained from and renewed by the CA (`weft identity serve`).

use std::io;
use std::time::Duration;

use weft_config::IdentitySettings;
use weft_tls::Identity;

/// How long a proxy starting with an issuer keeps asking the CA before it gives up (or
/// starts with a still valid certificate on disk).
const ISSUER_START_WAIT: Duration = Duration::from_secs(30);

/// Loads the identity of `settings` and watches its files. With an issuer, first gets a
/// certificate from the CA (see [`weft_tls::ca::obtain`]) and keeps it renewed in a
/// background task for the life of the runtime.
///
/// # Errors
/// `InvalidData` when the files do not load (naming the file), or when there is no issuer
/// answer and no valid certificate on disk.
pub(crate) async fn load(settings: &IdentitySettings) -> io::Result<Identity> {
    let invalid = |e: weft_tls::TlsError| {
        io::Error::new(io::ErrorKind::InvalidData, format!("identity: {e}"))
    };
    let renewal = match &settings.issuer {
        Some(issuer) => {
            let cfg = weft_tls::ca::RenewConfig {
                url: issuer.url(),
                ca_bundle: settings.trust_bundle.clone(),
                token_file: issuer.token_file.clone(),
                spiffe_id: issuer.spiffe_id.clone(),
                cert: settings.cert.clone(),
                key: settings.key.clone(),
            };
            let validity = weft_tls::ca::obtain(&cfg, ISSUER_START_WAIT)
                .await
                .map_err(invalid)?;
            Some((cfg, validity))
        }
        None => None,
    };
    let identity = Identity::load(&identity_config(settings)).map_err(invalid)?;
    identity.watch();
    tracing::info!(id = %identity.spiffe_id(), "identity loaded");
    if let Some((cfg, validity)) = renewal {
        tokio::spawn(weft_tls::ca::keep_renewed(cfg, Some(validity)));
    }
    Ok(identity)
}

/// The files `weft-tls` loads for the configured identity: certificate, key, our trust
/// bundle and one bundle per federated trust domain.
pub fn identity_config(settings: &IdentitySettings) -> weft_tls::IdentityConfig {
    weft_tls::IdentityConfig {
        cert: settings.cert.clone(),
        key: settings.key.clone(),
        trust_bundle: settings.trust_bundle.clone(),
        federation: settings
            .federation
            .iter()
            .map(|f| weft_tls::FederatedBundle {
                trust_domain: f.trust_domain.clone(),
                trust_bundle: f.trust_bundle.clone(),
            })
            .collect(),
    }
}
