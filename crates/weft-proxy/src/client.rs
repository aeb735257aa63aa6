//! The HTTP client towards one endpoint: an HTTP/1 connection pool with an idle timeout and one
//! multiplexed HTTP/2 connection, both over a connector pinned to the endpoint's address that
//! originates TLS when the router's `client.tls` asks for it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use weft_tls::Alpn;

use crate::error::{ErrorKind, ProxyError};
use crate::handshake::UpstreamTlsError;
use crate::replay::ReplayBody;
use crate::tls::{ClientIo, ClientTls};

/// Client settings shared by every endpoint of a router.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientParams {
    /// Bound on establishing a TCP connection.
    pub(crate) connect_timeout: Duration,
    /// Idle HTTP/1 connections are closed after this long. Shorter than common server
    /// keep-alive timeouts (nginx 75s, Node 5s) so the proxy, not the app, closes first.
    pub(crate) pool_idle_timeout: Duration,
}

/// Connects to one fixed address whatever the request URI says, so that the URI (and with it
/// Host and `:authority`) keeps the name the client used; with TLS when configured (mesh TLS
/// to peer proxies, or TLS to a server outside the mesh offering one ALPN protocol).
///
/// Connecting and the TLS handshake are each bounded by the connect timeout (expiry: an
/// `io::ErrorKind::TimedOut` error). A failed handshake is an error wrapping an
/// `UpstreamTlsError` ([`classify_client_error`] makes it `upstream-tls`).
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<ClientTls>,
    alpn: Alpn,
}

impl Connector {
    /// Connects to `addr` within `timeout`, with `tls` if given, for HTTP/1.1 (ALPN
    /// `http/1.1` to servers outside the mesh).
    pub(crate) fn new(addr: SocketAddr, timeout: Duration, tls: Option<ClientTls>) -> Connector {
        Connector {
            addr,
            timeout,
            tls,
            alpn: Alpn::Http1,
        }
    }

    /// The same connector for an HTTP/2 client: servers outside the mesh are offered ALPN
    /// `h2` only, and must select it.
    pub(crate) fn http2(mut self) -> Connector {
        self.alpn = Alpn::H2;
        self
    }
}

impl tower::Service<Uri> for Connector {
    type Response = ClientIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<ClientIo>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (addr, timeout, tls, alpn) = (self.addr, self.timeout, self.tls.clone(), self.alpn);
        Box::pin(async move {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))??;
            // Latency over throughput: requests are small and interactive.
            stream.set_nodelay(true)?;
            match tls {
                None => Ok(ClientIo::Plain(TokioIo::new(stream))),
                Some(tls) => {
                    // The handshake is part of connecting: bounded by the same timeout, and a
                    // failure is a connect failure (the request never left).
                    let tls_stream = tokio::time::timeout(timeout, tls.handshake(stream, alpn))
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "tls handshake timeout")
                        })??;
                    Ok(ClientIo::Tls(Box::new(TokioIo::new(tls_stream))))
                }
            }
        })
    }
}

/// Sends requests to one endpoint: HTTP/2 requests over one multiplexed connection, others
/// over a pool of HTTP/1.1 connections.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    h1: Client<Connector, ReplayBody>,
    h2: Client<Connector, ReplayBody>,
}

impl Upstream {
    pub(crate) fn new(addr: SocketAddr, params: ClientParams, tls: Option<ClientTls>) -> Upstream {
        let connector = Connector::new(addr, params.connect_timeout, tls);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(params.pool_idle_timeout)
            // A pooled connection that closed before the request was written is retried on a
            // new one: the usual keep-alive race, where the request provably never left.
            .retry_canceled_requests(true);
        let h1 = builder.build(connector.clone());
        let h2 = builder.http2_only(true).build(connector.http2());
        Upstream { h1, h2 }
    }
}

impl tower::Service<Request<ReplayBody>> for Upstream {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<ReplayBody>) -> ResponseFuture {
        if req.version() == Version::HTTP_2 {
            self.h2.request(req)
        } else {
            *req.version_mut() = Version::HTTP_11;
            self.h1.request(req)
        }
    }
}

/// Maps a client failure to a proxy error kind: connect failures (TLS handshakes included) are
/// retryable (the request never left), anything after that is an upstream reset or protocol
/// error.
pub(crate) fn classify_client_error(
    err: hyper_util::client::legacy::Error,
    endpoint: SocketAddr,
) -> ProxyError {
    if let Some(tls) = find_upstream_tls(&err) {
        let detail = format!("endpoint {endpoint}: {tls}");
        return ProxyError::new(ErrorKind::UpstreamTls, detail).with_source(err);
    }
    let kind = if err.is_connect() {
        match find_io_kind(&err) {
            Some(io::ErrorKind::ConnectionRefused) => ErrorKind::ConnectionRefused,
            Some(io::ErrorKind::TimedOut) => ErrorKind::ConnectTimeout,
            _ => ErrorKind::ConnectFailed,
        }
    } else if find_hyper(&err).is_some_and(|e| e.is_parse() || e.is_parse_status()) {
        ErrorKind::UpstreamProtocol
    } else {
        ErrorKind::UpstreamReset
    };
    ProxyError::new(kind, format!("endpoint {endpoint}")).with_source(err)
}

fn find_io_kind(err: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

/// The TLS handshake failure a connector reported, wrapped in an `io::Error` somewhere in the
/// chain (`io::Error::source` skips the wrapped error itself, so each one is opened).
fn find_upstream_tls<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a UpstreamTlsError> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<UpstreamTlsError>() {
            return Some(tls);
        }
        let inner = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
        if let Some(tls) = inner.and_then(|i| i.downcast_ref::<UpstreamTlsError>()) {
            return Some(tls);
        }
        cur = e.source();
    }
    None
}

fn find_hyper<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a hyper::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        cur = e.source();
    }
    None
}
