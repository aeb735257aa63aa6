//! Validated per-client and per-service settings of a router.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::values::{ser_duration, ser_opt_duration};

/// Settings of each bound client (one per bound name, yaml `client`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// TCP connect timeout (yaml `connectTimeout`, a duration > 0); default 1s. Expiry is 504.
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// How long an idle HTTP/1 connection stays pooled (yaml `poolIdleTimeout`, a duration);
    /// default 3s, shorter than common server keep-alives.
    #[serde(serialize_with = "ser_duration")]
    pub pool_idle_timeout: Duration,
    /// The load balancer (yaml `loadBalancer`).
    pub load_balancer: LoadBalancerConfig,
    /// Ejection of failing endpoints (yaml `failureAccrual`).
    pub failure_accrual: FailureAccrualConfig,
}

impl ClientConfig {
    /// Default `connectTimeout`, 1 second.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default `poolIdleTimeout`, 3 seconds.
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            pool_idle_timeout: Self::DEFAULT_POOL_IDLE_TIMEOUT,
            load_balancer: LoadBalancerConfig::default(),
            failure_accrual: FailureAccrualConfig::default(),
        }
    }
}

/// The load balancer: power of two choices over peak-EWMA load (yaml `{kind: ewma, decay: 10s}`;
/// `ewma` is the only kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "ewma")]
pub struct LoadBalancerConfig {
    /// How fast the latency estimate forgets (a duration > 0); default 10s.
    #[serde(serialize_with = "ser_duration")]
    pub decay: Duration,
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        LoadBalancerConfig {
            decay: Duration::from_secs(10),
        }
    }
}

/// Ejection of an endpoint after failures (yaml `failureAccrual`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FailureAccrualConfig {
    /// `kind: consecutiveFailures`: after `failures` failures in a row the endpoint is taken
    /// out for a jittered backoff, then probed with one request.
    ConsecutiveFailures {
        /// Failures in a row that eject (at least 1); default 5.
        failures: u32,
        /// How long an ejected endpoint stays out; default 5s .. 300s.
        backoff: Backoff,
    },
    /// `kind: none`: never eject.
    None,
}

impl Default for FailureAccrualConfig {
    fn default() -> Self {
        FailureAccrualConfig::ConsecutiveFailures {
            failures: 5,
            backoff: Backoff::default(),
        }
    }
}

/// A jittered exponential backoff between `min` and `max` (durations, `min <= max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Backoff {
    /// The first wait; default 5s.
    #[serde(serialize_with = "ser_duration")]
    pub min: Duration,
    /// The longest wait; default 300s.
    #[serde(serialize_with = "ser_duration")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

/// Settings of each logical service (one per logical name, yaml `service`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Deadline for the whole request including retries (yaml `totalTimeout`, a duration > 0);
    /// default none, so long streams live. Expiry is 504.
    #[serde(
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_timeout: Option<Duration>,
    /// Retry settings.
    pub retries: RetriesConfig,
    /// Which responses are failures and which of those may be retried (yaml
    /// `responseClassifier`); default `nonRetryable5XX`.
    pub response_classifier: ResponseClassifier,
}

/// Retry settings (yaml `retries`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetriesConfig {
    /// The budget that bounds retries.
    pub budget: RetryBudget,
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

/// Which responses count as failures, and which failures may be retried (Linkerd 1's names).
/// Connection failures before any response are always failures and, when the request never
/// reached the app, retryable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponseClassifier {
    /// `nonRetryable5XX`: 5XX are failures, never retried.
    #[default]
    #[serde(rename = "nonRetryable5XX")]
    NonRetryable5XX,
    /// `retryableRead5XX`: 5XX are failures; retried for GET, HEAD, OPTIONS and TRACE.
    #[serde(rename = "retryableRead5XX")]
    RetryableRead5XX,
    /// `retryableIdempotent5XX`: 5XX are failures; retried for idempotent methods (the read
    /// methods plus PUT and DELETE).
    #[serde(rename = "retryableIdempotent5XX")]
    RetryableIdempotent5XX,
    /// `retryableAll5XX`: 5XX are failures; retried for every method.
    #[serde(rename = "retryableAll5XX")]
    RetryableAll5XX,
    /// `allSuccessful`: every response is a success.
    #[serde(rename = "allSuccessful")]
    AllSuccessful,
}
