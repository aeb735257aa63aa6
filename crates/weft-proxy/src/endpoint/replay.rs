//! A request body that streams to the upstream while keeping a bounded copy, so the request
//! can be sent again (retry or requeue) if it fails. Nothing waits for the whole body: the
//! first attempt streams as it arrives, which keeps client-streaming and bidirectional gRPC
//! calls working. The idea follows linkerd2-proxy's `ReplayBody`.
//!
//! The limit is `service.retries.bufferBytes` (64 KiB by default). A body larger than the
//! limit stops being copied; it then cannot be replayed and the request is not retried. A
//! body that was never polled (the connection failed first) can always be replayed.
//!
//! The body also remembers whether the client broke it (went away mid-upload, sent a
//! malformed chunk or the wrong length): the request then failed by the client's fault, and
//! the endpoint, which only saw the upload stop, is not blamed.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// One attempt's view of a replayable request body. Create the first with
/// [`ReplayBody::new`] and later ones with [`ReplayBody::retry`].
#[derive(Debug)]
pub(crate) struct ReplayBody {
    /// `None` for a request without a body (most of them): nothing to copy, share or fail.
    shared: Option<Arc<Mutex<Shared>>>,
    /// Which attempt this is; a stale attempt (superseded by a retry) reads nothing more.
    generation: u64,
    /// Next buffered chunk this attempt replays.
    replay_index: usize,
    trailers_sent: bool,
}

#[derive(Debug)]
struct Shared {
    source: Option<Source>,
    chunks: Vec<Bytes>,
    buffered: usize,
    limit: usize,
    /// More was read than the limit allows: the copy is incomplete.
    overflowed: bool,
    /// The source reached its end (all data, and trailers if any, are in the copy).
    ended: bool,
    /// The source (the downstream client's body) failed.
    failed: bool,
    trailers: Option<HeaderMap>,
    generation: u64,
}

/// The downstream body being copied.
pub(crate) enum Source {
    /// A request body as hyper's server received it.
    Incoming(Incoming),
    /// Any body, for unit tests of the request path.
    #[cfg(test)]
    Test(Pin<Box<dyn Body<Data = Bytes, Error = ReplayError> + Send>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Source")
    }
}

impl From<Incoming> for Source {
    fn from(body: Incoming) -> Source {
        Source::Incoming(body)
    }
}

impl Source {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        match self {
            Source::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(|e| e.into()),
            #[cfg(test)]
            Source::Test(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Incoming(b) => b.is_end_stream(),
            #[cfg(test)]
            Source::Test(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Incoming(b) => b.size_hint(),
            #[cfg(test)]
            Source::Test(b) => b.size_hint(),
        }
    }
}

/// A look at a request body's state from outside the attempt that sends it.
#[derive(Clone, Debug)]
pub(crate) struct BodyState(Option<Arc<Mutex<Shared>>>);

impl BodyState {
    /// True when the downstream client broke the body: a read of it failed (connection
    /// closed or reset mid-upload, malformed chunked encoding, length not as announced).
    pub(crate) fn client_failed(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.lock().unwrap_or_else(PoisonError::into_inner).failed)
    }
}

/// The reason a stale attempt's body stops: a newer attempt took over.
#[derive(Debug)]
pub(crate) struct Superseded;

impl std::fmt::Display for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body taken over by a newer attempt")
    }
}

impl std::error::Error for Superseded {}

/// Errors of a replay body: the downstream body failed, or the attempt was superseded.
pub(crate) type ReplayError = Box<dyn std::error::Error + Send + Sync>;

// === impl ReplayBody ===

impl ReplayBody {
    /// Wraps the downstream body, keeping at most `limit` bytes for replay.
    pub(crate) fn new(source: impl Into<Source>, limit: usize) -> ReplayBody {
        let source = source.into();
        let shared = (!source.is_end_stream()).then(|| {
            Arc::new(Mutex::new(Shared {
                source: Some(source),
                chunks: Vec::new(),
                buffered: 0,
                limit,
                overflowed: false,
                ended: false,
                failed: false,
                trailers: None,
                generation: 0,
            }))
        });
        ReplayBody {
            shared,
            generation: 0,
            replay_index: 0,
            trailers_sent: false,
        }
    }

    /// A body for the next attempt, replaying what was read so far and then continuing from
    /// the source. `None` when the copy is incomplete (the body outgrew the limit).
    pub(crate) fn retry(&self) -> Option<ReplayBody> {
        let Some(arc) = &self.shared else {
            return Some(ReplayBody {
                shared: None,
                generation: 0,
                replay_index: 0,
                trailers_sent: false,
            });
        };
        let mut shared = lock(arc);
        if shared.overflowed || shared.failed {
            return None;
        }
        shared.generation += 1;
        Some(ReplayBody {
            shared: Some(arc.clone()),
            generation: shared.generation,
            replay_index: 0,
            trailers_sent: false,
        })
    }

    /// True while a later attempt could still replay this body: nothing was dropped from
    /// the copy, and the client did not break it.
    pub(crate) fn is_replayable(&self) -> bool {
        self.shared.as_ref().is_none_or(|arc| {
            let shared = lock(arc);
            !shared.overflowed && !shared.failed
        })
    }

    /// A handle on this body's state that outlives the attempt it is sent with.
    pub(crate) fn handle(&self) -> BodyState {
        BodyState(self.shared.clone())
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = ReplayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        let this = self.get_mut();
        let Some(arc) = &this.shared else {
            return Poll::Ready(None);
        };
        let mut shared = lock(arc);
        if shared.generation != this.generation {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if let Some(chunk) = shared.chunks.get(this.replay_index) {
            this.replay_index += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        if shared.ended {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = shared.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        let Some(source) = shared.source.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = source.poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.ended = true;
                shared.source = None;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                shared.failed = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        shared.keep(&data);
                        // This attempt has now seen every buffered chunk.
                        this.replay_index = shared.chunks.len();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(frame) => frame,
                };
                if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = Some(trailers.clone());
                    shared.ended = true;
                    shared.source = None;
                    this.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let Some(arc) = &self.shared else {
            return true;
        };
        let shared = lock(arc);
        shared.ended
            && self.replay_index >= shared.chunks.len()
            && (self.trailers_sent || shared.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let Some(arc) = &self.shared else {
            return SizeHint::with_exact(0);
        };
        let shared = lock(arc);
        let replay: u64 = shared.chunks[self.replay_index.min(shared.chunks.len())..]
            .iter()
            .map(|c| c.len() as u64)
            .sum();
        match &shared.source {
            None if shared.ended => SizeHint::with_exact(replay),
            None => SizeHint::default(),
            Some(src) => {
                let hint = src.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + replay);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + replay);
                }
                out
            }
        }
    }
}

// === impl Shared ===

impl Shared {
    /// Keeps a copy of `data` for replay while it fits under the limit.
    fn keep(&mut self, data: &Bytes) {
        if self.overflowed {
            return;
        }
        if self.buffered + data.len() > self.limit {
            self.overflowed = true;
            self.chunks.clear();
            return;
        }
        self.buffered += data.len();
        self.chunks.push(data.clone());
    }
}
