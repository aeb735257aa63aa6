//! weft's admin server: the dashboard, Prometheus metrics, readiness and liveness, the
//! delegation explainer, the running configuration, and a loopback-only shutdown endpoint.
//!
//! This crate owns the admin HTTP API (`docs/admin.md`). It does not own what is measured
//! (`weft-telemetry`) or the routers it explains (`weft-proxy`). It listens on 127.0.0.1:9990
//! by default and is never put on a public address unless configured.

mod dashboard;
mod handlers;
mod respond;
mod tap;
mod views;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_proxy::Routers;
use weft_telemetry::tap::Tap;
use weft_telemetry::Metrics;

/// Changes the process log filter at run time; returns the error text for a bad directive.
pub type LogControl = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The health records of namers, with their prefixes (see `GET /namers.json`).
pub type NamerStatuses = Vec<(weft_naming::Path, weft_naming::NamerStatus)>;

/// What the admin server shows and controls.
pub struct AdminState {
    metrics: Metrics,
    routers: Routers,
    config: Mutex<Shown>,
    ready: AtomicBool,
    shutdown: CancellationToken,
    tap: Option<Arc<Tap>>,
    log_control: Option<LogControl>,
    log_level: Mutex<String>,
    namers: Mutex<NamerStatuses>,
}

/// The configuration in force and how it got there, as `/config.json` shows them.
struct Shown {
    config: serde_json::Value,
    reload: Option<ReloadStatus>,
}

/// Where the configuration in force came from and how the last reload went: the `reload`
/// key of `GET /config.json`. Times are Unix seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// The config file (`None`: the embedded default, which cannot be reloaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The version of the configuration in force: 16 hex digits of a hash of the file's
    /// bytes (not cryptographic; it changes when the bytes change).
    pub version: String,
    /// When the configuration in force was loaded, at start or by a reload that changed it.
    pub loaded_at: u64,
    /// Reloads attempted since start (`ok` and `error` alike).
    pub reloads: u64,
    /// `ok` or `error`: the result of the last reload; `None` before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<&'static str>,
    /// When the last reload was attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<u64>,
    /// The last reload that failed, kept after later successes (compare its `at` with
    /// `lastAttemptAt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ReloadFailure>,
}

/// A reload that failed: why, and where in the file when the error is tied to a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadFailure {
    /// When it failed.
    pub at: u64,
    /// The whole message, e.g. `/etc/weft.yaml:12:7: routers[0].dtab: ...`.
    pub message: String,
    /// The file, when the error names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The 1-based column, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// True when the new file is valid but changes something only a restart (or `weft
    /// proxy --upgrade`) can apply, such as a listener's address.
    pub needs_restart: bool,
}

// === impl AdminState ===

impl AdminState {
    /// Creates the state: `config_json` is served on `/config.json`; `shutdown` is cancelled
    /// by `POST /shutdown`. Readiness starts false; call [`AdminState::set_ready`].
    pub fn new(
        metrics: Metrics,
        routers: Routers,
        config_json: serde_json::Value,
        shutdown: CancellationToken,
    ) -> AdminState {
        AdminState {
            metrics,
            routers,
            config: Mutex::new(Shown {
                config: config_json,
                reload: None,
            }),
            ready: AtomicBool::new(false),
            shutdown,
            tap: None,
            log_control: None,
            log_level: Mutex::new(String::new()),
            namers: Mutex::new(Vec::new()),
        }
    }

    /// Enables `GET /namers.json` over these namers' health records (prefix and status).
    pub fn with_namers(self, namers: NamerStatuses) -> AdminState {
        self.set_namers(namers);
        self
    }

    /// Replaces the namers `GET /namers.json` reports (after a reload changed them).
    pub fn set_namers(&self, namers: NamerStatuses) {
        *self.namers.lock().unwrap_or_else(PoisonError::into_inner) = namers;
    }

    /// Replaces the configuration `GET /config.json` shows (after a reload applied one).
    pub fn set_config(&self, config_json: serde_json::Value) {
        self.shown().config = config_json;
    }

    /// Sets the reload status `GET /config.json` shows under its `reload` key.
    pub fn set_reload_status(&self, status: ReloadStatus) {
        self.shown().reload = Some(status);
    }

    /// The configuration in force with the reload status under `reload` (when set).
    fn config_json(&self) -> serde_json::Value {
        let shown = self.shown();
        let mut config = shown.config.clone();
        if let (Some(obj), Some(reload)) = (config.as_object_mut(), &shown.reload) {
            obj.insert(
                "reload".into(),
                serde_json::to_value(reload).unwrap_or_default(),
            );
        }
        config
    }

    fn shown(&self) -> std::sync::MutexGuard<'_, Shown> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
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
        self.log_level = Mutex::new(current.to_string());
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
