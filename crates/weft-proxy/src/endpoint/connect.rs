//! The one way to reach an endpoint: a TCP connection within the connect timeout, then TLS
//! when the bound client asks for it (mutual TLS to a peer proxy, or TLS to a server outside
//! the mesh), with every failure classified as the proxy error it is. HTTP/1, HTTP/2, opaque
//! TCP and upgrades (WebSocket, CONNECT) all connect here, so none of them can skip TLS.
//!
//! Also here: what a failed exchange on a connection means ([`classify_send`]), the other
//! half of telling the proxy's errors apart.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use weft_tls::Alpn;

use crate::error::{ErrorKind, Fault, ProxyError, Retry};
use crate::tls::handshake::UpstreamTlsError;
use crate::tls::{ClientIo, ClientTls};

/// Connects to one endpoint's address, whatever the request's authority says (so Host and
/// `:authority` keep the name the client used).
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<ClientTls>,
    /// Unit tests: an in-memory server instead of a socket.
    #[cfg(test)]
    memory: Option<memory::Dial>,
}

impl Connector {
    /// Connects to `addr` within `timeout` (TCP, then the TLS handshake, each bounded by it),
    /// with `tls` if given.
    pub(crate) fn new(addr: SocketAddr, timeout: Duration, tls: Option<ClientTls>) -> Connector {
        Connector {
            addr,
            timeout,
            tls,
            #[cfg(test)]
            memory: None,
        }
    }

    /// The address it connects to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens one connection offering `alpn` to servers outside the mesh.
    ///
    /// # Errors
    /// `connection-refused`, `connect-timeout` (TCP or TLS handshake slower than the connect
    /// timeout), `connect-failed`, or `upstream-tls` naming the server and why. All are the
    /// upstream's fault and [`Retry::Unsent`]: the request never left.
    pub(crate) async fn connect(&self, alpn: Alpn) -> Result<ClientIo, ProxyError> {
        #[cfg(test)]
        if let Some(dial) = &self.memory {
            return dial.connect(self.addr);
        }
        let addr = self.addr;
        let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                let kind = match e.kind() {
                    io::ErrorKind::ConnectionRefused => ErrorKind::ConnectionRefused,
                    _ => ErrorKind::ConnectFailed,
                };
                return Err(ProxyError::new(kind, format!("endpoint {addr}")).with_source(e));
            }
            Err(_) => return Err(timed_out(addr, self.timeout, "connect")),
        };
        // Latency over throughput: requests are small and interactive.
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(ClientIo::Plain(stream));
        };
        // The handshake is part of connecting: bounded by the same timeout, and a failure is
        // a connect failure (the request never left).
        match tokio::time::timeout(self.timeout, tls.handshake(stream, alpn)).await {
            Ok(Ok(stream)) => Ok(ClientIo::Tls(Box::new(stream))),
            Ok(Err(e)) => Err(tls_failed(addr, e)),
            Err(_) => Err(timed_out(addr, self.timeout, "TLS handshake")),
        }
    }
}

fn timed_out(addr: SocketAddr, limit: Duration, what: &str) -> ProxyError {
    ProxyError::new(
        ErrorKind::ConnectTimeout,
        format!("endpoint {addr}: {what} took longer than {limit:?}"),
    )
}

fn tls_failed(addr: SocketAddr, e: UpstreamTlsError) -> ProxyError {
    ProxyError::new(ErrorKind::UpstreamTls, format!("endpoint {addr}: {e}")).with_source(e)
}

/// How an exchange on a connection failed before its response head, as the pool saw it.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made.
    Connect(ProxyError),
    /// The connection failed; `unsent` when hyper handed the request back unwritten, `reused`
    /// when the connection had carried earlier requests; `sent_at` when the request went out.
    Http {
        error: hyper::Error,
        unsent: bool,
        reused: bool,
        sent_at: Instant,
    },
    /// The endpoint does not speak HTTP/2: it answered the HTTP/2 preface as an HTTP/1.1
    /// server does, or did not pick `h2` over ALPN. Nothing was processed.
    Http1Only,
}

impl SendError {
    /// hyper's handshake on a new connection failed: nothing was sent.
    pub(crate) fn handshake(error: hyper::Error) -> SendError {
        SendError::Http {
            error,
            unsent: true,
            reused: false,
            sent_at: Instant::now(),
        }
    }

    /// When the request went out, if it did.
    pub(crate) fn sent_at(&self) -> Option<Instant> {
        match self {
            SendError::Http { sent_at, .. } => Some(*sent_at),
            _ => None,
        }
    }
}

/// The proxy error of a failed exchange with the endpoint at `addr`:
/// - a connection that could not be made: as [`Connector::connect`] says;
/// - an endpoint that does not speak HTTP/2: `upstream-protocol`, [`Retry::Stale`],
///   unwritten (the request goes again as HTTP/1.1 when it can);
/// - a request never written on a new connection: `connect-failed`, [`Retry::Unsent`];
/// - a request never written on a reused connection, or refused by HTTP/2 (`REFUSED_STREAM`,
///   or a `GOAWAY` that came before it): `connect-failed`, [`Retry::Stale`], unwritten;
/// - a reused connection that failed before any response: `upstream-reset`,
///   [`Retry::Stale`], perhaps written (the keep-alive race);
/// - otherwise `upstream-protocol` for a response that is not valid HTTP, else
///   `upstream-reset`, [`Retry::Classified`].
pub(crate) fn classify_send(err: SendError, addr: SocketAddr) -> ProxyError {
    let (error, unsent, reused) = match err {
        SendError::Connect(e) => return e,
        SendError::Http1Only => {
            let detail = format!("endpoint {addr} does not speak HTTP/2");
            return ProxyError::new(ErrorKind::UpstreamProtocol, detail)
                .with_fault(Fault::Proxy)
                .with_retry(Retry::Stale { written: false });
        }
        SendError::Http {
            error,
            unsent,
            reused,
            ..
        } => (error, unsent, reused),
    };
    let refused = is_refused_stream(&error);
    if unsent || refused {
        let detail = if refused {
            format!("endpoint {addr} refused the HTTP/2 stream before processing it")
        } else {
            format!("endpoint {addr}: the connection closed before the request was sent")
        };
        let err = ProxyError::new(ErrorKind::ConnectFailed, detail).with_source(error);
        return if reused || refused {
            err.with_retry(Retry::Stale { written: false })
        } else {
            err
        };
    }
    if error.is_parse() || error.is_parse_status() {
        let detail = format!("endpoint {addr} answered with something that is not HTTP");
        return ProxyError::new(ErrorKind::UpstreamProtocol, detail).with_source(error);
    }
    let err = ProxyError::new(ErrorKind::UpstreamReset, format!("endpoint {addr}"));
    let err = if reused {
        err.with_retry(Retry::Stale { written: true })
    } else {
        err
    };
    err.with_source(error)
}

/// True when HTTP/2 refused the stream without processing it: `REFUSED_STREAM` (RFC 9113
/// section 8.7), or a `GOAWAY` whose last stream id came before it (section 6.8; h2 reports
/// those streams with the GOAWAY's error).
fn is_refused_stream(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        source = e.source();
    }
    false
}

/// In-memory endpoints for unit tests of the request path.
#[cfg(test)]
pub(crate) mod memory {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::Connector;
    use crate::error::{ErrorKind, ProxyError};
    use crate::tls::ClientIo;

    /// Makes the server side of a new in-memory connection to an address, or refuses it.
    pub(crate) type Accept = dyn Fn(SocketAddr) -> Option<tokio::io::DuplexStream> + Send + Sync;

    /// What a test connector dials.
    #[derive(Clone)]
    pub(crate) struct Dial(pub(crate) Arc<Accept>);

    impl std::fmt::Debug for Dial {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Dial")
        }
    }

    impl Dial {
        pub(super) fn connect(&self, addr: SocketAddr) -> Result<ClientIo, ProxyError> {
            match (self.0)(addr) {
                Some(io) => Ok(ClientIo::Memory(io)),
                None => Err(ProxyError::new(
                    ErrorKind::ConnectionRefused,
                    format!("endpoint {addr}"),
                )),
            }
        }
    }

    impl Connector {
        /// A connector whose connections go to `dial` instead of the network.
        pub(crate) fn memory(addr: SocketAddr, dial: Dial) -> Connector {
            let mut c = Connector::new(addr, std::time::Duration::from_secs(1), None);
            c.memory = Some(dial);
            c
        }
    }
}
