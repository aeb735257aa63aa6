//! The admin endpoints.

use std::net::SocketAddr;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use weft_naming::{Dtab, Path};

use crate::respond::{bad_request, json, respond, text, text_owned, Rsp};
use crate::tap::{parse_query, TapBody};
use crate::{dashboard, views, AdminState};

/// Prometheus text exposition format 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn handle<B>(state: &AdminState, peer: SocketAddr, req: Request<B>) -> Rsp {
    let query = req.uri().query().unwrap_or("");
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            respond(StatusCode::OK, METRICS_CONTENT_TYPE, state.metrics.encode())
        }
        (&Method::GET, "/ready") if state.is_ready() => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/ready") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
        (&Method::GET, "/config.json") => json(StatusCode::OK, &state.config_json()),
        (&Method::GET, "/delegator.json") => delegator(state, query).await,
        (&Method::GET, "/overview.json") => views::overview(state),
        (&Method::GET, "/objectives.json") => views::objectives(state),
        (&Method::GET, "/service.json") => views::service(state, query).await,
        (&Method::GET, path) if dashboard::is_asset(path) => dashboard::asset(path),
        (&Method::GET, "/namers.json") => namers(state),
        (&Method::POST, "/shutdown") => shutdown(state, peer),
        (&Method::GET, "/tap") => tap(state, query),
        (&Method::GET, "/logging") => {
            let level = state
                .log_level
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            text_owned(StatusCode::OK, format!("{level}\n"))
        }
        (&Method::PUT | &Method::POST, "/logging") => set_log_level(state, peer, query),
        (
            _,
            "/metrics" | "/ready" | "/live" | "/config.json" | "/delegator.json" | "/namers.json"
            | "/shutdown"
            | "/tap" | "/logging" | "/overview.json" | "/objectives.json" | "/service.json",
        ) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try / (the dashboard), /metrics, /ready, /live, /config.json, /delegator.json, /objectives.json, /tap, /logging\n",
        ),
    }
}

/// `GET /namers.json`: every configured namer that talks to a backend, sorted by prefix, with
/// its health (`state`: pending, ok, stale, error; `failingSince` and `lastOk` in Unix
/// seconds; `lastError`; `updates`, `errors` and `watched` counts).
fn namers(state: &AdminState) -> Rsp {
    let namers = state
        .namers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut list: Vec<serde_json::Value> = namers
        .iter()
        .map(|(prefix, status)| {
            let mut v = serde_json::to_value(status.snapshot()).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("prefix".into(), prefix.to_string().into());
            }
            v
        })
        .collect();
    list.sort_by(|a, b| a["prefix"].as_str().cmp(&b["prefix"].as_str()));
    json(StatusCode::OK, &serde_json::Value::Array(list))
}

/// `GET /delegator.json?router=R&path=/svc/x[&dtab=...][&base=...][&format=text]`: the
/// binding of `path` under the router's dtab (or `base` in its place, for the dtab
/// playground; never applied) plus `dtab`, as an `l5d-dtab` header would add, explained as a
/// tree; JSON by default, the indented text of `weft dtab delegate` with `format=text`. A
/// dtab that does not parse is a 400 naming it and the line and column.
async fn delegator(state: &AdminState, query: &str) -> Rsp {
    let mut router = None;
    let mut path = None;
    let mut dtab = String::new();
    let mut base = None;
    let mut as_text = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "router" => router = Some(v.into_owned()),
            "path" => path = Some(v.into_owned()),
            "dtab" => dtab = v.into_owned(),
            "base" => base = Some(v.into_owned()),
            "format" => as_text = v == "text",
            _ => {}
        }
    }
    let Some(path) = path else {
        return bad_request("missing query parameter: path");
    };
    let path = match Path::read(&path) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("path: {e}")),
    };
    let local = match Dtab::read(&dtab) {
        Ok(d) => d,
        Err(e) => return bad_request(&format!("dtab: {e}")),
    };
    let base = match base.as_deref().map(Dtab::read) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return bad_request(&format!("base: {e}")),
    };
    let found = match router.as_deref() {
        Some(label) => state.routers.get(label),
        None if state.routers.len() == 1 => state.routers.current().pop(),
        None => return bad_request("missing query parameter: router"),
    };
    let Some(router) = found else {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such router\n".to_string(),
        );
    };
    let tree = match &base {
        Some(base) => router.delegate_under(base, &path, &local).await,
        None => router.delegate(&path, &local).await,
    };
    if as_text {
        return text_owned(StatusCode::OK, format!("{tree}\n"));
    }
    match serde_json::to_value(&tree) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => text_owned(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// `GET /tap?router=..&service=..&route=..&authority=..&method=..&path=..&status=..&maxRps=..`:
/// streams tap events as JSON lines (`application/x-ndjson`) until the client goes away.
fn tap(state: &AdminState, query: &str) -> Rsp {
    let Some(registry) = &state.tap else {
        return text(StatusCode::NOT_FOUND, "tap is not available\n");
    };
    let (filter, max_rps) = match parse_query(query) {
        Ok(parsed) => parsed,
        Err(e) => return bad_request(&e),
    };
    let sub = registry.subscribe(filter, max_rps);
    let mut rsp = Response::new(TapBody::new(sub).boxed());
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    rsp
}

/// `PUT /logging?level=<filter>`: changes the log filter at run time, e.g. `debug` or
/// `info,weft_proxy=trace` (tracing-subscriber `EnvFilter` syntax).
fn set_log_level(state: &AdminState, peer: SocketAddr, query: &str) -> Rsp {
    // Debug logging from anywhere would let a caller fill the disk and read request details
    // in the logs: like `/shutdown`, loopback only.
    if !peer.ip().is_loopback() {
        tracing::warn!(%peer, "log level change refused: not from loopback");
        state.metrics.admin_refused("/logging");
        return text(
            StatusCode::FORBIDDEN,
            "changing the log level is allowed from loopback only\n",
        );
    }
    let Some(control) = &state.log_control else {
        return text(StatusCode::NOT_FOUND, "log control is not available\n");
    };
    let level = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "level")
        .map(|(_, v)| v.into_owned());
    let Some(level) = level else {
        return bad_request("missing query parameter: level");
    };
    match control(&level) {
        Ok(()) => {
            if let Ok(mut current) = state.log_level.lock() {
                current.clone_from(&level);
            }
            tracing::info!(%level, "log level changed through the admin server");
            text_owned(StatusCode::OK, format!("{level}\n"))
        }
        Err(e) => bad_request(&format!("level: {e}")),
    }
}

/// `POST /shutdown`: starts a graceful shutdown, for loopback clients only.
fn shutdown(state: &AdminState, peer: SocketAddr) -> Rsp {
    if !peer.ip().is_loopback() {
        tracing::warn!(%peer, "shutdown refused: not from loopback");
        state.metrics.admin_refused("/shutdown");
        return text(
            StatusCode::FORBIDDEN,
            "shutdown is allowed from loopback only\n",
        );
    }
    tracing::info!(%peer, "shutdown requested through the admin server");
    state.shutdown.cancel();
    text(StatusCode::ACCEPTED, "shutting down\n")
}
