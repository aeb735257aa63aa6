//! Sending one request upstream, attempt after attempt: requeues of requests that never reached the application, fresh connections for
//! requests a stale pooled connection lost, retries of retryable failures within the
//! service's budget, per-attempt timeouts, and a short hold of the response head so an
//! upstream that dies right after its headers becomes a clean, retryable proxy error.
//!
//! Every failed attempt is a [`ProxyError`] that knows who is at fault and whether a retry is
//! safe; [`Dispatch::next`] is the one place that turns that into what happens next.
//! The end of the exchange is recorded by [`Exchange`], whatever path it took.

mod body;
mod classify;
mod exchange;
mod observe;
#[cfg(test)]
mod tests;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::response::Parts;
use http::{Extensions, HeaderMap, Method, Request, Response, Uri, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tower::retry::budget::{Budget, TpsBudget};
use weft_config::RetryBackoff;
use weft_naming::Dtab;
use weft_telemetry::{BudgetKind, ServiceMetrics};

use crate::clients::{Clients, Service};
use crate::endpoint::{Balancer, BodyState, Endpoint, ReplayBody};
use crate::error::{ErrorKind, ProxyError, Retry};
use crate::headers::{strip_hop_by_hop, ViaPolicy};

pub use body::ProxyBody;
pub(crate) use classify::{is_grpc, Classifier, Verdict};
pub(crate) use exchange::Exchange;

/// How long the response head is held back waiting for the first body frame. An upstream
/// that crashes right after sending "200 OK" does so within microseconds to milliseconds; a
/// stream whose first bytes take longer (server-sent events, gRPC server streaming) loses at
/// most this much time to first byte, once per stream.
const HEAD_HOLD: Duration = Duration::from_millis(250);
/// At most this many attempts per request (first try, requeues and retries), whatever the
/// budgets allow: budgets bound the extra load on the service, this bounds one request's
/// latency.
const MAX_ATTEMPTS: u32 = 5;

/// A request head, already rewritten for the upstream (hop-by-hop headers out), sent as it is
/// with every attempt.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// The version the request arrived with.
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    /// Carried to the first attempt's request (hyper keeps HTTP/1 header spelling here).
    pub(crate) extensions: Extensions,
    /// Weft proxies the request passed through before this one (`l5d-hop-count`).
    pub(crate) hops: u32,
}

/// What one request needs to be sent, attempt after attempt.
pub(crate) struct Dispatch<'a> {
    pub(crate) head: Head,
    pub(crate) body: ReplayBody,
    pub(crate) classifier: Classifier,
    pub(crate) service: &'a ServiceMetrics,
    pub(crate) budget: &'a TpsBudget,
    pub(crate) backoff: RetryBackoff,
    pub(crate) attempt_timeout: Option<Duration>,
}

/// An upstream response ready to go downstream.
pub(crate) struct Forwarded {
    parts: Parts,
    first: Option<Frame<Bytes>>,
    ended: bool,
    body: Incoming,
    verdict: Verdict,
    classifier: Classifier,
    balancer: Arc<Balancer>,
    endpoint: Arc<Endpoint>,
    /// The request body, to tell a client that broke it from an upstream that failed.
    request_body: Option<BodyState>,
}

/// The endpoints a request already failed on (at most one per attempt), without an
/// allocation per request.
#[derive(Debug)]
struct Tried {
    addrs: [SocketAddr; MAX_ATTEMPTS as usize],
    len: usize,
}

impl Default for Tried {
    fn default() -> Tried {
        Tried {
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_ATTEMPTS as usize],
            len: 0,
        }
    }
}

impl Tried {
    fn push(&mut self, addr: SocketAddr) {
        if let Some(slot) = self.addrs.get_mut(self.len) {
            *slot = addr;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[SocketAddr] {
        &self.addrs[..self.len]
    }
}

/// What follows a failed attempt.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Send again, to another endpoint if there is one: the request never left (counted as
    /// a requeue).
    Requeue,
    /// Send again to the same endpoint on a fresh connection: a stale connection lost it,
    /// not the endpoint (counted as a requeue; no budget, no failure accrual).
    Fresh,
    /// Send again after a backoff, within the retry budget (counted as a retry).
    Retry,
    /// Give up: this error is the answer.
    Stop,
}

// === impl Dispatch ===

impl Dispatch<'_> {
    /// Sends the request to `service` (under the router dtab plus `local`), binding and
    /// drawing a weighted branch per attempt, until an attempt succeeds or may not be
    /// repeated.
    pub(crate) async fn run(
        mut self,
        clients: &Clients,
        local: &Dtab,
        service: &Service,
    ) -> Result<Forwarded, ProxyError> {
        self.budget.deposit();
        let mut deposited: Option<Arc<Balancer>> = None;
        // The outcome to answer with if no later attempt can be made: a failed response the
        // application gave (kept unread while a retry runs) wins over a proxy error.
        let mut last: Option<Result<Forwarded, ProxyError>> = None;
        // Endpoints this request already failed on: later attempts go elsewhere if they can.
        let mut tried = Tried::default();
        // Set after a stale connection lost the request: the same endpoint, a new connection.
        let mut again: Option<(Arc<Balancer>, Arc<Endpoint>)> = None;
        for attempt in 1..=MAX_ATTEMPTS {
            let fresh = again.is_some();
            let (balancer, endpoint) = match again.take() {
                Some(same) => same,
                None => {
                    let balancer = clients.bind(service, local).await?;
                    if deposited
                        .as_ref()
                        .is_none_or(|b| !Arc::ptr_eq(b, &balancer))
                    {
                        balancer.requeue_budget().deposit();
                        deposited = Some(balancer.clone());
                    }
                    let picked = balancer.pick_endpoint(tried.as_slice());
                    let endpoint = match (picked, last) {
                        (Ok(e), kept) => {
                            last = kept;
                            e
                        }
                        (Err(_), Some(previous)) => return previous,
                        (Err(e), None) => return Err(e),
                    };
                    tried.push(endpoint.addr);
                    crate::record_in_span("endpoint", &endpoint.addr);
                    (balancer, endpoint)
                }
            };
            let err = match self.attempt(&balancer, &endpoint, fresh).await {
                Ok(fwd) => {
                    let retryable = matches!(fwd.verdict, Verdict::Failure { retryable: true });
                    if !retryable || attempt == MAX_ATTEMPTS || !self.take_retry() {
                        return Ok(fwd);
                    }
                    // Failure accrual counts the failed response; it is kept, unread, in case
                    // no retry can be made.
                    balancer.record(&endpoint, false);
                    tracing::debug!(status = %fwd.parts.status, "retry");
                    self.service.retry();
                    Box::pin(tokio::time::sleep(self.backoff())).await;
                    last = Some(Ok(fwd));
                    continue;
                }
                Err(err) => err,
            };
            if endpoint.blame(&err) {
                balancer.record(&endpoint, false);
            }
            let next = if attempt == MAX_ATTEMPTS {
                Next::Stop
            } else {
                self.next(&err, &balancer, endpoint.is_draining())
            };
            tracing::debug!(error = %err, ?next, "attempt failed");
            match next {
                Next::Stop => {
                    return match last {
                        Some(Ok(response)) => Ok(response),
                        _ => Err(err),
                    }
                }
                Next::Fresh => {
                    self.service.requeue();
                    again = Some((balancer, endpoint));
                }
                Next::Requeue => self.service.requeue(),
                Next::Retry => {
                    self.service.retry();
                    Box::pin(tokio::time::sleep(self.backoff())).await;
                }
            }
            if !matches!(last, Some(Ok(_))) {
                last = Some(Err(err));
            }
        }
        last.unwrap_or_else(|| Err(ProxyError::new(ErrorKind::UpstreamReset, "no attempt left")))
    }

    /// What follows a failed attempt: the one place where an error's fault and retry safety
    /// become a requeue, a fresh connection, a retry, or the answer.
    /// `draining`: the endpoint is taken to be draining, so a request it never processed goes
    /// to another endpoint rather than to a new connection to it.
    fn next(&self, err: &ProxyError, balancer: &Balancer, draining: bool) -> Next {
        if !self.body.is_replayable() {
            // Too large to keep, or broken by the client: nothing to send again.
            return Next::Stop;
        }
        match err.retry() {
            Retry::Never => Next::Stop,
            // Not processed by a draining endpoint: another endpoint, with no budget (as for a
            // fresh connection, nothing was processed twice).
            Retry::Unsent | Retry::Stale { written: false } if draining && balancer.len() > 1 => {
                Next::Requeue
            }
            // A connection the endpoint refused (or dropped at once): another endpoint, if
            // there is one, within the requeue budget.
            Retry::Unsent if err.blames_endpoint() => {
                if balancer.len() < 2 {
                    return Next::Stop;
                }
                if !balancer.requeue_budget().withdraw() {
                    self.service.budget_exhausted(BudgetKind::requeue);
                    return Next::Stop;
                }
                Next::Requeue
            }
            Retry::Unsent | Retry::Stale { written: false } => Next::Fresh,
            Retry::Stale { written: true } if self.classifier.is_idempotent(&self.head.method) => {
                Next::Fresh
            }
            Retry::Stale { written: true } => Next::Stop,
            Retry::Classified => {
                if self.classifier.error_may_retry(&self.head.method) && self.take_retry() {
                    Next::Retry
                } else {
                    Next::Stop
                }
            }
        }
    }

    /// A retry needs a replayable body and a withdrawal from the retry budget.
    fn take_retry(&self) -> bool {
        if !self.body.is_replayable() {
            return false;
        }
        if !self.budget.withdraw() {
            self.service.budget_exhausted(BudgetKind::retry);
            return false;
        }
        true
    }

    /// One attempt on `endpoint` (with `fresh`, on a new connection).
    async fn attempt(
        &mut self,
        balancer: &Arc<Balancer>,
        endpoint: &Arc<Endpoint>,
        fresh: bool,
    ) -> Result<Forwarded, ProxyError> {
        // Only the first attempt, or one after `next` checked replayability, gets here.
        let Some(body) = self.body.retry() else {
            return Err(ProxyError::new(
                ErrorKind::UpstreamReset,
                "request body too large to send again",
            )
            .with_retry(Retry::Never));
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.head.method.clone();
        *req.uri_mut() = self.head.uri.clone();
        *req.headers_mut() = self.head.headers.clone();
        // Moved, not copied: copying hyper's record of the header names' spelling for every
        // request cost about 1,500 instructions to serve the rare second attempt, which
        // therefore sends them lowercase (docs/protocols.md).
        *req.extensions_mut() = std::mem::take(&mut self.head.extensions);
        upstream::prepare(&mut req, &self.head, balancer, endpoint)?;
        let started = tokio::time::Instant::now();
        let send = endpoint.send(req, fresh);
        let result = match self.attempt_timeout {
            Some(limit) => match tokio::time::timeout(limit, send).await {
                Ok(r) => r,
                Err(_) => {
                    endpoint.failed(limit);
                    return Err(ProxyError::new(
                        ErrorKind::RequestTimeout,
                        format!("attempt timed out after {limit:?}"),
                    )
                    .with_retry(Retry::Classified));
                }
            },
            None => send.await,
        };
        let rsp = result?;
        let (parts, mut body) = rsp.into_parts();
        let (first, ended) = match hold_head(&mut body).await {
            Ok(held) => held,
            Err(e) => {
                endpoint.failed(started.elapsed());
                let err = ProxyError::new(
                    ErrorKind::UpstreamReset,
                    format!(
                        "endpoint {} failed right after the response head",
                        endpoint.addr
                    ),
                )
                .with_source(e);
                return Err(err);
            }
        };
        let verdict = self
            .classifier
            .response(&self.head.method, parts.status, &parts.headers);
        Ok(Forwarded {
            parts,
            first,
            ended,
            body,
            verdict,
            classifier: self.classifier.clone(),
            balancer: balancer.clone(),
            endpoint: endpoint.clone(),
            request_body: Some(self.body.handle()),
        })
    }

    fn backoff(&self) -> Duration {
        match self.backoff {
            RetryBackoff::Constant { delay } => delay,
            RetryBackoff::Jittered { min, max } => {
                min + max.saturating_sub(min).mul_f64(fastrand::f64())
            }
        }
    }
}

/// Waits up to [`HEAD_HOLD`] for the first body frame. Returns the frame (if one came) and
/// whether the body already ended; an error means the upstream failed before any byte.
async fn hold_head(body: &mut Incoming) -> Result<(Option<Frame<Bytes>>, bool), hyper::Error> {
    if http_body::Body::is_end_stream(body) {
        return Ok((None, true));
    }
    // Usually the first frame came in with the head: take it without arming a timer.
    let waited = match body.frame().now_or_never() {
        Some(frame) => Ok(frame),
        // Boxed: the timer is rarely needed, and inline it would be in every request's future.
        None => Box::pin(tokio::time::timeout(HEAD_HOLD, body.frame())).await,
    };
    match waited {
        Err(_) => Ok((None, false)),
        Ok(None) => Ok((None, true)),
        Ok(Some(Ok(frame))) => Ok((Some(frame), false)),
        Ok(Some(Err(e))) => Err(e),
    }
}

// === impl Forwarded ===

impl Forwarded {
    /// The response to an upgrade (101) or CONNECT request; its connection was handed over.
    pub(crate) fn upgraded(
        rsp: Response<Incoming>,
        classifier: Classifier,
        balancer: Arc<Balancer>,
        endpoint: Arc<Endpoint>,
    ) -> Forwarded {
        let (parts, body) = rsp.into_parts();
        let verdict = if parts.status.is_server_error() {
            Verdict::Failure { retryable: false }
        } else {
            Verdict::Success
        };
        Forwarded {
            parts,
            first: None,
            ended: false,
            body,
            verdict,
            classifier,
            balancer,
            endpoint,
            request_body: None,
        }
    }

    /// The downstream response: hop-by-hop headers out, `Via` in if the router adds it, and
    /// a body that finishes `exchange` when it ends.
    pub(crate) fn into_response(self, exchange: Exchange, via: ViaPolicy) -> Response<ProxyBody> {
        let Forwarded {
            mut parts,
            first,
            ended,
            body,
            verdict,
            classifier,
            balancer,
            endpoint,
            request_body,
        } = self;
        // Only a 101 keeps its `Upgrade` (looked up only then: every lookup hashes the name).
        let upgrade = (parts.status == http::StatusCode::SWITCHING_PROTOCOLS)
            .then(|| parts.headers.get(http::header::UPGRADE).cloned())
            .flatten();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            // A 101 must tell the client what it switched to (RFC 9110 section 15.2.2).
            parts.headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
            parts.headers.insert(http::header::UPGRADE, protocol);
        }
        if via.on_responses() {
            crate::headers::append_via(&mut parts.headers, parts.version);
        }
        let grpc = is_grpc(&parts.headers);
        let exchange = exchange.responded(parts.status.as_u16(), Some(endpoint.addr), None);
        let upstream = body::Upstream {
            verdict,
            classifier,
            balancer,
            endpoint,
            request_body,
        };
        Response::from_parts(
            parts,
            ProxyBody::upstream(first, ended, body, grpc, upstream, exchange),
        )
    }
}
