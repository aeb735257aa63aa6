//! Servers: accept loops that detect each connection's protocol and serve it: HTTP/1.1 and
//! HTTP/2 (prior knowledge, with HTTP/1 upgrades) through the router, anything else as
//! opaque TCP. Mesh TLS (told apart by SNI) is terminated with the proxy's identity; an
//! ingress listener (`servers[].tls`) terminates all TLS with its own certificates. Every
//! terminated handshake is counted, with a reason when it fails. On shutdown they drain:
//! HTTP/1 responses carry `Connection: close` (an idle connection gets a moment to send its
//! next request before it is closed, as Envoy's drain does: closing it at once races a client
//! that is sending), HTTP/2 connections get GOAWAY, requests in flight and upgraded tunnels
//! finish. Listeners keep accepting until they are told to close (after the announce window
//! of `admin.drainAnnounce`, or at once when a successor took them over): connections
//! accepted meanwhile are served as draining ones, so peers learn of the drain before the
//! listener closes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use weft_config::{Protocol, RouterConfig};

use crate::headers::case::RawHead;
use crate::opaque;
use crate::router::{Downstream, Router};
use crate::tls::handshake::{Failure, Refused};
use crate::tls::hello::{inspect_client_hello, is_mesh_sni, Hello};
use crate::RouterSlot;
use detect::{detect, Detected, Rewind};
use keep_alive::{Guarded, Limits, Phase, Timed};

mod accepts;
mod conn_error;
pub(crate) mod detect;
mod inherited;
mod keep_alive;

pub use accepts::AcceptMark;
pub use inherited::Inherited;

/// hyper refuses read buffers smaller than this (it must hold a typical request head).
const MIN_HEADER_BUFFER: usize = 8192;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Bound on a TLS handshake the proxy terminates: on an ingress listener from the first byte,
/// for mesh TLS from the complete ClientHello (which must come within `detectTimeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// While draining, how long an idle HTTP/1 connection may still send one more request (to be
/// answered with `Connection: close`) before it is closed; at most half the shutdown grace.
const DRAIN_LINGER: Duration = Duration::from_secs(2);

/// One listener of a router, with the TLS config of an ingress listener (`servers[].tls`)
/// and whether it clears `l5d-*` context from its clients (`servers[].clearContext`).
pub(crate) struct Listener {
    pub(crate) listener: TcpListener,
    pub(crate) ingress: Option<Arc<rustls::ServerConfig>>,
    pub(crate) clear_context: bool,
}

/// Serves `listener` for the router in `slot`. When `shutdown` fires its connections drain
/// (new ones included); when `close` fires it stops accepting and waits for its connections
/// until `grace` after `shutdown` fired. Returns true if every connection finished in time.
///
/// A reload swaps the router in `slot`: a connection takes its connection settings
/// (detection, TLS, keep-alive and header limits) from the router in force when it was
/// accepted, and each of its requests the router in force when the request arrives.
pub(crate) async fn serve(
    Listener {
        listener,
        ingress,
        clear_context,
    }: Listener,
    slot: RouterSlot,
    shutdown: CancellationToken,
    close: CancellationToken,
    grace: Duration,
    accepts: AcceptMark,
) -> bool {
    let router = slot.load_full();
    let mut builder = Arc::new(HttpBuilders::new(router.config(), router.reaches_peers()));
    // The router the builders were made for, held weakly: an idle listener must not keep a
    // router that a reload replaced alive (a `Weak` keeps only its allocation, so the
    // address cannot be reused by another router while it is held).
    let mut built_for = Arc::downgrade(&router);
    drop(router);
    let linger = DRAIN_LINGER.min(grace / 2);
    let connections = TaskTracker::new();
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let port = local.port();
    let label = slot.load().label().to_owned();
    let mut start = |stream: TcpStream, peer: SocketAddr| {
        accepts.accepted(&label, local, peer);
        // Small interactive messages: send them without Nagle delays.
        let _ = stream.set_nodelay(true);
        let router = slot.load_full();
        if !std::ptr::eq(built_for.as_ptr(), Arc::as_ptr(&router)) {
            builder = Arc::new(HttpBuilders::new(router.config(), router.reaches_peers()));
            built_for = Arc::downgrade(&router);
        }
        let span = tracing::debug_span!("conn", router = %router.label(), %peer);
        let conn = Connection {
            tunnels: opaque::Tunnels(connections.clone()),
            linger,
            router,
            slot: slot.clone(),
            builder: builder.clone(),
            shutdown: shutdown.clone(),
            peer,
            port,
            ingress: ingress.clone(),
            clear_context,
        };
        connections.spawn(conn.run(stream).instrument(span));
    };
    // When the drain began: the grace counts from then.
    let mut drain_began: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => start(stream, peer),
                Err(error) => {
                    // Out of descriptors (EMFILE, ENFILE) or memory: the connection stays in
                    // the accept queue; wait instead of spinning on the same error.
                    tracing::warn!(%error, "accept failed");
                    slot.load().metrics().connection_error("none", "accept-failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = shutdown.cancelled(), if drain_began.is_none() => {
                drain_began = Some(tokio::time::Instant::now());
            }
            () = close.cancelled() => break,
        }
    }
    // Connections already in the accept queue were completed by the kernel, and their clients
    // may have sent a request on them: closing the listener would reset them. Take them (as
    // draining ones) before it closes; new connections are then refused, not left waiting.
    let queued = accept_queued(listener);
    accepts::stopped(&label, local, queued.len());
    for (stream, peer) in queued {
        start(stream, peer);
    }
    connections.close();
    let deadline = drain_began.unwrap_or_else(tokio::time::Instant::now) + grace;
    tokio::time::timeout_at(deadline, connections.wait())
        .await
        .is_ok()
}

/// The most connections taken from a closing listener's accept queue: Linux's default
/// `net.core.somaxconn` (4096), the longest queue tokio's listeners get by default.
const MAX_QUEUED: usize = 4096;

/// Closes `listener`, returning the connections waiting in its accept queue.
fn accept_queued(listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let Ok(listener) = listener.into_std() else {
        return Vec::new();
    };
    let mut queued = Vec::new();
    // Non-blocking (as tokio left it): ends with `WouldBlock` once the queue is empty. At
    // most a full queue's worth, so clients connecting faster than this loop cannot keep the
    // listener open.
    for _ in 0..MAX_QUEUED {
        let Ok((stream, peer)) = listener.accept() else {
            break;
        };
        let stream = stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream));
        match stream {
            Ok(stream) => queued.push((stream, peer)),
            Err(error) => tracing::debug!(%error, "a queued connection cannot be served"),
        }
    }
    queued
}

/// One accepted connection.
struct Connection {
    /// Where upgraded tunnels are spawned, so a drain waits for them.
    tunnels: opaque::Tunnels,
    /// See [`DRAIN_LINGER`].
    linger: Duration,
    /// The router in force when the connection was accepted: its connection settings.
    router: Arc<Router>,
    /// Where each request loads the router in force.
    slot: RouterSlot,
    builder: Arc<HttpBuilders>,
    shutdown: CancellationToken,
    peer: SocketAddr,
    port: u16,
    ingress: Option<Arc<rustls::ServerConfig>>,
    clear_context: bool,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let metrics = self.router.metrics().clone();
        let _open = metrics.connection_opened();
        if let Some(tls) = self.ingress.clone() {
            return Box::pin(self.serve_ingress(stream, tls)).await;
        }
        let config = self.router.config();
        let opaque = config.protocol == Protocol::Tcp || config.opaque_ports.contains(&self.port);
        let (detected, io) = if opaque {
            metrics.detected("opaque", false);
            (Detected::Tcp, Rewind::plain(stream))
        } else {
            match detect(stream, config.detect_timeout).await {
                Ok((detected, timed_out, io)) => {
                    let name = match detected {
                        Detected::Http1 | Detected::Http2 => "http",
                        Detected::Tls => "tls",
                        Detected::Tcp => "tcp",
                    };
                    metrics.detected(name, timed_out);
                    (detected, io)
                }
                Err(error) => {
                    tracing::debug!(%error, "connection failed during detection");
                    return;
                }
            }
        };
        match detected {
            // Each kind of connection boxed: their futures (hyper's connections, TLS
            // sessions) are large, and inline the connection task would be as large as the
            // largest, moved whole when it is spawned.
            Detected::Http1 => Box::pin(self.serve_http(io, None, false)).await,
            Detected::Http2 => Box::pin(self.serve_http(io, None, true)).await,
            Detected::Tls => Box::pin(self.serve_tls(io)).await,
            Detected::Tcp => Box::pin(self.serve_tcp(io, None)).await,
        }
    }

    /// TLS: mesh TLS (its SNI names an identity of our trust domain, and the router has a
    /// `tls` section) is terminated here and what it carries is served with the client's
    /// identity; any other TLS is meant for the application and passes through as TCP, unless
    /// it is no ClientHello at all on a router that requires TLS.
    async fn serve_tls(self, mut io: Rewind<TcpStream>) {
        let Some(identity) = self.router.server_identity().cloned() else {
            return self.serve_tcp(io, None).await;
        };
        let config = self.router.config();
        let (timeout, require_tls) = (
            config.detect_timeout,
            config.tls.as_ref().is_some_and(|t| t.require_tls),
        );
        let hello = match io.read_tls_record(timeout).await {
            Ok(record) => inspect_client_hello(record),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                let why = format!("no complete ClientHello within {timeout:?}");
                return self.refused("mesh", Refused::new(Failure::Timeout, why));
            }
            Err(error) => return self.refused("mesh", Refused::before_hello(&error)),
        };
        match hello {
            Hello::Sni(Some(sni)) if is_mesh_sni(&identity, &sni) => {}
            Hello::Invalid(error) if require_tls => {
                let why = format!(
                    "not a TLS ClientHello: {}",
                    weft_tls::explain(&error, "client")
                );
                return self.refused("mesh", Refused::new(Failure::NoClientHello, why));
            }
            _ => return self.serve_tcp(io, None).await,
        }
        let acceptor = TlsAcceptor::from(identity.server_config());
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
            Ok(Ok(s)) => s,
            Ok(Err(error)) => return self.refused("mesh", Refused::during(&error)),
            Err(_) => return self.refused("mesh", Refused::timeout(HANDSHAKE_TIMEOUT)),
        };
        self.router.metrics().tls_handshake(Ok(()));
        let client: Option<Arc<str>> = weft_tls::peer_spiffe_id(stream.get_ref().1).map(Arc::from);
        tracing::debug!(client = ?client, "mesh TLS accepted");
        self.serve_decrypted(stream, client).await
    }

    /// An ingress listener: every connection must be TLS, terminated with the listener's
    /// certificates (picked by SNI); what it carries is served without a client identity.
    /// Plaintext and garbage are refused (closed) and counted; a connection closed before
    /// its first byte (a TCP health check) is not a handshake and is not counted.
    async fn serve_ingress(self, stream: TcpStream, config: Arc<rustls::ServerConfig>) {
        let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.accept_ingress(stream, config))
            .await
            .unwrap_or_else(|_| Err(Refused::timeout(HANDSHAKE_TIMEOUT)));
        match accepted {
            Ok(Some(stream)) => {
                self.router.metrics().tls_handshake(Ok(()));
                let (_, session) = stream.get_ref();
                tracing::debug!(
                    sni = ?session.server_name(),
                    alpn = ?session.alpn_protocol().map(String::from_utf8_lossy),
                    "ingress TLS accepted"
                );
                self.serve_decrypted(stream, None).await
            }
            Ok(None) => tracing::debug!("closed before sending a byte"),
            Err(refused) => self.refused("ingress", refused),
        }
    }

    /// The server side of an ingress handshake; `None` if the client closed at once.
    async fn accept_ingress(
        &self,
        stream: TcpStream,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<Option<TlsStream<Rewind<TcpStream>>>, Refused> {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(error) => return Err(Refused::before_hello(&error)),
        }
        let (detected, timed_out, io) = detect(stream, HANDSHAKE_TIMEOUT)
            .await
            .map_err(|e| Refused::before_hello(&e))?;
        match (detected, timed_out) {
            (Detected::Tls, _) => {}
            (Detected::Http1 | Detected::Http2, _) => {
                return Err(Refused::new(
                    Failure::Plaintext,
                    "plaintext HTTP sent to a TLS port",
                ))
            }
            (Detected::Tcp, true) => return Err(Refused::timeout(HANDSHAKE_TIMEOUT)),
            (Detected::Tcp, false) => {
                return Err(Refused::new(
                    Failure::NoClientHello,
                    "the first bytes are not a TLS handshake record",
                ))
            }
        }
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
            .await
            .map_err(|e| Refused::before_hello(&e))?;
        let stream = start
            .into_stream(config)
            .await
            .map_err(|e| Refused::during(&e))?;
        Ok(Some(stream))
    }

    /// Counts and logs a failed handshake; the connection is then dropped (closed). At debug:
    /// one per connection, and `weft_tls_handshakes_total` counts them by reason.
    fn refused(&self, what: &'static str, refused: Refused) {
        let reason = refused.failure.reason();
        self.router.metrics().tls_handshake(Err(reason));
        tracing::debug!(reason, "{what} TLS handshake failed: {}", refused.why);
    }

    /// What a terminated TLS connection carries: opaque TCP on a `tcp` router or an opaque
    /// port, else detected as usual (HTTP, or TCP).
    async fn serve_decrypted<I>(self, io: I, client: Option<Arc<str>>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = self.router.config();
        if config.protocol == Protocol::Tcp || config.opaque_ports.contains(&self.port) {
            return self.serve_tcp(io, client).await;
        }
        match detect(io, config.detect_timeout).await {
            Ok((Detected::Http1, _, inner)) => self.serve_http(inner, client, false).await,
            Ok((Detected::Http2, _, inner)) => self.serve_http(inner, client, true).await,
            Ok((_, _, inner)) => self.serve_tcp(inner, client).await,
            Err(error) => tracing::debug!(%error, "TLS connection failed during detection"),
        }
    }

    /// Opaque TCP, if the client is authorized (`client`: its identity over mesh TLS).
    async fn serve_tcp<I>(self, io: I, client: Option<Arc<str>>)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.router.authorizes(client.as_deref()) {
            tracing::debug!(client = ?client, "unauthorized TCP connection refused");
            return;
        }
        let metrics = self.router.metrics();
        let counters = [
            metrics.tcp_bytes("to_upstream"),
            metrics.tcp_bytes("to_downstream"),
        ];
        let idle = self.router.config().tcp_idle_timeout;
        let clients = self.router.clients();
        if let Err(error) = opaque::proxy(io, clients, self.port, idle, counters).await {
            tracing::debug!(%error, fault = error.fault().label(), "tcp proxy failed");
        }
    }

    /// Serves HTTP/1.1 (with upgrades) or, with `h2`, HTTP/2 through the router. Detection
    /// already read the first bytes, so the protocol's own server runs directly (hyper-util's
    /// `auto` server would sniff them again through one more buffering layer).
    async fn serve_http<I>(self, io: I, client: Option<Arc<str>>, h2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The connection lets go of the router it was accepted with: its requests load the one
        // in force, and a router swapped out by a reload is freed when its last request ends,
        // not when the last connection accepted before the reload closes.
        let Connection {
            router,
            slot,
            builder,
            shutdown,
            peer,
            clear_context,
            tunnels,
            linger,
            ..
        } = self;
        let metrics = router.metrics().clone();
        let errors = metrics.clone();
        drop(router);
        let from = Arc::new(Downstream {
            addr: peer,
            id: client,
            clear_context,
            tunnels,
        });
        let result = if h2 {
            let svc = service_fn(move |req: Request<Incoming>| {
                let router = slot.load_full();
                let from = from.clone();
                let span = request_span(&req);
                async move { Ok::<_, Infallible>(router.handle(req, &from).await) }.instrument(span)
            });
            let conn = builder.h2.serve_connection(TokioIo::new(io), svc);
            drain_on(&shutdown, Duration::ZERO, conn, |c| c.graceful_shutdown()).await
        } else {
            let phase = Phase::new(builder.h1_limits, metrics);
            let io = Timed::new(io, phase.clone());
            let draining = shutdown.clone();
            let svc = service_fn(move |mut req: Request<Incoming>| {
                let router = slot.load_full();
                let draining = draining.clone();
                let from = from.clone();
                let busy = phase.begin();
                if let Some(head) = phase.take_head() {
                    req.extensions_mut().insert(RawHead(head));
                }
                let connect = req.method() == Method::CONNECT;
                let span = request_span(&req);
                async move {
                    let mut rsp = router.handle(req, &from).await;
                    if opaque::switches_protocols(connect, rsp.status()) {
                        busy.upgraded();
                    } else if draining.is_cancelled() {
                        // Draining: this is the connection's last response (hyper closes
                        // after it), and the client learns so before it sends again.
                        rsp.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, Infallible>(rsp.map(|body| Guarded::new(body, busy)))
                }
                .instrument(span)
            });
            let conn = builder
                .h1
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades();
            drain_on(&shutdown, linger, conn, |c| c.graceful_shutdown()).await
        };
        if let Err(error) = result {
            let reason = conn_error::reason(h2, &error);
            errors.connection_error(if h2 { "http2" } else { "http1" }, reason);
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            tracing::debug!(%error, ?cause, reason, "connection ended with an error");
        }
    }
}

/// The span of one request (at debug level: free when debug logging is off). The router
/// records `service` and the dispatcher `endpoint` into it as they become known.
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        service = tracing::field::Empty,
        endpoint = tracing::field::Empty,
    )
}

/// Drives a server connection; when `shutdown` fires, lets it end on its own for up to
/// `linger` (HTTP/1: its next response closes it), then starts its graceful shutdown (HTTP/1:
/// close after the current response, at once if idle; HTTP/2: GOAWAY, then finish the
/// streams) and waits for it.
async fn drain_on<C, E>(
    shutdown: &CancellationToken,
    linger: Duration,
    conn: C,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            if !linger.is_zero() {
                if let Ok(result) = tokio::time::timeout(linger, conn.as_mut()).await {
                    return result;
                }
            }
            graceful(conn.as_mut());
            conn.await
        }
    }
}

/// The HTTP/1 and HTTP/2 server settings of a router's connections.
struct HttpBuilders {
    h1: http1::Builder,
    /// HTTP/1's keep-alive and header read timeouts, which `keep_alive` enforces.
    h1_limits: Limits,
    h2: http2::Builder<TokioExecutor>,
}

impl HttpBuilders {
    /// The builders of a router with `config`; `keep_heads` when its requests may cross to
    /// peer proxies over HTTP/2 (their header spelling then needs the head's bytes).
    fn new(config: &RouterConfig, keep_heads: bool) -> HttpBuilders {
        let mut h1 = http1::Builder::new();
        // Off: hyper's timer would close idle keep-alive connections after the header read
        // timeout (see keep_alive.rs), and costs a timer per request.
        h1.header_read_timeout(None)
            // Header names reach the application spelled as the client sent them.
            .preserve_header_case(true)
            .max_buf_size(config.max_header_bytes.max(MIN_HEADER_BUFFER));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        let h1_limits = Limits {
            keep_alive: config.keep_alive_timeout,
            header_read: config.header_read_timeout,
            keep_heads: keep_heads.then_some(config.max_header_bytes.max(MIN_HEADER_BUFFER)),
        };
        HttpBuilders { h1, h1_limits, h2 }
    }
}
