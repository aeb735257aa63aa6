//! [`HttpClient`]: the small HTTP/1.1 client that discovery namers use for their backends'
//! APIs: Consul's agent, and Marathon's REST API, its `/v2/events` stream and the DC/OS login.
//!
//! It always talks to one configured host and port, over plain TCP or TLS (rustls with the
//! `ring` provider, the config from [`tls_config`]), keeps idle connections for reuse
//! (hyper-util's pooled client), bounds every request by a timeout and caps response bodies,
//! so that a backend that never answers or answers too much costs a counted error and never a
//! stuck watch or unbounded memory. A streaming GET bounds only the response head: the caller
//! reads the body and caps what it buffers of it (per event, per line).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use weft_config::BackendTls;

/// The largest response body accepted by default: 16 MiB (a Consul health answer for a
/// service of several thousand instances is a few MiB; so is Marathon's `/v2/apps` of a
/// large cluster).
pub(crate) const DEFAULT_MAX_BODY: usize = 16 << 20;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// A pooled HTTP/1.1 client for one backend (`http://host:port` or `https://host:port`).
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    base: Arc<str>,
    /// `host:port`, sent as `Host` on every request.
    authority: HeaderValue,
    max_body: usize,
}

/// A whole response: status, headers and the body read to its end (at most the cap).
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A failed exchange. `Display` names the request method and path and what went wrong; it
/// never shows request headers or bodies (they may carry tokens).
#[derive(Debug)]
pub(crate) struct HttpError {
    method: Method,
    path: String,
    kind: HttpErrorKind,
}

/// What went wrong in a failed exchange; its `Display` is the part after the request line.
#[derive(Debug)]
pub(crate) enum HttpErrorKind {
    /// No complete response (or, for a stream, no response head) within the timeout.
    Timeout(Duration),
    /// The body was larger than the cap (bytes).
    TooLarge(usize),
    /// Connecting, TLS, or the HTTP exchange failed.
    Transport(String),
}

impl HttpClient {
    /// A client for `host:port`, with TLS when `tls` is set: the server certificate is
    /// verified against `tls.trust_certs` (PEM files; the system roots when empty) for
    /// `tls.common_name` (default `host`), and `tls.client_auth` is presented when set.
    ///
    /// # Errors
    /// A TLS file that cannot be read or parsed (see [`tls_config`]), a name that is not a
    /// valid server name, or a host that cannot be a `Host` header.
    pub(crate) fn new(host: &str, port: u16, tls: Option<&BackendTls>) -> Result<Self, String> {
        let tls = match tls {
            None => None,
            Some(t) => Some((t.common_name.as_deref().unwrap_or(host), tls_config(t)?)),
        };
        HttpClient::with_tls_config(host, port, tls)
    }

    /// A client for `host:port`, with TLS when `tls` is set: a config from [`tls_config`]
    /// (shared, so it is built once for several clients) and the name the server's
    /// certificate is verified for.
    ///
    /// # Errors
    /// A name that is not a valid server name, or a host that cannot be a `Host` header.
    pub(crate) fn with_tls_config(
        host: &str,
        port: u16,
        tls: Option<(&str, Arc<rustls::ClientConfig>)>,
    ) -> Result<Self, String> {
        let tls = match tls {
            None => None,
            Some((name, config)) => {
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|e| format!("invalid TLS server name `{name}`: {e}"))?;
                Some((TlsConnector::from(config), name))
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let authority = authority(host, port);
        let base = format!("{scheme}://{authority}");
        let authority = HeaderValue::try_from(authority)
            .map_err(|_| format!("host {host:?} is not a valid host name"))?;
        let connector = Connector {
            host: host.into(),
            port,
            tls,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Ok(HttpClient {
            client,
            base: base.into(),
            authority,
            max_body: DEFAULT_MAX_BODY,
        })
    }

    /// Sets the response body cap (bytes) of [`HttpClient::get`] and
    /// [`HttpClient::post_json`]; [`DEFAULT_MAX_BODY`] unless set.
    pub(crate) fn set_max_body(&mut self, max: usize) {
        self.max_body = max;
    }

    /// `http://host:port` or `https://host:port`, for status reports.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET <path_and_query>` with `headers`, the whole response within `timeout`.
    ///
    /// # Errors
    /// [`HttpError`]: transport failure, timeout, or a body over the cap. Any status is a
    /// response, not an error: callers decide what a 404 or a 500 means.
    pub(crate) async fn get(
        &self,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        self.whole(Method::GET, path_and_query, headers, Bytes::new(), timeout)
            .await
    }

    /// `POST <path_and_query>` with `headers` and `body` as `Content-Type: application/json`,
    /// the whole response within `timeout`.
    ///
    /// # Errors
    /// As [`HttpClient::get`].
    pub(crate) async fn post_json(
        &self,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let json = HeaderValue::from_static("application/json");
        let mut headers = headers.to_vec();
        headers.push((CONTENT_TYPE, json));
        let body = Bytes::from(body.to_string());
        self.whole(Method::POST, path_and_query, &headers, body, timeout)
            .await
    }

    /// `GET <path_and_query>` with `headers` for a body that streams (server-sent events):
    /// the response head within `timeout`, and the body as it arrives, with no timeout and
    /// no cap: the caller bounds what it buffers (a line, an event). Dropping the body
    /// closes the connection.
    ///
    /// # Errors
    /// [`HttpError`]: transport failure or no response head within `timeout`. Any status is a
    /// response, not an error.
    pub(crate) async fn get_stream(
        &self,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Result<Response<Incoming>, HttpError> {
        let err = |kind| HttpError::new(Method::GET, path_and_query, kind);
        let req = self
            .request(Method::GET, path_and_query, headers, Bytes::new())
            .map_err(err)?;
        tokio::time::timeout(timeout, self.head(req))
            .await
            .map_err(|_| err(HttpErrorKind::Timeout(timeout)))?
            .map_err(err)
    }

    /// One request, the whole response within `timeout`.
    async fn whole(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let err = |kind| HttpError::new(method.clone(), path_and_query, kind);
        let req = self
            .request(method.clone(), path_and_query, headers, body)
            .map_err(err)?;
        let exchange = async {
            let (parts, body) = self.head(req).await?.into_parts();
            let declared = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.max_body as u64) {
                return Err(HttpErrorKind::TooLarge(self.max_body));
            }
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        HttpErrorKind::TooLarge(self.max_body)
                    } else {
                        HttpErrorKind::Transport(error_chain(&*e))
                    }
                })?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| err(HttpErrorKind::Timeout(timeout)))?
            .map_err(err)
    }

    /// The request to send: the backend's absolute URI, `Host: host:port`, `headers`.
    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, HttpErrorKind> {
        let uri: Uri = format!("{}{path_and_query}", self.base)
            .parse()
            .map_err(|e| HttpErrorKind::Transport(format!("invalid URI: {e}")))?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, self.authority.clone());
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.body(Full::new(body))
            .map_err(|e| HttpErrorKind::Transport(e.to_string()))
    }

    /// Sends `req`; the response head.
    async fn head(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, HttpErrorKind> {
        self.client
            .request(req)
            .await
            .map_err(|e| HttpErrorKind::Transport(error_chain(&e)))
    }
}

impl HttpError {
    fn new(method: Method, path: &str, kind: HttpErrorKind) -> HttpError {
        HttpError {
            method,
            path: path.to_owned(),
            kind,
        }
    }

    /// What went wrong.
    pub(crate) fn kind(&self) -> &HttpErrorKind {
        &self.kind
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.method, self.path, self.kind)
    }
}

impl std::error::Error for HttpError {}

impl std::fmt::Display for HttpErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpErrorKind::Timeout(t) => write!(f, "no answer within {t:?} (timed out)"),
            HttpErrorKind::TooLarge(n) => write!(f, "response body larger than {n} bytes"),
            HttpErrorKind::Transport(e) => f.write_str(e),
        }
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

/// The error and its sources on one line (hyper's errors say little at the top level).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        next = cause.source();
    }
    s
}

/// The rustls client config for `tls` (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`): the
/// roots of `tls.trust_certs` (PEM files; the system roots when empty) and the client
/// certificate of `tls.client_auth` when set. `tls.common_name` is not used here: it is the
/// name each client verifies (see [`HttpClient::with_tls_config`]).
///
/// # Errors
/// A file that cannot be read, holds bad PEM or no certificate, a certificate or key rustls
/// cannot use, or no system roots when `trust_certs` is empty; as a message naming the file.
pub(crate) fn tls_config(tls: &BackendTls) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if tls.trust_certs.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A system root that rustls cannot use is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err("no system trust roots found: set tls.trustCerts".into());
        }
    } else {
        for path in &tls.trust_certs {
            let shown = path.display();
            let mut n = 0;
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read trustCerts file {shown}: {e}"))?
            {
                let cert = cert.map_err(|e| format!("bad PEM in trustCerts file {shown}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable certificate in {shown}: {e}"))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!("no certificate in trustCerts file {shown}"));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let mut config = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let (cert, key) = (auth.cert_path.display(), auth.key_path.display());
            let chain = CertificateDer::pem_file_iter(&auth.cert_path)
                .map_err(|e| format!("cannot read certPath {cert}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("bad PEM in certPath {cert}: {e}"))?;
            if chain.is_empty() {
                return Err(format!("no certificate in certPath {cert}"));
            }
            let pkey = PrivateKeyDer::from_pem_file(&auth.key_path)
                .map_err(|e| format!("cannot read a private key from keyPath {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, pkey)
                .map_err(|e| format!("client certificate {cert} with key {key}: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// === impl Connector ===

/// Dials the configured host and port (whatever the request URI says), then TLS if set.
#[derive(Clone)]
struct Connector {
    host: Arc<str>,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<TokioIo<Conn>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect((&*this.host, this.port))
                .await
                .map_err(|e| {
                    let to = authority(&this.host, this.port);
                    io::Error::new(e.kind(), format!("connect to {to}: {e}"))
                })?;
            let _ = tcp.set_nodelay(true);
            let conn = match this.tls {
                None => Conn::Plain(tcp),
                Some((connector, name)) => {
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
                    Conn::Tls(Box::new(tls))
                }
            };
            Ok(TokioIo::new(conn))
        })
    }
}

/// A connection to the backend, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use weft_test::consul::{ConsulFault, FakeConsul, Instance};

    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn client(port: u16) -> HttpClient {
        HttpClient::new("127.0.0.1", port, None).unwrap()
    }

    #[tokio::test]
    async fn gets_with_headers_and_reuses_the_connection() {
        let consul = FakeConsul::start().await;
        let c = client(consul.port());
        assert_eq!(c.base(), format!("http://127.0.0.1:{}", consul.port()));
        let token = (
            HeaderName::from_static("x-consul-token"),
            HeaderValue::from_static("t1"),
        );
        let r = c.get("/v1/agent/self", &[token], T).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers.contains_key("x-consul-index"));
        assert!(std::str::from_utf8(&r.body).unwrap().contains("\"dc1\""));
        assert_eq!(consul.tokens(), ["t1"]);
        let r = c.get("/v1/nope", &[], T).await.unwrap();
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_refused() {
        let consul = FakeConsul::start().await;
        for i in 0..20 {
            let addr = SocketAddr::from(([127, 0, 0, 1], 9000 + i));
            consul.register(Instance::new("web", &format!("web-{i}"), addr));
        }
        let mut c = client(consul.port());
        c.set_max_body(1024);
        let e = c.get("/v1/health/service/web", &[], T).await.unwrap_err();
        assert!(matches!(e.kind(), HttpErrorKind::TooLarge(1024)), "{e}");
        assert!(e.to_string().contains("larger than 1024 bytes"), "{e}");

        // Without Content-Length: a chunked body that goes on too long.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for _ in 0..100 {
                if s.write_all(b"100\r\n").await.is_err()
                    || s.write_all(&[b'x'; 256]).await.is_err()
                    || s.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
            }
        });
        let mut c = client(port);
        c.set_max_body(1024);
        let e = c.get("/", &[], T).await.unwrap_err();
        assert!(matches!(e.kind(), HttpErrorKind::TooLarge(1024)), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let consul = FakeConsul::start().await;
        consul.set_fault(Some(ConsulFault::Hang));
        let c = client(consul.port());
        let e = c
            .get("/v1/agent/self", &[], Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e.kind(), HttpErrorKind::Timeout(_)), "{e}");
        assert!(e.to_string().contains("timed out"), "{e}");
    }

    #[tokio::test]
    async fn connection_refused_is_a_transport_error() {
        let c = client(weft_test::closed_port());
        let e = c.get("/v1/agent/self", &[], T).await.unwrap_err();
        assert!(matches!(e.kind(), HttpErrorKind::Transport(_)), "{e}");
        assert!(e.to_string().starts_with("GET /v1/agent/self: "), "{e}");
    }

    /// A server that reads one request, sends it on `seen` and writes `answer`, then keeps
    /// the connection open without writing more.
    async fn one_shot(answer: &'static [u8]) -> (u16, tokio::sync::oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, seen) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = tx.send(read_request(&mut s).await);
            let _ = s.write_all(answer).await;
            std::future::pending::<()>().await;
        });
        (port, seen)
    }

    /// One request's head and body (by `content-length`), as text.
    async fn read_request(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                if buf.len() >= end + 4 + len {
                    return String::from_utf8_lossy(&buf).into_owned();
                }
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::io::AsyncReadExt::read(s, &mut chunk).await.unwrap();
            assert!(n > 0, "the client closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    #[tokio::test]
    async fn post_json_sends_the_body_as_json_with_host_and_headers() {
        let (port, seen) = one_shot(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let accept = (
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let body = serde_json::json!({"uid": "weft"});
        let r = client(port)
            .post_json("/login", &[accept], &body, T)
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));
        let req = seen.await.unwrap().to_ascii_lowercase();
        assert!(req.starts_with("post /login http/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        assert!(req.contains("content-type: application/json\r\n"), "{req}");
        assert!(req.contains("accept: application/json\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n{\"uid\":\"weft\"}"), "{req}");
    }

    #[tokio::test]
    async fn a_stream_is_bounded_by_its_head_only() {
        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
        let (port, _seen) = one_shot(head).await;
        let short = Duration::from_millis(300);
        let mut body = client(port)
            .get_stream("/v2/events", &[], short)
            .await
            .unwrap()
            .into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"hello");
        // Quiet for longer than the timeout: still open, no error.
        assert!(tokio::time::timeout(short * 2, body.frame()).await.is_err());

        // No head at all: a timeout.
        let consul = FakeConsul::start().await;
        consul.set_fault(Some(ConsulFault::Hang));
        let e = client(consul.port())
            .get_stream("/v1/agent/self", &[], short)
            .await
            .unwrap_err();
        assert!(matches!(e.kind(), HttpErrorKind::Timeout(_)), "{e}");
        assert!(e.to_string().starts_with("GET /v1/agent/self: "), "{e}");
    }

    /// A self-signed certificate for `name`, as `<name>.crt` and `<name>.key` in `dir`.
    fn self_signed(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (crt, key)
    }

    /// A TLS server answering every request `200 ok`, with `cert`; it requires a client
    /// certificate signed by `client_ca` when given.
    async fn tls_server(cert: &Path, key: &Path, client_ca: Option<&Path>) -> u16 {
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).unwrap() {
                    roots.add(c.unwrap()).unwrap();
                }
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(v)
            }
        };
        let cfg = builder.with_single_cert(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"ok")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        port
    }

    fn tls(common_name: Option<&str>, trust: &Path) -> BackendTls {
        BackendTls {
            common_name: common_name.map(str::to_owned),
            trust_certs: vec![trust.to_owned()],
            client_auth: None,
        }
    }

    #[tokio::test]
    async fn tls_verifies_the_server_and_presents_a_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = self_signed(dir.path(), "consul.test");
        let (client_crt, client_key) = self_signed(dir.path(), "weft.client");
        let port = tls_server(&crt, &key, None).await;

        let c = HttpClient::new("127.0.0.1", port, Some(&tls(Some("consul.test"), &crt))).unwrap();
        assert!(c.base().starts_with("https://"));
        let r = c.get("/v1/agent/self", &[], T).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));

        // The certificate is not for the name checked (the host, by default).
        let c = HttpClient::new("127.0.0.1", port, Some(&tls(None, &crt))).unwrap();
        let e = c.get("/", &[], T).await.unwrap_err();
        assert!(matches!(e.kind(), HttpErrorKind::Transport(_)), "{e}");

        // A server that requires a client certificate.
        let port = tls_server(&crt, &key, Some(&client_crt)).await;
        let c = HttpClient::new("127.0.0.1", port, Some(&tls(Some("consul.test"), &crt))).unwrap();
        assert!(c.get("/", &[], T).await.is_err(), "no client certificate");
        let mut with_auth = tls(Some("consul.test"), &crt);
        with_auth.client_auth = Some(weft_config::ClientAuth {
            cert_path: client_crt,
            key_path: client_key,
        });
        let c = HttpClient::new("127.0.0.1", port, Some(&with_auth)).unwrap();
        let r = c.get("/", &[], T).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }

    #[test]
    fn unusable_tls_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = HttpClient::new("h", 1, Some(&tls(None, &missing)))
            .err()
            .unwrap();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = HttpClient::new("h", 1, Some(&tls(None, &empty)))
            .err()
            .unwrap();
        assert!(e.contains("no certificate"), "{e}");
    }
}
