//! The namer's HTTP/1.1 client to Marathon's REST API: one connection per request (a
//! refresh at most every 100 ms, and one long-lived event stream), plain or TLS (rustls with
//! the ring provider), a timeout over each exchange and a cap on response bodies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use weft_config::{BackendTls, MarathonConfig};

use super::auth::Auth;

/// The most bytes of a `/v2/apps` body read (16 MiB); a bigger one is refused as an error.
pub(crate) const MAX_BODY: usize = 16 << 20;

/// How long one exchange may take: connect, TLS, request and the whole `/v2/apps` body, or
/// the event stream's response head.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The path and query of the apps listing with their tasks embedded.
pub(crate) const APPS_PATH: &str = "/v2/apps?embed=apps.tasks";
/// The path of the event stream.
pub(crate) const EVENTS_PATH: &str = "/v2/events";

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Where Marathon is and how to talk to it.
pub(crate) struct Client {
    endpoint: Endpoint,
    uri_prefix: String,
    auth: Auth,
    pub(crate) timeout: Duration,
}

/// A server to connect to: host, port, and TLS if any.
pub(crate) struct Endpoint {
    host: String,
    port: u16,
    authority: HeaderValue,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Client {
    /// A client for `config` sending `auth`.
    ///
    /// # Errors
    /// A TLS file that does not load, a host that is not a valid name, as a message.
    pub(crate) fn new(config: &MarathonConfig, auth: Auth) -> Result<Client, String> {
        let tls = match &config.tls {
            None => None,
            Some(t) => Some((
                t.common_name.as_deref().unwrap_or(&config.host),
                Arc::new(tls_config(t)?),
            )),
        };
        Ok(Client {
            endpoint: Endpoint::new(&config.host, config.port, tls)?,
            uri_prefix: config.uri_prefix.clone(),
            auth,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The backend as shown on `/namers.json`, e.g. `http://marathon.mesos:80`.
    pub(crate) fn backend(&self) -> String {
        format!("{}{}", self.endpoint, self.uri_prefix)
    }

    /// `GET /v2/apps?embed=apps.tasks`: the whole body, at most [`MAX_BODY`] bytes.
    ///
    /// # Errors
    /// Unreachable, timed out, a status other than 200, an oversized body; the message
    /// starts with the request line.
    pub(crate) async fn apps(&self) -> Result<Bytes, String> {
        let exchange = async {
            let body = self.get(APPS_PATH, "application/json").await?;
            let body = Limited::new(body, MAX_BODY).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("response body larger than {MAX_BODY} bytes")
                } else {
                    format!("reading the response body: {e}")
                }
            })?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
            .map_err(|e: String| format!("GET {}{APPS_PATH}: {e}", self.uri_prefix))
    }

    /// `GET /v2/events` with `Accept: text/event-stream`: the open stream's body.
    ///
    /// # Errors
    /// As [`Client::apps`], for the response head only.
    pub(crate) async fn events(&self) -> Result<Incoming, String> {
        tokio::time::timeout(self.timeout, self.get(EVENTS_PATH, "text/event-stream"))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
            .map_err(|e| format!("GET {}{EVENTS_PATH}: {e}", self.uri_prefix))
    }

    async fn get(&self, path: &str, accept: &'static str) -> Result<Incoming, String> {
        let auth = self.auth.header().await?;
        let mut req = Request::get(format!("{}{path}", self.uri_prefix))
            .header(ACCEPT, accept)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("bad request: {e}"))?;
        if let Some(value) = auth {
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let resp = self.endpoint.send(req).await?;
        match resp.status() {
            StatusCode::OK => Ok(resp.into_body()),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                self.auth.rejected().await;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default();
                Err(format!("status {s}{challenge}: {}", self.auth.hint()))
            }
            s => Err(format!("status {s}")),
        }
    }
}

impl Endpoint {
    /// `host:port`, with TLS verifying `tls.0` as the server name when given.
    ///
    /// # Errors
    /// A host that cannot be a `Host` header, a server name that is not a DNS name or IP.
    pub(crate) fn new(
        host: &str,
        port: u16,
        tls: Option<(&str, Arc<rustls::ClientConfig>)>,
    ) -> Result<Endpoint, String> {
        let authority = HeaderValue::try_from(authority(host, port))
            .map_err(|_| format!("host {host:?} is not a valid host name"))?;
        let tls = match tls {
            None => None,
            Some((name, config)) => {
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|e| format!("tls: {name:?} is not a server name: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(config), name))
            }
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            authority,
            tls,
        })
    }

    /// Sends `req` (its `Host` set here) on a new connection; the response head.
    ///
    /// # Errors
    /// Connecting, the TLS handshake, or the exchange failed, as a message.
    pub(crate) async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, String> {
        let io = self.connect().await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "marathon connection ended");
            }
        });
        req.headers_mut().insert(HOST, self.authority.clone());
        send.send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))
    }

    async fn connect(&self) -> Result<Box<dyn Io>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect to {}: {e}", authority(&self.host, self.port)))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                Ok(Box::new(tls))
            }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}", authority(&self.host, self.port))
    }
}

/// `host:port`, with brackets around an IPv6 literal.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The rustls client config of `tls` (ring provider, HTTP/1.1 by ALPN).
///
/// # Errors
/// A file that does not load, no system roots, as a message.
pub(crate) fn tls_config(tls: &BackendTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if tls.trust_certs.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if roots.is_empty() {
            return Err("tls: no system CA certificates found; set tls.trustCerts".into());
        }
    } else {
        for path in &tls.trust_certs {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("tls.trustCerts {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("tls.trustCerts {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("tls.trustCerts {}: {e}", path.display()))?;
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots);
    let mut config = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(&ca.cert_path)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls.clientAuth.certPath {}: {e}", ca.cert_path.display()))?;
            let key = PrivateKeyDer::from_pem_file(&ca.key_path)
                .map_err(|e| format!("tls.clientAuth.keyPath {}: {e}", ca.key_path.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("tls.clientAuth: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
