//! weft's control plane (`weft control`): dtabs stored in named namespaces, changed through
//! an HTTP API in the namerd tradition, with the control plane's own admin server.
//!
//! This crate owns the dtab store ([`DtabStore`] and its etcd, fs and memory backends), the
//! operators' HTTP API (`/api/1/dtabs`, `/api/1/delegate`, `/api/1/resolve`) with its
//! optional TLS, write authentication (a bearer token, or mTLS client SPIFFE ids), and the
//! admin endpoints `/metrics`, `/ready`, `/live`. It does not own the resolution service that streams bindings to proxies (crate `weft-resolve`, which
//! builds on [`Control::store`], [`Control::interpreter`] and [`Control::metrics`]), the
//! config file format (`weft_config::ControlConfig`) or the CLI. User documentation:
//! `docs/control-plane.md`.

mod admin;
mod api;
mod auth;
mod body;
mod metrics;
mod resolution;
mod store;
mod tls;

use std::fmt;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_config::ControlConfig;
use weft_naming::Interpreter;

pub use metrics::ControlMetrics;
pub use store::{
    from_config, valid_namespace, DtabStore, EtcdStore, FsStore, MemoryStore, StoreError,
    StoreFuture, Versioned,
};

/// A running control plane's shared state: the store, the namers, the metrics and the write
/// credentials. Cheap to clone; serve it with [`Control::serve_api`] and
/// [`Control::serve_admin`].
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn DtabStore>,
    interpreter: Interpreter,
    metrics: ControlMetrics,
    auth: auth::Auth,
    /// TLS for the HTTP API (`auth.tls`); `None`: plain HTTP.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The resolution service for proxies, over the store and the namers.
    resolution: weft_resolve::ResolveService,
}

/// Who sent a request: the TCP peer, and the SPIFFE id of its verified client certificate.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) spiffe_id: Option<String>,
}

/// Why the control plane could not start: the store or a namer could not be set up.
/// Displays one line naming the part that failed.
pub struct ControlError(String);

// === impl Control ===

impl Control {
    /// Builds the configured store and namers. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The store cannot be opened (fs directory, etcd TLS or password files), a namer's
    /// settings cannot be used, or the HTTP API's TLS files (`auth.tls`) cannot be used.
    pub async fn start(config: &ControlConfig) -> Result<Control, ControlError> {
        let store = store::from_config(&config.storage)
            .await
            .map_err(|e| ControlError(format!("storage: {e}")))?;
        let interpreter = weft_discovery::interpreter(&config.namers)
            .map_err(|e| ControlError(format!("namers: {e}")))?;
        Control::with_store(store, interpreter, config)
    }

    /// A control plane over an existing store (tests, or a store built by the caller).
    ///
    /// # Errors
    /// The HTTP API's TLS files (`auth.tls`) cannot be read or used.
    pub fn with_store(
        store: Arc<dyn DtabStore>,
        interpreter: Interpreter,
        config: &ControlConfig,
    ) -> Result<Control, ControlError> {
        let tls = match &config.auth.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?)),
            None => None,
        };
        let resolution = weft_resolve::ResolveService::new(
            Arc::new(resolution::StoreDtabs::new(store.clone())),
            interpreter.clone(),
        );
        Ok(Control {
            inner: Arc::new(Inner {
                store,
                interpreter,
                metrics: ControlMetrics::new(&resolution),
                auth: auth::Auth::new(&config.auth, config.read_access),
                tls,
                resolution,
            }),
        })
    }

    /// The dtab store.
    pub fn store(&self) -> &Arc<dyn DtabStore> {
        &self.inner.store
    }

    /// The namers the control plane runs (config `namers`).
    pub fn interpreter(&self) -> &Interpreter {
        &self.inner.interpreter
    }

    /// The control plane's metrics.
    pub fn metrics(&self) -> &ControlMetrics {
        &self.inner.metrics
    }

    /// Serves the HTTP API on `listener` until `stop` fires: HTTP/1.1 and HTTP/2, over TLS
    /// when `auth.tls` is configured (h2c and plain HTTP/1.1 otherwise).
    pub async fn serve_api(&self, listener: TcpListener, stop: CancellationToken) {
        let this = self.clone();
        let tls = self.inner.tls.clone();
        serve(listener, stop, "api", tls, move |peer, req| {
            let this = this.clone();
            async move { api::handle(&this, peer, req).await }
        })
        .await;
    }

    /// The resolution service: what proxies are watching ([`weft_resolve::ResolveService::watched`])
    /// and its counters.
    pub fn resolution(&self) -> &weft_resolve::ResolveService {
        &self.inner.resolution
    }

    /// Serves the resolution service (gRPC `weft.resolve.v1.Resolver`, h2c) to proxies on
    /// `listener` until `stop` fires. Connections from peers that `readAccess` does not
    /// allow (by default, any but loopback) are answered `PERMISSION_DENIED`. Its counters
    /// are read on each scrape of `/metrics` (`weft_control_proxies_connected`,
    /// `weft_control_resolve_*`).
    ///
    /// # Errors
    /// The listener fails.
    pub async fn serve_resolution(
        &self,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        let this = self.clone();
        let admit = move |peer: std::net::SocketAddr| {
            this.inner
                .auth
                .check_read(peer)
                .map_err(auth::Denied::into_reason)
        };
        self.inner
            .resolution
            .clone()
            .serve_admitting(listener, stop, admit)
            .await
    }

    /// Serves the admin endpoints (`/metrics`, `/ready`, `/live`) on `listener` until
    /// `stop` fires.
    pub async fn serve_admin(&self, listener: TcpListener, stop: CancellationToken) {
        let this = self.clone();
        serve(listener, stop, "admin", None, move |_peer, req| {
            let this = this.clone();
            async move { admin::handle(&this, req).await }
        })
        .await;
    }
}

/// One accept loop: each connection on its own task (after a TLS handshake when `tls` is
/// given), served by `handler`.
async fn serve<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    what: &'static str,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: F,
) where
    F: Fn(Peer, http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = body::Rsp> + Send + 'static,
{
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, what, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                let peer = Peer {
                    addr,
                    spiffe_id: None,
                };
                return serve_connection(stream, peer, handler, what).await;
            };
            match acceptor.accept(stream).await {
                Ok(stream) => {
                    let spiffe_id = weft_tls::peer_spiffe_id(stream.get_ref().1);
                    let peer = Peer { addr, spiffe_id };
                    serve_connection(stream, peer, handler, what).await;
                }
                Err(error) => tracing::debug!(%addr, %error, what, "TLS handshake failed"),
            }
        });
    }
}

async fn serve_connection<S, F, Fut>(stream: S, peer: Peer, handler: F, what: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Peer, http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = body::Rsp> + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let addr = peer.addr;
    let svc = hyper::service::service_fn(move |req| {
        let fut = handler(peer.clone(), req);
        async move { Ok::<_, std::convert::Infallible>(fut.await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(error) = builder.serve_connection(TokioIo::new(stream), svc).await {
        tracing::debug!(%addr, %error, what, "connection error");
    }
}

// === impl ControlError ===

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ControlError({})", self.0)
    }
}

impl std::error::Error for ControlError {}
