//! HTTP/1 and HTTP/2 test clients that always dial one address.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::upstream::Echo;

/// How long one [`Client::send`] may take, body included, before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled HTTP client that sends every request to one fixed address (a weft router or an
/// upstream), whatever the request URI's authority. The authority of the URI becomes the
/// `Host` header (HTTP/1) or `:authority` (HTTP/2), which is what weft routes by.
#[derive(Clone, Debug)]
pub struct Client {
    inner: legacy::Client<FixedConnector, TestBody>,
}

/// A fully read response.
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Protocol version of the response.
    pub version: Version,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Trailers, if any arrived.
    pub trailers: Option<HeaderMap>,
}

/// A failed exchange: connect, protocol, body or timeout error.
#[derive(Debug)]
pub struct ClientError(String);

/// A request body made of scripted frames (data and optional trailers).
#[derive(Debug, Default)]
pub struct TestBody {
    frames: VecDeque<Frame<Bytes>>,
    len: Option<u64>,
}

/// A hyper-util connector that ignores the URI and dials a fixed address: what [`Client`]
/// uses, and what other clients built on hyper-util's (e.g. tonic's) can use to reach a
/// router whatever the `:authority`.
#[derive(Clone, Debug)]
pub struct FixedConnector(SocketAddr);

// === impl Client ===

impl Client {
    /// An HTTP/1.1 client (keep-alive pool) to `addr`.
    pub fn http1(addr: SocketAddr) -> Client {
        let inner = legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .build(FixedConnector(addr));
        Client { inner }
    }

    /// An HTTP/2 client with prior knowledge (h2c, no upgrade) to `addr`.
    pub fn http2(addr: SocketAddr) -> Client {
        let inner = legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .build(FixedConnector(addr));
        Client { inner }
    }

    /// A request builder for `http://<authority><path>` (GET by default).
    pub fn request(authority: &str, path: &str) -> http::request::Builder {
        Request::builder().uri(format!("http://{authority}{path}"))
    }

    /// `GET http://<authority><path>` with an empty body.
    pub async fn get(&self, authority: &str, path: &str) -> Result<TestResponse, ClientError> {
        let req = Client::request(authority, path)
            .body(TestBody::empty())
            .map_err(|e| ClientError(format!("bad request: {e}")))?;
        self.send(req).await
    }

    /// `GET` with extra request headers.
    pub async fn get_with(
        &self,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<TestResponse, ClientError> {
        let mut b = Client::request(authority, path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(TestBody::empty())
            .map_err(|e| ClientError(format!("bad request: {e}")))?;
        self.send(req).await
    }

    /// Sends `req` and reads the whole response, within 30 s.
    pub async fn send(&self, req: Request<TestBody>) -> Result<TestResponse, ClientError> {
        let exchange = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| ClientError(format!("request failed: {}", chain(&e))))?;
            let (parts, body) = resp.into_parts();
            let collected = body
                .collect()
                .await
                .map_err(|e| ClientError(format!("response body failed: {}", chain(&e))))?;
            Ok(TestResponse {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                trailers: collected.trailers().cloned(),
                body: collected.to_bytes(),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(ClientError("timed out after 30s".into())))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

// === impl TestResponse ===

impl TestResponse {
    /// The first value of a header, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a header joined with `, `.
    pub fn header_all(&self, name: &str) -> Option<String> {
        let vs: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!vs.is_empty()).then(|| vs.join(", "))
    }

    /// A trailer's value, if trailers arrived.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers.as_ref()?.get(name)?.to_str().ok()
    }

    /// `l5d-proxy-error`, set on responses weft generated itself.
    pub fn proxy_error(&self) -> Option<&str> {
        self.header("l5d-proxy-error")
    }

    /// `x-upstream`: which upstream answered.
    pub fn upstream(&self) -> Option<&str> {
        self.header("x-upstream")
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as an upstream [`Echo`]; panics with the response if it is not one.
    pub fn echo(&self) -> Echo {
        assert!(
            self.upstream().is_some(),
            "expected an upstream echo, got {} {:?} {:?}",
            self.status,
            self.headers,
            self.text()
        );
        Echo::parse(&self.body)
    }
}

// === impl ClientError ===

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

// === impl TestBody ===

impl TestBody {
    /// No body.
    pub fn empty() -> TestBody {
        TestBody {
            frames: VecDeque::new(),
            len: Some(0),
        }
    }

    /// One data frame, with a known length.
    pub fn from_bytes(data: impl Into<Bytes>) -> TestBody {
        let data = data.into();
        let len = Some(data.len() as u64);
        TestBody {
            frames: VecDeque::from([Frame::data(data)]),
            len,
        }
    }

    /// One data frame, then trailers (length unknown, so HTTP/1 uses chunked encoding).
    pub fn with_trailers(data: impl Into<Bytes>, trailers: HeaderMap) -> TestBody {
        TestBody {
            frames: VecDeque::from([Frame::data(data.into()), Frame::trailers(trailers)]),
            len: None,
        }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

// === impl FixedConnector ===

impl FixedConnector {
    /// A connector that dials `addr` (with `TCP_NODELAY`) for every URI.
    pub fn new(addr: SocketAddr) -> FixedConnector {
        FixedConnector(addr)
    }
}

impl tower_service::Service<Uri> for FixedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(TokioIo::new(s))
        })
    }
}
