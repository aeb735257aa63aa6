//! Sending one request upstream, with resilience: failfast while every endpoint is ejected,
//! requeues of requests that never reached an endpoint, retries of retryable failures within
//! the service's budget, per-attempt timeouts, and a short hold of the response head so an
//! upstream that dies right after its headers becomes a clean, retryable proxy error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::response::Parts;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};
use weft_config::RetryBackoff;
use weft_naming::{Dtab, Path};
use weft_telemetry::{BudgetKind, ServiceMetrics};

use crate::balance::{Balancer, Endpoint, Pick};
use crate::body::{Completion, ProxyBody};
use crate::classify::{is_grpc, Classifier, Verdict};
use crate::client::classify_client_error;
use crate::error::{ErrorKind, ProxyError};
use crate::headers::{append_via, strip_hop_by_hop, ORIG_PROTO};
use crate::observe::Observed;
use crate::replay::ReplayBody;
use crate::router::Router;
use crate::tap::Tapped;

/// How long the response head is held back waiting for the first body frame. An upstream
/// that crashes right after sending "200 OK" does so within microseconds to milliseconds; a
/// stream whose first bytes take longer (server-sent events, gRPC server streaming) loses at
/// most this much time to first byte, once per stream.
const HEAD_HOLD: Duration = Duration::from_millis(250);
/// At most this many attempts per request (first try, requeues and retries), whatever the
/// budgets allow: budgets bound the extra load on the service, this bounds one request's
/// latency.
const MAX_ATTEMPTS: u32 = 5;

/// What one request needs to be sent, attempt after attempt.
pub(crate) struct Dispatch<'a> {
    /// Request head, already rewritten for the upstream (hop-by-hop out, Via in).
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: ReplayBody,
    pub(crate) classifier: Classifier,
    pub(crate) service: &'a ServiceMetrics,
    pub(crate) budget: &'a TpsBudget,
    pub(crate) backoff: RetryBackoff,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) fail_fast: Duration,
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
}

/// An attempt that produced no response.
enum Failed {
    /// Never reached the endpoint: may be requeued whatever the method.
    Unsent(ProxyError),
    /// May have reached the app, and the classifier forbids sending it again.
    Sent(ProxyError),
    /// May have reached the app, and the classifier allows a retry.
    Retryable(ProxyError),
}

// === impl Dispatch ===

impl Dispatch<'_> {
    /// Sends the request for the logical `name`, binding and drawing a weighted branch per
    /// attempt, until an attempt succeeds or may not be repeated.
    pub(crate) async fn run(
        self,
        router: &Router,
        local: &Dtab,
        name: &Path,
    ) -> Result<Forwarded, ProxyError> {
        self.budget.deposit();
        let mut deposited: Option<Arc<Balancer>> = None;
        let mut last_error: Option<ProxyError> = None;
        // Endpoints this request already failed on: later attempts go elsewhere if they can.
        let mut tried: Vec<std::net::SocketAddr> = Vec::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let balancer = router.bound_client(local, name).await?;
            if deposited
                .as_ref()
                .is_none_or(|b| !Arc::ptr_eq(b, &balancer))
            {
                balancer.requeue_budget().deposit();
                deposited = Some(balancer.clone());
            }
            // Only the first attempt waits out failfast; a later one that finds every endpoint
            // ejected reports what went wrong with the earlier attempts instead.
            let endpoint = match (
                self.pick(&balancer, &tried, last_error.is_none()).await,
                last_error,
            ) {
                (Ok(e), _) => e,
                (Err(_), Some(previous)) => return Err(previous),
                (Err(e), None) => return Err(e),
            };
            tried.push(endpoint.addr);
            let err = match self.attempt(&balancer, &endpoint).await {
                Ok(fwd) => {
                    let retryable = matches!(fwd.verdict, Verdict::Failure { retryable: true });
                    if !retryable || attempt == MAX_ATTEMPTS || !self.retry_allowed() {
                        return Ok(fwd);
                    }
                    // The failed response is dropped unread; failure accrual still counts it.
                    balancer.record(&endpoint, false);
                    tracing::debug!(status = %fwd.parts.status, "retry");
                    self.service.retry();
                    tokio::time::sleep(self.backoff()).await;
                    last_error = Some(ProxyError::new(
                        ErrorKind::UpstreamReset,
                        format!("{} from {}", fwd.parts.status, endpoint.addr),
                    ));
                    continue;
                }
                Err(Failed::Sent(err)) => return Err(err),
                Err(Failed::Unsent(err)) => {
                    // Requeue on another endpoint: the request never left, so any method may go.
                    if balancer.len() < 2 || attempt == MAX_ATTEMPTS {
                        return Err(err);
                    }
                    if !balancer.requeue_budget().withdraw() {
                        self.service.budget_exhausted(BudgetKind::requeue);
                        return Err(err);
                    }
                    tracing::debug!(error = %err, "requeue");
                    self.service.requeue();
                    last_error = Some(err);
                    continue;
                }
                Err(Failed::Retryable(err)) => err,
            };
            if attempt == MAX_ATTEMPTS || !self.retry_allowed() {
                return Err(err);
            }
            tracing::debug!(error = %err, "retry");
            self.service.retry();
            tokio::time::sleep(self.backoff()).await;
            last_error = Some(err);
        }
        Err(last_error
            .unwrap_or_else(|| ProxyError::new(ErrorKind::UpstreamReset, "no attempt left")))
    }

    /// A retry needs a replayable body and a withdrawal from the retry budget.
    fn retry_allowed(&self) -> bool {
        if !self.body.is_replayable() {
            return false;
        }
        if !self.budget.withdraw() {
            self.service.budget_exhausted(BudgetKind::retry);
            return false;
        }
        true
    }

    /// One attempt on `endpoint`.
    async fn attempt(
        &self,
        balancer: &Arc<Balancer>,
        endpoint: &Arc<Endpoint>,
    ) -> Result<Forwarded, Failed> {
        // Only the first attempt, or one after `retry_allowed` checked replayability, gets here.
        let Some(body) = self.body.retry() else {
            return Err(Failed::Sent(ProxyError::new(
                ErrorKind::UpstreamReset,
                "request body too large to send again",
            )));
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        if balancer.is_meshed() && self.version != Version::HTTP_2 {
            // Proxy-to-proxy: one multiplexed HTTP/2 connection, the original protocol marked
            // so the peer restores it towards its application.
            *req.version_mut() = Version::HTTP_2;
            req.headers_mut()
                .insert(ORIG_PROTO, http::HeaderValue::from_static("HTTP/1.1"));
        }
        let call = endpoint.call(req);
        let result = match self.attempt_timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(r) => r,
                Err(_) => {
                    balancer.record(endpoint, false);
                    return Err(self.after_send(ProxyError::new(
                        ErrorKind::RequestTimeout,
                        format!("attempt timed out after {limit:?}"),
                    )));
                }
            },
            None => call.await,
        };
        let rsp = match result {
            Ok(rsp) => rsp,
            Err(e) => {
                balancer.record(endpoint, false);
                let err = classify_client_error(e, endpoint.addr);
                return Err(if err.kind().is_retryable() {
                    Failed::Unsent(err)
                } else {
                    self.after_send(err)
                });
            }
        };
        let (parts, mut body) = rsp.into_parts();
        let (first, ended) = match hold_head(&mut body).await {
            Ok(held) => held,
            Err(e) => {
                balancer.record(endpoint, false);
                let err = ProxyError::new(
                    ErrorKind::UpstreamReset,
                    format!(
                        "endpoint {} failed right after the response head",
                        endpoint.addr
                    ),
                )
                .with_source(e);
                return Err(self.after_send(err));
            }
        };
        let verdict = self
            .classifier
            .response(&self.method, parts.status, &parts.headers);
        Ok(Forwarded {
            parts,
            first,
            ended,
            body,
            verdict,
            classifier: self.classifier.clone(),
            balancer: balancer.clone(),
            endpoint: endpoint.clone(),
        })
    }

    /// A failure after the request may have reached the app: retryable only as the
    /// classifier allows for this method.
    fn after_send(&self, err: ProxyError) -> Failed {
        if self.classifier.error_may_retry(&self.method) {
            Failed::Retryable(err)
        } else {
            Failed::Sent(err)
        }
    }

    /// Picks an endpoint; while every endpoint is ejected, waits for one to come back (if
    /// `wait`), at most the failfast timeout, then 503 `failfast`.
    async fn pick(
        &self,
        balancer: &Balancer,
        avoid: &[std::net::SocketAddr],
        wait: bool,
    ) -> Result<Arc<Endpoint>, ProxyError> {
        let deadline = Instant::now() + self.fail_fast;
        loop {
            match balancer.pick(avoid) {
                Pick::Endpoint(e) => return Ok(e),
                Pick::Empty => {
                    return Err(ProxyError::new(
                        ErrorKind::NoEndpoints,
                        "no endpoints in discovery",
                    ))
                }
                Pick::AllEjected { next } => {
                    if !wait || Instant::now() >= deadline {
                        return Err(ProxyError::new(
                            ErrorKind::FailFast,
                            format!("every endpoint ejected for {:?}", self.fail_fast),
                        ));
                    }
                    let wake = next.map_or(deadline, |n| n.min(deadline));
                    tokio::select! {
                        () = tokio::time::sleep_until(wake) => {}
                        () = balancer.changed() => {}
                    }
                }
            }
        }
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
    match tokio::time::timeout(HEAD_HOLD, body.frame()).await {
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
        }
    }

    /// The downstream response: hop-by-hop headers out, `Via` in, and a body that records the
    /// exchange when it ends.
    pub(crate) fn into_response(
        self,
        service: ServiceMetrics,
        tap: Option<Tapped>,
        observed: Option<Observed>,
    ) -> Response<ProxyBody> {
        let Forwarded {
            mut parts,
            first,
            ended,
            body,
            verdict,
            classifier,
            balancer,
            endpoint,
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
        append_via(&mut parts.headers, parts.version);
        let grpc = is_grpc(&parts.headers);
        if let Some(t) = &tap {
            t.response(Some(endpoint.addr), parts.status.as_u16(), None);
        }
        let completion = Completion {
            tap,
            observed,
            head_at: Instant::now(),
            service,
            status: parts.status.as_u16(),
            verdict,
            classifier,
            balancer,
            endpoint,
        };
        Response::from_parts(
            parts,
            ProxyBody::upstream(first, ended, body, grpc, completion),
        )
    }
}
