//! Endpoints: one address of a bound client and everything about reaching it. The
//! [`Balancer`] picks among a client's endpoints (P2C over peak-EWMA [`load`]) and fails fast
//! while [`accrual`] has ejected them all; each [`Endpoint`] owns its connection [`pool`] and
//! its one [`connect`] path (TCP + TLS); [`replay`] keeps a request body for a second attempt.

mod accrual;
mod balance;
mod connect;
mod load;
mod mark;
mod pool;
mod preface;
mod replay;
mod state;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::Authority;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::error::{ErrorKind, ProxyError};

pub(crate) use balance::{Balancer, Pick};
pub(crate) use connect::Connector;
pub(crate) use pool::origin_form;
pub(crate) use replay::{BodyState, ReplayBody};
pub use state::{ClientState, EndpointState};

#[cfg(test)]
pub(crate) use connect::memory;
#[cfg(test)]
pub(crate) use replay::{ReplayError, Source};

use accrual::Accrual;
use load::Load;
use mark::Mark;
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
    http1_only: Mark,
    /// The authority requests to this endpoint carry instead of the client's, when its namer
    /// gave one (the consul namer's `setHost`).
    authority: Option<Authority>,
    /// A task tries connections during such an ejection's backoff.
    reconnecting: AtomicBool,
}

/// The authority a namer asked requests to an endpoint to carry, if it is a valid one.
pub(crate) fn authority_of(a: &weft_naming::Address) -> Option<Authority> {
    let given = a.meta.as_ref()?.authority.as_deref()?;
    match given.parse::<Authority>() {
        Ok(authority) => Some(authority),
        Err(_) => {
            tracing::warn!(endpoint = %a.addr, authority = given, "namer gave an invalid authority; keeping the client's");
            None
        }
    }
}

/// Rewrites the request's authority (`Host`, and the URI's authority when it has one) to
/// `authority`.
fn set_authority<B>(req: &mut Request<B>, authority: &Authority) {
    if req.uri().authority().is_some() {
        let mut parts = req.uri().clone().into_parts();
        parts.authority = Some(authority.clone());
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    if req.headers().contains_key(HOST) || req.version() < http::Version::HTTP_2 {
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(HOST, value);
        }
    }
}

impl Endpoint {
    /// True when `a` asks for the authority this endpoint already uses.
    pub(crate) fn same_authority(&self, a: &weft_naming::Address) -> bool {
        self.authority == authority_of(a)
    }

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
        let mut req = req;
        if let Some(authority) = &self.authority {
            set_authority(&mut req, authority);
        }
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
                // A draining endpoint's refusals are the drain's, not a slow endpoint's.
                if let (true, Some(at)) = (self.blame(&err), sent_at) {
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

    /// True when `err` counts against this endpoint (failure accrual, load): it is the
    /// endpoint's own failure (`ProxyError::blames_endpoint`) and the endpoint is not
    /// draining, whose refusals and closes are the drain's, not a failure.
    pub(crate) fn blame(&self, err: &ProxyError) -> bool {
        err.blames_endpoint() && !self.is_draining()
    }

    /// True when the endpoint is a weft proxy (a peer, or this proxy itself).
    pub(crate) fn is_proxy(&self) -> bool {
        self.is_proxy
    }

    /// True while the endpoint is taken to speak HTTP/1.1 only (it refused HTTP/2 within
    /// [`HTTP1_ONLY_FOR`]). One atomic load when it is not.
    pub(crate) fn is_http1_only(&self) -> bool {
        self.http1_only.is_set()
    }

    /// True while the endpoint is taken to be draining (see [`pool::DRAINING_FOR`]): the
    /// balancer prefers other endpoints, and its failures do not count for failure accrual.
    /// One atomic load when it is not.
    pub(crate) fn is_draining(&self) -> bool {
        self.pool.is_draining()
    }

    /// Failure accrual just ejected the endpoint. When connections to it were failing at
    /// connect (refused or reset: nothing listens, as while a peer proxy restarts), its
    /// backoff is only a guess of when it will listen again: a connection is tried every
    /// [`pool::PROBE_EVERY`] instead, and the first that succeeds ends the backoff, so the
    /// next request probes it (half-open) at once. An endpoint ejected for its answers
    /// (failed responses, resets after a request went out) waits out its backoff as before.
    pub(crate) fn ejected(self: &Arc<Self>) {
        if self.pool.refuses_connections() && !self.reconnecting.swap(true, Ordering::Relaxed) {
            tokio::spawn(reconnect(Arc::downgrade(self)));
        }
    }

    /// True while the endpoint backs off an ejection and its last connection attempt failed
    /// at connect (the reconnect task's own attempts included): what the reconnect task is
    /// for. An attempt that fails otherwise (a timeout) ends it: the backoff then applies.
    fn wants_reconnect(&self) -> bool {
        self.pool.refuses_connections() && self.accrual.is_backing_off(Instant::now())
    }

    /// Remembers that the endpoint speaks HTTP/1.1 only, for [`HTTP1_ONLY_FOR`].
    fn set_http1_only(&self) {
        if self.http1_only.set_for(HTTP1_ONLY_FOR) {
            tracing::info!(endpoint = %self.addr, "endpoint speaks HTTP/1.1 only; HTTP/2 requests go to it as HTTP/1.1");
        }
    }
}

/// The task behind [`Endpoint::ejected`]: tries a connection every [`pool::PROBE_EVERY`] while
/// the endpoint is ejected for refusing connections and backing off, and ends the backoff at
/// the first that succeeds. Holds the endpoint weakly: it ends when discovery drops it.
async fn reconnect(weak: Weak<Endpoint>) {
    loop {
        tokio::time::sleep(pool::PROBE_EVERY).await;
        let Some(endpoint) = weak.upgrade() else {
            return;
        };
        if endpoint.wants_reconnect() {
            if !endpoint.pool.probe().await {
                continue;
            }
            if endpoint.accrual.end_backoff(Instant::now()) {
                tracing::info!(endpoint = %endpoint.addr, "failure accrual: ejected endpoint accepts connections again; probing it now");
            }
        }
        endpoint.reconnecting.store(false, Ordering::Relaxed);
        // An ejection that came between the check and the store found the flag still set
        // and started no task: this one carries on for it.
        if !endpoint.wants_reconnect() || endpoint.reconnecting.swap(true, Ordering::Relaxed) {
            return;
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

#[cfg(test)]
mod authority_tests {
    use super::*;

    #[test]
    fn a_namer_authority_replaces_host_and_the_uri_authority() {
        let a: Authority = "web.service.dc1.consul".parse().unwrap();
        let mut h1 = Request::get("/x?y").header(HOST, "web").body(()).unwrap();
        set_authority(&mut h1, &a);
        assert_eq!(h1.headers()[HOST], "web.service.dc1.consul");
        assert_eq!(h1.uri(), "/x?y");
        let mut h2 = Request::get("http://web/x")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        set_authority(&mut h2, &a);
        assert_eq!(h2.uri(), "http://web.service.dc1.consul/x");
        assert!(
            !h2.headers().contains_key(HOST),
            "HTTP/2 keeps :authority only"
        );
        let meta = weft_naming::AddressMeta {
            authority: Some("bad authority".into()),
            ..Default::default()
        };
        let addr = weft_naming::Address::new("127.0.0.1:1".parse().unwrap()).with_meta(meta);
        assert_eq!(authority_of(&addr), None, "an invalid one is ignored");
    }
}
