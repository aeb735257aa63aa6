//! Servers: accept loops that detect each connection's protocol and serve it: HTTP/1.1 and
//! HTTP/2 (prior knowledge, with HTTP/1 upgrades) through the router, anything else as
//! opaque TCP. On shutdown they drain: listeners close, HTTP/1 connections close after their
//! current response, HTTP/2 connections get GOAWAY, requests in flight finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_config::Protocol;

use crate::detect::{detect, Detected, Rewind};
use crate::router::Router;
use crate::tcp;
use crate::tls;

/// hyper refuses read buffers smaller than this (it must hold a typical request head).
const MIN_HEADER_BUFFER: usize = 8192;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `listener` for `router` until `shutdown` fires, then drains its connections for at
/// most `grace`. Returns true if every connection finished within the grace period.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    shutdown: CancellationToken,
    grace: Duration,
) -> bool {
    let builder = Arc::new(http_builder(router.config().max_header_bytes));
    let connections = TaskTracker::new();
    let port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small interactive messages: send them without Nagle delays.
                    let _ = stream.set_nodelay(true);
                    let conn = Connection {
                        router: router.clone(),
                        builder: builder.clone(),
                        shutdown: shutdown.clone(),
                        peer,
                        port,
                    };
                    connections.spawn(conn.run(stream));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = shutdown.cancelled() => break,
        }
    }
    // Stop accepting before draining, so new connections are refused, not left waiting.
    drop(listener);
    connections.close();
    tokio::time::timeout(grace, connections.wait())
        .await
        .is_ok()
}

/// One accepted connection.
struct Connection {
    router: Arc<Router>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shutdown: CancellationToken,
    peer: SocketAddr,
    port: u16,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let metrics = self.router.metrics().clone();
        let _open = metrics.connection_opened();
        let config = self.router.config();
        let opaque = config.protocol == Protocol::Tcp || config.opaque_ports.contains(&self.port);
        let (detected, io) = if opaque {
            metrics.detected("opaque", false);
            (Detected::Tcp, Rewind::plain(stream))
        } else {
            match detect(stream, config.detect_timeout).await {
                Ok((detected, timed_out, io)) => {
                    let name = match detected {
                        Detected::Http => "http",
                        Detected::Tls => "tls",
                        Detected::Tcp => "tcp",
                    };
                    metrics.detected(name, timed_out);
                    (detected, io)
                }
                Err(error) => {
                    tracing::debug!(peer = %self.peer, %error, "connection failed during detection");
                    return;
                }
            }
        };
        match detected {
            Detected::Http => self.serve_http(io, None).await,
            Detected::Tls => self.serve_tls(io).await,
            Detected::Tcp => self.serve_tcp(io, None).await,
        }
    }

    /// TLS: mesh TLS (its SNI names an identity of our trust domain, and the router has a
    /// `tls` section) is terminated here and what it carries is served with the client's
    /// identity; any other TLS is meant for the application and passes through as TCP.
    async fn serve_tls(self, mut io: Rewind<TcpStream>) {
        let Some(identity) = self.router.server_identity().cloned() else {
            return self.serve_tcp(io, None).await;
        };
        let timeout = self.router.config().detect_timeout;
        let sni = match io.read_tls_record(timeout).await {
            Ok(record) => tls::client_hello_sni(record),
            Err(error) => {
                tracing::debug!(peer = %self.peer, %error, "no complete ClientHello");
                return;
            }
        };
        if !sni
            .as_deref()
            .is_some_and(|s| tls::is_mesh_sni(&identity, s))
        {
            return self.serve_tcp(io, None).await;
        }
        let metrics = self.router.metrics().clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config());
        let stream = match acceptor.accept(io).await {
            Ok(s) => s,
            Err(error) => {
                metrics.tls_handshake(false);
                tracing::info!(peer = %self.peer, %error, "mesh TLS handshake failed");
                return;
            }
        };
        metrics.tls_handshake(true);
        let client: Option<Arc<str>> = weft_tls::peer_spiffe_id(stream.get_ref().1).map(Arc::from);
        tracing::debug!(peer = %self.peer, client = ?client, "mesh TLS accepted");
        match detect(stream, timeout).await {
            Ok((Detected::Http, _, inner)) => self.serve_http(inner, client).await,
            Ok((_, _, inner)) => self.serve_tcp(inner, client).await,
            Err(error) => tracing::debug!(peer = %self.peer, %error, "mesh TLS connection failed"),
        }
    }

    /// Opaque TCP, if the client is authorized (`client`: its identity over mesh TLS).
    async fn serve_tcp<I>(self, io: I, client: Option<Arc<str>>)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.router.authorizes(client.as_deref()) {
            tracing::info!(peer = %self.peer, client = ?client, "unauthorized TCP connection refused");
            return;
        }
        if let Err(error) = tcp::proxy(io, &self.router, self.port).await {
            tracing::debug!(peer = %self.peer, %error, "tcp proxy failed");
        }
    }

    async fn serve_http<I>(self, io: I, client: Option<Arc<str>>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let peer = self.peer;
        let svc = service_fn(move |req| {
            let router = router.clone();
            let client = client.clone();
            async move { Ok::<_, Infallible>(router.handle(req, peer, client).await) }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = self.shutdown.cancelled() => {
                // HTTP/1: close after the current response; HTTP/2: GOAWAY, then finish streams.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

fn http_builder(max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(max_header_bytes.max(MIN_HEADER_BUFFER));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    builder
}
