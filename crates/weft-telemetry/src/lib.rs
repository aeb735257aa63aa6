//! weft's metrics: one Prometheus registry per process, the metric names and labels, and
//! cheap per-request recording handles; and the other ways weft reports what it does:
//! distributed tracing ([`trace`]), statsd export ([`statsd`]), access logs
//! ([`access_log`]) and live tap ([`tap`]).
//!
//! This crate owns what is measured and how it is named (see `docs/metrics.md`); it does not
//! own the admin HTTP server that serves the text (that is `weft-admin`) nor the request path
//! that records (that is `weft-proxy`). Names follow Prometheus conventions: base units
//! (seconds), `_total` counters. Label cardinality is bounded: `service` and `client` come from
//! the router's bounded binding cache, `endpoint` from discovery (series are removed when an
//! endpoint leaves), `error` from a fixed set of reasons.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub mod access_log;
mod admin_refusals;
mod conn_errors;
mod export_metrics;
pub mod history;
mod namers;
mod process;
pub mod scrape;
pub mod slo;
pub mod statsd;
pub mod tap;
mod text;
pub mod trace;

pub use namers::{NamerSample, NamerSource};

/// Latency buckets in seconds: 100µs to 60s, fine enough for sub-millisecond p50 on loopback
/// and for multi-second tails.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
    0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Whether a response counts as a success or a failure for success-rate metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case in the Prometheus text
pub enum Classification {
    /// The request succeeded (by the router's response classifier).
    success,
    /// The request failed: a proxy error, or an upstream response the classifier calls a failure.
    failure,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouterLabels {
    router: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceLabels {
    router: Arc<str>,
    service: Arc<str>,
    route: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ResponseLabels {
    router: Arc<str>,
    service: Arc<str>,
    route: Arc<str>,
    status_code: u16,
    classification: Classification,
    error: &'static str,
    fault: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClientLabels {
    router: Arc<str>,
    client: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    router: Arc<str>,
    client: Arc<str>,
    endpoint: Arc<str>,
}

#[derive(Clone)]
struct LatencyHistogram;

impl MetricConstructor<Histogram> for LatencyHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(LATENCY_BUCKETS.iter().copied())
    }
}

/// The process-wide metrics registry. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<ServiceLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    latency: Family<ServiceLabels, Histogram, LatencyHistogram>,
    open_connections: Family<RouterLabels, Gauge>,
    connections: Family<RouterLabels, Counter>,
    endpoints: Family<ClientLabels, Gauge>,
    endpoints_ejected: Family<ClientLabels, Gauge>,
    endpoint_requests: Family<EndpointLabels, Counter>,
    ejections: Family<ClientLabels, Counter>,
    revivals: Family<ClientLabels, Counter>,
    panic_picks: Family<ClientLabels, Counter>,
    retries: Family<ServiceLabels, Counter>,
    requeues: Family<ServiceLabels, Counter>,
    budget_exhausted: Family<BudgetLabels, Counter>,
    detections: Family<DetectLabels, Counter>,
    connection_timeouts: Family<TimeoutLabels, Counter>,
    connection_errors: conn_errors::ConnectionErrors,
    admin_refusals: admin_refusals::AdminRefusals,
    tcp_bytes: Family<TcpLabels, Counter>,
    exporters: export_metrics::ExportMetrics,
    tls_handshakes: Family<HandshakeLabels, Counter>,
    identity_expiry: Gauge,
    identity_reloads: Counter,
    identity_rejected: Counter,
    namers: Arc<namers::NamerMetrics>,
    config_reloads: Family<ReloadLabels, Counter>,
    config_reload_success: Gauge,
    history: history::History,
    slo: slo::SloGauges,
}

/// `result` of a config reload: `ok` (applied, or nothing changed) or `error`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// `router`, `result` (`ok`, `error`) and, on errors only, `reason`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct HandshakeLabels {
    router: Arc<str>,
    failure: Option<&'static str>,
}

impl EncodeLabelSet for HandshakeLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let router: &str = &self.router;
        match self.failure {
            None => [("router", router), ("result", "ok")].encode(encoder),
            Some(reason) => {
                [("router", router), ("result", "error"), ("reason", reason)].encode(encoder)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DetectLabels {
    router: Arc<str>,
    protocol: &'static str,
    timed_out: bool,
}

/// `router`, and which HTTP/1.1 connection timeout closed a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TimeoutLabels {
    router: Arc<str>,
    timeout: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TcpLabels {
    router: Arc<str>,
    direction: &'static str,
}

/// Which budget ran out: retries of failed responses, or requeues of unsent requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case in the Prometheus text
pub enum BudgetKind {
    /// The retry budget (`service.retries.budget`).
    retry,
    /// The requeue budget (`client.requeueBudget`).
    requeue,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BudgetLabels {
    router: Arc<str>,
    service: Arc<str>,
    kind: BudgetKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

// === impl Metrics ===

impl Metrics {
    /// Creates the registry with every weft metric registered under the `weft_` prefix, and
    /// `weft_build_info{version}` set to `version`.
    pub fn new(version: &str) -> Metrics {
        let mut registry = Registry::with_prefix("weft");
        let requests = Family::default();
        let responses = Family::default();
        let latency = Family::new_with_constructor(LatencyHistogram);
        let open_connections = Family::default();
        let connections = Family::default();
        let endpoints = Family::default();
        let endpoint_requests = Family::default();
        let endpoints_ejected = Family::default();
        let ejections = Family::default();
        let revivals = Family::default();
        let panic_picks = Family::default();
        let retries = Family::default();
        let requeues = Family::default();
        let budget_exhausted = Family::default();
        let detections = Family::default();
        let connection_timeouts = Family::default();
        let connection_errors = conn_errors::ConnectionErrors::register(&mut registry);
        let admin_refusals = admin_refusals::AdminRefusals::register(&mut registry);
        let tcp_bytes = Family::default();
        let tls_handshakes = Family::default();
        let namers = namers::NamerMetrics::register(&mut registry);
        let identity_expiry = Gauge::default();
        let identity_reloads = Counter::default();
        let identity_rejected = Counter::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes terminated by the proxy (mesh TLS and ingress servers), by result (ok, error) and, for errors, reason",
            tls_handshakes.clone(),
        );
        registry.register(
            "identity_cert_expiry_timestamp_seconds",
            "When the proxy's current identity certificate expires, seconds since the Unix epoch (0 without an identity)",
            identity_expiry.clone(),
        );
        registry.register(
            "identity_reloads",
            "Identity material (cert, key, trust bundle) reloaded from its files",
            identity_reloads.clone(),
        );
        registry.register(
            "identity_rejected_reloads",
            "Changed identity files rejected (broken, mismatched, expired); the last good material stays in use",
            identity_rejected.clone(),
        );
        registry.register(
            "requests",
            "Requests received, by router and logical service name",
            requests.clone(),
        );
        registry.register(
            "responses",
            "Exchanges finished, by status code sent downstream (0: none, the client went away), classification, proxy error reason and fault (downstream, upstream, proxy)",
            responses.clone(),
        );
        registry.register_with_unit(
            "response_latency",
            "Time from receiving the request to sending the response head downstream",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "open_connections",
            "Downstream connections currently open, by router",
            open_connections.clone(),
        );
        registry.register(
            "connections",
            "Downstream connections accepted, by router",
            connections.clone(),
        );
        registry.register(
            "endpoints",
            "Endpoints known to the load balancer of a bound client",
            endpoints.clone(),
        );
        registry.register(
            "endpoint_requests",
            "Requests sent to one endpoint of a bound client",
            endpoint_requests.clone(),
        );
        registry.register(
            "endpoints_ejected",
            "Endpoints of a bound client ejected by failure accrual right now",
            endpoints_ejected.clone(),
        );
        registry.register(
            "ejections",
            "Endpoints ejected by failure accrual (circuit opened)",
            ejections.clone(),
        );
        registry.register(
            "revivals",
            "Ejected endpoints revived after a successful probe (circuit closed)",
            revivals.clone(),
        );
        registry.register(
            "panic_picks",
            "Picks made while every endpoint of a bound client was ejected by failure accrual (panic mode: ejection ignored)",
            panic_picks.clone(),
        );
        registry.register(
            "retries",
            "Requests sent again after a retryable failure",
            retries.clone(),
        );
        registry.register(
            "requeues",
            "Requests sent again without spending the retry budget: to another endpoint after a connection could not be made, or on a fresh connection after a stale one lost the request or HTTP/2 refused it",
            requeues.clone(),
        );
        registry.register(
            "protocol_detections",
            "Accepted connections by detected protocol (http, tls, tcp, or opaque when detection was skipped), and whether detection timed out",
            detections.clone(),
        );
        registry.register(
            "http1_connection_timeouts",
            "Client HTTP/1.1 connections closed by a timeout: keep-alive (idle, closed quietly) or header-read (an incomplete request head, answered 408)",
            connection_timeouts.clone(),
        );
        registry.register(
            "tcp_bytes",
            "Bytes copied on opaque TCP, WebSocket and CONNECT connections, by direction (to_upstream, to_downstream)",
            tcp_bytes.clone(),
        );
        registry.register(
            "budget_exhausted",
            "Retries or requeues refused because their budget was used up",
            budget_exhausted.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        for result in ["ok", "error"] {
            let _ = config_reloads.get_or_create(&ReloadLabels { result });
        }
        let config_reload_success = Gauge::default();
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP or a change of the file), by result: ok (applied, or nothing changed) or error (invalid, or a change that needs a restart; the config in force stays)",
            config_reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the config in force was last loaded or reloaded successfully, seconds since the Unix epoch (0 before the first load)",
            config_reload_success.clone(),
        );
        let exporters = export_metrics::ExportMetrics::register(&mut registry);
        // A gauge fixed at 1 rather than an OpenMetrics `info`, which the Prometheus text
        // format (and promtool) does not know.
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: version.to_string(),
            })
            .set(1);
        registry.register("build_info", "weft build information", build);
        process::register(&mut registry);
        let slo = slo::SloGauges::register(&mut registry);
        // The history reads these two families back; a registry of their own keeps that
        // cheap (the same families, not copies).
        let mut sampled = Registry::with_prefix("weft");
        sampled.register("responses", "", responses.clone());
        sampled.register("response_latency_seconds", "", latency.clone());
        sampled.register("endpoints", "", endpoints.clone());
        sampled.register("endpoints_ejected", "", endpoints_ejected.clone());
        sampled.register("endpoint_requests", "", endpoint_requests.clone());
        let history = history::History::new(sampled);
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                responses,
                latency,
                open_connections,
                connections,
                endpoints,
                endpoints_ejected,
                endpoint_requests,
                ejections,
                revivals,
                panic_picks,
                retries,
                requeues,
                budget_exhausted,
                detections,
                connection_timeouts,
                connection_errors,
                admin_refusals,
                tcp_bytes,
                exporters,
                tls_handshakes,
                identity_expiry,
                identity_reloads,
                identity_rejected,
                namers,
                config_reloads,
                config_reload_success,
                history,
                slo,
            }),
        }
    }

    /// Renders every metric in the Prometheus text exposition format, version 0.0.4 (the
    /// content type `text/plain; version=0.0.4`), which every Prometheus and `promtool`
    /// reads.
    pub fn encode(&self) -> String {
        self.inner.namers.refresh();
        self.inner.slo.refresh(&self.inner.history.slo());
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an error here would be a bug in the encoder.
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.push_str("# encoding error\n");
        }
        text::openmetrics_to_prometheus(&out)
    }

    /// The request history of every service and the state of their objectives, as the
    /// dashboard and `weft slo` show them.
    pub fn history(&self) -> &history::History {
        &self.inner.history
    }

    /// The counters of the trace exporters and the access logs.
    pub(crate) fn exporters(&self) -> &export_metrics::ExportMetrics {
        &self.inner.exporters
    }

    /// Sets where the `weft_namer_*` metrics come from: called on every scrape.
    pub fn set_namer_source(&self, source: NamerSource) {
        self.inner.namers.set_source(source);
    }

    /// Records that the config in force was loaded at start: sets
    /// `weft_config_last_reload_success_timestamp_seconds` to now.
    pub fn config_loaded(&self) {
        self.inner.config_reload_success.set(unix_now());
    }

    /// Counts one admin request refused because it changes the proxy (`/shutdown`,
    /// `/logging`) and did not come from loopback, in `weft_admin_refused_total{path}`.
    pub fn admin_refused(&self, path: &'static str) {
        self.inner.admin_refusals.inc(path);
    }

    /// Counts one config reload in `weft_config_reloads_total`: `ok` when it was applied or
    /// changed nothing (the last-success timestamp then moves to now), else `error`.
    pub fn config_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.inner
            .config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
        if ok {
            self.config_loaded();
        }
    }

    /// Sets the identity gauges: certificate expiry (Unix seconds) and the reload counters
    /// (totals so far; the counters advance by the difference).
    pub fn set_identity(&self, not_after_unix: i64, reloads: u64, rejected: u64) {
        let inner = &self.inner;
        inner.identity_expiry.set(not_after_unix);
        let advance = |c: &Counter, total: u64| {
            let seen = c.get();
            if total > seen {
                c.inc_by(total - seen);
            }
        };
        advance(&inner.identity_reloads, reloads);
        advance(&inner.identity_rejected, rejected);
    }

    /// Recording handles for one router (`router` label).
    pub fn router(&self, router: &str) -> RouterMetrics {
        RouterMetrics {
            metrics: self.clone(),
            router: Arc::from(router),
        }
    }
}

/// Seconds since the Unix epoch, now (0 if the clock is before it).
/// Now in Unix seconds, with a fraction.
fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Recording handles for one router. Cheap to clone.
#[derive(Clone)]
pub struct RouterMetrics {
    metrics: Metrics,
    router: Arc<str>,
}

// === impl RouterMetrics ===

impl RouterMetrics {
    /// The router's label.
    pub fn label(&self) -> &str {
        &self.router
    }

    /// Counts an accepted downstream connection; the returned guard keeps it in
    /// `weft_open_connections` until dropped.
    pub fn connection_opened(&self) -> ConnectionGuard {
        let labels = RouterLabels {
            router: self.router.clone(),
        };
        let inner = &self.metrics.inner;
        inner.connections.get_or_create(&labels).inc();
        let open = inner.open_connections.get_or_create_owned(&labels);
        open.inc();
        ConnectionGuard { open }
    }

    /// Counts one accepted connection by its detected `protocol` (`http`, `tls`, `tcp`,
    /// `opaque`), and whether detection gave up waiting (`timed_out`).
    pub fn detected(&self, protocol: &'static str, timed_out: bool) {
        let labels = DetectLabels {
            router: self.router.clone(),
            protocol,
            timed_out,
        };
        self.metrics.inner.detections.get_or_create(&labels).inc();
    }

    /// Counts one client HTTP/1.1 connection closed by `timeout`: `keep-alive` or
    /// `header-read` (the router's `keepAliveTimeout` and `headerReadTimeout`).
    pub fn connection_timeout(&self, timeout: &'static str) {
        let labels = TimeoutLabels {
            router: self.router.clone(),
            timeout,
        };
        self.metrics
            .inner
            .connection_timeouts
            .get_or_create(&labels)
            .inc();
    }

    /// Counts one client connection of `protocol` (`http1`, `http2`) that ended in an error,
    /// for `reason`, from a small fixed set (see `docs/metrics.md`), as it is a label.
    pub fn connection_error(&self, protocol: &'static str, reason: &'static str) {
        self.metrics
            .inner
            .connection_errors
            .inc(&self.router, protocol, reason);
    }

    /// Counts one TLS handshake the proxy terminated (mesh TLS or an ingress server):
    /// `Ok(())` as `result="ok"`, `Err(reason)` as `result="error", reason=<reason>`. The
    /// reason must come from a small fixed set (see `docs/metrics.md`), as it is a label.
    pub fn tls_handshake(&self, outcome: Result<(), &'static str>) {
        let labels = HandshakeLabels {
            router: self.router.clone(),
            failure: outcome.err(),
        };
        self.metrics
            .inner
            .tls_handshakes
            .get_or_create(&labels)
            .inc();
    }

    /// The byte counter of opaque streams in one `direction` (`to_upstream`, `to_downstream`).
    pub fn tcp_bytes(&self, direction: &'static str) -> Counter {
        let labels = TcpLabels {
            router: self.router.clone(),
            direction,
        };
        self.metrics.inner.tcp_bytes.get_or_create_owned(&labels)
    }

    /// Handles for one route of one logical service (`service` label, e.g. `/svc/books`;
    /// `route` label, the service profile's route name or `[default]`).
    pub fn service(&self, service: &str, route: &str) -> ServiceMetrics {
        let labels = ServiceLabels {
            router: self.router.clone(),
            service: Arc::from(service),
            route: Arc::from(route),
        };
        let inner = &self.metrics.inner;
        ServiceMetrics {
            requests: inner.requests.get_or_create_owned(&labels),
            latency: inner.latency.get_or_create_owned(&labels),
            retries: inner.retries.get_or_create_owned(&labels),
            requeues: inner.requeues.get_or_create_owned(&labels),
            responses: Arc::default(),
            metrics: self.metrics.clone(),
            labels,
        }
    }

    /// Handles for one bound client (`client` label, the bound id such as `/#/fs/books`).
    pub fn client(&self, client: &str) -> ClientMetrics {
        ClientMetrics {
            router: self.router.clone(),
            client: Arc::from(client),
            metrics: self.metrics.clone(),
        }
    }
}

/// Keeps one connection counted in `weft_open_connections` while alive.
pub struct ConnectionGuard {
    open: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Recording handles for one logical service of one router. Cheap to clone.
#[derive(Clone)]
pub struct ServiceMetrics {
    labels: ServiceLabels,
    requests: Counter,
    latency: Histogram,
    retries: Counter,
    requeues: Counter,
    /// The response counters this service has used, so the usual few (a status or two) are
    /// found without hashing three label strings per response.
    responses: Arc<Mutex<Vec<(ResponseKey, Counter)>>>,
    metrics: Metrics,
}

/// Status code, classification, error reason and fault of a response.
type ResponseKey = (u16, Classification, &'static str, &'static str);
/// At most this many distinct response counters are cached per service; rarer ones are
/// looked up in the family every time.
const RESPONSE_CACHE: usize = 16;

// === impl ServiceMetrics ===

impl ServiceMetrics {
    /// Counts one received request.
    pub fn request(&self) {
        self.requests.inc();
    }

    /// Records the latency in seconds from the request to the response head going out.
    pub fn latency(&self, secs: f64) {
        self.latency.observe(secs);
    }

    /// Records one finished exchange: its status (`0` when no response was sent: the client
    /// went away first), classification (decided at the end of the stream, so a body that
    /// failed midway counts as a failure), the proxy error reason and who was at fault
    /// (`downstream`, `upstream`, `proxy`; both `""` when the exchange completed normally).
    /// Both come from small fixed sets, as they are labels.
    pub fn response(
        &self,
        status_code: u16,
        classification: Classification,
        error: &'static str,
        fault: &'static str,
    ) {
        let key = (status_code, classification, error, fault);
        let mut cache = self
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counter)) = cache.iter().find(|(k, _)| *k == key) {
            counter.inc();
            return;
        }
        let labels = ResponseLabels {
            router: self.labels.router.clone(),
            service: self.labels.service.clone(),
            route: self.labels.route.clone(),
            status_code,
            classification,
            error,
            fault,
        };
        let counter = self.metrics.inner.responses.get_or_create_owned(&labels);
        counter.inc();
        if cache.len() < RESPONSE_CACHE {
            cache.push((key, counter));
        }
    }

    /// Counts a retry of a failed attempt.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// Counts a requeue: a request sent again to another endpoint after its connection could
    /// not be made, or on a fresh connection after a stale one lost it.
    pub fn requeue(&self) {
        self.requeues.inc();
    }

    /// Counts a retry or requeue refused by its exhausted budget.
    pub fn budget_exhausted(&self, kind: BudgetKind) {
        let labels = BudgetLabels {
            router: self.labels.router.clone(),
            service: self.labels.service.clone(),
            kind,
        };
        self.metrics
            .inner
            .budget_exhausted
            .get_or_create(&labels)
            .inc();
    }
}

/// Recording handles for one bound client: its endpoint count and per-endpoint requests.
#[derive(Clone)]
pub struct ClientMetrics {
    router: Arc<str>,
    client: Arc<str>,
    metrics: Metrics,
}

// === impl ClientMetrics ===

impl ClientMetrics {
    /// Sets `weft_endpoints` for this client.
    pub fn set_endpoints(&self, n: usize) {
        let labels = ClientLabels {
            router: self.router.clone(),
            client: self.client.clone(),
        };
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.inner.endpoints.get_or_create(&labels).set(n);
    }

    /// The request counter of one endpoint (`endpoint` label: `ip:port`).
    pub fn endpoint_requests(&self, endpoint: &str) -> Counter {
        self.metrics
            .inner
            .endpoint_requests
            .get_or_create_owned(&self.endpoint_labels(endpoint))
    }

    /// Sets `weft_endpoints_ejected` for this client.
    pub fn set_ejected(&self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics
            .inner
            .endpoints_ejected
            .get_or_create(&self.client_labels())
            .set(n);
    }

    /// Counts an ejection (failure accrual opened an endpoint's circuit).
    pub fn ejected(&self) {
        self.metrics
            .inner
            .ejections
            .get_or_create(&self.client_labels())
            .inc();
    }

    /// Counts a revival (a probe succeeded and the circuit closed).
    pub fn revived(&self) {
        self.metrics
            .inner
            .revivals
            .get_or_create(&self.client_labels())
            .inc();
    }

    /// An endpoint was picked while every endpoint was ejected (panic mode).
    pub fn panic_pick(&self) {
        self.metrics
            .inner
            .panic_picks
            .get_or_create(&self.client_labels())
            .inc();
    }

    fn client_labels(&self) -> ClientLabels {
        ClientLabels {
            router: self.router.clone(),
            client: self.client.clone(),
        }
    }

    /// Removes the series of an endpoint that left discovery, so cardinality stays bounded.
    pub fn remove_endpoint(&self, endpoint: &str) {
        self.metrics
            .inner
            .endpoint_requests
            .remove(&self.endpoint_labels(endpoint));
    }

    /// Removes this client's series (the client was evicted from the router's cache).
    pub fn remove(&self) {
        let labels = ClientLabels {
            router: self.router.clone(),
            client: self.client.clone(),
        };
        self.metrics.inner.endpoints.remove(&labels);
    }

    fn endpoint_labels(&self, endpoint: &str) -> EndpointLabels {
        EndpointLabels {
            router: self.router.clone(),
            client: self.client.clone(),
            endpoint: Arc::from(endpoint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_recorded_series_with_labels() {
        let metrics = Metrics::new("1.2.3");
        let router = metrics.router("outbound");
        let svc = router.service("/svc/books", "[default]");
        svc.request();
        svc.latency(0.0004);
        svc.response(
            502,
            Classification::failure,
            "connection-refused",
            "upstream",
        );
        let _conn = router.connection_opened();
        router.client("/#/fs/books").set_endpoints(3);
        let text = metrics.encode();
        assert!(text.contains(
            r#"weft_requests_total{router="outbound",service="/svc/books",route="[default]"} 1"#
        ));
        assert!(text.contains(
            r#"weft_responses_total{router="outbound",service="/svc/books",route="[default]",status_code="502",classification="failure",error="connection-refused",fault="upstream"} 1"#
        ));
        assert!(text.contains(r#"weft_open_connections{router="outbound"} 1"#));
        assert!(text.contains(r#"weft_endpoints{router="outbound",client="/#/fs/books"} 3"#));
        assert!(text.contains(r#"weft_build_info{version="1.2.3"} 1"#));
        assert!(text.contains("weft_response_latency_seconds_bucket"));
    }

    #[test]
    fn connection_guard_decrements_open_connections() {
        let metrics = Metrics::new("0");
        let router = metrics.router("in");
        drop(router.connection_opened());
        assert!(metrics
            .encode()
            .contains(r#"weft_open_connections{router="in"} 0"#));
    }

    #[test]
    fn handshake_errors_carry_a_reason_and_successes_none() {
        let metrics = Metrics::new("0");
        let router = metrics.router("edge");
        router.tls_handshake(Ok(()));
        router.tls_handshake(Err("timeout"));
        router.tls_handshake(Err("timeout"));
        let text = metrics.encode();
        assert!(text.contains(r#"weft_tls_handshakes_total{router="edge",result="ok"} 1"#));
        assert!(text.contains(
            r#"weft_tls_handshakes_total{router="edge",result="error",reason="timeout"} 2"#
        ));
    }
}
