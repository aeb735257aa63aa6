//! Endpoints: one address of a bound client and everything about reaching it. The
//! [`Balancer`] picks among a client's endpoints (P2C over peak-EWMA [`load`]) and fails fast
//! while [`accrual`] has ejected them all; each [`Endpoint`] owns its connection [`pool`] and
//! its one [`connect`] path (TCP + TLS); [`replay`] keeps a request body for a second attempt.

mod accrual;
mod balance;
mod connect;
mod load;
mod pool;
mod preface;
mod replay;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::error::{ErrorKind, ProxyError};

pub(crate) use balance::{Balancer, Pick};
pub(crate) use connect::Connector;
pub(crate) use pool::origin_form;
pub(crate) use replay::{BodyState, ReplayBody};

#[cfg(test)]
pub(crate) use connect::memory;
#[cfg(test)]
pub(crate) use replay::{ReplayError, Source};

use accrual::Accrual;
use load::Load;
use pool::Pool;

/// How long an endpoint that refused HTTP/2 is taken to speak HTTP/1.1 only. Short, because
/// the sign is indirect (a plaintext connection closed before the server's HTTP/2 SETTINGS):
/// an HTTP/2 server that dropped a new connection for another reason gets HTTP/2 requests
/// again a minute later, and gRPC (which then fails with `upstream-protocol`) with them. A
/// successful HTTP/2 exchange ends it at once.
const HTTP1_ONLY_FOR: Duration = Duration::from_secs(60);

/// One endpoint of a bound client: its address and discovery weight, its connections, its
/// load and its failure accrual state.
pub(crate) struct Endpoint {
    /// The address connections go to.
    pub(crate) addr: SocketAddr,
    weight: f64,
    /// A weft proxy (a peer through the `port` transformer, or this proxy's own listener):
    /// requests to it carry a hop count, so routing loops are caught.
    is_proxy: bool,
    pool: Pool,
    load: Load,
    accrual: Accrual,
    requests: Counter,
    /// Learned when the endpoint refused HTTP/2: it speaks HTTP/1.1 only (`protocol: auto`),
    /// until the time inside (see [`HTTP1_ONLY_FOR`]).
    http1_only: AtomicBool,
    http1_only_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    /// Sends `req` once (with `fresh`, on a new connection) and returns its response head.
    /// The request counts as in flight for the balancer until then, and the time from its
    /// going out on a ready connection to the head is the latency sample.
    ///
    /// # Errors
    /// The proxy error of the failure ([`connect::classify_send`]); `bad-request-body` when
    /// the client broke the request body, which neither the endpoint's load nor its failure
    /// accrual sees.
    pub(crate) async fn send(
        &self,
        req: Request<ReplayBody>,
        fresh: bool,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.requests.inc();
        let body = req.body().handle();
        let _in_flight = self.load.start();
        match self.pool.send(req, fresh).await {
            Ok((rsp, sent_at)) => {
                let now = Instant::now();
                self.load
                    .observe(now.saturating_duration_since(sent_at), now);
                Ok(rsp)
            }
            Err(e) if body.client_failed() => Err(ProxyError::new(
                ErrorKind::BadRequestBody,
                "the client's request body failed before it was complete",
            )
            .with_source(connect::classify_send(e, self.addr))),
            Err(e) => {
                if matches!(e, connect::SendError::Http1Only) {
                    self.set_http1_only();
                }
                let sent_at = e.sent_at();
                let err = connect::classify_send(e, self.addr);
                if let (true, Some(at)) = (err.blames_endpoint(), sent_at) {
                    self.failed(at.elapsed());
                }
                Err(err)
            }
        }
    }

    /// The endpoint failed after `elapsed` (an attempt timed out, a stream broke): its load
    /// estimate rises to that if it was lower.
    pub(crate) fn failed(&self, elapsed: Duration) {
        self.load.failed(elapsed, Instant::now());
    }

    /// True when the endpoint is a weft proxy (a peer, or this proxy itself).
    pub(crate) fn is_proxy(&self) -> bool {
        self.is_proxy
    }

    /// True while the endpoint is taken to speak HTTP/1.1 only (it refused HTTP/2 within
    /// [`HTTP1_ONLY_FOR`]). One atomic load when it is not.
    pub(crate) fn is_http1_only(&self) -> bool {
        if !self.http1_only.load(Ordering::Relaxed) {
            return false;
        }
        let until = *self
            .http1_only_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if until.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        self.http1_only.store(false, Ordering::Relaxed);
        false
    }

    /// Remembers that the endpoint speaks HTTP/1.1 only, for [`HTTP1_ONLY_FOR`].
    fn set_http1_only(&self) {
        *self
            .http1_only_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + HTTP1_ONLY_FOR);
        if !self.http1_only.swap(true, Ordering::Relaxed) {
            tracing::info!(endpoint = %self.addr, "endpoint speaks HTTP/1.1 only; HTTP/2 requests go to it as HTTP/1.1");
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}
