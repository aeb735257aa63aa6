//! Connecting to one endpoint: a connector pinned to the endpoint's address that originates
//! TLS when the router's `client.tls` asks for it, client settings, and what a failed request
//! means for the proxy. The connection pool itself is in `upstream.rs`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use weft_tls::Alpn;

use crate::error::{ErrorKind, ProxyError};
use crate::handshake::UpstreamTlsError;
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

impl Connector {
    /// Opens one connection to the endpoint.
    pub(crate) async fn connect(&self) -> io::Result<ClientIo> {
        tower::Service::call(&mut self.clone(), Uri::default()).await
    }
}

/// Why a request to an endpoint got no response.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// No connection: refused, timed out, or the TLS handshake failed.
    Connect(io::Error),
    /// A new connection closed before the request was written: it never left.
    ClosedBeforeSend(hyper::Error),
    /// The connection failed after the request may have been written.
    Http(hyper::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(_) => f.write_str("connect failed"),
            ClientError::ClosedBeforeSend(_) => {
                f.write_str("connection closed before the request was sent")
            }
            ClientError::Http(_) => f.write_str("request failed"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect(e) => Some(e),
            ClientError::ClosedBeforeSend(e) | ClientError::Http(e) => Some(e),
        }
    }
}

/// Maps a client failure to a proxy error kind: connect failures (TLS handshakes included) are
/// retryable (the request never left), anything after that is an upstream reset or protocol
/// error.
pub(crate) fn classify_client_error(err: ClientError, endpoint: SocketAddr) -> ProxyError {
    if let Some(tls) = find_upstream_tls(&err) {
        let detail = format!("endpoint {endpoint}: {tls}");
        return ProxyError::new(ErrorKind::UpstreamTls, detail).with_source(err);
    }
    let kind = match &err {
        ClientError::Connect(io) => match io.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
            _ => ErrorKind::ConnectFailed,
        },
        ClientError::ClosedBeforeSend(_) => ErrorKind::ConnectFailed,
        ClientError::Http(e) if e.is_parse() || e.is_parse_status() => ErrorKind::UpstreamProtocol,
        ClientError::Http(_) => ErrorKind::UpstreamReset,
    };
    ProxyError::new(kind, format!("endpoint {endpoint}")).with_source(err)
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
