//! Validated service-level objectives of a router's services (yaml `service.objectives`).
//!
//! An objective says what fraction of a service's requests must be good over a window: a
//! success-rate objective counts requests the response classifier calls successes, a latency
//! objective counts requests answered within a threshold. `weft-telemetry` computes their
//! attainment, error budget and burn rates.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::naming;
use crate::values::ser_duration;

/// One objective (yaml `{kind: successRate, target: 99.9%, window: 28d}` or
/// `{kind: latency, threshold: 300ms, target: 99%, window: 28d}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    /// What counts as a good request.
    #[serde(flatten)]
    pub kind: ObjectiveKind,
    /// The percentage of requests that must be good, strictly between 0 and 100 (yaml
    /// `target`, a string like `99.9%`).
    #[serde(rename = "target", serialize_with = "ser_percent")]
    pub target_percent: f64,
    /// The window the target applies to (yaml `window`, a duration > 0); default 28 days.
    #[serde(serialize_with = "ser_duration")]
    pub window: Duration,
    /// The logical names it applies to: those under this prefix (yaml `prefix`); default
    /// every service of the router.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_path"
    )]
    pub prefix: Option<naming::Path>,
}

/// What makes a request good for an objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ObjectiveKind {
    /// `successRate`: the response classifier called the exchange a success
    /// (`classification="success"` in `weft_responses_total`).
    SuccessRate,
    /// `latency`: the response head went out within `threshold` of the request.
    Latency {
        /// The latency a good request stays within (a duration, > 0, at most 60s).
        #[serde(serialize_with = "ser_duration")]
        threshold: Duration,
    },
}

impl Objective {
    /// Default `window`: 28 days.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(28 * 24 * 3600);

    /// The target as a fraction, e.g. 0.999 for `99.9%` (rounded to 12 decimals, so it
    /// prints as written rather than as 0.9990000000000001).
    pub fn target(&self) -> f64 {
        round12(self.target_percent / 100.0)
    }

    /// The error budget: the fraction of requests that may be bad, `1 - target`.
    pub fn budget(&self) -> f64 {
        round12(1.0 - self.target())
    }

    /// The objective's name, unique per service: `success-rate`, or `latency-<threshold>`
    /// such as `latency-300ms` (the `objective` label of the SLO metrics).
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// Whether the objective covers the logical name `service`.
    pub fn applies_to(&self, service: &naming::Path) -> bool {
        self.prefix.as_ref().is_none_or(|p| service.starts_with(p))
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ObjectiveKind::SuccessRate => f.write_str("success-rate"),
            ObjectiveKind::Latency { threshold } => {
                write!(f, "latency-{}", humantime::format_duration(threshold))
            }
        }
    }
}

fn round12(x: f64) -> f64 {
    (x * 1e12).round() / 1e12
}

fn ser_percent<S: Serializer>(pct: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{pct}%"))
}

fn ser_opt_path<S: Serializer>(p: &Option<naming::Path>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.collect_str(p),
        None => s.serialize_none(),
    }
}
