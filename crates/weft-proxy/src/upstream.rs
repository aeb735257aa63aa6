//! The HTTP client towards one endpoint: a pool of HTTP/1.1 connections and one multiplexed
//! HTTP/2 connection, built on hyper's `client::conn` over our [`Connector`].
//!
//! Why not hyper-util's pooled `Client`: per request it hashed a pool key, spawned a task to
//! put the connection back, and went through two more channels; in a proxy that sends every
//! request to an endpoint it already picked, that was about an eighth of the instructions
//! per request (`bench/profile --callgrind`, docs/benchmarks.md). This pool keeps the same
//! behaviour where it matters: idle connections close after `pool_idle_timeout`, and a
//! request that a pooled connection provably never wrote (the keep-alive race: the server
//! closed it while idle) is sent again on a new connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::client::{ClientError, Connector};
use crate::replay::ReplayBody;

/// HTTP/1 connections pooled per endpoint at most (in use or idle); connections beyond it
/// serve their one exchange and close.
const MAX_POOLED: usize = 256;

/// Sends requests to one endpoint: HTTP/2 requests over one multiplexed connection, others
/// over a pool of HTTP/1.1 connections. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub(crate) struct Upstream {
    shared: Arc<Shared>,
}

struct Shared {
    /// Connections for HTTP/1 requests (ALPN `http/1.1` to servers outside the mesh).
    connector: Connector,
    /// Connections for HTTP/2 requests (ALPN `h2`).
    connector_h2: Connector,
    idle_timeout: Duration,
    /// HTTP/1 connections, in use or idle; the most recently used last.
    h1: Mutex<Vec<Pooled>>,
    /// The HTTP/2 connection, once made.
    h2: Mutex<Option<http2::SendRequest<ReplayBody>>>,
    /// Held while an HTTP/2 connection is being made, so concurrent first requests share one.
    h2_connecting: tokio::sync::Mutex<()>,
    reaper: AtomicBool,
}

/// One HTTP/1 connection of the pool.
struct Pooled {
    tx: http1::SendRequest<ReplayBody>,
    /// When a request last went out on it, or when it was last seen busy.
    used: Instant,
}

/// The future of one request.
pub(crate) type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, ClientError>> + Send>>;

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("connector", &self.shared.connector)
            .finish()
    }
}

// === impl Upstream ===

impl Upstream {
    /// A client for the endpoint `connector` connects to; HTTP/1 connections idle for
    /// `idle_timeout` are closed.
    pub(crate) fn new(connector: Connector, idle_timeout: Duration) -> Upstream {
        Upstream {
            shared: Arc::new(Shared {
                connector_h2: connector.clone().http2(),
                connector,
                idle_timeout,
                h1: Mutex::new(Vec::new()),
                h2: Mutex::new(None),
                h2_connecting: tokio::sync::Mutex::new(()),
                reaper: AtomicBool::new(false),
            }),
        }
    }
}

impl tower::Service<Request<ReplayBody>> for Upstream {
    type Response = Response<Incoming>;
    type Error = ClientError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReplayBody>) -> ResponseFuture {
        let shared = self.shared.clone();
        if req.version() == Version::HTTP_2 {
            Box::pin(async move { shared.send_h2(req).await })
        } else {
            Box::pin(async move { shared.send_h1(req).await })
        }
    }
}

// === impl Shared ===

impl Shared {
    async fn send_h1(
        self: Arc<Self>,
        mut req: Request<ReplayBody>,
    ) -> Result<Response<Incoming>, ClientError> {
        *req.version_mut() = Version::HTTP_11;
        origin_form(&mut req);
        loop {
            let (mut tx, reused) = match self.checkout_h1() {
                Some(tx) => (tx, true),
                None => (self.connect_h1().await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(rsp) => {
                    self.checkin_h1(tx);
                    return Ok(rsp);
                }
                Err(mut err) => match err.take_message() {
                    // Never written: a pooled connection the server had closed. Again, on
                    // a new connection (which cannot be stale, so this loop ends).
                    Some(unsent) if reused => req = unsent,
                    Some(_) => return Err(ClientError::ClosedBeforeSend(err.into_error())),
                    None => return Err(ClientError::Http(err.into_error())),
                },
            }
        }
    }

    /// A ready pooled connection, the most recently used first (its socket is warm and the
    /// least likely to have been closed by the server's idle timeout).
    fn checkout_h1(&self) -> Option<http1::SendRequest<ReplayBody>> {
        let mut pool = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        pool.retain(|p| !p.tx.is_closed());
        let i = pool.iter().rposition(|p| p.tx.is_ready())?;
        Some(pool.swap_remove(i).tx)
    }

    /// Puts a connection back right after its response head: it becomes ready (and may be
    /// checked out) once hyper has read the response body to its end.
    fn checkin_h1(self: &Arc<Self>, tx: http1::SendRequest<ReplayBody>) {
        let mut pool = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < MAX_POOLED {
            pool.push(Pooled {
                tx,
                used: Instant::now(),
            });
        }
    }

    async fn connect_h1(self: &Arc<Self>) -> Result<http1::SendRequest<ReplayBody>, ClientError> {
        let io = self
            .connector
            .connect()
            .await
            .map_err(ClientError::Connect)?;
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(async move {
            // Upgrades: a 101 or CONNECT response hands the connection to the caller.
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream HTTP/1 connection ended with an error");
            }
        });
        self.start_reaper();
        Ok(tx)
    }

    async fn send_h2(
        self: Arc<Self>,
        mut req: Request<ReplayBody>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut fresh = false;
        loop {
            let mut tx = match self.h2_sender().filter(|_| !fresh) {
                Some(tx) => tx,
                None => {
                    fresh = true;
                    self.connect_h2().await?
                }
            };
            match tx.try_send_request(req).await {
                Ok(rsp) => return Ok(rsp),
                Err(mut err) => match err.take_message() {
                    // Refused before it was sent (GOAWAY, or the connection just closed):
                    // once more on a new connection.
                    Some(unsent) if !fresh => {
                        self.drop_h2();
                        req = unsent;
                    }
                    Some(_) => return Err(ClientError::ClosedBeforeSend(err.into_error())),
                    None => return Err(ClientError::Http(err.into_error())),
                },
            }
        }
    }

    fn h2_sender(&self) -> Option<http2::SendRequest<ReplayBody>> {
        let slot = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().filter(|tx| !tx.is_closed()).cloned()
    }

    /// Forgets the HTTP/2 connection after it refused a request (GOAWAY, closing); streams
    /// still running on it finish, and the next request makes a new one.
    fn drop_h2(&self) {
        *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    async fn connect_h2(self: &Arc<Self>) -> Result<http2::SendRequest<ReplayBody>, ClientError> {
        let _one_at_a_time = self.h2_connecting.lock().await;
        if let Some(tx) = self.h2_sender() {
            return Ok(tx);
        }
        let io = self
            .connector_h2
            .connect()
            .await
            .map_err(ClientError::Connect)?;
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
            }
        });
        *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx.clone());
        Ok(tx)
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
fn origin_form(req: &mut Request<ReplayBody>) {
    if req.method() == Method::CONNECT {
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
