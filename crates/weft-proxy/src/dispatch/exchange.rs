//! One exchange from request to end of response, and the one place its end is recorded:
//! response metrics, tap, the trace span, the access log and failure accrual all read the
//! same [`Outcome`], so they cannot disagree about it.
//!
//! An exchange ends in one of three ways: the proxy answers with an error of its own
//! ([`Exchange::fail`]), an upstream response stream ends (complete, broken midway, or cut
//! short by the client: the response body finishes it), or the client goes away before any
//! response (dropping the exchange records that, with status 0).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use tokio::time::Instant;
use weft_naming::Path;
use weft_telemetry::access_log::AccessLog;
use weft_telemetry::tap::Tapped;
use weft_telemetry::trace::Tracer;
use weft_telemetry::{Classification, ServiceMetrics};

use super::observe::Observed;
use crate::endpoint::{Balancer, Endpoint};
use crate::error::{Fault, ProxyError};

/// The reason recorded for an exchange the client cut short.
pub(crate) const CANCELLED: &str = "cancelled";

/// One request on its way through the proxy, until its end is recorded.
pub(crate) struct Exchange {
    start: Instant,
    /// The logical service's metrics, once identified.
    service: Option<Arc<ServiceMetrics>>,
    tap: Option<Tapped>,
    observed: Option<Observed>,
    /// The status sent downstream and when, once the response head went out.
    head: Option<(u16, Instant)>,
    recorded: bool,
}

/// How an exchange ended.
pub(crate) struct Outcome {
    /// Whether the response is a success by the route's classifier (trailers included);
    /// true for a proxy error that is the client's fault.
    pub(crate) success: bool,
    /// Why the exchange failed or was cut short (the `error` label: a proxy error reason or
    /// `cancelled`), and whose fault that was.
    pub(crate) error: Option<(&'static str, Fault)>,
    /// Response body bytes sent downstream.
    pub(crate) bytes: u64,
    /// `grpc-status` of the trailers, if any.
    pub(crate) grpc_status: Option<u32>,
    /// The endpoint that answered, and its client.
    pub(crate) upstream: Option<(Arc<Balancer>, Arc<Endpoint>)>,
}

// === impl Exchange ===

impl Exchange {
    /// Starts an exchange for `req` from `peer` on `router`: its trace span (when sampled)
    /// and access log line (when the router has one).
    pub(crate) fn start<B>(
        tracer: &Tracer,
        access_log: Option<&AccessLog>,
        router: &str,
        peer: SocketAddr,
        req: &Request<B>,
        authority: &str,
    ) -> Exchange {
        Exchange {
            start: Instant::now(),
            service: None,
            tap: None,
            observed: Observed::start(tracer, access_log, router, peer, req, authority),
            head: None,
            recorded: false,
        }
    }

    /// The request was identified as `name` (`None`: it could not be), route `route`: its
    /// metrics are `service`.
    pub(crate) fn identified(
        &mut self,
        service: Arc<ServiceMetrics>,
        name: Option<&Path>,
        route: &str,
    ) {
        service.request();
        if let Some(observed) = self.observed.as_mut() {
            let name = name.map_or_else(String::new, Path::to_string);
            observed.identified(&name, route);
        }
        self.service = Some(service);
    }

    /// True once identified.
    pub(crate) fn is_identified(&self) -> bool {
        self.service.is_some()
    }

    /// The identified service's metrics (for retries and requeues).
    pub(crate) fn service(&self) -> Option<&ServiceMetrics> {
        self.service.as_deref()
    }

    /// Live taps that want this request's events.
    pub(crate) fn set_tap(&mut self, tap: Option<Tapped>) {
        self.tap = tap;
    }

    /// Writes this hop's trace context into the upstream request's headers.
    pub(crate) fn inject(&self, headers: &mut http::HeaderMap) {
        if let Some(observed) = &self.observed {
            observed.inject(headers);
        }
    }

    /// The response head goes downstream now with `status`, from endpoint `dst` (`None`: the
    /// proxy's own, with `proxy_error`): the latency and tap's `rsp` event are recorded.
    pub(crate) fn responded(
        mut self,
        status: u16,
        dst: Option<SocketAddr>,
        proxy_error: Option<&str>,
    ) -> Exchange {
        let now = Instant::now();
        if let Some(service) = &self.service {
            service.latency(now.saturating_duration_since(self.start).as_secs_f64());
        }
        if let Some(tap) = &self.tap {
            tap.response(dst, status, proxy_error);
        }
        self.head = Some((status, now));
        self
    }

    /// Answers with the proxy's error response for `err` and records the exchange.
    pub(crate) fn fail<B: From<Bytes> + http_body::Body>(self, err: &ProxyError) -> Response<B> {
        let rsp: Response<B> = err.to_response();
        let reason = err.kind().reason();
        tracing::debug!(error = %err, fault = err.fault().label(), "proxy error");
        let bytes = http_body::Body::size_hint(rsp.body()).exact().unwrap_or(0);
        let exchange = self.responded(rsp.status().as_u16(), None, Some(reason));
        exchange.finish(Outcome {
            success: err.fault() == Fault::Downstream,
            error: Some((reason, err.fault())),
            bytes,
            grpc_status: None,
            upstream: None,
        });
        rsp
    }

    /// Records how the exchange ended, once: metrics, tap, span, access log, and failure
    /// accrual (which never sees the client's faults).
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let (status, head_at) = self.head.unwrap_or((0, Instant::now()));
        let classification = outcome.classification();
        let (reason, fault) = outcome
            .error
            .map_or(("", ""), |(reason, fault)| (reason, fault.label()));
        if let Some(service) = &self.service {
            service.response(status, classification, reason, fault);
        }
        let error = outcome.error.map(|(reason, _)| reason);
        if let Some(tap) = &self.tap {
            tap.end(status, head_at, outcome.bytes, outcome.grpc_status, error);
        }
        let dst = outcome.upstream.as_ref().map(|(_, e)| e.addr);
        if let Some(observed) = self.observed.take() {
            observed.finish(status, dst, error, outcome.bytes);
        }
        if let Some((balancer, endpoint)) = &outcome.upstream {
            if !matches!(outcome.error, Some((_, Fault::Downstream))) {
                balancer.record(endpoint, classification == Classification::success);
            }
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Dropped unrecorded: the client went away before the exchange ended.
        self.record(Outcome::cancelled(None));
    }
}

// === impl Outcome ===

impl Outcome {
    /// The client went away before the exchange ended (`upstream`: the endpoint whose
    /// response it left).
    pub(crate) fn cancelled(upstream: Option<(Arc<Balancer>, Arc<Endpoint>)>) -> Outcome {
        Outcome {
            success: true,
            error: Some((CANCELLED, Fault::Downstream)),
            bytes: 0,
            grpc_status: None,
            upstream,
        }
    }

    /// A failure of the upstream or the proxy is a failure; the client's own faults count
    /// by the response's verdict (a client that cancels a good response does not make it a
    /// failure of the service).
    fn classification(&self) -> Classification {
        match self.error {
            Some((_, Fault::Upstream | Fault::Proxy)) => Classification::failure,
            _ if self.success => Classification::success,
            _ => Classification::failure,
        }
    }
}
