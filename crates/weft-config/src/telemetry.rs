//! Telemetry settings beyond metrics: trace export (`tracing`), statsd export (`statsd`) and
//! a router's access log (`accessLog`). `weft-telemetry` acts on them; `docs/observability.md`
//! says what each produces.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::values::{ser_display, ser_duration};

/// Distributed tracing (yaml top-level `tracing`). Trace context headers (W3C and B3) are
/// always propagated; this section adds sampling and span export.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingConfig {
    /// The fraction of new traces (requests that carry no sampling decision) that are sampled,
    /// `0.0..=1.0` (yaml `sampleRate`); default 1.0. An incoming sampled flag always wins
    /// (parent-based sampling).
    pub sample_rate: f64,
    /// The OTLP/HTTP collector (yaml `otlp`); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<ExporterConfig>,
    /// The Zipkin v2 collector (yaml `zipkin`); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<ExporterConfig>,
    /// The service name spans are reported under (yaml `serviceName`); default `weft`.
    pub service_name: String,
}

impl TracingConfig {
    /// Default `sampleRate`, 1.0 (every new trace; OpenTelemetry's parent-based always-on).
    pub const DEFAULT_SAMPLE_RATE: f64 = 1.0;
    /// Default `serviceName`, `weft`.
    pub const DEFAULT_SERVICE_NAME: &'static str = "weft";
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            sample_rate: Self::DEFAULT_SAMPLE_RATE,
            otlp: None,
            zipkin: None,
            service_name: Self::DEFAULT_SERVICE_NAME.to_owned(),
        }
    }
}

/// Where one span exporter sends (yaml `{endpoint: http://127.0.0.1:4318/v1/traces}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExporterConfig {
    /// The full collector URL: scheme `http`, a host and a path (yaml `endpoint`, required).
    #[serde(serialize_with = "ser_display")]
    pub endpoint: http::Uri,
}

/// statsd export of the metrics (yaml top-level `statsd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsdConfig {
    /// The collector's `host:port` (yaml `address`, required); the host is an IP address or
    /// a DNS name, resolved at every flush.
    pub address: String,
    /// Prepended to every metric name with a `.` (yaml `prefix`); default `weft`. Letters,
    /// digits, `_`, `-` and `.`.
    pub prefix: String,
    /// How often metrics are sent (yaml `interval`, a positive duration); default 10s.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
}

impl StatsdConfig {
    /// Default `prefix`, `weft`.
    pub const DEFAULT_PREFIX: &'static str = "weft";
    /// Default `interval`, 10 seconds.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
}

/// A router's access log (yaml router key `accessLog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogConfig {
    /// Where lines go (yaml `path`, required): a file, or `-` for standard output.
    pub path: AccessLogTarget,
    /// The line format (yaml `format`); default `json`.
    pub format: AccessLogFormat,
}

/// Where access log lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// yaml `-`: the process's standard output.
    Stdout,
    /// A file, appended to and created if missing. A relative path in the file is taken
    /// relative to the config file's directory; here it is already joined.
    File(PathBuf),
}

impl Serialize for AccessLogTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AccessLogTarget::Stdout => s.serialize_str("-"),
            AccessLogTarget::File(p) => p.serialize(s),
        }
    }
}

/// The format of access log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum AccessLogFormat {
    /// `json`: one JSON object per line with every field (see `docs/observability.md`).
    #[default]
    #[serde(rename = "json")]
    Json,
    /// `common`: the NCSA Common Log Format
    /// (`host ident authuser [date] "request" status bytes`).
    #[serde(rename = "common")]
    Common,
}
