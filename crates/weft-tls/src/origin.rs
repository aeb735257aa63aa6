//! [`Origination`]: TLS from the proxy to servers outside the mesh, as a browser would do it:
//! the server's certificate is verified for the server name against the system's trust store
//! or configured roots, and no client certificate is presented.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::{ClientConfig, RootCertStore};

use crate::material::certs;
use crate::reload::{Reloading, Source};
use crate::{verify, TlsError};

/// The application protocols a connection offers over ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// None: an opaque TCP stream.
    None,
    /// `http/1.1` only.
    Http1,
    /// `h2` only: a server that does not agree fails the handshake (RFC 9113 3.2).
    H2,
    /// `h2`, else `http/1.1`: the server picks, and the client learns which it speaks.
    H2OrHttp1,
}

/// TLS client configs for servers outside the mesh, one per [`Alpn`], sharing one trust
/// store. Cloning is cheap.
#[derive(Clone)]
pub struct Origination {
    roots: Roots,
}

#[derive(Clone)]
enum Roots {
    /// The system's trust store, read once.
    System(Configs),
    /// Configured root files, reloaded when they change.
    Files(Arc<Reloading<RootFiles>>),
}

/// A client config per [`Alpn`] offer, in the order `None`, `Http1`, `H2`, `H2OrHttp1`.
type Configs = [Arc<ClientConfig>; 4];

/// Configured trust roots: PEM files of self-signed certificates.
struct RootFiles {
    paths: Vec<PathBuf>,
    provider: Arc<CryptoProvider>,
}

// === impl Origination ===

impl Origination {
    /// Configs trusting the roots in `trust_roots` (PEM files), or, when it is empty, the
    /// operating system's trust store (`rustls-native-certs`: on Linux the OpenSSL locations
    /// such as Debian's `/etc/ssl/certs`, overridden by `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    /// The system store is read once per process.
    ///
    /// TLS 1.2 and 1.3; SNI is sent for DNS names (not for IP addresses); the certificate
    /// must be valid for the name the connection asks for; sessions are resumed from an
    /// in-memory cache.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable certificate, or a system store with no
    /// usable root.
    pub fn load(trust_roots: &[PathBuf]) -> Result<Origination, TlsError> {
        let provider = verify::provider();
        let roots = if trust_roots.is_empty() {
            Roots::System(configs(system_roots()?, &provider)?)
        } else {
            Roots::Files(Arc::new(Reloading::load(RootFiles {
                paths: trust_roots.to_vec(),
                provider,
            })?))
        };
        Ok(Origination { roots })
    }

    /// Watches configured root files and applies changes to new connections (as
    /// [`crate::Identity::watch`] does); nothing to do for the system store.
    pub fn watch(&self) {
        if let Roots::Files(roots) = &self.roots {
            roots.watch();
        }
    }

    /// The client config offering `alpn`, trusting the current roots.
    pub fn client_config(&self, alpn: Alpn) -> Arc<ClientConfig> {
        let i = match alpn {
            Alpn::None => 0,
            Alpn::Http1 => 1,
            Alpn::H2 => 2,
            Alpn::H2OrHttp1 => 3,
        };
        match &self.roots {
            Roots::System(configs) => configs[i].clone(),
            Roots::Files(roots) => roots.current()[i].clone(),
        }
    }
}

impl std::fmt::Debug for Origination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots: &dyn std::fmt::Debug = match &self.roots {
            Roots::System(_) => &"system",
            Roots::Files(files) => files,
        };
        f.debug_struct("Origination").field("roots", roots).finish()
    }
}

/// The system's trust store, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static SYSTEM: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "the system's trust store has no usable root certificate ({}): install the CA certificates package, or set client.tls.trustRoots",
                    if errors.is_empty() { "it is empty".to_string() } else { errors.join("; ") }
                ));
            }
            tracing::debug!(roots = added, "system trust store loaded");
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(TlsError::new)
}

/// A config per ALPN offer, verifying servers with webpki against `roots`, presenting no
/// client certificate.
fn configs(roots: Arc<RootCertStore>, provider: &Arc<CryptoProvider>) -> Result<Configs, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::new(format!("unusable trust roots: {e}")))?;
    let config = |alpn: &[&[u8]]| {
        let mut cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            // The ring provider supports TLS 1.2 and 1.3; this cannot fail.
            .expect("ring supports the default TLS versions")
            .with_webpki_verifier(verifier.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    };
    Ok([
        config(&[]),
        config(&[b"http/1.1"]),
        config(&[b"h2"]),
        config(&[b"h2", b"http/1.1"]),
    ])
}

// === impl RootFiles ===

impl Source for RootFiles {
    type Material = Configs;
    const WHAT: &'static str = "trust roots";

    fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    fn build(&self, files: &[Vec<u8>], _now: UnixTime) -> Result<Configs, TlsError> {
        let mut roots = RootCertStore::empty();
        for (path, bytes) in self.paths.iter().zip(files) {
            for c in certs(bytes, path)? {
                roots.add(c).map_err(|e| {
                    TlsError::file(path, format!("bad trust anchor: {e}")).with_source(e)
                })?;
            }
        }
        configs(Arc::new(roots), &self.provider)
    }

    fn applied(&self, _: &Configs) {
        tracing::info!(files = ?self.paths, "trust roots reloaded");
    }

    fn expiry(&self, _: &Configs) -> (i64, String) {
        // Roots are trusted as they are; their expiry is not ours to warn about.
        (i64::MAX, String::new())
    }
}
