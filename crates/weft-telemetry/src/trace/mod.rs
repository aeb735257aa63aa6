//! Distributed tracing: trace context propagation (W3C and B3), sampling, one span per
//! request per proxy, and span export over OTLP/HTTP (protobuf) and Zipkin v2 JSON.
//!
//! The request path calls [`Tracer::start`] when a request arrives, [`ActiveSpan::inject`]
//! on the request it sends upstream, and [`ActiveSpan::finish`] when the response is done.
//! Finishing hands the span to a bounded queue per exporter; a full queue drops the span and
//! counts it (`weft_trace_spans_dropped_total{reason="queue_full"}`) rather than wait.
//! See `docs/observability.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderMap, HeaderValue};
use tokio::time::Instant;
use weft_config::TracingConfig;

use crate::Metrics;

mod export;
mod otlp;
mod propagation;
mod zipkin;

pub use propagation::{extract, Format, Incoming, Parent, SpanId, TraceId};

/// Starts spans for requests and hands finished ones to the exporters. Cheap to clone.
///
/// Without a `tracing` section (or without exporters) it records nothing:
/// [`Tracer::start`] returns `None` and the request path forwards trace headers untouched.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    sample_rate: f64,
    exporters: Vec<export::Queue>,
}

/// A sampled request's span, between [`Tracer::start`] and [`ActiveSpan::finish`].
///
/// Dropping it without `finish` (the request was cancelled, the connection went away)
/// still records it, with `error` set to `cancelled` and no status code.
pub struct ActiveSpan {
    inner: Arc<Inner>,
    pending: Option<Box<Pending>>,
}

struct Pending {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    tracestate: Option<HeaderValue>,
    b3_single: bool,
    router: Arc<str>,
    method: String,
    path: String,
    authority: String,
    start: SystemTime,
    started: Instant,
}

/// A finished span, as the exporters encode it.
#[derive(Debug, Clone)]
pub(crate) struct SpanData {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<SpanId>,
    pub(crate) tracestate: Option<String>,
    /// `<router> <method>`.
    pub(crate) name: String,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) authority: String,
    pub(crate) status: Option<u16>,
    pub(crate) router: Arc<str>,
    pub(crate) service: String,
    pub(crate) route: String,
    /// The upstream endpoint, `ip:port`.
    pub(crate) endpoint: Option<String>,
    pub(crate) error: Option<String>,
}

/// An attribute value: OTLP keeps the type, Zipkin tags are strings.
pub(crate) enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

// === impl Tracer ===

impl Tracer {
    /// A tracer for `cfg` (the file's `tracing` section; `None` when absent). With at least
    /// one exporter it spawns one export task per exporter on the current tokio runtime, so
    /// it must be called from within one; dropped-span counters are registered in `metrics`.
    pub fn new(cfg: Option<&TracingConfig>, metrics: &Metrics) -> Tracer {
        let Some(cfg) = cfg else {
            return Tracer::default();
        };
        let service_name: Arc<str> = Arc::from(cfg.service_name.as_str());
        let mut exporters = Vec::new();
        if let Some(otlp) = &cfg.otlp {
            exporters.push(export::spawn(
                export::Kind::Otlp,
                otlp.endpoint.clone(),
                service_name.clone(),
                metrics,
            ));
        }
        if let Some(zipkin) = &cfg.zipkin {
            exporters.push(export::spawn(
                export::Kind::Zipkin,
                zipkin.endpoint.clone(),
                service_name,
                metrics,
            ));
        }
        if exporters.is_empty() {
            return Tracer::default();
        }
        Tracer {
            inner: Some(Arc::new(Inner {
                sample_rate: cfg.sample_rate,
                exporters,
            })),
        }
    }

    /// Starts the span of one request received by `router`, if the request is sampled and an
    /// exporter is configured. `path` is the URL path (no query), `authority` the request's
    /// authority (`:authority` or `Host`).
    ///
    /// Sampling is parent-based: an incoming sampled flag (`traceparent` flags, `b3`,
    /// `x-b3-sampled`, `x-b3-flags: 1`) decides; without one, the trace id decides against
    /// `sampleRate` (OpenTelemetry's `TraceIdRatioBased`, so every proxy on a trace decides
    /// alike). `None` means: record nothing and forward the request's trace headers as they
    /// came.
    pub fn start(
        &self,
        headers: &HeaderMap,
        router: &str,
        method: &str,
        path: &str,
        authority: &str,
    ) -> Option<ActiveSpan> {
        let inner = self.inner.as_ref()?;
        let incoming = extract(headers);
        let (trace_id, parent, tracestate) = match incoming.parent {
            Some(p) => (p.trace_id, Some(p.span_id), p.tracestate),
            None => (TraceId::random(), None, None),
        };
        let sampled = incoming
            .sampled
            .unwrap_or_else(|| ratio_sampled(trace_id, inner.sample_rate));
        if !sampled {
            return None;
        }
        Some(ActiveSpan {
            inner: inner.clone(),
            pending: Some(Box::new(Pending {
                trace_id,
                span_id: SpanId::random(),
                parent,
                tracestate,
                b3_single: incoming.format == Some(Format::B3Single),
                router: Arc::from(router),
                method: method.to_owned(),
                path: path.to_owned(),
                authority: authority.to_owned(),
                start: SystemTime::now(),
                started: Instant::now(),
            })),
        })
    }
}

/// OpenTelemetry's `TraceIdRatioBased`: sampled when the trace id's low 63 bits fall below
/// `rate` times 2^63.
fn ratio_sampled(trace_id: TraceId, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id.0[8..]);
    let x = u64::from_be_bytes(low) >> 1;
    // `rate` is in 0.0..1.0 here, so the product fits in u64.
    let bound = (rate * (1u64 << 63) as f64) as u64;
    x < bound
}

// === impl ActiveSpan ===

impl ActiveSpan {
    /// The trace this span belongs to.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.pending.as_ref().map(|p| p.trace_id)
    }

    /// This span's id.
    pub fn span_id(&self) -> Option<SpanId> {
        self.pending.as_ref().map(|p| p.span_id)
    }

    /// Writes the trace context for the upstream request, with this span as the parent:
    /// `traceparent` (flags `01`), the caller's `tracestate`, and B3 in the caller's form
    /// (`b3` if it sent `b3`, else `x-b3-traceid`/`-spanid`/`-parentspanid`/`-sampled`).
    /// Call it on every attempt (retries carry the same parent).
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(p) = &self.pending {
            propagation::inject(
                headers,
                p.trace_id,
                p.span_id,
                p.parent,
                true,
                p.tracestate.as_ref(),
                p.b3_single,
            );
        }
    }

    /// Ends the span and queues it for export, never waiting: `status` is the response
    /// status sent downstream, `endpoint` the upstream address the (last) attempt went to,
    /// `error` the proxy error reason (the `l5d-proxy-error` / metrics `error` label) if the
    /// proxy failed the request, `service` the logical name (`/svc/books`) and `route` the
    /// service profile's route name (`[default]` when none matched).
    pub fn finish(
        mut self,
        status: u16,
        endpoint: Option<SocketAddr>,
        error: Option<&str>,
        service: &str,
        route: &str,
    ) {
        self.record(Some(status), endpoint, error, service, route);
    }

    fn record(
        &mut self,
        status: Option<u16>,
        endpoint: Option<SocketAddr>,
        error: Option<&str>,
        service: &str,
        route: &str,
    ) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let p = *p;
        let span = Arc::new(SpanData {
            trace_id: p.trace_id,
            span_id: p.span_id,
            parent: p.parent,
            tracestate: p
                .tracestate
                .and_then(|t| t.to_str().ok().map(str::to_owned)),
            name: format!("{} {}", p.router, p.method),
            end: p.start + p.started.elapsed(),
            start: p.start,
            method: p.method,
            path: p.path,
            authority: p.authority,
            status,
            router: p.router,
            service: service.to_owned(),
            route: route.to_owned(),
            endpoint: endpoint.map(|e| e.to_string()),
            error: error.map(str::to_owned),
        });
        for q in &self.inner.exporters {
            q.push(span.clone());
        }
    }
}

impl Drop for ActiveSpan {
    fn drop(&mut self) {
        self.record(None, None, Some("cancelled"), "", "");
    }
}

// === impl SpanData ===

impl SpanData {
    /// The span's attributes with OpenTelemetry semantic-convention names, empty ones left
    /// out.
    pub(crate) fn attributes(&self) -> Vec<(&'static str, Value<'_>)> {
        let mut out = vec![
            ("http.request.method", Value::Str(&self.method)),
            ("url.path", Value::Str(&self.path)),
            ("server.address", Value::Str(&self.authority)),
            ("weft.router", Value::Str(&self.router)),
            ("weft.service", Value::Str(&self.service)),
            ("weft.route", Value::Str(&self.route)),
        ];
        out.retain(|(_, v)| !matches!(v, Value::Str("")));
        if let Some(s) = self.status {
            out.push(("http.response.status_code", Value::Int(i64::from(s))));
        }
        if let Some(e) = &self.endpoint {
            out.push(("net.peer.address", Value::Str(e)));
        }
        if let Some(e) = &self.error {
            out.push(("error", Value::Str(e)));
        }
        out
    }

    /// Whether the span failed: a proxy error, or a 5xx response.
    pub(crate) fn is_error(&self) -> bool {
        self.error.is_some() || self.status.is_some_and(|s| s >= 500)
    }
}

#[cfg(test)]
mod tests;
