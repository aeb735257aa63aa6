//! The control plane's metrics (`docs/metrics.md`, "Control plane").

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
/// - `weft_control_proxies_connected`: proxies connected to the resolution service (set by
///   that service through [`ControlMetrics::proxies_connected`]).
#[derive(Clone)]
pub struct ControlMetrics {
    registry: Arc<Registry>,
    store_errors: Family<OpLabel, Counter>,
    writes: Family<ResultLabel, Counter>,
    watches: Gauge,
    updates_sent: Counter,
    watch_dropped: Counter,
    proxies_connected: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

impl ControlMetrics {
    /// Creates the metrics and their registry.
    pub fn new() -> ControlMetrics {
        let mut registry = Registry::default();
        let store_errors = Family::<OpLabel, Counter>::default();
        let writes = Family::<ResultLabel, Counter>::default();
        let watches = Gauge::default();
        let updates_sent = Counter::default();
        let watch_dropped = Counter::default();
        let proxies_connected = Gauge::default();
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
        registry.register(
            "weft_control_proxies_connected",
            "Proxies connected to the resolution service",
            proxies_connected.clone(),
        );
        ControlMetrics {
            registry: Arc::new(registry),
            store_errors,
            writes,
            watches,
            updates_sent,
            watch_dropped,
            proxies_connected,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The gauge of proxies connected to the resolution service.
    pub fn proxies_connected(&self) -> &Gauge {
        &self.proxies_connected
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

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics::new()
    }
}
