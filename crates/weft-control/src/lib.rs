//! weft's control plane (`weft control`): dtabs stored in named namespaces, changed through
//! an HTTP API in the namerd tradition, with the control plane's own admin server.
//!
//! This crate owns the dtab store ([`DtabStore`] and its etcd, fs and memory backends), the
//! operators' HTTP API (`/api/1/dtabs`, `/api/1/delegate`, `/api/1/resolve`), write
//! authentication, and the admin endpoints `/metrics`, `/ready`, `/live`. It does not own
//! the resolution service that streams bindings to proxies (crate `weft-resolve`, which
//! builds on [`Control::store`], [`Control::interpreter`] and [`Control::metrics`]), the
//! config file format (`weft_config::ControlConfig`) or the CLI. User documentation:
//! `docs/control-plane.md`.

mod admin;
mod api;
mod auth;
mod body;
mod metrics;
mod store;

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
    /// settings cannot be used, or `auth.tls` is set (mTLS on the HTTP API is not supported
    /// yet).
    pub async fn start(config: &ControlConfig) -> Result<Control, ControlError> {
        let store = store::from_config(&config.storage)
            .await
            .map_err(|e| ControlError(format!("storage: {e}")))?;
        let interpreter = weft_discovery::interpreter(&config.namers)
            .map_err(|e| ControlError(format!("namers: {e}")))?;
        if config.auth.tls.is_some() {
            return Err(ControlError(
                "auth.tls: mTLS on the HTTP API is not supported yet; use auth.tokenFile".into(),
            ));
        }
        Ok(Control::with_store(store, interpreter, config))
    }

    /// A control plane over an existing store (tests, or a store built by the caller).
    pub fn with_store(
        store: Arc<dyn DtabStore>,
        interpreter: Interpreter,
        config: &ControlConfig,
    ) -> Control {
        Control {
            inner: Arc::new(Inner {
                store,
                interpreter,
                metrics: ControlMetrics::new(),
                auth: auth::Auth::new(&config.auth, config.read_access),
            }),
        }
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

    /// Serves the HTTP API on `listener` until `stop` fires (HTTP/1.1 and h2c).
    pub async fn serve_api(&self, listener: TcpListener, stop: CancellationToken) {
        let this = self.clone();
        serve(listener, stop, "api", move |peer, req| {
            let this = this.clone();
            async move { api::handle(&this, peer, req).await }
        })
        .await;
    }

    /// Serves the admin endpoints (`/metrics`, `/ready`, `/live`) on `listener` until
    /// `stop` fires.
    pub async fn serve_admin(&self, listener: TcpListener, stop: CancellationToken) {
        let this = self.clone();
        serve(listener, stop, "admin", move |_peer, req| {
            let this = this.clone();
            async move { admin::handle(&this, req).await }
        })
        .await;
    }
}

/// One accept loop: each connection on its own task, served by `handler`.
async fn serve<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    what: &'static str,
    handler: F,
) where
    F: Fn(std::net::SocketAddr, http::Request<hyper::body::Incoming>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = body::Rsp> + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
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
        let svc = hyper::service::service_fn(move |req| {
            let fut = handler(peer, req);
            async move { Ok::<_, std::convert::Infallible>(fut.await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%peer, %error, what, "connection error");
            }
        });
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
