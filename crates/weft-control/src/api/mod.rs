//! The operators' HTTP API, in namerd's shapes (`docs/control-plane.md`, "HTTP API"):
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/1/dtabs` | JSON list of namespace names |
//! | `GET /api/1/dtabs/<ns>` | the dtab, JSON `[{prefix, dst}]` or `application/dtab` text per `Accept`; `ETag: "<version>"` |
//! | `GET /api/1/dtabs/<ns>?watch=true` | newline-delimited JSON, one object per version |
//! | `POST /api/1/dtabs/<ns>` | create; 409 if it exists |
//! | `PUT /api/1/dtabs/<ns>` | update; `If-Match` gives 412 on a lost update; 404 if absent; 422 if a name proxies route would bind to nothing (unless `?force=true`) |
//! | `PUT /api/1/dtabs/<ns>?dryRun=true` | nothing written: every name proxies route in `<ns>`, bound under the stored and the proposed dtab |
//! | `DELETE /api/1/dtabs/<ns>` | delete; 404 if absent |
//! | `GET /api/1/delegate/<ns>?path=` | the delegation tree, as the proxy admin's `/delegator.json` |
//! | `GET /api/1/resolve/<ns>?path=` | the bound endpoints |

mod codec;
mod naming;
mod rollout;
mod watch;

use bytes::{Buf, BufMut, Bytes};
use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MATCH};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use weft_naming::Dtab;

use crate::auth::Denied;
use crate::body::{json, respond, text, Rsp};
use crate::store::{valid_namespace, StoreError};
use crate::{Control, Peer};

/// The largest request body accepted (a dtab), 1 MiB; larger ones get 413.
pub(crate) const MAX_BODY: usize = 1 << 20;
/// How much of a too-large body is read (and discarded) before answering 413; larger
/// declared bodies get 413 at once.
const DRAIN_LIMIT: usize = 8 << 20;

pub(crate) async fn handle<B>(control: &Control, peer: Peer, req: Request<B>) -> Rsp
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/api/1/") else {
        return text(StatusCode::NOT_FOUND, "not found; the API is under /api/1/");
    };
    let (resource, ns) = match rest.split_once('/') {
        Some((r, ns)) => (r, Some(ns)),
        None => (rest, None),
    };
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let checked = if write {
        control
            .inner
            .auth
            .check_write(req.headers(), peer.spiffe_id.as_deref())
    } else {
        control.inner.auth.check_read(peer.addr)
    };
    if let Err(denied) = checked {
        if write {
            control.metrics().write(match denied {
                Denied::Unauthorized(_) => "unauthorized",
                Denied::Forbidden(_) => "forbidden",
            });
        }
        return match denied {
            Denied::Unauthorized(why) => {
                let mut rsp = text(StatusCode::UNAUTHORIZED, &why);
                rsp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"weft control\""),
                );
                rsp
            }
            Denied::Forbidden(why) => text(StatusCode::FORBIDDEN, &why),
        };
    }
    if let Some(ns) = ns {
        if !valid_namespace(ns) {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("invalid namespace name {ns:?}: use 1 to 128 of A-Z a-z 0-9 - _ ."),
            );
        }
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method().clone(), resource, ns) {
        (Method::GET, "dtabs", None) => list(control).await,
        (Method::GET, "dtabs", Some(ns)) if param(&query, "watch").as_deref() == Some("true") => {
            watch::start(control, ns, &query)
        }
        (Method::GET, "dtabs", Some(ns)) => get(control, ns, req.headers()).await,
        (Method::POST, "dtabs", Some(ns)) => {
            let result = match read_dtab(req).await {
                Ok(dtab) => control.store().create(ns, &dtab).await,
                Err(refused) => return written(control, refused.response()),
            };
            written(control, stored(control, "create", result))
        }
        (Method::PUT, "dtabs", Some(ns)) => {
            let expected = if_match(req.headers());
            let dtab = match read_dtab(req).await {
                Ok(dtab) => dtab,
                Err(refused) => return written(control, refused.response()),
            };
            let dry_run = param(&query, "dryRun").as_deref() == Some("true");
            let force = param(&query, "force").as_deref() == Some("true");
            // The check costs a read and a binding per routed name: only when proxies route
            // names of this namespace.
            let routed = || {
                control
                    .resolution()
                    .watched()
                    .iter()
                    .any(|w| w.namespace == ns)
            };
            if dry_run || (!force && routed()) {
                let current = match control.store().get(ns).await {
                    Ok(Some(v)) => v.dtab,
                    Ok(None) => return store_error(control, "get", &StoreError::not_found(ns)),
                    Err(e) => return store_error(control, "get", &e),
                };
                let changes = rollout::changes(control, ns, &current, &dtab).await;
                if dry_run {
                    return rollout::dry_run(ns, &changes);
                }
                if let Some(refused) = rollout::refuse_lost(&changes) {
                    return written(control, refused);
                }
            }
            let result = control.store().update(ns, &dtab, expected.as_deref()).await;
            written(control, stored(control, "update", result))
        }
        (Method::DELETE, "dtabs", Some(ns)) => {
            let expected = if_match(req.headers());
            let result = control.store().delete(ns, expected.as_deref()).await;
            let result = result.map(|()| String::new());
            written(control, stored(control, "delete", result))
        }
        (Method::GET, "delegate", Some(ns)) => naming::delegate(control, ns, &query).await,
        (Method::GET, "resolve", Some(ns)) => naming::resolve(control, ns, &query).await,
        (_, "dtabs" | "delegate" | "resolve", _) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /api/1/dtabs, /api/1/delegate/<ns>, /api/1/resolve/<ns>",
        ),
    }
}

async fn list(control: &Control) -> Rsp {
    match control.store().list().await {
        Ok(names) => json(StatusCode::OK, &serde_json::json!(names)),
        Err(e) => store_error(control, "list", &e),
    }
}

async fn get(control: &Control, ns: &str, headers: &http::HeaderMap) -> Rsp {
    let found = match control.store().get(ns).await {
        Ok(Some(v)) => v,
        Ok(None) => return store_error(control, "get", &StoreError::not_found(ns)),
        Err(e) => return store_error(control, "get", &e),
    };
    let wants_text = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(codec::DTAB_MEDIA_TYPE));
    let mut rsp = if wants_text {
        respond(
            StatusCode::OK,
            codec::DTAB_MEDIA_TYPE,
            format!("{:#}", found.dtab),
        )
    } else {
        json(StatusCode::OK, &codec::to_json(&found.dtab))
    };
    set_etag(&mut rsp, &found.version);
    rsp
}

/// The version a write expects, from `If-Match: "<version>"` (`*`: any version).
fn if_match(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(IF_MATCH)?.to_str().ok()?.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v.trim_matches('"');
    (v != "*" && !v.is_empty()).then(|| v.to_owned())
}

fn set_etag(rsp: &mut Rsp, version: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        rsp.headers_mut().insert(ETAG, v);
    }
}

/// Why a request body was refused as a dtab.
enum Refused {
    /// Over [`MAX_BODY`]: 413.
    TooLarge,
    /// Unreadable or not a dtab: 400 with the reason.
    Invalid(String),
}

impl Refused {
    fn response(self) -> Rsp {
        match self {
            Refused::TooLarge => text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes"),
            ),
            Refused::Invalid(why) => text(StatusCode::BAD_REQUEST, &why),
        }
    }
}

/// Reads the request body as a dtab: `application/json` as namerd's `[{prefix, dst}]`,
/// anything else as dtab text.
async fn read_dtab<B>(req: Request<B>) -> Result<Dtab, Refused>
where
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(Refused::TooLarge);
    }
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = match read_limited(req.into_body()).await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(Refused::TooLarge),
        Err(e) => return Err(Refused::Invalid(format!("cannot read the body: {e}"))),
    };
    let parsed = if is_json {
        codec::from_json(&body)
    } else {
        match std::str::from_utf8(&body) {
            Ok(s) => Dtab::read(s).map_err(|e| format!("invalid dtab: {e}")),
            Err(e) => Err(format!("the dtab is not UTF-8: {e}")),
        }
    };
    parsed.map_err(Refused::Invalid)
}

/// Reads a body of at most [`MAX_BODY`] bytes; `None` if it is larger. The rest of a larger
/// body is read and discarded (up to [`DRAIN_LIMIT`]) so that the 413 reaches the client
/// instead of a connection reset caused by unread data.
async fn read_limited<B>(body: B) -> Result<Option<Bytes>, B::Error>
where
    B: http_body::Body,
{
    let mut body = std::pin::pin!(body);
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        seen += data.remaining();
        if seen <= MAX_BODY {
            buf.put(data);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    Ok((seen <= MAX_BODY).then(|| buf.freeze()))
}

/// Turns a store write's result into the response: 204 with the new `ETag`, or the error.
fn stored(control: &Control, op: &'static str, result: Result<String, StoreError>) -> Rsp {
    match result {
        Ok(version) => {
            let mut rsp = respond(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", "");
            if !version.is_empty() {
                set_etag(&mut rsp, &version);
            }
            rsp
        }
        Err(e) => store_error(control, op, &e),
    }
}

/// Counts a write by the status of its response.
fn written(control: &Control, rsp: Rsp) -> Rsp {
    control.metrics().write(match rsp.status() {
        s if s.is_success() => "ok",
        StatusCode::PRECONDITION_FAILED => "conflict",
        StatusCode::CONFLICT => "exists",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "invalid",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "error",
    });
    rsp
}

/// The response for a store error; backend failures are counted under `op`.
pub(crate) fn store_error(control: &Control, op: &'static str, e: &StoreError) -> Rsp {
    let status = if e.is_not_found() {
        StatusCode::NOT_FOUND
    } else if e.is_exists() {
        StatusCode::CONFLICT
    } else if e.is_conflict() {
        StatusCode::PRECONDITION_FAILED
    } else if e.is_invalid() {
        StatusCode::BAD_REQUEST
    } else if e.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if status.is_server_error() {
        control.metrics().store_error(op);
        tracing::warn!(op, error = %e, "store operation failed");
    }
    let mut rsp = text(status, &e.to_string());
    if let Some(current) = e.current_version() {
        set_etag(&mut rsp, current);
    }
    rsp
}

/// The first value of query parameter `key`.
pub(crate) fn param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}
