//! [`Identity`]: the current material, the rustls configs that read it, and the file watcher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::Resumption;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use crate::files::{IdentityFiles, State};
use crate::reload::Reloading;
use crate::verify::{self, CurrentCert, MeshClientVerifier, SpiffeServerVerifier};
use crate::{IdentityConfig, TlsError};

/// Client configs cached per expected server identity; past this the cache starts over.
const MAX_CLIENT_CONFIGS: usize = 4096;
/// ALPN offered and accepted between proxies.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A proxy's identity: SPIFFE ID, certificate chain and key, and trust bundle, reloaded live.
///
/// Cloning is cheap (an `Arc`). The configs it hands out read the current material on every
/// handshake, so after a reload new connections use the new material, and established ones
/// carry on with what they negotiated.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    server: OnceLock<Arc<ServerConfig>>,
    clients: Mutex<HashMap<String, Arc<ClientConfig>>>,
}

// === impl Identity ===

impl Identity {
    /// Loads and validates the files: the key matches the certificate, the certificate carries
    /// a SPIFFE ID, chains to the bundle and is valid now for both server and client use.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file and the problem.
    pub fn load(cfg: &IdentityConfig) -> Result<Identity, TlsError> {
        let state = Reloading::load(IdentityFiles::new(cfg, verify::provider()))?;
        Ok(Identity {
            inner: Arc::new(Inner {
                state: Arc::new(state),
                server: OnceLock::new(),
                clients: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Starts watching the three files (file-system events, and a re-check every second).
    ///
    /// New material applies to new connections within about a second. A file that is broken,
    /// mismatched, expired or not chained to the bundle is rejected, logged at `warn` and
    /// counted ([`Identity::rejected_reloads`]), and the last good material stays in use.
    /// Calling it again does nothing; the watcher stops when the last clone is dropped. Must
    /// be called inside a tokio runtime (outside one it logs a warning and does nothing).
    pub fn watch(&self) {
        self.inner.state.watch();
    }

    /// The local SPIFFE ID, e.g. `spiffe://weft.local/ns/default/sa/web`.
    pub fn spiffe_id(&self) -> String {
        self.inner.state.current().spiffe_id.clone()
    }

    /// The SNI under which clients reach this identity ([`crate::server_name_for`] of
    /// [`Identity::spiffe_id`]); the inbound side uses it to tell mesh TLS from TLS meant for
    /// the application.
    pub fn server_name(&self) -> Option<String> {
        crate::server_name_for(&self.spiffe_id()).ok()
    }

    /// The inbound rustls config: TLS 1.3 only, requires a client certificate with a SPIFFE
    /// ID in our trust domain chained to the current bundle (or in a federated trust domain,
    /// chained to that domain's bundle), ALPN `h2` and `http/1.1`, and no
    /// session resumption (every connection sees the current material).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner
            .server
            .get_or_init(|| {
                let state = &self.inner.state;
                let mut cfg = ServerConfig::builder_with_provider(state.provider().clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    // The ring provider supports TLS 1.3; this cannot fail.
                    .expect("ring supports TLS 1.3")
                    .with_client_cert_verifier(Arc::new(MeshClientVerifier(state.clone())))
                    .with_cert_resolver(Arc::new(CurrentCert(state.clone())));
                cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
                cfg.session_storage = Arc::new(NoServerSessionStorage {});
                cfg.send_tls13_tickets = 0;
                Arc::new(cfg)
            })
            .clone()
    }

    /// The outbound rustls config for a server expected to be `expected_server_id`: presents
    /// our certificate, requires the server's certificate to carry exactly that SPIFFE ID
    /// (URI SAN) and its chain to lead to the current bundle (the federated bundle when the
    /// ID's trust domain is a federated one). TLS 1.3, ALPN `h2` and
    /// `http/1.1`, no resumption. Cached per expected ID. Connect with the SNI from
    /// [`crate::server_name_for`].
    pub fn client_config(&self, expected_server_id: &str) -> Arc<ClientConfig> {
        let mut cache = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(expected_server_id) {
            return c.clone();
        }
        if cache.len() >= MAX_CLIENT_CONFIGS {
            cache.clear();
        }
        let state = &self.inner.state;
        let verifier = SpiffeServerVerifier {
            state: state.clone(),
            expected: expected_server_id.to_string(),
        };
        let mut cfg = ClientConfig::builder_with_provider(state.provider().clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            // The ring provider supports TLS 1.3; this cannot fail.
            .expect("ring supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CurrentCert(state.clone())));
        cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        cfg.resumption = Resumption::disabled();
        let cfg = Arc::new(cfg);
        cache.insert(expected_server_id.to_string(), cfg.clone());
        cfg
    }

    /// Expiry of the current leaf certificate, seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> i64 {
        self.inner.state.current().not_after
    }

    /// The current leaf certificate's serial number, as colon-separated hex.
    pub fn serial(&self) -> String {
        self.inner.state.current().serial_hex.clone()
    }

    /// How many reloads applied new material.
    pub fn reloads(&self) -> u64 {
        self.inner.state.reloads()
    }

    /// How many changed sets of files were rejected (each distinct broken content once).
    pub fn rejected_reloads(&self) -> u64 {
        self.inner.state.rejected()
    }

    /// Re-reads the files now, as the watcher does; returns whether new material applied.
    pub async fn reload_now(&self) -> bool {
        self.inner.state.check().await
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id())
            .field("not_after", &self.not_after_unix())
            .finish_non_exhaustive()
    }
}
