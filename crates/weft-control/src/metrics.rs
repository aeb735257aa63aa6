//! The control plane's metrics (`docs/metrics.md`, "Control plane").

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use weft_resolve::ResolveService;

/// The control plane's metrics, registered in one registry; cheap to clone.
///
/// - `weft_control_store_errors_total{op}`: store operations that failed for a reason other
///   than the request (backend unavailable or broken); `op` is list, get, create, update,
///   delete or check;
/// - `weft_control_writes_total{result}`: API writes by outcome: ok, conflict, exists,
///   not_found, invalid, unauthorized, forbidden, unavailable, error;
/// - `weft_control_watches`: open API watches (`?watch=true`);
/// - `weft_control_updates_sent_total`: versions sent to API watches;
/// - `weft_control_watch_dropped_total`: API watches closed because the client did not read;
/// - `weft_control_proxies_connected`: proxies connected to the resolution service;
/// - `weft_control_resolve_streams`: resolve streams open on the resolution service (one per
///   name and local dtab a proxy routes);
/// - `weft_control_resolve_updates_sent_total`: updates sent on those streams.
///
/// The last three are read from the resolution service's [`weft_resolve::ServiceStats`] on
/// each scrape.
#[derive(Clone)]
pub struct ControlMetrics {
    registry: Arc<Registry>,
    store_errors: Family<OpLabel, Counter>,
    writes: Family<ResultLabel, Counter>,
    watches: Gauge,
    updates_sent: Counter,
    watch_dropped: Counter,
}

/// Reads the resolution service's counters on each scrape.
struct ResolutionCollector(ResolveService);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

impl ControlMetrics {
    /// Creates the metrics and their registry; the resolution service's are read from
    /// `resolution` on each scrape.
    pub fn new(resolution: &ResolveService) -> ControlMetrics {
        let mut registry = Registry::default();
        let store_errors = Family::<OpLabel, Counter>::default();
        let writes = Family::<ResultLabel, Counter>::default();
        let watches = Gauge::default();
        let updates_sent = Counter::default();
        let watch_dropped = Counter::default();
        registry.register(
            "weft_control_store_errors",
            "Store operations that failed (backend unavailable or broken), by operation",
            store_errors.clone(),
        );
        registry.register(
            "weft_control_writes",
            "Writes through the HTTP API, by result",
            writes.clone(),
        );
        registry.register(
            "weft_control_watches",
            "Open watches on the HTTP API",
            watches.clone(),
        );
        registry.register(
            "weft_control_updates_sent",
            "Dtab versions sent to watches on the HTTP API",
            updates_sent.clone(),
        );
        registry.register(
            "weft_control_watch_dropped",
            "HTTP API watches closed because the client did not read",
            watch_dropped.clone(),
        );
        registry.register_collector(Box::new(ResolutionCollector(resolution.clone())));
        ControlMetrics {
            registry: Arc::new(registry),
            store_errors,
            writes,
            watches,
            updates_sent,
            watch_dropped,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn store_error(&self, op: &'static str) {
        self.store_errors.get_or_create(&OpLabel { op }).inc();
    }

    pub(crate) fn write(&self, result: &'static str) {
        self.writes.get_or_create(&ResultLabel { result }).inc();
    }

    pub(crate) fn watches(&self) -> &Gauge {
        &self.watches
    }

    pub(crate) fn update_sent(&self) {
        self.updates_sent.inc();
    }

    pub(crate) fn watch_dropped(&self) {
        self.watch_dropped.inc();
    }
}

impl Collector for ResolutionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
        for (name, help, value) in [
            (
                "weft_control_proxies_connected",
                "Proxies connected to the resolution service",
                stats.connections,
            ),
            (
                "weft_control_resolve_streams",
                "Resolve streams open on the resolution service",
                stats.streams,
            ),
        ] {
            let g = gauge(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let sent = ConstCounter::new(stats.updates_sent_total);
        sent.encode(encoder.encode_descriptor(
            "weft_control_resolve_updates_sent",
            "Updates sent on the resolution service's resolve streams",
            None,
            sent.metric_type(),
        )?)
    }
}

impl std::fmt::Debug for ResolutionCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ResolutionCollector")
            .field(&self.0.stats())
            .finish()
    }
}
