//! The control plane's admin endpoints: `/metrics`, `/ready`, `/live`.

use http::{Method, Request, StatusCode};

use crate::body::{respond, text, Rsp};
use crate::Control;

/// Prometheus text exposition format 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn handle<B>(control: &Control, req: Request<B>) -> Rsp {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            METRICS_CONTENT_TYPE,
            control.metrics().encode(),
        ),
        // Ready when the store answers: with etcd, when a quorum serves reads.
        (&Method::GET, "/ready") => match control.store().check().await {
            Ok(()) => text(StatusCode::OK, "ready"),
            Err(e) => {
                control.metrics().store_error("check");
                text(StatusCode::SERVICE_UNAVAILABLE, &format!("not ready: {e}"))
            }
        },
        (&Method::GET, "/live") => text(StatusCode::OK, "live"),
        (_, "/metrics" | "/ready" | "/live") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /ready, /live",
        ),
    }
}
