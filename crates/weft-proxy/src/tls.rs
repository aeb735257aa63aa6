//! Mutual TLS between proxies, on the request path: telling mesh TLS from application TLS by
//! SNI, terminating mesh TLS with the proxy's identity (and learning the client's SPIFFE ID),
//! and originating it towards meshed endpoints. Certificates, verification and reload live
//! in `weft-tls`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use weft_tls::Identity;

/// The SNI a ClientHello asks for, parsed by rustls from a copy of the first TLS record
/// (`record`), so the stream itself is left untouched. `None` without SNI or if the record
/// is not a ClientHello.
pub(crate) fn client_hello_sni(record: &[u8]) -> Option<String> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut reader = record;
    acceptor.read_tls(&mut reader).ok()?;
    let accepted = acceptor.accept().ok()??;
    accepted.client_hello().server_name().map(str::to_string)
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

/// What the outbound side needs to originate mesh TLS to one client's endpoints.
#[derive(Clone)]
pub(crate) struct MeshTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl MeshTls {
    /// TLS to endpoints that must present `expected` (a SPIFFE ID). `None` if the ID cannot
    /// be turned into an SNI name.
    pub(crate) fn new(identity: &Identity, expected: &str) -> Option<MeshTls> {
        let name = weft_tls::server_name_for(expected).ok()?;
        let server_name = ServerName::try_from(name).ok()?;
        Some(MeshTls {
            connector: TlsConnector::from(identity.client_config(expected)),
            server_name,
        })
    }

    /// Runs the client handshake over `tcp`.
    pub(crate) async fn connect(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}

/// A client connection to an endpoint: plaintext or mesh TLS.
#[derive(Debug)]
pub(crate) enum ClientIo {
    /// Plain TCP.
    Plain(TokioIo<TcpStream>),
    /// Mutual TLS to a peer proxy.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for ClientIo {
    fn connected(&self) -> Connected {
        match self {
            ClientIo::Plain(io) => io.connected(),
            ClientIo::Tls(io) => {
                let (tcp, session) = io.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
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
