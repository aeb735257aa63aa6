//! The proxy's side of the CA: request a certificate, write it, renew it at about two thirds
//! of its life.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::RootCertStore;

use crate::{spiffe, TlsError};

/// The largest response accepted, in bytes.
const MAX_RESPONSE: usize = 64 * 1024;
/// How long one request to the CA may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how a proxy gets its certificate from the CA.
#[derive(Clone, Debug)]
pub struct RenewConfig {
    /// The CA's URL, e.g. `https://127.0.0.1:4190` (the path is ignored).
    pub url: String,
    /// PEM trust anchors that the CA's serving certificate chains to (the trust bundle).
    pub ca_bundle: PathBuf,
    /// A file holding the bootstrap token (first line).
    pub token_file: PathBuf,
    /// The SPIFFE ID to request.
    pub spiffe_id: String,
    /// Where to write the chain.
    pub cert: PathBuf,
    /// Where to write the key (mode 0600).
    pub key: PathBuf,
}

/// Requests a certificate for `spiffe_id`: makes a key and CSR, and POSTs them with `token`
/// to `url` over TLS, verifying the CA against `ca_bundle` (PEM anchors).
///
/// Returns `(key PEM, chain PEM)`.
///
/// # Errors
/// On a bad URL or bundle, connection or TLS failures, a non-200 answer (its text is in the
/// error), or a chain that does not carry `spiffe_id`.
pub async fn request(
    url: &str,
    ca_bundle: &Path,
    token: &str,
    spiffe_id: &str,
) -> Result<(String, String), TlsError> {
    let (key, csr) = super::csr(spiffe_id)?;
    let body = serde_json::json!({ "csr": csr, "spiffeId": spiffe_id, "token": token });
    let chain = tokio::time::timeout(REQUEST_TIMEOUT, post(url, ca_bundle, body.to_string()))
        .await
        .map_err(|_| TlsError::new(format!("{url}: timed out")))??;
    let certs = crate::material::certs(chain.as_bytes(), Path::new(url))?;
    if spiffe::id_of(&certs[0]).as_deref() != Some(spiffe_id) {
        return Err(TlsError::new(format!(
            "{url}: the issued certificate does not carry {spiffe_id}"
        )));
    }
    Ok((key, chain))
}

async fn post(url: &str, ca_bundle: &Path, body: String) -> Result<String, TlsError> {
    let err = |what: String| TlsError::new(format!("{url}: {what}"));
    let uri: http::Uri = url.parse().map_err(|e| err(format!("bad URL: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(err("the CA URL must be https".into()));
    }
    let host = uri.host().ok_or_else(|| err("no host".into()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let mut roots = RootCertStore::empty();
    for c in crate::material::certs(
        &std::fs::read(ca_bundle)
            .map_err(|e| TlsError::file(ca_bundle, format!("cannot read: {e}")))?,
        ca_bundle,
    )? {
        roots
            .add(c)
            .map_err(|e| TlsError::file(ca_bundle, format!("bad trust anchor: {e}")))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::verify::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        // The ring provider supports TLS 1.3; this cannot fail.
        .expect("ring supports TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| err(format!("bad host: {e}")))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| err(format!("connect: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| err(format!("TLS: {e}")))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| err(format!("HTTP: {e}")))?;
    tokio::spawn(conn);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let req = http::Request::post("/v1/certificate")
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| err(format!("request: {e}")))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| err(format!("HTTP: {e}")))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| err(format!("response: {e}")))?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status != http::StatusCode::OK {
        return Err(err(format!("CA answered {status}: {}", text.trim())));
    }
    Ok(text)
}

/// Requests a certificate and writes key and chain atomically (key first); returns the
/// leaf's validity as `(not_before, not_after)` in Unix seconds.
///
/// # Errors
/// As [`request`], plus reading the token and writing the files.
pub async fn request_to_files(cfg: &RenewConfig) -> Result<(i64, i64), TlsError> {
    let token = super::read_string(&cfg.token_file)?;
    let token = token.lines().next().unwrap_or_default().trim().to_string();
    let (key, chain) = request(&cfg.url, &cfg.ca_bundle, &token, &cfg.spiffe_id).await?;
    super::write_file(&cfg.key, key.as_bytes(), true)?;
    super::write_file(&cfg.cert, chain.as_bytes(), false)?;
    validity(chain.as_bytes(), &cfg.cert)
}

/// The leaf's validity `(not_before, not_after)` in Unix seconds, of the PEM chain `pem`
/// read from `file` (named in errors).
fn validity(pem: &[u8], file: &Path) -> Result<(i64, i64), TlsError> {
    let leaf = &crate::material::certs(pem, file)?[0];
    let (_, x) = <x509_parser::certificate::X509Certificate<'_> as x509_parser::prelude::FromDer<
        '_,
        x509_parser::error::X509Error,
    >>::from_der(leaf)
    .map_err(|e| TlsError::file(file, format!("bad certificate: {e}")))?;
    Ok((
        x.validity().not_before.timestamp(),
        x.validity().not_after.timestamp(),
    ))
}

/// Gets the certificate of a proxy that starts with an issuer (`identity.issuer`): asks the
/// CA, retrying with backoff for up to `wait`. If the CA cannot be reached in that time but
/// the files already hold a certificate valid now (from an earlier run), starts with those;
/// [`keep_renewed`] then goes on asking. Returns the validity of the certificate in use.
///
/// # Errors
/// The CA could not be reached or refused (the last error), and there is no valid
/// certificate on disk to start with.
pub async fn obtain(cfg: &RenewConfig, wait: Duration) -> Result<(i64, i64), TlsError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = Duration::from_millis(250);
    loop {
        let error = match request_to_files(cfg).await {
            Ok(validity) => return Ok(validity),
            Err(e) => e,
        };
        if tokio::time::Instant::now() + backoff >= deadline {
            let on_disk = std::fs::read(&cfg.cert)
                .ok()
                .and_then(|pem| validity(&pem, &cfg.cert).ok())
                .filter(|(nb, na)| (*nb..*na).contains(&unix_now()));
            return match on_disk {
                Some(v) => {
                    tracing::warn!(%error, cert = %cfg.cert.display(), "the CA is unreachable: starting with the certificate on disk");
                    Ok(v)
                }
                None => Err(error),
            };
        }
        tracing::info!(%error, retry_in_ms = backoff.as_millis() as u64, "asking the CA for a certificate");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Keeps a certificate fresh: requests one now, then again at about two thirds of each
/// one's lifetime, writing the files atomically so an [`crate::Identity`] watching them
/// picks them up. Failures are logged and retried with backoff (1s doubling to 60s) while
/// the current certificate keeps serving. Runs until dropped.
pub async fn renew_loop(cfg: RenewConfig) {
    keep_renewed(cfg, None).await;
}

/// Like [`renew_loop`], for a certificate already in use, valid `current` (`(not_before,
/// not_after)` in Unix seconds): the first request waits until its renewal time.
pub async fn keep_renewed(cfg: RenewConfig, mut current: Option<(i64, i64)>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if let Some((not_before, not_after)) = current {
            let wait = renew_delay(not_before, not_after, unix_now(), fastrand::f64());
            tracing::info!(spiffe_id = %cfg.spiffe_id, not_after, renew_in_secs = wait.as_secs(), "certificate valid");
            tokio::time::sleep(wait).await;
        }
        match request_to_files(&cfg).await {
            Ok(validity) => {
                backoff = Duration::from_secs(1);
                tracing::info!(spiffe_id = %cfg.spiffe_id, not_after = validity.1, "certificate renewed");
                current = Some(validity);
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_secs = backoff.as_secs(), "certificate renewal failed; the current certificate stays in use");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                current = None;
            }
        }
    }
}

/// How long to wait before renewing a certificate valid from `not_before` to `not_after`:
/// until two thirds of its lifetime, less `jitter` (0..1) times a tenth of it, so proxies
/// issued certificates together do not all renew at once; at least one second.
pub(crate) fn renew_delay(not_before: i64, not_after: i64, now: i64, jitter: f64) -> Duration {
    let life = (not_after - not_before).max(0);
    let early = (life as f64 * 0.1 * jitter.clamp(0.0, 1.0)) as i64;
    let at = not_before + life * 2 / 3 - early;
    Duration::from_secs(u64::try_from(at - now).unwrap_or(0).max(1))
}

fn unix_now() -> i64 {
    rustls::pki_types::UnixTime::now().as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_two_thirds_less_up_to_a_tenth() {
        assert_eq!(renew_delay(0, 900, 0, 0.0), Duration::from_secs(600));
        assert_eq!(renew_delay(0, 900, 0, 1.0), Duration::from_secs(510));
        assert_eq!(renew_delay(0, 900, 500, 0.0), Duration::from_secs(100));
        assert_eq!(renew_delay(0, 900, 800, 0.5), Duration::from_secs(1));
    }
}
