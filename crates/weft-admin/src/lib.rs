//! weft's admin server: Prometheus metrics, readiness and liveness, the delegation explainer,
//! the running configuration, and a loopback-only shutdown endpoint.
//!
//! This crate owns the admin HTTP API (`docs/admin.md`). It does not own what is measured
//! (`weft-telemetry`) or the routers it explains (`weft-proxy`). It listens on 127.0.0.1:9990
//! by default and is never put on a public address unless configured.

mod handlers;
mod tap;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_proxy::Router;
use weft_telemetry::tap::Tap;
use weft_telemetry::Metrics;

/// Changes the process log filter at run time; returns the error text for a bad directive.
pub type LogControl = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the admin server shows and controls.
pub struct AdminState {
    metrics: Metrics,
    routers: Vec<Arc<Router>>,
    config_json: serde_json::Value,
    ready: AtomicBool,
    shutdown: CancellationToken,
    tap: Option<Arc<Tap>>,
    log_control: Option<LogControl>,
    log_level: std::sync::Mutex<String>,
    namers: Vec<(weft_naming::Path, weft_naming::NamerStatus)>,
}

// === impl AdminState ===

impl AdminState {
    /// Creates the state: `config_json` is served on `/config.json`; `shutdown` is cancelled
    /// by `POST /shutdown`. Readiness starts false; call [`AdminState::set_ready`].
    pub fn new(
        metrics: Metrics,
        routers: Vec<Arc<Router>>,
        config_json: serde_json::Value,
        shutdown: CancellationToken,
    ) -> AdminState {
        AdminState {
            metrics,
            routers,
            config_json,
            ready: AtomicBool::new(false),
            shutdown,
            tap: None,
            log_control: None,
            log_level: std::sync::Mutex::new(String::new()),
            namers: Vec::new(),
        }
    }

    /// Enables `GET /namers.json` over these namers' health records (prefix and status).
    pub fn with_namers(
        mut self,
        namers: Vec<(weft_naming::Path, weft_naming::NamerStatus)>,
    ) -> AdminState {
        self.namers = namers;
        self
    }

    /// Enables `GET /tap` over this tap registry.
    pub fn with_tap(mut self, tap: Arc<Tap>) -> AdminState {
        self.tap = Some(tap);
        self
    }

    /// Enables `PUT /logging`: `control` applies a new filter (e.g. `debug` or
    /// `weft_proxy=trace`); `current` is the filter in force at start.
    pub fn with_log_control(mut self, current: &str, control: LogControl) -> AdminState {
        self.log_control = Some(control);
        self.log_level = std::sync::Mutex::new(current.to_string());
        self
    }

    /// Sets what `/ready` answers: 200 when true, 503 (draining or starting) when false.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Serves the admin API on `listener` until `stop` fires. Admin requests are few; each
/// connection is served on its own task.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let state = state.clone();
        let svc = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handlers::handle(&state, peer, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%peer, %error, "admin connection error");
            }
        });
    }
}
