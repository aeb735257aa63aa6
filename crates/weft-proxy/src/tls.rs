//! TLS on the request path: telling mesh TLS from application TLS by SNI and learning the
//! client's SPIFFE ID after terminating it (the server side lives in `server.rs`), and
//! originating TLS towards endpoints: mutual TLS to peer proxies, or ordinary TLS to servers
//! outside the mesh. Certificates, verification and reload live in `weft-tls`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use weft_tls::{Alpn, Identity, Origination};

use crate::handshake::UpstreamTlsError;

/// What the first TLS record of a connection holds.
#[derive(Debug)]
pub(crate) enum Hello {
    /// A ClientHello, with the SNI it asks for (if any).
    Sni(Option<String>),
    /// The start of a ClientHello that goes on in later records.
    Incomplete,
    /// Not a ClientHello.
    Invalid(rustls::Error),
}

/// Parses a copy of the first TLS record (`record`) with rustls, so the stream itself is
/// left untouched.
pub(crate) fn inspect_client_hello(record: &[u8]) -> Hello {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut reader = record;
    if let Err(e) = acceptor.read_tls(&mut reader) {
        return Hello::Invalid(rustls::Error::General(e.to_string()));
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Hello::Sni(accepted.client_hello().server_name().map(str::to_string)),
        Ok(None) => Hello::Incomplete,
        Err((e, _alert)) => Hello::Invalid(e),
    }
}

/// True if `sni` names a mesh identity of our trust domain
/// (`<sa>.<ns>.serviceaccount.identity.<trust-domain>`, see `weft_tls::server_name_for`).
pub(crate) fn is_mesh_sni(identity: &Identity, sni: &str) -> bool {
    let id = identity.spiffe_id();
    let trust_domain = id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    !trust_domain.is_empty() && sni.ends_with(&format!(".identity.{trust_domain}"))
}

/// The former name of [`ClientTls`], still used by the balancer and the TCP proxy.
pub(crate) type MeshTls = ClientTls;

/// What one bound client needs to originate TLS to its endpoints.
#[derive(Clone)]
pub(crate) struct ClientTls {
    kind: Kind,
    /// The SNI and the name the certificate must be valid for; `None`: the endpoint's IP.
    server_name: Option<ServerName<'static>>,
}

#[derive(Clone)]
enum Kind {
    /// Mutual TLS to peer proxies: one config, offering `h2` and `http/1.1`.
    Mesh(TlsConnector),
    /// TLS to servers outside the mesh: a config per ALPN offer.
    Origin(Origination),
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Mesh(_) => "mesh",
            Kind::Origin(_) => "origin",
        };
        f.debug_struct("ClientTls")
            .field("kind", &kind)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Mutual TLS to endpoints that must present `expected` (a SPIFFE ID). `None` if the ID
    /// cannot be turned into an SNI name.
    pub(crate) fn mesh(identity: &Identity, expected: &str) -> Option<ClientTls> {
        let name = weft_tls::server_name_for(expected).ok()?;
        let server_name = ServerName::try_from(name).ok()?;
        Some(ClientTls {
            kind: Kind::Mesh(TlsConnector::from(identity.client_config(expected))),
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

    /// Runs the client handshake over `tcp` for an opaque TCP stream.
    ///
    /// # Errors
    /// The handshake failed: an [`io::Error`] wrapping the reason (see `handshake`).
    pub(crate) async fn connect(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.handshake(tcp, Alpn::None).await
    }

    /// Runs the client handshake over `tcp`, offering `alpn` to servers outside the mesh
    /// (peer proxies are always offered `h2` and `http/1.1`). With [`Alpn::H2`], a server
    /// that does not select `h2` fails the connection: an HTTP/2 client cannot speak to it.
    ///
    /// # Errors
    /// An [`io::Error`] wrapping an `UpstreamTlsError` that names the server and says why.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        alpn: Alpn,
    ) -> io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::IpAddress(tcp.peer_addr()?.ip().into()),
        };
        let connector = match &self.kind {
            Kind::Mesh(c) => c.clone(),
            Kind::Origin(o) => TlsConnector::from(o.client_config(alpn)),
        };
        let shown = name.to_str().into_owned();
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| UpstreamTlsError::handshake(shown.clone(), e).into_io())?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if alpn == Alpn::H2 && !h2 && matches!(self.kind, Kind::Origin(_)) {
            return Err(UpstreamTlsError::refused(
                shown,
                "the server did not select HTTP/2 over ALPN, so HTTP/2 requests cannot be sent to it",
            )
            .into_io());
        }
        Ok(stream)
    }
}

/// A client connection to an endpoint: plaintext or TLS.
#[derive(Debug)]
pub(crate) enum ClientIo {
    /// Plain TCP.
    Plain(TokioIo<TcpStream>),
    /// TLS: mutual TLS to a peer proxy, or TLS to a server outside the mesh.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Read for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(io) => Pin::new(io).poll_read(cx, buf),
            ClientIo::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(io) => Pin::new(io).poll_write(cx, buf),
            ClientIo::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(io) => Pin::new(io).poll_flush(cx),
            ClientIo::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            ClientIo::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}
