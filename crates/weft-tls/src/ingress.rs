//! [`ServerCertificates`]: TLS termination for clients outside the mesh, with the certificate
//! chosen by the ClientHello's SNI among several, reloaded live.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::material::{certs, rfc3339};
use crate::reload::{Reloading, Source};
use crate::{verify, TlsError};

/// ALPN offered to ingress clients, HTTP/2 preferred.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Certificates an ingress listener presents, picked by SNI and reloaded live.
///
/// Each certificate answers for the DNS names in its leaf's subjectAltName, exactly or by a
/// wildcard (`*.example.com` matches `a.example.com`, not `a.b.example.com`, RFC 6125
/// 6.4.3). When two certificates name the same host, the first listed wins. The first
/// certificate is the default: it answers a ClientHello without SNI or with a name no
/// certificate has. Cloning is cheap (an `Arc`).
#[derive(Clone, Debug)]
pub struct ServerCertificates {
    state: Arc<Reloading<CertFiles>>,
    config: Arc<ServerConfig>,
}

/// The `(cert, key)` pairs of PEM files and the provider that loads the keys.
struct CertFiles {
    paths: Vec<PathBuf>,
    provider: Arc<CryptoProvider>,
}

/// One validated set of certificates and the names that select them.
pub(crate) struct CertSet {
    certs: Vec<Loaded>,
    /// Exact DNS names (lower case) to the index of the first certificate naming them.
    exact: HashMap<String, usize>,
    /// Parent domains of wildcard names (`example.com` for `*.example.com`), likewise.
    wildcard: HashMap<String, usize>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    path: PathBuf,
    names: Vec<String>,
    not_after: i64,
}

/// Presents the current certificate set's choice for each ClientHello.
#[derive(Debug)]
struct SniResolver(Arc<Reloading<CertFiles>>);

// === impl ServerCertificates ===

impl ServerCertificates {
    /// Loads every `(cert, key)` pair of PEM files (a chain, leaf first, and its private key).
    ///
    /// # Errors
    /// A [`TlsError`] naming the file: unreadable, no certificate or key, a key that does not
    /// match its certificate, a certificate not valid now, or a certificate after the first
    /// with no DNS name (no SNI could ever select it).
    pub fn load(pairs: &[(PathBuf, PathBuf)]) -> Result<ServerCertificates, TlsError> {
        if pairs.is_empty() {
            return Err(TlsError::new(
                "an ingress server needs at least one certificate",
            ));
        }
        let provider = verify::provider();
        let paths = pairs
            .iter()
            .flat_map(|(c, k)| [c.clone(), k.clone()])
            .collect();
        let state = Arc::new(Reloading::load(CertFiles {
            paths,
            provider: provider.clone(),
        })?);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            // The ring provider supports TLS 1.2 and 1.3; this cannot fail.
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver(state.clone())));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(ServerCertificates {
            state,
            config: Arc::new(config),
        })
    }

    /// Starts watching the files (file-system events, and a re-check every second): new
    /// connections get new material within about a second; a broken or mismatched file is
    /// rejected, logged at `warn` and counted, and the last good set stays in use. Stops
    /// when the last clone (and the last config handed out) is dropped. Needs a tokio
    /// runtime (outside one it logs a warning and does nothing).
    pub fn watch(&self) {
        self.state.watch();
    }

    /// The rustls server config: TLS 1.2 and 1.3, no client certificate, ALPN `h2` and
    /// `http/1.1`, the certificate picked per ClientHello from the current set.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The DNS names each certificate answers for, in configuration order.
    pub fn names(&self) -> Vec<Vec<String>> {
        self.state
            .current()
            .certs
            .iter()
            .map(|c| c.names.clone())
            .collect()
    }

    /// How many reloads applied new certificates.
    pub fn reloads(&self) -> u64 {
        self.state.reloads()
    }

    /// How many changed sets of files were rejected (each distinct broken content once).
    pub fn rejected_reloads(&self) -> u64 {
        self.state.rejected()
    }

    /// Re-reads the files now, as the watcher does; returns whether new material applied.
    pub async fn reload_now(&self) -> bool {
        self.state.check().await
    }
}

// === impl CertFiles ===

impl Source for CertFiles {
    type Material = CertSet;
    const WHAT: &'static str = "ingress TLS";

    fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    fn build(&self, files: &[Vec<u8>], now: UnixTime) -> Result<CertSet, TlsError> {
        let mut set = CertSet {
            certs: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (i, (pair, bytes)) in self.paths.chunks(2).zip(files.chunks(2)).enumerate() {
            let ([cert_path, key_path], [cert, key]) = (pair, bytes) else {
                return Err(TlsError::new("ingress TLS: a certificate without its key"));
            };
            let loaded = load_pair(cert_path, key_path, cert, key, &self.provider, now)?;
            if i > 0 && loaded.names.is_empty() {
                return Err(TlsError::file(
                    cert_path,
                    "certificate has no DNS name in its subjectAltName, so no SNI can select it (only the first certificate, the default, may lack one)",
                ));
            }
            for name in &loaded.names {
                match name.strip_prefix("*.") {
                    Some(parent) => set.wildcard.entry(parent.to_string()).or_insert(i),
                    None => set.exact.entry(name.clone()).or_insert(i),
                };
            }
            set.certs.push(loaded);
        }
        Ok(set)
    }

    fn applied(&self, set: &CertSet) {
        let names: Vec<String> = set.certs.iter().map(|c| c.names.join(",")).collect();
        tracing::info!(certificates = ?names, "ingress TLS certificates reloaded");
    }

    fn expiry(&self, set: &CertSet) -> (i64, String) {
        set.certs
            .iter()
            .min_by_key(|c| c.not_after)
            .map_or((i64::MAX, String::new()), |c| {
                (c.not_after, c.path.display().to_string())
            })
    }
}

// === impl CertSet ===

impl CertSet {
    /// The index of the certificate for `sni`: an exact name, else a wildcard one label up,
    /// else the first certificate.
    pub(crate) fn pick(&self, sni: Option<&str>) -> usize {
        let Some(sni) = sni else { return 0 };
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&sni) {
            return i;
        }
        sni.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent).copied())
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.0.current();
        let i = set.pick(hello.server_name());
        tracing::trace!(sni = ?hello.server_name(), certificate = i, "ingress certificate picked");
        set.certs.get(i).map(|c| c.key.clone())
    }
}

/// Validates one certificate chain and its key.
fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    cert: &[u8],
    key: &[u8],
    provider: &CryptoProvider,
    now: UnixTime,
) -> Result<Loaded, TlsError> {
    let chain = certs(cert, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| TlsError::file(key_path, format!("no usable PEM private key: {e:?}")))?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        TlsError::file(key_path, format!("unsupported private key: {e}")).with_source(e)
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(TlsError::file(
                key_path,
                format!(
                    "private key does not match the certificate in {}",
                    cert_path.display()
                ),
            ))
        }
    }
    let (_, leaf) = X509Certificate::from_der(&certified.cert[0])
        .map_err(|e| TlsError::file(cert_path, format!("bad certificate: {e}")))?;
    let validity = leaf.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now_secs >= not_after {
        return Err(TlsError::file(
            cert_path,
            format!(
                "certificate expired at {}",
                rfc3339(not_after.max(0) as u64)
            ),
        ));
    }
    if now_secs < not_before {
        return Err(TlsError::file(
            cert_path,
            format!(
                "certificate is not valid before {}",
                rfc3339(not_before.max(0) as u64)
            ),
        ));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok(Loaded {
        key: Arc::new(certified),
        path: cert_path.to_path_buf(),
        names,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&[&str]]) -> CertSet {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, ns) in names.iter().enumerate() {
            for n in *ns {
                match n.strip_prefix("*.") {
                    Some(p) => wildcard.entry(p.to_string()).or_insert(i),
                    None => exact.entry(n.to_string()).or_insert(i),
                };
            }
        }
        CertSet {
            certs: Vec::new(),
            exact,
            wildcard,
        }
    }

    #[test]
    fn picks_exact_then_wildcard_then_default() {
        let s = set(&[
            &["a.example.com"],
            &["b.example.com", "*.example.com"],
            &["a.example.com", "*.other.org"],
        ]);
        assert_eq!(s.pick(Some("a.example.com")), 0, "first listed wins");
        assert_eq!(s.pick(Some("B.Example.COM.")), 1, "case and root dot");
        assert_eq!(s.pick(Some("c.example.com")), 1, "wildcard");
        assert_eq!(s.pick(Some("x.other.org")), 2);
        assert_eq!(s.pick(Some("x.y.example.com")), 0, "one label only");
        assert_eq!(s.pick(Some("example.com")), 0, "no bare domain");
        assert_eq!(s.pick(Some("unknown.test")), 0);
        assert_eq!(s.pick(None), 0);
    }
}
