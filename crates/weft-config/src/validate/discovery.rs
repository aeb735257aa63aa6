//! Validation of `namers` and their `transformers`: each kind takes its own keys, and a key
//! of another kind is refused by name.

use std::net::{IpAddr, SocketAddr};
use std::path::Path as FsPath;
use std::time::Duration;

use super::{dur, invalid, min_max, not_for_kind, Result};
use crate::locate::KeyPath;
use crate::raw::*;
use crate::values::PortOrName;
use crate::*;

const NAMER_KINDS: &str = "`fs`, `dnssrv`, `consul`, `k8s` or `marathon`";
const TRANSFORMER_KINDS: &str =
    "`port`, `localhost`, `specificHost`, `replace`, `const`, `k8s.daemonset` or `k8s.localnode`";

pub(super) fn namer(raw: RawNamer, p: &KeyPath, base_dir: &FsPath) -> Result<NamerConfig> {
    let Some(kind) = raw.kind else {
        return invalid(
            &p.key("kind"),
            format!("missing `kind`: expected {NAMER_KINDS}"),
        );
    };
    let Some(prefix) = raw.prefix.as_ref().map(|p| p.0.clone()) else {
        return invalid(
            &p.key("prefix"),
            "missing `prefix`: expected a path under /#, like /#/fs",
        );
    };
    if prefix.len() < 2 || prefix.label(0) != Some(b"#") {
        return invalid(
            &p.key("prefix"),
            format!("namer prefix {prefix} must start with /#/, like /#/fs"),
        );
    }
    reject_other_keys(&raw, kind, p)?;
    let mut transformers = Vec::new();
    for (i, t) in raw.transformers.unwrap_or_default().into_iter().enumerate() {
        transformers.push(transformer(t, &p.key("transformers").index(i), base_dir)?);
    }
    let backoff = backoff(raw.backoff, &p.key("backoff"))?;
    let kind = match kind {
        NamerKindName::Fs => {
            let Some(dir) = raw.root_dir.filter(|d| !d.is_empty()) else {
                return invalid(
                    &p.key("rootDir"),
                    "missing `rootDir`: the directory to serve names from",
                );
            };
            NamerKind::Fs {
                root_dir: base_dir.join(dir),
            }
        }
        NamerKindName::DnsSrv => {
            let mut dns_hosts = Vec::new();
            for (i, h) in raw.dns_hosts.unwrap_or_default().iter().enumerate() {
                dns_hosts.push(dns_host(h, &p.key("dnsHosts").index(i))?);
            }
            // Linkerd 1 re-resolved every `refreshIntervalSeconds` (default 5), whatever the
            // TTLs: a fixed interval is minTtl = maxTtl.
            let (min_ttl, max_ttl) = match raw.refresh_interval_seconds {
                Some(_) if raw.min_ttl.is_some() || raw.max_ttl.is_some() => {
                    return invalid(
                        &p.key("refreshIntervalSeconds"),
                        "give either `refreshIntervalSeconds` (Linkerd 1) or `minTtl`/`maxTtl`",
                    );
                }
                Some(0) => {
                    return invalid(
                        &p.key("refreshIntervalSeconds"),
                        "must be greater than zero",
                    );
                }
                Some(s) => (Duration::from_secs(s), Duration::from_secs(s)),
                None => (
                    dur(raw.min_ttl, Duration::from_secs(1), true, &p.key("minTtl"))?,
                    dur(raw.max_ttl, Duration::from_secs(60), true, &p.key("maxTtl"))?,
                ),
            };
            if min_ttl > max_ttl {
                return invalid(&p.key("minTtl"), "minTtl is greater than maxTtl");
            }
            NamerKind::DnsSrv(DnsSrvConfig {
                dns_hosts,
                min_ttl,
                max_ttl,
                backoff,
            })
        }
        NamerKindName::Consul => {
            let statuses_given = raw.health_statuses.is_some();
            let mut health_statuses = Vec::new();
            for (i, s) in raw
                .health_statuses
                .unwrap_or_else(|| vec!["passing".into()])
                .into_iter()
                .enumerate()
            {
                if !["passing", "warning", "critical", "maintenance"].contains(&s.as_str()) {
                    return invalid(
                        &p.key("healthStatuses").index(i),
                        format!("unknown health status `{s}`: expected `passing`, `warning`, `critical` or `maintenance`"),
                    );
                }
                health_statuses.push(s);
            }
            // Linkerd 1's `useHealthCheck: false` meant every registered instance, healthy or
            // not; weft filters by `healthStatuses` unless told that.
            if raw.use_health_check == Some(false) {
                if statuses_given {
                    return invalid(
                        &p.key("healthStatuses"),
                        "has no effect with `useHealthCheck: false`",
                    );
                }
                health_statuses = ["passing", "warning", "critical", "maintenance"]
                    .map(String::from)
                    .to_vec();
            }
            let mut weights = Vec::new();
            for (i, w) in raw.weights.unwrap_or_default().into_iter().enumerate() {
                let wp = p.key("weights").index(i);
                let Some(tag) = w.tag.filter(|t| !t.is_empty()) else {
                    return invalid(&wp.key("tag"), "missing `tag`: the service tag to weigh");
                };
                let weight = match w.weight {
                    Some(x) if x.is_finite() && x >= 0.0 => x,
                    Some(_) => return invalid(&wp.key("weight"), "must be a number ≥ 0"),
                    None => return invalid(&wp.key("weight"), "missing `weight`"),
                };
                weights.push(TagWeight { tag, weight });
            }
            if raw.token.is_some() && raw.token_file.is_some() {
                return invalid(&p.key("tokenFile"), "give `token` or `tokenFile`, not both");
            }
            let wait = dur(raw.wait, Duration::from_secs(300), true, &p.key("wait"))?;
            if wait > Duration::from_secs(600) {
                return invalid(&p.key("wait"), "at most 10m (Consul's own limit)");
            }
            NamerKind::Consul(ConsulConfig {
                host: host(raw.host, "localhost", &p.key("host"))?,
                port: port(raw.port.map(|p| p.0), 8500, &p.key("port"))?,
                include_tag: raw.include_tag.unwrap_or(false),
                health_statuses,
                prefer_service_address: raw.prefer_service_address.unwrap_or(true),
                set_host: raw.set_host.unwrap_or(false),
                consul_domain: raw.consul_domain.unwrap_or_else(|| "consul".into()),
                consistency_mode: match raw.consistency_mode {
                    None | Some(ConsulConsistencyName::Default) => ConsulConsistency::Default,
                    Some(ConsulConsistencyName::Stale) => ConsulConsistency::Stale,
                    Some(ConsulConsistencyName::Consistent) => ConsulConsistency::Consistent,
                },
                token: raw.token,
                token_file: raw.token_file.map(|f| base_dir.join(f)),
                tls: backend_tls(raw.tls, &p.key("tls"), base_dir)?,
                weights,
                wait,
                backoff,
            })
        }
        NamerKindName::K8s => {
            let url = match (raw.url, raw.host, raw.port) {
                (Some(_), Some(_), _) => {
                    return invalid(&p.key("host"), "give `url` or `host`/`port`, not both")
                }
                (Some(_), None, Some(_)) => {
                    return invalid(&p.key("port"), "give `url` or `host`/`port`, not both")
                }
                (Some(u), None, None) => Some(url(u, &p.key("url"))?),
                (None, Some(h), port) => Some(format!("http://{h}:{}", port.map_or(8001, |p| p.0))),
                (None, None, Some(port)) => Some(format!("http://localhost:{}", port.0)),
                (None, None, None) => None,
            };
            NamerKind::K8s(K8sConfig {
                api: K8sApi {
                    url,
                    kubeconfig: raw.kubeconfig.map(|f| base_dir.join(f)),
                    context: raw.context,
                },
                label_selector: raw.label_selector,
                backoff,
            })
        }
        NamerKindName::Marathon => {
            let ttl = match (raw.ttl, raw.ttl_ms) {
                (Some(_), Some(_)) => {
                    return invalid(&p.key("ttlMs"), "give `ttl` or `ttlMs`, not both")
                }
                (None, Some(0)) => return invalid(&p.key("ttlMs"), "must be greater than zero"),
                (None, Some(ms)) => Duration::from_millis(ms),
                (ttl, None) => dur(ttl, Duration::from_secs(5), true, &p.key("ttl"))?,
            };
            let uri_prefix = raw.uri_prefix.unwrap_or_default();
            if !uri_prefix.is_empty() && !uri_prefix.starts_with('/') {
                return invalid(&p.key("uriPrefix"), "must start with `/`, like /marathon");
            }
            NamerKind::Marathon(MarathonConfig {
                host: host(raw.host, "marathon.mesos", &p.key("host"))?,
                port: port(raw.port.map(|p| p.0), 80, &p.key("port"))?,
                uri_prefix: uri_prefix.trim_end_matches('/').to_string(),
                use_health_check: raw.use_health_check.unwrap_or(false),
                ttl,
                tls: backend_tls(raw.tls, &p.key("tls"), base_dir)?,
                backoff,
            })
        }
    };
    Ok(NamerConfig {
        prefix,
        kind,
        transformers,
    })
}

/// Refuses every key given that `kind` does not take.
fn reject_other_keys(raw: &RawNamer, kind: NamerKindName, p: &KeyPath) -> Result<()> {
    use NamerKindName::*;
    let keys: [(&'static str, bool, &[NamerKindName]); 26] = [
        ("rootDir", raw.root_dir.is_some(), &[Fs]),
        ("dnsHosts", raw.dns_hosts.is_some(), &[DnsSrv]),
        ("minTtl", raw.min_ttl.is_some(), &[DnsSrv]),
        ("maxTtl", raw.max_ttl.is_some(), &[DnsSrv]),
        (
            "refreshIntervalSeconds",
            raw.refresh_interval_seconds.is_some(),
            &[DnsSrv],
        ),
        ("host", raw.host.is_some(), &[Consul, K8s, Marathon]),
        ("port", raw.port.is_some(), &[Consul, K8s, Marathon]),
        ("tls", raw.tls.is_some(), &[Consul, Marathon]),
        (
            "backoff",
            raw.backoff.is_some(),
            &[DnsSrv, Consul, K8s, Marathon],
        ),
        ("failFast", raw.fail_fast.is_some(), &[Consul]),
        ("includeTag", raw.include_tag.is_some(), &[Consul]),
        ("healthStatuses", raw.health_statuses.is_some(), &[Consul]),
        (
            "preferServiceAddress",
            raw.prefer_service_address.is_some(),
            &[Consul],
        ),
        ("setHost", raw.set_host.is_some(), &[Consul]),
        ("consulDomain", raw.consul_domain.is_some(), &[Consul]),
        ("consistencyMode", raw.consistency_mode.is_some(), &[Consul]),
        ("token", raw.token.is_some(), &[Consul]),
        ("tokenFile", raw.token_file.is_some(), &[Consul]),
        ("weights", raw.weights.is_some(), &[Consul]),
        ("wait", raw.wait.is_some(), &[Consul]),
        ("url", raw.url.is_some(), &[K8s]),
        ("kubeconfig", raw.kubeconfig.is_some(), &[K8s]),
        ("context", raw.context.is_some(), &[K8s]),
        ("labelSelector", raw.label_selector.is_some(), &[K8s]),
        ("uriPrefix", raw.uri_prefix.is_some(), &[Marathon]),
        (
            "useHealthCheck",
            raw.use_health_check.is_some(),
            &[Consul, Marathon],
        ),
    ];
    for (key, given, kinds) in keys {
        if given && !kinds.iter().any(|k| k.name() == kind.name()) {
            return not_for_kind(&p.key(key), kind.name());
        }
    }
    for (key, given) in [("ttl", raw.ttl.is_some()), ("ttlMs", raw.ttl_ms.is_some())] {
        if given && !matches!(kind, Marathon) {
            return not_for_kind(&p.key(key), kind.name());
        }
    }
    Ok(())
}

fn backoff(raw: Option<RawDiscoveryBackoff>, p: &KeyPath) -> Result<DiscoveryBackoff> {
    let d = DiscoveryBackoff::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let min = dur(raw.min, d.min, true, &p.key("min"))?;
    let max = dur(raw.max, d.max.max(min), true, &p.key("max"))?;
    min_max(min, max, p)?;
    Ok(DiscoveryBackoff { min, max })
}

fn dns_host(h: &str, p: &KeyPath) -> Result<SocketAddr> {
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    h.parse::<SocketAddr>().or_else(|_| {
        invalid(
            p,
            format!("`{h}` is not an IP address or ip:port (like 10.0.0.2 or [::1]:5353)"),
        )
    })
}

fn host(v: Option<String>, default: &str, p: &KeyPath) -> Result<String> {
    match v {
        None => Ok(default.to_string()),
        Some(h) if h.is_empty() || h.contains(['/', ' ', '?', '#', '@']) => {
            invalid(p, format!("`{h}` is not a host name or IP address"))
        }
        Some(h) => Ok(h),
    }
}

fn port(v: Option<u16>, default: u16, p: &KeyPath) -> Result<u16> {
    match v {
        Some(0) => invalid(p, "port must not be 0"),
        Some(port) => Ok(port),
        None => Ok(default),
    }
}

fn url(u: String, p: &KeyPath) -> Result<String> {
    match u.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() =>
        {
            Ok(u.trim_end_matches('/').to_string())
        }
        _ => invalid(
            p,
            format!("`{u}` is not an http:// or https:// URL with a host"),
        ),
    }
}

pub(super) fn backend_tls(
    raw: Option<RawBackendTls>,
    p: &KeyPath,
    base_dir: &FsPath,
) -> Result<Option<BackendTls>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.disable_validation == Some(true) {
        return invalid(
            &p.key("disableValidation"),
            "weft always verifies the backend's certificate: give `trustCerts` with its CA instead",
        );
    }
    let client_auth = match raw.client_auth {
        None => None,
        Some(c) => {
            let cp = p.key("clientAuth");
            let Some(cert) = c.cert_path.filter(|s| !s.is_empty()) else {
                return invalid(
                    &cp.key("certPath"),
                    "missing `certPath`: a PEM certificate chain",
                );
            };
            let Some(key) = c.key_path.filter(|s| !s.is_empty()) else {
                return invalid(&cp.key("keyPath"), "missing `keyPath`: a PEM private key");
            };
            Some(ClientAuth {
                cert_path: base_dir.join(cert),
                key_path: base_dir.join(key),
            })
        }
    };
    Ok(Some(BackendTls {
        common_name: raw.common_name,
        trust_certs: raw
            .trust_certs
            .unwrap_or_default()
            .into_iter()
            .map(|f| base_dir.join(f))
            .collect(),
        client_auth,
    }))
}

pub(super) fn transformer(
    raw: RawTransformer,
    p: &KeyPath,
    base_dir: &FsPath,
) -> Result<TransformerConfig> {
    use TransformerKindName::*;
    let Some(kind) = raw.kind else {
        return invalid(
            &p.key("kind"),
            format!("missing `kind`: expected {TRANSFORMER_KINDS}"),
        );
    };
    let keys: [(&'static str, bool, &[TransformerKindName]); 9] = [
        ("port", raw.port.is_some(), &[Port, K8sDaemonset]),
        ("host", raw.host.is_some(), &[SpecificHost]),
        ("path", raw.path.is_some(), &[Replace, Const]),
        ("namespace", raw.namespace.is_some(), &[K8sDaemonset]),
        ("service", raw.service.is_some(), &[K8sDaemonset]),
        (
            "hostNetwork",
            raw.host_network.is_some(),
            &[K8sDaemonset, K8sLocalnode],
        ),
        ("url", raw.url.is_some(), &[K8sDaemonset]),
        ("kubeconfig", raw.kubeconfig.is_some(), &[K8sDaemonset]),
        ("context", raw.context.is_some(), &[K8sDaemonset]),
    ];
    for (key, given, kinds) in keys {
        if given && !kinds.iter().any(|k| k.name() == kind.name()) {
            return not_for_kind(&p.key(key), kind.name());
        }
    }
    match kind {
        Port => match raw.port {
            None => invalid(&p.key("port"), "missing `port`: the port to send to"),
            Some(PortOrName::Number(0)) => invalid(&p.key("port"), "port must not be 0"),
            Some(PortOrName::Number(port)) => Ok(TransformerConfig::Port { port }),
            Some(PortOrName::Name(n)) => invalid(
                &p.key("port"),
                format!("`{n}` is not a port number from 1 to 65535"),
            ),
        },
        Localhost => Ok(TransformerConfig::Localhost),
        SpecificHost => match raw.host.as_deref().map(str::parse::<IpAddr>) {
            None => invalid(&p.key("host"), "missing `host`: the IP address to keep"),
            Some(Ok(host)) => Ok(TransformerConfig::SpecificHost { host }),
            Some(Err(_)) => invalid(&p.key("host"), "not an IP address"),
        },
        Replace | Const => {
            let Some(path) = raw.path else {
                return invalid(&p.key("path"), "missing `path`: the name to bind instead");
            };
            Ok(if matches!(kind, Replace) {
                TransformerConfig::Replace { path: path.0 }
            } else {
                TransformerConfig::Const { path: path.0 }
            })
        }
        K8sDaemonset => {
            let required = |v: Option<String>, key: &'static str, what: &str| match v {
                Some(s) if !s.is_empty() => Ok(s),
                _ => invalid(&p.key(key), format!("missing `{key}`: {what}")),
            };
            let namespace = required(raw.namespace, "namespace", "the DaemonSet's namespace")?;
            let service = required(
                raw.service,
                "service",
                "the service in front of the DaemonSet",
            )?;
            let port = match raw.port {
                None => return invalid(&p.key("port"), "missing `port`: the port name or number"),
                Some(PortOrName::Number(0)) => {
                    return invalid(&p.key("port"), "port must not be 0")
                }
                Some(PortOrName::Number(n)) => n.to_string(),
                Some(PortOrName::Name(n)) => n,
            };
            Ok(TransformerConfig::K8sDaemonset(DaemonsetConfig {
                namespace,
                service,
                port,
                host_network: raw.host_network.unwrap_or(false),
                api: K8sApi {
                    url: raw.url.map(|u| url(u, &p.key("url"))).transpose()?,
                    kubeconfig: raw.kubeconfig.map(|f| base_dir.join(f)),
                    context: raw.context,
                },
            }))
        }
        K8sLocalnode => Ok(TransformerConfig::K8sLocalnode(LocalnodeConfig {
            host_network: raw.host_network.unwrap_or(false),
        })),
    }
}
