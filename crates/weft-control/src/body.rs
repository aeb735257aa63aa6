//! Response bodies: whole ones, and the stream of a watch.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

/// A response of the API or the admin server.
pub(crate) type Rsp = Response<BoxBody<Bytes, io::Error>>;

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Rsp {
    let body = Full::new(body.into())
        .map_err(|never| match never {})
        .boxed();
    let mut rsp = Response::new(body);
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    rsp
}

/// A one-line text reason (a newline is added).
pub(crate) fn text(status: StatusCode, reason: &str) -> Rsp {
    respond(status, "text/plain; charset=utf-8", format!("{reason}\n"))
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Rsp {
    let body = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"{e}\""));
    respond(status, "application/json", body + "\n")
}

/// A streamed body fed by a bounded channel; an `Err` item ends the response abruptly (the
/// client sees a truncated stream rather than a clean end).
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl ChannelBody {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> ChannelBody {
        ChannelBody { rx }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}
