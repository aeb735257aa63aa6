//! The counters of weft's own reporting: span export and access log writing.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouterLabels {
    router: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExporterLabels {
    exporter: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SpanDropLabels {
    exporter: &'static str,
    reason: &'static str,
}

/// `weft_access_log_dropped_total`, `weft_trace_spans_exported_total`,
/// `weft_trace_spans_dropped_total`.
pub(crate) struct ExportMetrics {
    access_log_dropped: Family<RouterLabels, Counter>,
    spans_exported: Family<ExporterLabels, Counter>,
    spans_dropped: Family<SpanDropLabels, Counter>,
}

/// The counters of one span exporter.
pub(crate) struct SpanCounters {
    pub(crate) exported: Counter,
    pub(crate) dropped_full: Counter,
    pub(crate) dropped_failed: Counter,
}

impl ExportMetrics {
    pub(crate) fn register(registry: &mut Registry) -> ExportMetrics {
        let m = ExportMetrics {
            access_log_dropped: Family::default(),
            spans_exported: Family::default(),
            spans_dropped: Family::default(),
        };
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer's queue was full",
            m.access_log_dropped.clone(),
        );
        registry.register(
            "trace_spans_exported",
            "Spans accepted by a trace collector, by exporter (otlp, zipkin)",
            m.spans_exported.clone(),
        );
        registry.register(
            "trace_spans_dropped",
            "Spans not exported, by exporter and reason: queue_full (the export queue was full) or export_failed (the collector did not accept the batch)",
            m.spans_dropped.clone(),
        );
        m
    }

    /// `weft_access_log_dropped_total` of one router.
    pub(crate) fn access_log_dropped(&self, router: &str) -> Counter {
        self.access_log_dropped.get_or_create_owned(&RouterLabels {
            router: Arc::from(router),
        })
    }

    /// The exported and dropped span counters of one exporter (`otlp`, `zipkin`).
    pub(crate) fn span_counters(&self, exporter: &'static str) -> SpanCounters {
        let dropped = |reason| {
            self.spans_dropped
                .get_or_create_owned(&SpanDropLabels { exporter, reason })
        };
        SpanCounters {
            exported: self
                .spans_exported
                .get_or_create_owned(&ExporterLabels { exporter }),
            dropped_full: dropped("queue_full"),
            dropped_failed: dropped("export_failed"),
        }
    }
}
