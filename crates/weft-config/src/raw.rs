//! The first stage: the file's shape as serde structs, every field optional so the second
//! stage (`validate`) can tell "absent" from "given" and apply defaults. Unknown keys are
//! rejected here (`deny_unknown_fields`) with the position of the key.
//!
//! Kinds (`kind: ...`) are flat structs holding the fields of every kind rather than serde's
//! internally tagged enums: those buffer their input and would lose line and column.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::values::{Dur, Header, Ip, NamePath, Percent, Port, PortOrName};
use crate::{AccessLogFormat, Protocol, ResponseClassifier, UpstreamProtocol, ViaPolicy};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawConfig {
    pub(crate) admin: Option<RawAdmin>,
    pub(crate) namers: Option<Vec<RawNamer>>,
    pub(crate) routers: Option<Vec<RawRouter>>,
    pub(crate) tracing: Option<RawTracing>,
    pub(crate) statsd: Option<RawStatsd>,
    pub(crate) identity: Option<RawIdentity>,
    pub(crate) upgrade: Option<RawUpgrade>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawUpgrade {
    pub(crate) socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawIdentity {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) trust_bundle: Option<String>,
    pub(crate) issuer: Option<RawIssuer>,
    pub(crate) federation: Option<Vec<RawFederation>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawFederation {
    pub(crate) trust_domain: Option<String>,
    pub(crate) trust_bundle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawIssuer {
    pub(crate) address: Option<String>,
    pub(crate) token_file: Option<String>,
    pub(crate) spiffe_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawServerTls {
    pub(crate) require_tls: Option<bool>,
    pub(crate) authorized_clients: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawClientTls {
    pub(crate) server_identity: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) trust_roots: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawIngressTls {
    pub(crate) certificates: Option<Vec<RawCertificate>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawCertificate {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawTracing {
    pub(crate) sample_rate: Option<f64>,
    pub(crate) otlp: Option<RawExporter>,
    pub(crate) zipkin: Option<RawExporter>,
    pub(crate) service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawExporter {
    pub(crate) endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawStatsd {
    pub(crate) address: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) interval: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAccessLog {
    pub(crate) path: Option<String>,
    pub(crate) format: Option<AccessLogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAdmin {
    pub(crate) ip: Option<Ip>,
    pub(crate) port: Option<Port>,
    pub(crate) shutdown_grace: Option<Dur>,
    pub(crate) drain_announce: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawNamer {
    pub(crate) kind: Option<NamerKindName>,
    pub(crate) prefix: Option<NamePath>,
    pub(crate) transformers: Option<Vec<RawTransformer>>,
    /// Linkerd 1 required `experimental: true` on some namers; accepted and ignored.
    #[allow(dead_code)]
    pub(crate) experimental: Option<bool>,
    // fs
    pub(crate) root_dir: Option<String>,
    // dnssrv
    pub(crate) dns_hosts: Option<Vec<String>>,
    pub(crate) min_ttl: Option<Dur>,
    pub(crate) max_ttl: Option<Dur>,
    /// Linkerd 1's fixed re-resolution interval: `minTtl` = `maxTtl` = this many seconds.
    pub(crate) refresh_interval_seconds: Option<u64>,
    // consul, marathon (and k8s's Linkerd 1 spelling of its URL)
    pub(crate) host: Option<String>,
    pub(crate) port: Option<Port>,
    pub(crate) tls: Option<RawBackendTls>,
    pub(crate) backoff: Option<RawDiscoveryBackoff>,
    // consul
    /// Linkerd 1's consul `failFast` (fail fast and failure accrual on the client to the
    /// agent): weft's client to the agent has neither, so it is accepted and ignored.
    #[allow(dead_code)]
    pub(crate) fail_fast: Option<bool>,
    pub(crate) include_tag: Option<bool>,
    pub(crate) health_statuses: Option<Vec<String>>,
    pub(crate) prefer_service_address: Option<bool>,
    pub(crate) set_host: Option<bool>,
    pub(crate) consul_domain: Option<String>,
    pub(crate) consistency_mode: Option<ConsulConsistencyName>,
    pub(crate) token: Option<String>,
    pub(crate) token_file: Option<String>,
    pub(crate) weights: Option<Vec<RawTagWeight>>,
    pub(crate) wait: Option<Dur>,
    // k8s
    pub(crate) url: Option<String>,
    pub(crate) kubeconfig: Option<String>,
    pub(crate) context: Option<String>,
    pub(crate) label_selector: Option<String>,
    // marathon
    pub(crate) uri_prefix: Option<String>,
    pub(crate) use_health_check: Option<bool>,
    pub(crate) ttl: Option<Dur>,
    pub(crate) ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum NamerKindName {
    #[serde(rename = "fs", alias = "io.l5d.fs")]
    Fs,
    #[serde(rename = "dnssrv", alias = "io.l5d.dnssrv")]
    DnsSrv,
    #[serde(rename = "consul", alias = "io.l5d.consul")]
    Consul,
    #[serde(rename = "k8s", alias = "io.l5d.k8s")]
    K8s,
    #[serde(rename = "marathon", alias = "io.l5d.marathon")]
    Marathon,
}

impl NamerKindName {
    pub(crate) fn name(self) -> &'static str {
        match self {
            NamerKindName::Fs => "fs",
            NamerKindName::DnsSrv => "dnssrv",
            NamerKindName::Consul => "consul",
            NamerKindName::K8s => "k8s",
            NamerKindName::Marathon => "marathon",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ConsulConsistencyName {
    Default,
    Stale,
    Consistent,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawBackendTls {
    pub(crate) common_name: Option<String>,
    pub(crate) trust_certs: Option<Vec<String>>,
    pub(crate) client_auth: Option<RawClientAuth>,
    /// Linkerd 1's `disableValidation`: only `false` is accepted (weft always verifies).
    pub(crate) disable_validation: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawClientAuth {
    pub(crate) cert_path: Option<String>,
    pub(crate) key_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawDiscoveryBackoff {
    pub(crate) min: Option<Dur>,
    pub(crate) max: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawTagWeight {
    pub(crate) tag: Option<String>,
    pub(crate) weight: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawTransformer {
    pub(crate) kind: Option<TransformerKindName>,
    pub(crate) port: Option<PortOrName>,
    pub(crate) host: Option<String>,
    pub(crate) path: Option<NamePath>,
    pub(crate) namespace: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) host_network: Option<bool>,
    pub(crate) url: Option<String>,
    pub(crate) kubeconfig: Option<String>,
    pub(crate) context: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum TransformerKindName {
    #[serde(rename = "port", alias = "io.l5d.port")]
    Port,
    #[serde(rename = "localhost", alias = "io.l5d.localhost")]
    Localhost,
    #[serde(rename = "specificHost", alias = "io.l5d.specificHost")]
    SpecificHost,
    #[serde(rename = "replace", alias = "io.l5d.replace")]
    Replace,
    #[serde(rename = "const", alias = "io.l5d.const")]
    Const,
    #[serde(rename = "k8s.daemonset", alias = "io.l5d.k8s.daemonset")]
    K8sDaemonset,
    #[serde(rename = "k8s.localnode", alias = "io.l5d.k8s.localnode")]
    K8sLocalnode,
}

impl TransformerKindName {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TransformerKindName::Port => "port",
            TransformerKindName::Localhost => "localhost",
            TransformerKindName::SpecificHost => "specificHost",
            TransformerKindName::Replace => "replace",
            TransformerKindName::Const => "const",
            TransformerKindName::K8sDaemonset => "k8s.daemonset",
            TransformerKindName::K8sLocalnode => "k8s.localnode",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRouter {
    pub(crate) label: Option<String>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) servers: Option<Vec<RawServer>>,
    pub(crate) identifier: Option<RawIdentifier>,
    pub(crate) dtab: Option<String>,
    pub(crate) dst_prefix: Option<NamePath>,
    pub(crate) binding_timeout: Option<Dur>,
    pub(crate) max_hops: Option<u32>,
    pub(crate) max_header_bytes: Option<usize>,
    pub(crate) opaque_ports: Option<Vec<Port>>,
    pub(crate) detect_timeout: Option<Dur>,
    pub(crate) tcp_idle_timeout: Option<Dur>,
    pub(crate) keep_alive_timeout: Option<Dur>,
    pub(crate) header_read_timeout: Option<Dur>,
    pub(crate) via: Option<ViaPolicy>,
    pub(crate) tls: Option<RawServerTls>,
    pub(crate) client: Option<RawClient>,
    pub(crate) service: Option<RawService>,
    pub(crate) access_log: Option<RawAccessLog>,
    pub(crate) interpreter: Option<RawInterpreter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawInterpreter {
    pub(crate) kind: Option<InterpreterKindName>,
    pub(crate) addresses: Option<Vec<String>>,
    pub(crate) namespace: Option<String>,
    pub(crate) cache_file: Option<String>,
    /// Linkerd 1's `io.l5d.namerd` key, only read to say what to write instead.
    pub(crate) dst: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum InterpreterKindName {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "control")]
    Control,
    /// Linkerd 1's namerd interpreters: refused with a message (another protocol).
    #[serde(
        rename = "io.l5d.namerd",
        alias = "io.l5d.namerd.http",
        alias = "io.l5d.mesh"
    )]
    Namerd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawServer {
    pub(crate) ip: Option<Ip>,
    pub(crate) port: Option<Port>,
    pub(crate) tls: Option<RawIngressTls>,
    pub(crate) clear_context: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawIdentifier {
    pub(crate) kind: Option<IdentifierKindName>,
    pub(crate) header: Option<Header>,
    pub(crate) segments: Option<usize>,
    pub(crate) consume: Option<bool>,
    pub(crate) path: Option<NamePath>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum IdentifierKindName {
    #[serde(rename = "header.token")]
    HeaderToken,
    #[serde(rename = "methodAndHost")]
    MethodAndHost,
    #[serde(rename = "path")]
    Path,
    #[serde(rename = "header")]
    Header,
    #[serde(rename = "static")]
    Static,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawClient {
    pub(crate) protocol: Option<UpstreamProtocol>,
    pub(crate) load_balancer: Option<RawLoadBalancer>,
    pub(crate) failure_accrual: Option<RawFailureAccrual>,
    pub(crate) connect_timeout: Option<Dur>,
    pub(crate) pool_idle_timeout: Option<Dur>,
    pub(crate) fail_fast_timeout: Option<Dur>,
    pub(crate) requeue_budget: Option<RawBudget>,
    pub(crate) tls: Option<RawClientTls>,
    /// Only in an entry of `configs`: the bound names it applies to.
    pub(crate) prefix: Option<NamePath>,
    /// Only at the top of `client`: per-prefix settings.
    pub(crate) configs: Option<Vec<RawClient>>,
}

impl RawClient {
    /// `self`'s keys over `base`'s: each key `self` sets replaces `base`'s whole value.
    pub(crate) fn over(self, base: &RawClient) -> RawClient {
        RawClient {
            protocol: self.protocol.or(base.protocol),
            load_balancer: self.load_balancer.or_else(|| base.load_balancer.clone()),
            failure_accrual: self
                .failure_accrual
                .or_else(|| base.failure_accrual.clone()),
            connect_timeout: self.connect_timeout.or(base.connect_timeout),
            pool_idle_timeout: self.pool_idle_timeout.or(base.pool_idle_timeout),
            fail_fast_timeout: self.fail_fast_timeout.or(base.fail_fast_timeout),
            requeue_budget: self.requeue_budget.or_else(|| base.requeue_budget.clone()),
            tls: self.tls.or_else(|| base.tls.clone()),
            prefix: self.prefix,
            configs: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawLoadBalancer {
    pub(crate) kind: Option<LoadBalancerKindName>,
    pub(crate) decay: Option<Dur>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum LoadBalancerKindName {
    #[serde(rename = "ewma")]
    Ewma,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawFailureAccrual {
    pub(crate) kind: Option<FailureAccrualKindName>,
    pub(crate) failures: Option<u32>,
    pub(crate) success_rate: Option<f64>,
    pub(crate) requests: Option<u32>,
    pub(crate) backoff: Option<RawBackoff>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum FailureAccrualKindName {
    #[serde(rename = "consecutiveFailures")]
    ConsecutiveFailures,
    #[serde(rename = "successRate")]
    SuccessRate,
    #[serde(rename = "none")]
    None,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawBackoff {
    pub(crate) min: Option<Dur>,
    pub(crate) max: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawService {
    pub(crate) total_timeout: Option<Dur>,
    pub(crate) attempt_timeout: Option<Dur>,
    pub(crate) retries: Option<RawRetries>,
    pub(crate) response_classifier: Option<RawClassifier>,
    pub(crate) profiles: Option<Vec<RawProfile>>,
    pub(crate) objectives: Option<Vec<RawObjective>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawObjective {
    pub(crate) kind: Option<ObjectiveKindName>,
    pub(crate) target: Option<Percent>,
    pub(crate) window: Option<Dur>,
    pub(crate) threshold: Option<Dur>,
    pub(crate) prefix: Option<NamePath>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ObjectiveKindName {
    SuccessRate,
    Latency,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRetries {
    pub(crate) budget: Option<RawBudget>,
    pub(crate) backoff: Option<RawRetryBackoff>,
    pub(crate) buffer_bytes: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawBudget {
    pub(crate) percent_can_retry: Option<f64>,
    pub(crate) min_retries_per_sec: Option<u32>,
    pub(crate) ttl: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRetryBackoff {
    pub(crate) kind: Option<RetryBackoffKindName>,
    pub(crate) delay: Option<Dur>,
    pub(crate) min: Option<Dur>,
    pub(crate) max: Option<Dur>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum RetryBackoffKindName {
    #[serde(rename = "constant")]
    Constant,
    #[serde(rename = "jittered")]
    Jittered,
}

/// A response classifier: a name (`retryableRead5XX`, `grpc.default`) or a mapping with a
/// `kind` (`{kind: grpc, retryableStatusCodes: [14]}`).
#[derive(Debug)]
pub(crate) enum RawClassifier {
    Named(ResponseClassifier),
    Kind(RawClassifierKind),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawClassifierKind {
    pub(crate) kind: Option<ClassifierKindName>,
    pub(crate) retryable_status_codes: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum ClassifierKindName {
    #[serde(rename = "grpc")]
    Grpc,
}

const CLASSIFIER_NAMES: &str = "`nonRetryable5XX`, `retryableRead5XX`, `retryableIdempotent5XX`, `retryableAll5XX`, `allSuccessful`, `grpc.default`";

impl<'de> Deserialize<'de> for RawClassifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawClassifier;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "one of {CLASSIFIER_NAMES}, or a mapping like {{kind: grpc, retryableStatusCodes: [14]}}"
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawClassifier, E> {
                Ok(RawClassifier::Named(match s {
                    "nonRetryable5XX" => ResponseClassifier::NonRetryable5XX,
                    "retryableRead5XX" => ResponseClassifier::RetryableRead5XX,
                    "retryableIdempotent5XX" => ResponseClassifier::RetryableIdempotent5XX,
                    "retryableAll5XX" => ResponseClassifier::RetryableAll5XX,
                    "allSuccessful" => ResponseClassifier::AllSuccessful,
                    "grpc.default" => ResponseClassifier::grpc_default(),
                    _ => {
                        return Err(E::custom(format!(
                            "unknown response classifier `{s}`, expected one of {CLASSIFIER_NAMES}, or {{kind: grpc, retryableStatusCodes: [...]}}"
                        )))
                    }
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawClassifier, A::Error> {
                RawClassifierKind::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawClassifier::Kind)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawProfile {
    pub(crate) prefix: Option<NamePath>,
    pub(crate) routes: Option<Vec<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRoute {
    pub(crate) name: Option<String>,
    #[serde(rename = "match")]
    pub(crate) matcher: Option<RawRouteMatch>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) is_retryable: Option<bool>,
    pub(crate) response_classifier: Option<RawClassifier>,
    pub(crate) authorized_clients: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRouteMatch {
    pub(crate) method: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) path_regex: Option<String>,
    pub(crate) grpc_service: Option<String>,
    pub(crate) grpc_method: Option<String>,
}
