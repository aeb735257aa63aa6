//! Validated per-service settings of a router: timeouts, retries, response classification and
//! service profiles.

use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::naming;
use crate::values::{ser_duration, ser_opt_duration};
use crate::{Objective, ServiceProfile};

/// Settings of each logical service (one per logical name, yaml `service`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Deadline for the whole request including retries (yaml `totalTimeout`, a duration > 0);
    /// default none, so long streams live. Expiry is 504. A matching route's `timeout`
    /// replaces it.
    #[serde(
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_timeout: Option<Duration>,
    /// Deadline for one attempt (the first try or one retry) until its response headers
    /// arrive (yaml `attemptTimeout`, a duration > 0); default none. An attempt that expires
    /// may be retried if the route allows it and time remains within `total_timeout`.
    #[serde(
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// Retry settings.
    pub retries: RetriesConfig,
    /// Which responses are failures and which of those may be retried (yaml
    /// `responseClassifier`); default `nonRetryable5XX`. A matching route's classifier
    /// replaces it.
    pub response_classifier: ResponseClassifier,
    /// Service profiles: per-route settings for the logical names under each profile's
    /// prefix (yaml `profiles`); default none. Prefixes are unique; see
    /// [`ServiceConfig::profile_for`].
    pub profiles: Vec<ServiceProfile>,
    /// Service-level objectives of the router's services (yaml `objectives`); default none.
    /// Each applies to every service under its `prefix`; names are unique per prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<Objective>,
}

impl ServiceConfig {
    /// The profile for the logical name `service`: the one whose `prefix` is the longest
    /// prefix of `service` (by whole path segments), or `None`.
    pub fn profile_for(&self, service: &naming::Path) -> Option<&ServiceProfile> {
        self.profiles
            .iter()
            .filter(|p| service.starts_with(&p.prefix))
            .max_by_key(|p| p.prefix.len())
    }
}

/// Retry settings (yaml `retries`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetriesConfig {
    /// The budget that bounds retries.
    pub budget: RetryBudget,
    /// The wait before each retry; default jittered between 5ms and 50ms.
    pub backoff: RetryBackoff,
    /// The most bytes of a request body kept to replay it on a retry (yaml `bufferBytes`);
    /// default 65536. A request whose body grows past it is not retried; 0 means only
    /// requests without a body are retried.
    pub buffer_bytes: usize,
}

impl RetriesConfig {
    /// Default `bufferBytes`, 65536 bytes.
    pub const DEFAULT_BUFFER_BYTES: usize = 64 * 1024;
}

impl Default for RetriesConfig {
    fn default() -> Self {
        RetriesConfig {
            budget: RetryBudget::default(),
            backoff: RetryBackoff::default(),
            buffer_bytes: Self::DEFAULT_BUFFER_BYTES,
        }
    }
}

/// A retry budget (Finagle's): retries may add `percent_can_retry` of the requests seen in the
/// last `ttl`, plus `min_retries_per_sec`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Fraction of requests that may be retried, `0.0..=1.0` (yaml `percentCanRetry`);
    /// default 0.2.
    pub percent_can_retry: f64,
    /// Retries allowed per second regardless of traffic (yaml `minRetriesPerSec`); default 10.
    pub min_retries_per_sec: u32,
    /// The window over which requests are counted (a duration > 0); default 10s.
    #[serde(serialize_with = "ser_duration")]
    pub ttl: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            percent_can_retry: 0.2,
            min_retries_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// The wait before each retry (yaml `retries.backoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RetryBackoff {
    /// `{kind: constant, delay: 10ms}`: the same wait before every retry.
    Constant {
        /// The wait (a duration, required; 0 retries at once).
        #[serde(serialize_with = "ser_duration")]
        delay: Duration,
    },
    /// `{kind: jittered, min: 5ms, max: 50ms}`: a random wait from `min` to `max`, growing
    /// exponentially from `min` with each retry of the same request and capped at `max`.
    Jittered {
        /// The shortest wait; default 5ms.
        #[serde(serialize_with = "ser_duration")]
        min: Duration,
        /// The longest wait, `>= min`; default 50ms.
        #[serde(serialize_with = "ser_duration")]
        max: Duration,
    },
}

impl RetryBackoff {
    /// Default `min` of `jittered`, 5 milliseconds.
    pub const DEFAULT_MIN: Duration = Duration::from_millis(5);
    /// Default `max` of `jittered`, 50 milliseconds.
    pub const DEFAULT_MAX: Duration = Duration::from_millis(50);
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff::Jittered {
            min: Self::DEFAULT_MIN,
            max: Self::DEFAULT_MAX,
        }
    }
}

/// Which responses count as failures, and which failures may be retried (Linkerd 1's names).
/// Connection failures before any response are always failures and, when the request never
/// reached the app, retryable.
///
/// Serializes as the name (`"retryableRead5XX"`), or for gRPC as
/// `{kind: grpc, retryableStatusCodes: [14]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum ResponseClassifier {
    /// `nonRetryable5XX`: 5XX are failures, never retried.
    #[default]
    NonRetryable5XX,
    /// `retryableRead5XX`: 5XX are failures; retried for GET, HEAD, OPTIONS and TRACE.
    RetryableRead5XX,
    /// `retryableIdempotent5XX`: 5XX are failures; retried for idempotent methods (the read
    /// methods plus PUT and DELETE).
    RetryableIdempotent5XX,
    /// `retryableAll5XX`: 5XX are failures; retried for every method.
    RetryableAll5XX,
    /// `allSuccessful`: every response is a success.
    AllSuccessful,
    /// `grpc.default` or `{kind: grpc, retryableStatusCodes: [14, 4]}`: for gRPC. A response
    /// whose `grpc-status` (in the trailers, or in the headers of a trailers-only response)
    /// is not 0 (OK) is a failure, as is a 5XX; a trailers-only response whose status is in
    /// `retryable_status_codes` is retried, whatever the method (gRPC calls are POSTs).
    Grpc {
        /// The retryable gRPC status codes, each `1..=16`, no duplicates, in file order;
        /// `grpc.default` is `[14]` (UNAVAILABLE). May be empty (never retry).
        retryable_status_codes: Vec<u32>,
    },
}

impl ResponseClassifier {
    /// The retryable codes of `grpc.default`: 14, UNAVAILABLE.
    pub const GRPC_DEFAULT_RETRYABLE: [u32; 1] = [14];

    /// The classifier `grpc.default`: gRPC, retrying UNAVAILABLE (14).
    pub fn grpc_default() -> ResponseClassifier {
        ResponseClassifier::Grpc {
            retryable_status_codes: Self::GRPC_DEFAULT_RETRYABLE.to_vec(),
        }
    }

    /// The file's name of a classifier that is written as a plain string; `None` for gRPC.
    pub(crate) fn name(&self) -> Option<&'static str> {
        Some(match self {
            ResponseClassifier::NonRetryable5XX => "nonRetryable5XX",
            ResponseClassifier::RetryableRead5XX => "retryableRead5XX",
            ResponseClassifier::RetryableIdempotent5XX => "retryableIdempotent5XX",
            ResponseClassifier::RetryableAll5XX => "retryableAll5XX",
            ResponseClassifier::AllSuccessful => "allSuccessful",
            ResponseClassifier::Grpc { .. } => return None,
        })
    }
}

impl Serialize for ResponseClassifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(name) = self.name() {
            return s.serialize_str(name);
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("kind", "grpc")?;
        if let ResponseClassifier::Grpc {
            retryable_status_codes,
        } = self
        {
            m.serialize_entry("retryableStatusCodes", retryable_status_codes)?;
        }
        m.end()
    }
}
