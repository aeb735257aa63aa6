//! The admin server's responses: one body type, and text and JSON with their content types.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Every admin response.
pub(crate) type Rsp = Response<BoxBody<Bytes, Infallible>>;

pub(crate) fn bad_request(msg: &str) -> Rsp {
    text_owned(StatusCode::BAD_REQUEST, format!("{msg}\n"))
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Rsp {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

pub(crate) fn text_owned(status: StatusCode, body: String) -> Rsp {
    respond(status, "text/plain; charset=utf-8", body)
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Rsp {
    let body = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"{e}\""));
    respond(status, "application/json", body + "\n")
}

pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: String) -> Rsp {
    let mut rsp = Response::new(Full::new(Bytes::from(body)).boxed());
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    rsp
}
