//! The timeouts of a client's HTTP/1.1 connection outside its requests, kept apart because
//! they guard against different things:
//!
//! - **keep-alive** (`keepAliveTimeout`, long): no request in progress and no byte from the
//!   client. Closing such a connection races with the client sending its next request on it
//!   (RFC 9112 section 9.5), so the proxy waits long and lets the client decide.
//! - **header read** (`headerReadTimeout`): a request head started but is not complete: a
//!   client trickling bytes to hold the connection (slowloris). It gets 408 `header-timeout`.
//!
//! hyper's own `header_read_timeout` runs from the end of one response to the end of the next
//! head, so it is both at once, with one value; it also costs a timer allocation and
//! registration per request. Here the connection's I/O ([`Timed`]) watches the client's bytes,
//! the service marks requests in progress ([`Phase::begin`]), and one timer per connection is
//! re-armed only when a deadline moves earlier, which in steady traffic is almost never.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use weft_telemetry::RouterMetrics;

use crate::error::{ErrorKind, ProxyError};

/// No request in progress, no byte since the last response ended.
const IDLE: u8 = 0;
/// The first bytes of a request head arrived.
const HEAD: u8 = 1;
/// A request is in progress: routed, and its response not yet fully sent.
const BUSY: u8 = 2;
/// The connection switched protocols (101, or a CONNECT tunnel): no HTTP timeouts apply any
/// more (`tcpIdleTimeout` does, in the tunnel).
const UPGRADED: u8 = 3;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The two timeouts of [`Timed`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// From the end of a response (or the connection's start) to the next byte.
    pub(crate) keep_alive: Duration,
    /// From the first byte of a request head until the request is routed.
    pub(crate) header_read: Duration,
    /// Keep each request head's bytes, at most this many (for header spelling across the
    /// proxy-to-proxy hop, `headers::case`); `None`: keep nothing.
    pub(crate) keep_heads: Option<usize>,
}

/// Where one connection is between and within its requests, shared by its I/O and its
/// service (all in the connection's task, so relaxed atomics suffice).
pub(crate) struct Phase {
    state: AtomicU8,
    /// Requests routed whose responses are not yet fully sent (hyper serves them in order, so
    /// at most one, but a count cannot go wrong whatever the order of drops).
    busy: AtomicU32,
    /// When `state` began, in nanoseconds after `origin`.
    since: AtomicU64,
    /// When the connection's timer fires, in nanoseconds after `origin`; `u64::MAX`: not
    /// armed. Read by [`Phase::idle`] to tell whether the timer will wake the connection.
    armed: AtomicU64,
    /// The connection task, woken when it turns idle with no timer armed early enough: hyper
    /// may have polled its read before the response body was dropped, and would not again.
    waker: AtomicWaker,
    limits: Limits,
    /// Counts the connections the timeouts close.
    metrics: RouterMetrics,
    origin: Instant,
    /// The bytes of the request head being read, when `limits.keep_heads` asks for them
    /// (`None` inside: too long, dropped).
    head: Option<Mutex<Option<BytesMut>>>,
}

impl Phase {
    /// A new connection's phase: idle (its first bytes start a head) under `limits`.
    pub(crate) fn new(limits: Limits, metrics: RouterMetrics) -> Arc<Phase> {
        Arc::new(Phase {
            state: AtomicU8::new(IDLE),
            busy: AtomicU32::new(0),
            since: AtomicU64::new(0),
            armed: AtomicU64::new(u64::MAX),
            waker: AtomicWaker::new(),
            limits,
            metrics,
            origin: Instant::now(),
            head: limits.keep_heads.map(|_| Mutex::new(Some(BytesMut::new()))),
        })
    }

    /// A request was routed: no timeout of this module applies until its response is sent
    /// (the request's own timeouts do). The guard ends it when dropped.
    pub(crate) fn begin(self: &Arc<Phase>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s != UPGRADED).then_some(BUSY)
            });
        Busy(self.clone())
    }

    fn nanos(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.origin))
    }

    /// Enters `state` now; returns when that was.
    fn set(&self, state: u8) -> u64 {
        let now = self.nanos(Instant::now());
        self.since.store(now, Ordering::Relaxed);
        self.state.store(state, Ordering::Relaxed);
        now
    }

    /// The client sent `bytes`: while idle, that starts a request head; while a head is being
    /// read, they are kept if heads are.
    fn received(&self, bytes: &[u8]) {
        let state = self.state.load(Ordering::Relaxed);
        if state == IDLE {
            self.set(HEAD);
        }
        let (Some(head), Some(max)) = (&self.head, self.limits.keep_heads) else {
            return;
        };
        if state == IDLE || state == HEAD {
            let mut head = head.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(kept) = head.as_mut() {
                if kept.len() + bytes.len() > max {
                    *head = None;
                } else {
                    kept.extend_from_slice(bytes);
                }
            }
        }
    }

    /// The kept bytes of the head of the request being routed now, if heads are kept; the
    /// next head starts afresh. A head that came in the same read as the previous request
    /// (pipelining) was kept with that one, so this one has none: its names then go
    /// lowercase over HTTP/2, as they would without the record.
    pub(crate) fn take_head(&self) -> Option<Bytes> {
        let mut head = self
            .head
            .as_ref()?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let kept = head.replace(BytesMut::new())?;
        (!kept.is_empty()).then(|| kept.freeze())
    }

    /// The last request's response is sent: the keep-alive timeout starts. A timer still
    /// armed for no later than its deadline will wake the connection, which then re-arms it;
    /// otherwise (none armed, already fired, or armed later) the task is woken to arm it now.
    fn idle(&self) {
        let now = self.set(IDLE);
        let deadline = now.saturating_add(nanos(self.limits.keep_alive));
        let armed = self.armed.load(Ordering::Relaxed);
        if armed <= now || armed > deadline {
            self.waker.wake();
        }
    }

    /// The deadline that applies now, and the state it belongs to.
    fn deadline(&self) -> Option<(Instant, u8)> {
        let state = self.state.load(Ordering::Relaxed);
        let limit = match state {
            IDLE => self.limits.keep_alive,
            HEAD => self.limits.header_read,
            _ => return None,
        };
        let since = self.origin + Duration::from_nanos(self.since.load(Ordering::Relaxed));
        Some((since + limit, state))
    }
}

impl std::fmt::Debug for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phase")
            .field("state", &self.state)
            .field("busy", &self.busy)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A request in progress on a connection; dropped with the response body (or the request,
/// if it never got one), which makes the connection idle again.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Phase>);

impl Busy {
    /// The response switches protocols: from now on the connection is a tunnel.
    pub(crate) fn upgraded(&self) {
        self.0.state.store(UPGRADED, Ordering::Relaxed);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let phase = &self.0;
        if phase.busy.fetch_sub(1, Ordering::Relaxed) == 1
            && phase.state.load(Ordering::Relaxed) == BUSY
        {
            phase.idle();
        }
    }
}

/// A response body that keeps its request [`Busy`] until hyper has sent it and drops it.
#[derive(Debug)]
pub(crate) struct Guarded<B> {
    body: B,
    _busy: Busy,
}

impl<B> Guarded<B> {
    /// `body`, keeping `busy` until it is dropped.
    pub(crate) fn new(body: B, busy: Busy) -> Guarded<B> {
        Guarded { body, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client connection's I/O that enforces the [`Limits`] while hyper waits to read: an
/// expired keep-alive reads as end of stream (hyper then closes the connection cleanly); an
/// expired header read gets a 408 `header-timeout` response written straight to the client,
/// then an error that makes hyper drop the connection.
pub(crate) struct Timed<I> {
    io: I,
    phase: Arc<Phase>,
    /// Armed at or before the current deadline; allocated on the first wait.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<I> Timed<I> {
    /// `io` of a connection whose requests mark `phase`.
    pub(crate) fn new(io: I, phase: Arc<Phase>) -> Timed<I> {
        Timed {
            io,
            phase,
            sleep: None,
        }
    }
}

impl<I: AsyncWrite + Unpin> Timed<I> {
    /// Called when a read would block: `Pending` with the timer armed, or the expiry.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.phase.waker.register(cx.waker());
        let Some((deadline, state)) = self.phase.deadline() else {
            return Poll::Pending;
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Fire no later than the deadline; an earlier firing only re-arms (below).
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                let armed = self.phase.nanos(sleep.deadline());
                self.phase.armed.store(armed, Ordering::Relaxed);
                return Poll::Pending;
            }
            if sleep.deadline() >= deadline {
                break;
            }
            sleep.as_mut().reset(deadline);
        }
        self.phase.armed.store(u64::MAX, Ordering::Relaxed);
        Poll::Ready(self.expire(state, cx))
    }

    fn expire(&mut self, state: u8, cx: &mut Context<'_>) -> io::Result<()> {
        let limits = self.phase.limits;
        if state == IDLE {
            tracing::debug!(after = ?limits.keep_alive, "closing an idle keep-alive connection");
            self.phase.metrics.connection_timeout("keep-alive");
            return Ok(()); // end of stream
        }
        self.phase.metrics.connection_timeout("header-read");
        let limit = limits.header_read;
        let err = ProxyError::new(
            ErrorKind::HeaderTimeout,
            format!("request head not complete within {limit:?}"),
        );
        tracing::debug!(error = %err, "closing the connection");
        // Best effort: a client too slow to send its head may be too slow to read this too,
        // and it does not get to hold the connection longer for it.
        // Flushed too, for I/O that buffers what it is given (a TLS session may).
        let _ = Pin::new(&mut self.io).poll_write(cx, &encode(&err));
        let _ = Pin::new(&mut self.io).poll_flush(cx);
        Err(io::Error::new(io::ErrorKind::TimedOut, err))
    }
}

/// `err` as a complete HTTP/1.1 response that closes the connection.
fn encode(err: &ProxyError) -> Vec<u8> {
    let rsp: http::Response<Bytes> = err.to_response();
    let status = rsp.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in rsp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body = rsp.body();
    out.extend_from_slice(
        format!(
            "connection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Timed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.phase.received(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_deadline(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

forward_async_write!(Timed, io);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_timeout_encodes_as_a_closing_408_with_the_reason() {
        let err = ProxyError::new(ErrorKind::HeaderTimeout, "request head not complete");
        let text = String::from_utf8(encode(&err)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nl5d-proxy-error: header-timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
        assert_eq!(body, "header-timeout: request head not complete\n");
    }

    #[test]
    fn phases_follow_requests_and_stop_at_an_upgrade() {
        let limits = Limits {
            keep_alive: Duration::from_secs(100),
            header_read: Duration::from_secs(5),
            keep_heads: None,
        };
        let phase = Phase::new(limits, weft_telemetry::Metrics::new("test").router("r"));
        let state = |p: &Phase| p.deadline().map(|(_, s)| s);
        assert_eq!(state(&phase), Some(IDLE));
        phase.received(b"GET");
        assert_eq!(state(&phase), Some(HEAD));
        let busy = phase.begin();
        phase.received(b"body"); // request body bytes: still busy
        assert_eq!(state(&phase), None);
        drop(busy);
        assert_eq!(state(&phase), Some(IDLE));
        let busy = phase.begin();
        busy.upgraded();
        drop(busy);
        phase.received(b"tunnel");
        assert_eq!(state(&phase), None, "a tunnel has no HTTP timeouts");
    }

    #[test]
    fn heads_are_kept_per_request_only_when_asked_and_only_up_to_the_limit() {
        let limits = Limits {
            keep_alive: Duration::from_secs(100),
            header_read: Duration::from_secs(5),
            keep_heads: Some(20),
        };
        let phase = Phase::new(limits, weft_telemetry::Metrics::new("test").router("r"));
        phase.received(b"GET / HTTP/1.1\r\n");
        phase.received(b"\r\n");
        let busy = phase.begin();
        assert_eq!(
            phase.take_head().as_deref(),
            Some(&b"GET / HTTP/1.1\r\n\r\n"[..])
        );
        phase.received(b"body bytes are not kept");
        drop(busy);
        assert_eq!(phase.take_head(), None);
        phase.received(b"GET /a-long-path HTTP/1.1\r\n");
        assert_eq!(phase.take_head(), None, "longer than the limit: dropped");
        phase.received(b"GET / HTTP/1.1\r\n");
        assert!(phase.take_head().is_some(), "the next head is kept again");
        let plain = Phase::new(
            Limits {
                keep_heads: None,
                ..limits
            },
            weft_telemetry::Metrics::new("test").router("r"),
        );
        plain.received(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(plain.take_head(), None, "not asked: nothing kept");
    }
}
