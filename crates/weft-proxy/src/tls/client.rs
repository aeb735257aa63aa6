//! Originating TLS towards endpoints: mutual TLS to peer proxies, or ordinary TLS to servers
//! outside the mesh, and the connection type that carries either.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use weft_tls::{Alpn, Identity, Origination};

use super::handshake::UpstreamTlsError;

/// What one bound client needs to originate TLS to its endpoints.
#[derive(Clone)]
pub(crate) struct ClientTls {
    kind: Kind,
    /// The SNI and the name the certificate must be valid for; `None`: the endpoint's IP.
    server_name: Option<ServerName<'static>>,
}

#[derive(Clone)]
enum Kind {
    /// Mutual TLS to peer proxies: one config, offering `h2` and `http/1.1`, and the SPIFFE
    /// ID every peer must present (a handshake succeeds only if it does).
    Mesh(TlsConnector, std::sync::Arc<str>),
    /// TLS to servers outside the mesh: a config per ALPN offer.
    Origin(Origination),
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Mesh(..) => "mesh",
            Kind::Origin(_) => "origin",
        };
        f.debug_struct("ClientTls")
            .field("kind", &kind)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// For people: `mesh` or `origin`, and the name the endpoints' certificates must carry.
    /// For mutual TLS that is the peer's SPIFFE ID: the identity every connection to these
    /// endpoints has verified, since a peer presenting another one fails the handshake.
    pub(crate) fn describe(&self) -> String {
        let kind = match &self.kind {
            Kind::Mesh(_, expected) => return format!("mesh: {expected}"),
            Kind::Origin(_) => "origin",
        };
        match &self.server_name {
            Some(name) => format!("{kind}: {}", name.to_str()),
            None => format!("{kind}: each endpoint's IP address"),
        }
    }

    /// Mutual TLS to endpoints that must present `expected` (a SPIFFE ID). `None` if the ID
    /// cannot be turned into an SNI name.
    pub(crate) fn mesh(identity: &Identity, expected: &str) -> Option<ClientTls> {
        let name = weft_tls::server_name_for(expected).ok()?;
        let server_name = ServerName::try_from(name).ok()?;
        Some(ClientTls {
            kind: Kind::Mesh(
                TlsConnector::from(identity.client_config(expected)),
                expected.into(),
            ),
            server_name: Some(server_name),
        })
    }

    /// TLS to servers outside the mesh, checked for `server_name` (`None`: each endpoint's IP
    /// address, and no SNI).
    pub(crate) fn origin(
        origination: &Origination,
        server_name: Option<ServerName<'static>>,
    ) -> ClientTls {
        ClientTls {
            kind: Kind::Origin(origination.clone()),
            server_name,
        }
    }

    /// Runs the client handshake over `tcp`, offering `alpn` to servers outside the mesh
    /// (peer proxies are always offered `h2` and `http/1.1`). With [`Alpn::H2`], a server
    /// that does not select `h2` fails the connection: an HTTP/2 client cannot speak to it.
    ///
    /// # Errors
    /// An [`UpstreamTlsError`] that names the server and says why.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        alpn: Alpn,
    ) -> Result<TlsStream<TcpStream>, UpstreamTlsError> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => match tcp.peer_addr() {
                Ok(peer) => ServerName::IpAddress(peer.ip().into()),
                Err(e) => return Err(UpstreamTlsError::handshake("?".into(), e)),
            },
        };
        let connector = match &self.kind {
            Kind::Mesh(c, _) => c.clone(),
            Kind::Origin(o) => TlsConnector::from(o.client_config(alpn)),
        };
        let shown = name.to_str().into_owned();
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| UpstreamTlsError::handshake(shown.clone(), e))?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if alpn == Alpn::H2 && !h2 && matches!(self.kind, Kind::Origin(_)) {
            return Err(UpstreamTlsError::refused(
                shown,
                "the server did not select HTTP/2 over ALPN, so HTTP/2 requests cannot be sent to it",
            ));
        }
        Ok(stream)
    }
}

/// A connection to an endpoint: plaintext or TLS. Tokio I/O, so the byte copier of opaque
/// streams uses it as it is; wrapped in `TokioIo` for hyper's clients.
#[derive(Debug)]
pub(crate) enum ClientIo {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS: mutual TLS to a peer proxy, or TLS to a server outside the mesh.
    Tls(Box<TlsStream<TcpStream>>),
    /// An in-memory connection to a test server (unit tests of the request path).
    #[cfg(test)]
    Memory(tokio::io::DuplexStream),
}

impl ClientIo {
    /// False for a TLS connection on which the server did not pick `h2` over ALPN: it can
    /// only carry HTTP/1.1. Plaintext connections may be either.
    pub(crate) fn is_http2_capable(&self) -> bool {
        match self {
            ClientIo::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
            _ => true,
        }
    }
}

/// Forwards an I/O call to whichever stream `self` holds.
macro_rules! each_io {
    ($self:ident, $io:ident => $call:expr) => {
        match $self.get_mut() {
            ClientIo::Plain($io) => $call,
            ClientIo::Tls($io) => {
                let $io = $io.as_mut();
                $call
            }
            #[cfg(test)]
            ClientIo::Memory($io) => $call,
        }
    };
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_io!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_io!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_io!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(io) => io.is_write_vectored(),
            ClientIo::Tls(io) => io.is_write_vectored(),
            #[cfg(test)]
            ClientIo::Memory(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_io!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_io!(self, io => Pin::new(io).poll_shutdown(cx))
    }
}
