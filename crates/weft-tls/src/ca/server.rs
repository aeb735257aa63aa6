//! `weft identity serve`: issues certificates over HTTPS to callers with a bootstrap token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::TlsError;

/// The largest request body accepted, in bytes.
const MAX_BODY: usize = 16 * 1024;
/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the CA's own serving certificate is valid (it is re-issued at 70%).
const SERVING_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Settings of the CA server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The CA directory made by [`super::init`].
    pub issuer_dir: PathBuf,
    /// Where to listen (port 0 for an ephemeral port).
    pub addr: SocketAddr,
    /// Bootstrap tokens, one per line: `TOKEN` (any identity in the trust domain) or
    /// `TOKEN SPIFFE-ID` (only that identity). Empty lines and `#` comments are ignored.
    pub token_file: PathBuf,
    /// Lifetime of issued certificates ([`super::DEFAULT_LIFETIME`] is 24h).
    pub lifetime: Duration,
    /// DNS names and IP addresses the CA's own serving certificate is valid for (what clients
    /// put in the URL).
    pub server_names: Vec<String>,
}

/// A running CA server; dropping it stops it.
#[derive(Debug)]
pub struct CaServer {
    local_addr: SocketAddr,
    stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Stats {
    issued: AtomicU64,
    refused: AtomicU64,
}

struct Shared {
    cfg: ServeConfig,
    tokens: Vec<(ring::digest::Digest, Option<String>)>,
    stats: Arc<Stats>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssueRequest {
    csr: String,
    spiffe_id: String,
    token: String,
}

/// Starts the CA server: binds `cfg.addr`, issues its own serving certificate from the
/// issuer, and answers `POST /v1/certificate` with JSON `{"csr", "spiffeId", "token"}` with
/// the PEM chain (leaf, issuer) of a certificate for `spiffeId`.
///
/// Answers: 200 with the chain; 400 for a malformed request, CSR or ID; 403 for a bad token;
/// 404/405 for other paths and methods; 413 for a body over 16 KiB.
///
/// # Errors
/// When the CA directory or the token file cannot be used, or the address cannot be bound.
pub async fn serve(cfg: ServeConfig) -> Result<CaServer, TlsError> {
    let tokens = read_tokens(&cfg.token_file)?;
    let resolver = Arc::new(ServingCert::new(&cfg)?);
    let mut tls = rustls::ServerConfig::builder_with_provider(crate::verify::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        // The ring provider supports TLS 1.3; this cannot fail.
        .expect("ring supports TLS 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| TlsError::new(format!("cannot listen on {}: {e}", cfg.addr)))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| TlsError::new(format!("no local address: {e}")))?;
    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared {
        cfg,
        tokens,
        stats: stats.clone(),
    });
    tracing::info!(%local_addr, "identity CA listening");
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(error) => {
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "CA handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "CA handshake timed out");
                        return;
                    }
                };
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
                });
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await
                {
                    tracing::debug!(%peer, %error, "CA connection error");
                }
            });
        }
    });
    Ok(CaServer {
        local_addr,
        stats,
        task,
    })
}

impl CaServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Certificates issued so far.
    pub fn issued(&self) -> u64 {
        self.stats.issued.load(Ordering::Relaxed)
    }

    /// Requests refused so far (bad token, bad request).
    pub fn refused(&self) -> u64 {
        self.stats.refused.load(Ordering::Relaxed)
    }

    /// Waits until the server stops (it only stops on a panic or when aborted).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for CaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let res = issue_for(shared, req).await;
    match res {
        Ok(chain) => {
            shared.stats.issued.fetch_add(1, Ordering::Relaxed);
            let mut resp = Response::new(Full::new(Bytes::from(chain)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-pem-file"),
            );
            resp
        }
        Err((status, reason)) => {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(status = status.as_u16(), %reason, "certificate request refused");
            let mut resp = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
            *resp.status_mut() = status;
            resp
        }
    }
}

async fn issue_for(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<String, (StatusCode, String)> {
    if req.uri().path() != "/v1/certificate" {
        return Err((StatusCode::NOT_FOUND, "not found".into()));
    }
    if req.method() != Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "use POST".into()));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")))?
        .to_bytes();
    let ask: IssueRequest = serde_json::from_slice(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))?;
    if !token_allows(&shared.tokens, &ask.token, &ask.spiffe_id) {
        return Err((StatusCode::FORBIDDEN, "bad token".into()));
    }
    let cfg = shared.cfg.clone();
    let id = ask.spiffe_id.clone();
    let chain = tokio::task::spawn_blocking(move || {
        super::issue(&cfg.issuer_dir, &ask.csr, &ask.spiffe_id, cfg.lifetime)
    })
    .await
    .map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("issuer task: {e}"),
        )
    })?
    .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    tracing::info!(spiffe_id = %id, "certificate issued");
    Ok(chain)
}

/// Compares SHA-256 digests, so the comparison's timing says nothing useful about the token.
fn token_allows(tokens: &[(ring::digest::Digest, Option<String>)], token: &str, id: &str) -> bool {
    let given = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    tokens
        .iter()
        .any(|(t, only)| t.as_ref() == given.as_ref() && only.as_deref().is_none_or(|o| o == id))
}

fn read_tokens(
    path: &std::path::Path,
) -> Result<Vec<(ring::digest::Digest, Option<String>)>, TlsError> {
    let text = super::read_string(path)?;
    let tokens: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let token = parts.next().unwrap_or_default();
            (
                ring::digest::digest(&ring::digest::SHA256, token.as_bytes()),
                parts.next().map(str::to_string),
            )
        })
        .collect();
    if tokens.is_empty() {
        return Err(TlsError::file(path, "no tokens"));
    }
    Ok(tokens)
}

// === impl ServingCert ===

/// The CA's own serving certificate, issued by the issuer and re-issued at 70% of its life.
#[derive(Debug)]
struct ServingCert {
    cfg: ServeConfig,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<(Arc<CertifiedKey>, u64)>,
}

impl ServingCert {
    fn new(cfg: &ServeConfig) -> Result<ServingCert, TlsError> {
        let provider = crate::verify::provider();
        let first = make_serving(cfg, &provider)?;
        Ok(ServingCert {
            cfg: cfg.clone(),
            provider,
            current: Mutex::new(first),
        })
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if UnixTime::now().as_secs() >= cur.1 {
            match make_serving(&self.cfg, &self.provider) {
                Ok(next) => *cur = next,
                Err(error) => tracing::warn!(%error, "cannot renew the CA's serving certificate"),
            }
        }
        Some(cur.0.clone())
    }
}

/// Issues a serving certificate; returns it and when to renew it (Unix seconds).
fn make_serving(
    cfg: &ServeConfig,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(Arc<CertifiedKey>, u64), TlsError> {
    let dir = &cfg.issuer_dir;
    let issuer_path = dir.join(super::ISSUER_CERT);
    let issuer_pem = super::read_string(&issuer_path)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &issuer_pem,
        super::read_key(&dir.join(super::ISSUER_KEY))?,
    )
    .map_err(|e| TlsError::file(&issuer_path, format!("unusable issuer: {e}")))?;
    let key = rcgen::KeyPair::generate().map_err(super::rcgen_err)?;
    let mut params = rcgen::CertificateParams::new(cfg.server_names.clone())
        .map_err(|e| TlsError::new(format!("bad CA server name: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "weft identity CA");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(super::serial()?);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - super::BACKDATE;
    params.not_after = now + SERVING_LIFETIME;
    let cert = params.signed_by(&key, &issuer).map_err(super::rcgen_err)?;
    let mut chain = vec![cert.der().clone()];
    chain.extend(crate::material::certs(issuer_pem.as_bytes(), &issuer_path)?);
    let key_der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
        .map_err(|e| TlsError::new(format!("serving key: {e:?}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::new(format!("serving key: {e}")))?;
    let renew_at = UnixTime::now().as_secs() + SERVING_LIFETIME.as_secs() * 7 / 10;
    Ok((Arc::new(CertifiedKey::new(chain, signing)), renew_at))
}
