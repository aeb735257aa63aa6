//! The HTTP client towards one endpoint: a pool of HTTP/1.1 connections and one multiplexed
//! HTTP/2 connection, built on hyper's `client::conn` over the endpoint's [`Connector`].
//!
//! Why not hyper-util's pooled `Client`: per request it hashed a pool key, spawned a task to
//! put the connection back, and went through two more channels; in a proxy that sends every
//! request to an endpoint it already picked, that was about an eighth of the instructions
//! per request (`bench/profile --callgrind`, docs/benchmarks.md). This pool keeps the same
//! behaviour where it matters: idle connections close after `pool_idle_timeout`, and a
//! failed send says whether the request was written and whether the connection was reused,
//! so the dispatcher can send it again on a fresh connection when that is safe (the
//! keep-alive race: the server closed an idle connection as the request went out).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;
use weft_tls::Alpn;

use super::connect::{Connector, SendError};
use super::mark::Mark;
use super::preface::{Preface, Sniffed};
use super::replay::ReplayBody;
use crate::error::{ErrorKind, ProxyError};
use crate::tls::ClientIo;

/// HTTP/1 connections pooled per endpoint at most (in use or idle); connections beyond it
/// serve their one exchange and close.
const MAX_POOLED: usize = 256;

/// How long an endpoint counts as draining after it showed it (it closed a pooled
/// connection: `Connection: close`, an idle close, an HTTP/2 GOAWAY or refused stream), unless
/// a connection to it succeeds first. Long enough to cover a drain (`shutdownGrace`, 10 s by
/// default) and a restart; an endpoint that is still refusing after it is simply failing, and
/// failure accrual counts it again.
pub(crate) const DRAINING_FOR: Duration = Duration::from_secs(30);

/// While an endpoint is draining, or ejected by failure accrual after connections to it failed,
/// how often a connection to it is tried in the background, so the endpoint is back in the
/// balancer as soon as it (or its successor) accepts again.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(100);

/// Sends requests to one endpoint: HTTP/2 requests over one multiplexed connection, others
/// over a pool of HTTP/1.1 connections.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
    idle_timeout: Duration,
    /// HTTP/1 connections, in use or idle; the most recently used last.
    h1: Mutex<Vec<Pooled>>,
    /// The HTTP/2 connection, once made, and what its server's first bytes said.
    h2: Mutex<Option<H2Conn>>,
    /// Held while an HTTP/2 connection is being made, so concurrent first requests share one.
    h2_connecting: tokio::sync::Mutex<()>,
    reaper: AtomicBool,
    /// Set when the endpoint closed a connection of the pool (it may be draining), cleared
    /// by the next successful connect or after [`DRAINING_FOR`].
    draining: Mark,
    /// When the endpoint last showed it is draining (closed a connection, refused a stream).
    drain_seen: Mutex<Option<Instant>>,
    /// The last connection attempt failed at connect (refused, reset: nothing listens
    /// there, as while a peer proxy restarts); cleared by the next successful connect.
    refusing: AtomicBool,
}

/// One HTTP/1 connection of the pool.
struct Pooled {
    tx: http1::SendRequest<ReplayBody>,
    /// When a request last went out on it, or when it was last seen busy.
    used: Instant,
}

/// The shared HTTP/2 connection.
#[derive(Clone)]
struct H2Conn {
    tx: http2::SendRequest<ReplayBody>,
    preface: Arc<Preface>,
}

/// A response head, and when its request went out on a ready connection (connection setup
/// excluded: the endpoint's latency, for the balancer).
pub(crate) type Sent = (Response<Incoming>, Instant);

// === impl Pool ===

impl Pool {
    /// A client for the endpoint `connector` connects to; HTTP/1 connections idle for
    /// `idle_timeout` are closed.
    pub(crate) fn new(connector: Connector, idle_timeout: Duration) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                connector,
                idle_timeout,
                h1: Mutex::new(Vec::new()),
                h2: Mutex::new(None),
                h2_connecting: tokio::sync::Mutex::new(()),
                reaper: AtomicBool::new(false),
                draining: Mark::default(),
                drain_seen: Mutex::new(None),
                refusing: AtomicBool::new(false),
            }),
        }
    }

    /// True while the endpoint is taken to be draining: it closed a pooled connection or
    /// refused a stream, and no connection to it has succeeded since (at most
    /// [`DRAINING_FOR`]). One atomic load when it is not.
    pub(crate) fn is_draining(&self) -> bool {
        self.shared.draining.is_set()
    }

    /// True when the last connection attempt to the endpoint failed at connect (refused or
    /// reset): nothing listens there now.
    pub(crate) fn refuses_connections(&self) -> bool {
        self.shared.refusing.load(Ordering::Relaxed)
    }

    /// Opens a connection of its own (opaque TCP, upgrades) offering `alpn`: the pool's
    /// connect path, so that it too tells whether the endpoint accepts connections.
    ///
    /// # Errors
    /// As `Connector::connect`.
    pub(crate) async fn open(&self, alpn: Alpn) -> Result<ClientIo, ProxyError> {
        self.shared.open(alpn).await
    }

    /// Tries one connection (dropped at once); true if it succeeded.
    pub(crate) async fn probe(&self) -> bool {
        self.shared.open(Alpn::Http1).await.is_ok()
    }

    /// Marks the endpoint draining, as a closed connection would (unit tests).
    #[cfg(test)]
    pub(crate) fn mark_draining(&self) {
        self.shared.draining.set_for(DRAINING_FOR);
    }

    /// Sends `req` once: HTTP/2 requests on the shared HTTP/2 connection, others on a pooled
    /// HTTP/1.1 connection. With `fresh`, on a new connection (after a stale one failed).
    ///
    /// # Errors
    /// What failed, whether the request was written and whether the connection was reused
    /// ([`SendError`]).
    pub(crate) async fn send(
        &self,
        req: Request<ReplayBody>,
        fresh: bool,
    ) -> Result<Sent, SendError> {
        if req.version() == Version::HTTP_2 {
            self.shared.send_h2(req, fresh).await
        } else {
            self.shared.send_h1(req, fresh).await
        }
    }
}

// === impl Shared ===

impl Shared {
    async fn send_h1(
        self: &Arc<Self>,
        mut req: Request<ReplayBody>,
        fresh: bool,
    ) -> Result<Sent, SendError> {
        *req.version_mut() = Version::HTTP_11;
        origin_form(&mut req);
        let pooled = if fresh { None } else { self.checkout_h1() };
        let reused = pooled.is_some();
        let mut tx = match pooled {
            Some(tx) => tx,
            // Boxed: connecting (TCP, TLS) is rare and its future large; inline, every
            // request's future would carry it.
            None => Box::pin(self.connect_h1()).await?,
        };
        let sent_at = Instant::now();
        match tx.try_send_request(req).await {
            Ok(rsp) => {
                self.checkin_h1(tx, sent_at);
                Ok((rsp, sent_at))
            }
            Err(mut err) => {
                let unsent = err.take_message().is_some();
                Err(SendError::Http {
                    error: err.into_error(),
                    unsent,
                    reused,
                    sent_at,
                })
            }
        }
    }

    /// A ready pooled connection, the most recently used first (its socket is warm and the
    /// least likely to have been closed by the server's idle timeout).
    fn checkout_h1(self: &Arc<Self>) -> Option<http1::SendRequest<ReplayBody>> {
        let mut pool = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        let before = pool.len();
        pool.retain(|p| !p.tx.is_closed());
        if pool.len() < before {
            // The endpoint closed them (this pool closes only connections it removed): it
            // answered `Connection: close` or closed idle ones, as a draining proxy does.
            self.closed_by_endpoint();
        }
        let i = pool.iter().rposition(|p| p.tx.is_ready())?;
        Some(pool.swap_remove(i).tx)
    }

    /// The endpoint closed a connection or refused a stream: it may be draining. Marks it so
    /// (the balancer prefers other endpoints meanwhile) and, if it was not marked, probes it
    /// in the background until a connection succeeds, which clears the mark.
    fn closed_by_endpoint(self: &Arc<Self>) {
        *self
            .drain_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        if !self.draining.set_for(DRAINING_FOR) {
            return;
        }
        tracing::debug!(endpoint = %self.connector.addr(), "endpoint closed a connection; preferring others while it may be draining");
        self.probe_while_draining();
    }

    /// A connection failed at connect. Within [`DRAINING_FOR`] of the endpoint's last sign of
    /// a drain, that is the drain's listener closing, even if a connection succeeded in
    /// between (a draining weft peer accepts connections for its announce window,
    /// `admin.drainAnnounce`, and serves them as draining ones): the endpoint is marked
    /// draining again for the rest of that time, so the refusal is not counted as a failure.
    fn refused_after_drain(self: &Arc<Self>) {
        let seen = *self
            .drain_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(left) = seen.and_then(|at| DRAINING_FOR.checked_sub(at.elapsed())) else {
            return;
        };
        if left.is_zero() || !self.draining.set_for(left) {
            return;
        }
        tracing::debug!(endpoint = %self.connector.addr(), "draining endpoint refused a connection; preferring others until it accepts again");
        self.probe_while_draining();
    }

    /// Tries a connection every [`PROBE_EVERY`] while the endpoint is marked draining; a
    /// success clears the mark (in `open`). Holds the pool weakly.
    fn probe_while_draining(self: &Arc<Self>) {
        let weak: Weak<Shared> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(shared) = weak.upgrade() else { return };
                if !shared.draining.is_set() {
                    return;
                }
                // Success clears the mark (in `open`); the probe's connection is dropped.
                let _ = shared.open(Alpn::Http1).await;
            }
        });
    }

    /// Puts a connection back right after its response head: it becomes ready (and may be
    /// checked out) once hyper has read the response body to its end.
    /// `used` is when its request went out.
    fn checkin_h1(self: &Arc<Self>, tx: http1::SendRequest<ReplayBody>, used: Instant) {
        let mut pool = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < MAX_POOLED {
            pool.push(Pooled { tx, used });
        }
    }

    async fn connect_h1(self: &Arc<Self>) -> Result<http1::SendRequest<ReplayBody>, SendError> {
        let io = self.connect(Alpn::Http1).await?;
        let (tx, conn) = http1::Builder::new()
            // The application sees header names spelled as the client sent them.
            .preserve_header_case(true)
            .handshake(TokioIo::new(io))
            .await
            .map_err(SendError::handshake)?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "upstream HTTP/1 connection ended with an error");
            }
        });
        self.start_reaper();
        Ok(tx)
    }

    async fn connect(self: &Arc<Self>, alpn: Alpn) -> Result<ClientIo, SendError> {
        self.open(alpn).await.map_err(SendError::Connect)
    }

    /// Every connection to the endpoint is made here: a success clears the draining mark, a
    /// refusal soon after a drain sets it again, and whether it failed at connect is kept
    /// ([`Pool::refuses_connections`]).
    async fn open(self: &Arc<Self>, alpn: Alpn) -> Result<ClientIo, ProxyError> {
        match self.connector.connect(alpn).await {
            Ok(io) => {
                self.refusing.store(false, Ordering::Relaxed);
                if self.draining.clear() {
                    tracing::debug!(endpoint = %self.connector.addr(), "endpoint accepts connections again");
                }
                Ok(io)
            }
            Err(e) => {
                let refused = matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::ConnectFailed
                );
                self.refusing.store(refused, Ordering::Relaxed);
                if refused {
                    self.refused_after_drain();
                }
                Err(e)
            }
        }
    }

    async fn send_h2(
        self: &Arc<Self>,
        req: Request<ReplayBody>,
        fresh: bool,
    ) -> Result<Sent, SendError> {
        let existing = if fresh { None } else { self.h2_conn() };
        let reused = existing.is_some();
        let H2Conn { mut tx, preface } = match existing {
            Some(conn) => conn,
            // Boxed, as for HTTP/1.
            None => Box::pin(self.connect_h2(fresh)).await?,
        };
        let sent_at = Instant::now();
        match tx.try_send_request(req).await {
            Ok(rsp) => Ok((rsp, sent_at)),
            Err(mut err) => {
                let unsent = err.take_message().is_some();
                if unsent || tx.is_closed() {
                    // Refused before it was sent (GOAWAY, or the connection closed): the
                    // next request makes a new connection, preferably to another endpoint.
                    self.forget_h2(&tx);
                    self.closed_by_endpoint();
                }
                if !preface.spoke_http2() {
                    return Err(SendError::Http1Only);
                }
                Err(SendError::Http {
                    error: err.into_error(),
                    unsent,
                    reused,
                    sent_at,
                })
            }
        }
    }

    fn h2_conn(self: &Arc<Self>) -> Option<H2Conn> {
        let mut slot = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|c| c.tx.is_closed()) {
            // The endpoint ended it (GOAWAY, or closed): no new streams on it.
            *slot = None;
            drop(slot);
            self.closed_by_endpoint();
            return None;
        }
        slot.clone()
    }

    /// Forgets the HTTP/2 connection `tx` after it refused a request or closed; streams
    /// still running on it finish, and the next request makes a new one.
    fn forget_h2(&self, tx: &http2::SendRequest<ReplayBody>) {
        let mut slot = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        if slot
            .as_ref()
            .is_some_and(|c| c.tx.is_closed() || tx.is_closed())
        {
            *slot = None;
        }
    }

    /// The shared HTTP/2 connection, made now if there is none (or, with `fresh`, a new one
    /// replacing it). Over TLS, a server that does not pick `h2` speaks HTTP/1.1 only.
    async fn connect_h2(self: &Arc<Self>, fresh: bool) -> Result<H2Conn, SendError> {
        let _one_at_a_time = self.h2_connecting.lock().await;
        if !fresh {
            if let Some(conn) = self.h2_conn() {
                return Ok(conn);
            }
        }
        let io = self.connect(Alpn::H2OrHttp1).await?;
        if !io.is_http2_capable() {
            return Err(SendError::Http1Only);
        }
        let preface = Arc::new(Preface::default());
        let io = Sniffed::new(io, preface.clone());
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(SendError::handshake)?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
            }
        });
        let conn = H2Conn { tx, preface };
        *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    /// Starts the task that closes idle HTTP/1 connections, once per endpoint. It holds only
    /// a weak reference, so it ends with the endpoint.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(self);
        let period = (self.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(shared) = weak.upgrade() else { return };
                shared.close_idle(Instant::now());
            }
        });
    }

    /// Closes HTTP/1 connections idle for longer than the idle timeout (dropping the sender
    /// ends hyper's connection task, which closes the socket).
    fn close_idle(&self, now: Instant) {
        let mut pool = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        pool.retain_mut(|p| {
            if p.tx.is_closed() {
                return false;
            }
            if !p.tx.is_ready() {
                p.used = now;
                return true;
            }
            now.saturating_duration_since(p.used) < self.idle_timeout
        });
    }
}

/// Turns an absolute URI into origin-form (`/path?query`) for an HTTP/1 request line, with
/// the authority moved into `Host` if the request has none (RFC 9112 section 3.2).
pub(crate) fn origin_form<B>(req: &mut Request<B>) {
    // Already in origin form (as HTTP/1.1 clients send it): nothing to do.
    if req.method() == Method::CONNECT || req.uri().authority().is_none() {
        return;
    }
    if !req.headers().contains_key(HOST) {
        if let Some(value) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(HOST, value);
        }
    }
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
}
