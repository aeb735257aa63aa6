//! Validated settings of the namers that talk to a discovery backend (`dnssrv`, `consul`,
//! `k8s`, `marathon`) and of the Kubernetes transformers. Keys follow Linkerd 1's namers of
//! the same name (`io.l5d.consul` and so on), so a Linkerd 1 configuration reads the same.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::values::ser_duration;

/// How long a namer waits before asking a failing backend again: `min`, doubling up to `max`,
/// each wait jittered by ±25% so that a fleet of proxies does not retry in step (yaml
/// `backoff: {min, max}`); default 1s to 30s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiscoveryBackoff {
    /// The first wait.
    #[serde(serialize_with = "ser_duration")]
    pub min: Duration,
    /// The longest wait.
    #[serde(serialize_with = "ser_duration")]
    pub max: Duration,
}

impl Default for DiscoveryBackoff {
    fn default() -> Self {
        DiscoveryBackoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// TLS towards a discovery backend's HTTP API (yaml `tls`, Linkerd 1's keys): the server is
/// verified against `trustCerts` (or the system roots when empty) under `commonName` (or the
/// configured host), and `clientAuth` presents a client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTls {
    /// The name to verify on the server's certificate (yaml `commonName`); default the host.
    pub common_name: Option<String>,
    /// PEM files of CA certificates to trust (yaml `trustCerts`); default the system roots.
    pub trust_certs: Vec<PathBuf>,
    /// A client certificate and key, PEM (yaml `clientAuth: {certPath, keyPath}`).
    pub client_auth: Option<ClientAuth>,
}

/// A client certificate chain and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuth {
    /// The certificate chain (yaml `certPath`).
    pub cert_path: PathBuf,
    /// The private key (yaml `keyPath`).
    pub key_path: PathBuf,
}

/// `kind: dnssrv` (alias `io.l5d.dnssrv`): names are SRV record names,
/// `/#/<prefix>/_http._tcp.web.service.consul`; each record's target is resolved to
/// addresses, its weight becomes the endpoint weight, and only the lowest priority present is
/// used (RFC 2782). Re-resolved when the answer's TTL runs out, within `[minTtl, maxTtl]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsSrvConfig {
    /// DNS servers to ask, `ip` or `ip:port` (yaml `dnsHosts`); default the system's
    /// (`/etc/resolv.conf`).
    pub dns_hosts: Vec<SocketAddr>,
    /// The shortest time between re-resolutions (yaml `minTtl`); default 1s.
    #[serde(serialize_with = "ser_duration")]
    pub min_ttl: Duration,
    /// The longest time between re-resolutions (yaml `maxTtl`); default 60s. Linkerd 1's
    /// `refreshIntervalSeconds: N` (a fixed interval) sets both `minTtl` and `maxTtl` to N s.
    #[serde(serialize_with = "ser_duration")]
    pub max_ttl: Duration,
    /// Retry schedule after a failed lookup (yaml `backoff`).
    pub backoff: DiscoveryBackoff,
}

/// Consul read consistency (yaml `consistencyMode`, Consul's `?stale` / `?consistent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsulConsistency {
    /// The leader answers, possibly stale by a moment (Consul's default).
    #[default]
    Default,
    /// Any server answers (`?stale`): cheapest, may lag.
    Stale,
    /// The leader confirms its leadership first (`?consistent`).
    Consistent,
}

/// A weight for the instances that carry a tag (yaml `weights: [{tag, weight}]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagWeight {
    /// The Consul service tag.
    pub tag: String,
    /// The endpoint weight of instances with the tag (≥ 0); the highest matching tag wins.
    pub weight: f64,
}

/// `kind: consul` (alias `io.l5d.consul`): names are `/<dc>/<service>`, or with `includeTag`
/// `/<dc>/<tag>/<service>`; `.local` is the agent's datacenter. Watches
/// `/v1/health/service/<service>` with blocking queries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsulConfig {
    /// The agent's host (yaml `host`); default `localhost`.
    pub host: String,
    /// The agent's HTTP port (yaml `port`); default 8500.
    pub port: u16,
    /// Names carry a tag label (yaml `includeTag`); default false.
    pub include_tag: bool,
    /// Health check statuses an instance may have and still get traffic (yaml
    /// `healthStatuses`: `passing`, `warning`, `critical`, `maintenance`); default `[passing]`.
    pub health_statuses: Vec<String>,
    /// Use the service's address when it has one, else the node's (yaml
    /// `preferServiceAddress`); default true.
    pub prefer_service_address: bool,
    /// Requests to the endpoints carry `Host: <service>.service.<dc>.<domain>` (yaml
    /// `setHost`); default false.
    pub set_host: bool,
    /// The DNS domain used by `setHost` (yaml `consulDomain`); default `consul`.
    pub consul_domain: String,
    /// Read consistency (yaml `consistencyMode`); default `default`.
    pub consistency_mode: ConsulConsistency,
    /// An ACL token (yaml `token`), sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// A file holding the ACL token (yaml `tokenFile`), read at each (re)connection so that a
    /// rotated token is picked up.
    pub token_file: Option<PathBuf>,
    /// TLS to the agent (yaml `tls`); default plain HTTP.
    pub tls: Option<BackendTls>,
    /// Endpoint weights by tag (yaml `weights`).
    pub weights: Vec<TagWeight>,
    /// How long one blocking query may wait for a change (yaml `wait`, Consul caps it at 10
    /// minutes); default 5m.
    #[serde(serialize_with = "ser_duration")]
    pub wait: Duration,
    /// Retry schedule after a failed query (yaml `backoff`).
    pub backoff: DiscoveryBackoff,
}

/// Where the Kubernetes API is (yaml keys of `kind: k8s`); with none set, the in-cluster
/// service account (token and CA under `/var/run/secrets/kubernetes.io/serviceaccount`) and
/// then `$KUBECONFIG` / `~/.kube/config` are tried, as `kubectl` does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct K8sApi {
    /// The API server's URL (yaml `url`), e.g. `http://127.0.0.1:8001` for `kubectl proxy`.
    /// Linkerd 1's `host` and `port` give `http://<host>:<port>`.
    pub url: Option<String>,
    /// A kubeconfig file (yaml `kubeconfig`).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (yaml `context`); default its current context.
    pub context: Option<String>,
}

/// `kind: k8s` (alias `io.l5d.k8s`): names are `/<namespace>/<port-name-or-number>/<service>`,
/// from the service's EndpointSlices (list, then watch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct K8sConfig {
    /// Where the API server is.
    #[serde(flatten)]
    pub api: K8sApi,
    /// Only services whose EndpointSlices match this label selector (yaml `labelSelector`).
    pub label_selector: Option<String>,
    /// Retry schedule after a failed list or watch (yaml `backoff`).
    pub backoff: DiscoveryBackoff,
}

/// `kind: marathon` (alias `io.l5d.marathon`): names are the app id, one label per segment
/// (`/#/marathon/products/web` is app `/products/web`). Reads `/v2/apps?embed=apps.tasks` and
/// follows `/v2/events`. Credentials come from the environment as in Linkerd 1:
/// `DCOS_SERVICE_ACCOUNT_CREDENTIAL` (DC/OS service account, JSON) or
/// `MARATHON_HTTP_AUTH_CREDENTIAL` (base64 `user:password`, HTTP basic auth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MarathonConfig {
    /// Marathon's host (yaml `host`); default `marathon.mesos`.
    pub host: String,
    /// Marathon's port (yaml `port`); default 80.
    pub port: u16,
    /// A path prefix in front of Marathon's API (yaml `uriPrefix`, e.g. `/marathon` behind
    /// DC/OS admin router); default none.
    pub uri_prefix: String,
    /// Only tasks whose health checks all pass (yaml `useHealthCheck`); default false.
    pub use_health_check: bool,
    /// The full refresh interval, a safety net under the event stream (yaml `ttl`, or
    /// Linkerd 1's `ttlMs`); default 5s.
    #[serde(serialize_with = "ser_duration")]
    pub ttl: Duration,
    /// TLS to Marathon (yaml `tls`); default plain HTTP.
    pub tls: Option<BackendTls>,
    /// Retry schedule after a failed request (yaml `backoff`).
    pub backoff: DiscoveryBackoff,
}

/// `kind: k8s.daemonset` (alias `io.l5d.k8s.daemonset`): send to the weft of a DaemonSet on the
/// destination endpoint's node instead of the endpoint itself (the per-node pattern).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonsetConfig {
    /// The DaemonSet's service namespace (yaml `namespace`, required).
    pub namespace: String,
    /// The service in front of the DaemonSet (yaml `service`, required).
    pub service: String,
    /// The port name or number on that service (yaml `port`, required).
    pub port: String,
    /// Match by node name when the DaemonSet runs with `hostNetwork` (yaml `hostNetwork`);
    /// otherwise by the same /24 as the endpoint's IP, as Linkerd 1 did; default false.
    pub host_network: bool,
    /// Where the API server is; default as the `k8s` namer.
    #[serde(flatten)]
    pub api: K8sApi,
}

/// `kind: k8s.localnode` (alias `io.l5d.k8s.localnode`): keep only endpoints on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalnodeConfig {
    /// Match by node name, from the `NODE_NAME` environment variable (yaml `hostNetwork`);
    /// otherwise by the /24 of `POD_IP`, as Linkerd 1 did; default false.
    pub host_network: bool,
}
