//! The response body sent downstream: the upstream's body streamed frame by frame (data and
//! trailers, never buffered whole), or a small body the proxy made itself.
//!
//! An upstream body that fails midway is never completed as if it were whole (DESIGN.md
//! "Errors"): the error goes to hyper, which closes an HTTP/1 connection without the final
//! chunk (or short of Content-Length) and resets an HTTP/2 stream; a gRPC response instead
//! ends with `grpc-status: 14` (UNAVAILABLE) trailers, which gRPC clients understand. The
//! stream's end (complete, broken, or left by the client) finishes the exchange.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use super::classify::{grpc_status, Classifier, Verdict};
use super::exchange::{Exchange, Outcome, CANCELLED};
use crate::endpoint::{Balancer, BodyState, Endpoint};
use crate::error::{ErrorKind, Fault};

/// A downstream response body.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Upstream(Box<Streamed>),
    Local(Full<Bytes>),
}

/// An upstream body on its way downstream, with what is needed to finish its exchange.
struct Streamed {
    /// A frame read while the response head was held (see `dispatch`).
    first: Option<Frame<Bytes>>,
    /// The upstream body already ended (while the head was held, or at its trailers).
    ended: bool,
    body: Incoming,
    grpc: bool,
    /// Data bytes passed downstream so far.
    bytes: u64,
    /// `grpc-status` of the trailers, once seen.
    grpc_status: Option<u32>,
    upstream: Upstream,
    /// Finished (taken) when the stream ends.
    exchange: Option<Exchange>,
}

/// Who answered, and how the answer is judged.
pub(crate) struct Upstream {
    /// The verdict on the response head; trailers may still change it.
    pub(crate) verdict: Verdict,
    pub(crate) classifier: Classifier,
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) endpoint: Arc<Endpoint>,
    /// The request body: if the client broke it, a stream that then broke is its fault.
    pub(crate) request_body: Option<BodyState>,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("endpoint", &self.upstream.endpoint.addr)
            .field("verdict", &self.upstream.verdict)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Completely, as the upstream sent it.
    Complete,
    /// It broke midway.
    Failed,
    /// The downstream went away first.
    Cancelled,
}

// === impl ProxyBody ===

impl ProxyBody {
    /// Streams an upstream body; `first` is a frame already read from it, `ended` says the
    /// body already ended. `exchange` is finished when the stream ends.
    pub(crate) fn upstream(
        first: Option<Frame<Bytes>>,
        ended: bool,
        body: Incoming,
        grpc: bool,
        upstream: Upstream,
        exchange: Exchange,
    ) -> ProxyBody {
        let mut streamed = Streamed {
            first: None,
            ended,
            body,
            grpc,
            bytes: 0,
            grpc_status: None,
            upstream,
            exchange: Some(exchange),
        };
        if let Some(frame) = first {
            streamed.observe(&frame);
            streamed.first = Some(frame);
        }
        ProxyBody {
            inner: Inner::Upstream(Box::new(streamed)),
        }
    }
}

impl From<Bytes> for ProxyBody {
    fn from(bytes: Bytes) -> ProxyBody {
        ProxyBody {
            inner: Inner::Local(Full::new(bytes)),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().inner {
            Inner::Upstream(s) => s.poll_frame(cx),
            Inner::Local(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(s) => s.first.is_none() && (s.ended || s.body.is_end_stream()),
            Inner::Local(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(s) if s.first.is_none() && s.ended => SizeHint::with_exact(0),
            Inner::Upstream(s) => {
                let first = s
                    .first
                    .as_ref()
                    .and_then(Frame::data_ref)
                    .map_or(0, |d| d.len() as u64);
                let hint = s.body.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + first);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + first);
                }
                out
            }
            Inner::Local(b) => b.size_hint(),
        }
    }
}

// === impl Streamed ===

impl Streamed {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(frame) = self.first.take() {
            self.count(&frame);
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.ended {
            self.finish(End::Complete);
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.ended = true;
                self.finish(End::Complete);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.observe(&frame);
                self.count(&frame);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                tracing::debug!(%error, "upstream body failed midway");
                self.ended = true;
                self.finish(End::Failed);
                if self.grpc {
                    return Poll::Ready(Some(Ok(Frame::trailers(unavailable_trailers()))));
                }
                Poll::Ready(Some(Err(error)))
            }
        }
    }

    /// Trailers may decide the verdict (gRPC `grpc-status`), and end the stream.
    fn observe(&mut self, frame: &Frame<Bytes>) {
        let Some(trailers) = frame.trailers_ref() else {
            return;
        };
        self.grpc_status = grpc_status(trailers);
        if let Some(verdict) = self.upstream.classifier.trailers(trailers) {
            self.upstream.verdict = verdict;
        }
        self.ended = true;
    }

    fn count(&mut self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            self.bytes += data.len() as u64;
        }
    }

    /// Finishes the exchange, once. A stream that broke is the client's fault when the
    /// client had broken its request body first (the upstream only reacted to that).
    fn finish(&mut self, end: End) {
        let Some(exchange) = self.exchange.take() else {
            return;
        };
        let up = &self.upstream;
        let client_broke_request = up
            .request_body
            .as_ref()
            .is_some_and(BodyState::client_failed);
        let error = match end {
            End::Complete => None,
            End::Failed if client_broke_request => {
                Some((ErrorKind::BadRequestBody.reason(), Fault::Downstream))
            }
            End::Failed => Some((ErrorKind::UpstreamReset.reason(), Fault::Upstream)),
            End::Cancelled => Some((CANCELLED, Fault::Downstream)),
        };
        exchange.finish(Outcome {
            success: up.verdict.is_success(),
            error,
            bytes: self.bytes,
            grpc_status: self.grpc_status,
            upstream: Some((up.balancer.clone(), up.endpoint.clone())),
        });
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // hyper drops a body without polling it again once it reports its end (all of its
        // Content-Length sent): that is a complete stream, not a cancelled one.
        let complete = self.first.is_none() && (self.ended || self.body.is_end_stream());
        self.finish(if complete {
            End::Complete
        } else {
            End::Cancelled
        });
    }
}

/// gRPC trailers for a stream the upstream broke: UNAVAILABLE (14), which gRPC clients treat
/// as transient.
fn unavailable_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    trailers.insert(
        "grpc-message",
        HeaderValue::from_static("weft: upstream stream failed"),
    );
    trailers.insert(
        "l5d-proxy-error",
        HeaderValue::from_static("upstream-reset"),
    );
    trailers
}
