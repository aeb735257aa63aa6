//! The response body sent downstream: the upstream's body streamed frame by frame (data and
//! trailers, never buffered whole), or a small body the proxy made itself.
//!
//! An upstream body that fails midway is never completed as if it were whole (DESIGN.md
//! "Errors"): the error goes to hyper, which closes an HTTP/1 connection without the final
//! chunk (or short of Content-Length) and resets an HTTP/2 stream; a gRPC response instead
//! ends with `grpc-status: 14` (UNAVAILABLE) trailers, which gRPC clients understand. The
//! exchange is counted when the stream ends, so a failure midway counts as a failure.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;
use weft_telemetry::{Classification, ServiceMetrics};

use crate::balance::{Balancer, Endpoint};
use crate::classify::{grpc_status, Classifier, Verdict};
use crate::error::ErrorKind;
use crate::observe::Observed;
use crate::tap::Tapped;

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

/// An upstream body on its way downstream, with what is needed to count it when it ends.
#[derive(Debug)]
struct Streamed {
    /// A frame read while the response head was held (see `forward.rs`).
    first: Option<Frame<Bytes>>,
    /// The upstream body already ended (while the head was held).
    ended: bool,
    body: Incoming,
    grpc: bool,
    /// Data bytes passed downstream so far.
    bytes: u64,
    /// `grpc-status` of the trailers, once seen.
    grpc_status: Option<u32>,
    completion: Option<Completion>,
}

/// Records one finished exchange: response metrics and failure accrual.
pub(crate) struct Completion {
    pub(crate) service: ServiceMetrics,
    pub(crate) status: u16,
    /// The verdict on the response head; trailers may still change it.
    pub(crate) verdict: Verdict,
    pub(crate) classifier: Classifier,
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) endpoint: Arc<Endpoint>,
    /// Live taps of this request, and when its response head went out.
    pub(crate) tap: Option<Tapped>,
    /// Trace span and access log line, finished with the stream.
    pub(crate) observed: Option<Observed>,
    pub(crate) head_at: Instant,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("status", &self.status)
            .field("verdict", &self.verdict)
            .finish()
    }
}

/// How a stream ended.
enum End {
    /// Completely, as the upstream sent it.
    Complete,
    /// The upstream failed midway.
    Failed,
    /// The downstream went away first: neither side's failure, so failure accrual ignores it.
    Cancelled,
}

impl Completion {
    fn finish(self, end: End, bytes: u64, grpc_status: Option<u32>) {
        let (verdict, error) = match end {
            End::Failed => (
                Verdict::Failure { retryable: false },
                ErrorKind::UpstreamReset.reason(),
            ),
            End::Complete | End::Cancelled => (self.verdict, ""),
        };
        let classification = if verdict.is_success() {
            Classification::success
        } else {
            Classification::failure
        };
        self.service.response(self.status, classification, error);
        if let Some(tap) = &self.tap {
            let error = match end {
                End::Failed => Some(error),
                End::Cancelled => Some("cancelled"),
                End::Complete => None,
            };
            tap.end(self.status, self.head_at, bytes, grpc_status, error);
        }
        if let Some(observed) = self.observed {
            let error = match end {
                End::Failed => Some(error),
                End::Cancelled => Some("cancelled"),
                End::Complete => None,
            };
            observed.finish(self.status, Some(self.endpoint.addr), error, bytes);
        }
        if !matches!(end, End::Cancelled) {
            self.balancer.record(&self.endpoint, verdict.is_success());
        }
    }
}

// === impl ProxyBody ===

impl ProxyBody {
    /// Streams an upstream body; `first` is a frame already read from it, `ended` says the
    /// body already ended. `completion` is recorded when the stream ends.
    pub(crate) fn upstream(
        first: Option<Frame<Bytes>>,
        ended: bool,
        body: Incoming,
        grpc: bool,
        completion: Completion,
    ) -> ProxyBody {
        let mut streamed = Streamed {
            first: None,
            ended,
            body,
            grpc,
            bytes: 0,
            grpc_status: None,
            completion: Some(completion),
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

    /// Trailers may decide the verdict (gRPC `grpc-status`).
    fn observe(&mut self, frame: &Frame<Bytes>) {
        let Some(trailers) = frame.trailers_ref() else {
            return;
        };
        self.grpc_status = grpc_status(trailers);
        if let Some(c) = self.completion.as_mut() {
            if let Some(verdict) = c.classifier.trailers(trailers) {
                c.verdict = verdict;
            }
        }
        self.ended = true;
    }

    fn count(&mut self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            self.bytes += data.len() as u64;
        }
    }

    fn finish(&mut self, end: End) {
        if let Some(c) = self.completion.take() {
            c.finish(end, self.bytes, self.grpc_status);
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        let end = if self.ended && self.first.is_none() {
            End::Complete
        } else {
            End::Cancelled
        };
        self.finish(end);
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
