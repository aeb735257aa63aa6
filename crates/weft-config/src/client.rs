//! Validated per-client settings of a router: connecting, balancing, ejecting failing
//! endpoints, failing fast and requeueing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::naming;
use crate::values::ser_duration;
use crate::RetryBudget;

/// Settings of each bound client (one per bound name, yaml `client`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// The HTTP version requests go upstream with (yaml `protocol`); default `auto`.
    pub protocol: UpstreamProtocol,
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
    /// Accepted for compatibility and unused (yaml `failFastTimeout`, a duration > 0;
    /// default 3s): while failure accrual has ejected every endpoint of a client, requests go
    /// to them anyway (panic mode) instead of waiting for one and failing with 503 `failfast`.
    #[serde(serialize_with = "ser_duration")]
    pub fail_fast_timeout: Duration,
    /// Bounds the re-sends to another endpoint of requests whose connection the endpoint
    /// refused or could not make (refused, timed out, TLS failed), whatever the response
    /// classifier says (yaml `requeueBudget`, same keys as `service.retries.budget`); default
    /// like the retry budget: 0.2, 10/s, 10s. Re-sends on a fresh connection after a stale
    /// one failed, or after HTTP/2 refused a stream, take no budget: they are bounded by the
    /// attempts of a request.
    pub requeue_budget: RetryBudget,
    /// TLS towards the endpoints (yaml `tls`): mesh mTLS (`{serverIdentity}`) or TLS to a
    /// server outside the mesh (`{serverName, trustRoots}`); `None`: plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::ClientTlsConfig>,
    /// Settings for the bound names under a prefix (yaml `configs`, Linkerd 1's `static`
    /// client configs): each entry is these settings with the keys it sets replaced; the
    /// first entry in file order whose prefix matches a bound name applies to it (see
    /// [`ClientConfig::for_bound`]). Empty in the entries themselves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<PrefixedClientConfig>,
}

/// The client settings of the bound names under `prefix` (one entry of yaml
/// `client.configs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixedClientConfig {
    /// Matched against bound names (`/#/fs/books`, `/%/port/4143/#/gateways/b`) by whole
    /// segments.
    pub prefix: naming::Path,
    /// The settings (its own `configs` is empty).
    #[serde(flatten)]
    pub config: ClientConfig,
}

impl ClientConfig {
    /// The settings for the bound name `id`: those of the first `configs` entry whose prefix
    /// matches it, else these.
    pub fn for_bound(&self, id: &naming::Path) -> &ClientConfig {
        self.configs
            .iter()
            .find(|c| id.starts_with(&c.prefix))
            .map_or(self, |c| &c.config)
    }
}

impl ClientConfig {
    /// Default `connectTimeout`, 1 second.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Default `poolIdleTimeout`, 3 seconds.
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default `failFastTimeout`, 3 seconds.
    pub const DEFAULT_FAIL_FAST_TIMEOUT: Duration = Duration::from_secs(3);
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            configs: Vec::new(),
            protocol: UpstreamProtocol::default(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            pool_idle_timeout: Self::DEFAULT_POOL_IDLE_TIMEOUT,
            load_balancer: LoadBalancerConfig::default(),
            failure_accrual: FailureAccrualConfig::default(),
            fail_fast_timeout: Self::DEFAULT_FAIL_FAST_TIMEOUT,
            requeue_budget: RetryBudget::default(),
            tls: None,
        }
    }
}

/// The HTTP version a bound client sends requests with (yaml `client.protocol`). Requests to
/// peer proxies (through the `port` transformer) always travel over HTTP/2, whatever this
/// says. As Envoy and haproxy choose it per cluster or server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// `auto` (the default): each request goes with the version it arrived in. An endpoint
    /// that turns out to speak HTTP/1.1 only (it refuses the HTTP/2 preface, or does not pick
    /// `h2` over ALPN) gets HTTP/2 requests as HTTP/1.1 from then on, the first one included
    /// (it was never processed); gRPC, which needs HTTP/2, then fails with `502
    /// upstream-protocol`.
    #[default]
    Auto,
    /// `http1`: every request as HTTP/1.1 (gRPC fails with `502 upstream-protocol`).
    Http1,
    /// `http2`: every request as HTTP/2 (prior knowledge in plaintext, ALPN `h2` over TLS).
    Http2,
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

/// Ejection of an endpoint after failures (yaml `failureAccrual`). What counts as a failure is
/// the service's response classifier, plus connection failures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum FailureAccrualConfig {
    /// `kind: consecutiveFailures`: after `failures` failures in a row the endpoint is taken
    /// out for a jittered backoff, then probed with one request.
    ConsecutiveFailures {
        /// Failures in a row that eject (at least 1); default 5.
        failures: u32,
        /// How long an ejected endpoint stays out; default 5s .. 300s.
        backoff: Backoff,
    },
    /// `kind: successRate`: once the endpoint has answered at least `requests` times, it is
    /// taken out when the success rate of its last `requests` responses falls below
    /// `success_rate`, for a jittered backoff, then probed with one request.
    SuccessRate {
        /// The lowest acceptable fraction of successes, `0 < x <= 1` (yaml `successRate`);
        /// default 0.8.
        success_rate: f64,
        /// The window: the last N responses (at least 1); default 20.
        requests: u32,
        /// How long an ejected endpoint stays out; default 5s .. 300s.
        backoff: Backoff,
    },
    /// `kind: none`: never eject.
    None,
}

impl FailureAccrualConfig {
    /// Default `failures` of `consecutiveFailures`, 5.
    pub const DEFAULT_FAILURES: u32 = 5;
    /// Default `successRate` of `successRate`, 0.8.
    pub const DEFAULT_SUCCESS_RATE: f64 = 0.8;
    /// Default `requests` (window) of `successRate`, 20.
    pub const DEFAULT_REQUESTS: u32 = 20;
}

impl Default for FailureAccrualConfig {
    fn default() -> Self {
        FailureAccrualConfig::ConsecutiveFailures {
            failures: Self::DEFAULT_FAILURES,
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
