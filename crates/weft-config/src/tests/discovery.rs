//! The discovery namers and transformers: defaults, every key, Linkerd 1 spellings, and
//! refusals that name the key.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn namers(yaml: &str) -> Vec<NamerConfig> {
    parse(&format!("namers:\n{yaml}{MINIMAL}")).namers
}

fn namer_err(yaml: &str) -> ConfigError {
    err(&format!("namers:\n{yaml}{MINIMAL}"))
}

#[test]
fn dnssrv_defaults_and_keys() {
    let n = namers("  - {kind: dnssrv, prefix: /#/srv}\n");
    let NamerKind::DnsSrv(c) = &n[0].kind else {
        panic!("{n:?}")
    };
    assert!(c.dns_hosts.is_empty());
    assert_eq!(
        (c.min_ttl, c.max_ttl),
        (Duration::from_secs(1), Duration::from_secs(60))
    );
    let n = namers(
        "  - kind: io.l5d.dnssrv\n    prefix: /#/srv\n    experimental: true\n    dnsHosts: [127.0.0.1, '[::1]:5353']\n    minTtl: 5s\n    maxTtl: 10s\n    backoff: {min: 2s, max: 4s}\n",
    );
    let NamerKind::DnsSrv(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!(
        c.dns_hosts,
        vec![
            "127.0.0.1:53".parse().unwrap(),
            "[::1]:5353".parse().unwrap()
        ]
    );
    assert_eq!(c.min_ttl, Duration::from_secs(5));
    assert_eq!(c.backoff.max, Duration::from_secs(4));
    let e = namer_err("  - {kind: dnssrv, prefix: /#/srv, dnsHosts: [dns.example]}\n");
    assert_eq!(e.key_path(), Some("namers[0].dnsHosts[0]"));
    let e = namer_err("  - {kind: dnssrv, prefix: /#/srv, minTtl: 9s, maxTtl: 1s}\n");
    assert_eq!(e.key_path(), Some("namers[0].minTtl"));
    // Linkerd 1's fixed interval.
    let n = namers("  - {kind: io.l5d.dnssrv, prefix: /#/srv, refreshIntervalSeconds: 5}\n");
    let NamerKind::DnsSrv(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!(
        (c.min_ttl, c.max_ttl),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    let e =
        namer_err("  - {kind: dnssrv, prefix: /#/srv, refreshIntervalSeconds: 5, maxTtl: 9s}\n");
    assert_eq!(e.key_path(), Some("namers[0].refreshIntervalSeconds"));
    let e = namer_err("  - {kind: dnssrv, prefix: /#/srv, refreshIntervalSeconds: 0}\n");
    assert_eq!(e.key_path(), Some("namers[0].refreshIntervalSeconds"));
    let e = namer_err("  - {kind: consul, prefix: /#/c, refreshIntervalSeconds: 5}\n");
    assert_eq!(e.key_path(), Some("namers[0].refreshIntervalSeconds"));
    let e = namer_err("  - {kind: dnssrv, prefix: /#/srv, rootDir: x}\n");
    assert_err(
        &e,
        2,
        45,
        Some("namers[0].rootDir"),
        "not a setting of kind `dnssrv`",
    );
}

#[test]
fn consul_defaults_and_keys() {
    let n = namers("  - {kind: consul, prefix: /#/consul}\n");
    let NamerKind::Consul(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!((c.host.as_str(), c.port), ("localhost", 8500));
    assert_eq!(c.health_statuses, vec!["passing".to_string()]);
    assert!(c.prefer_service_address && !c.include_tag && !c.set_host);
    assert_eq!(c.consistency_mode, ConsulConsistency::Default);
    assert_eq!(c.wait, Duration::from_secs(300));
    let n = namers(
        "  - kind: io.l5d.consul\n    prefix: /#/io.l5d.consul\n    host: 10.0.0.1\n    port: 8501\n    includeTag: true\n    healthStatuses: [passing, warning]\n    preferServiceAddress: false\n    setHost: true\n    consistencyMode: stale\n    tokenFile: token\n    weights: [{tag: canary, weight: 0.1}]\n    wait: 30s\n    tls:\n      commonName: consul.local\n      trustCerts: [ca.pem]\n      clientAuth: {certPath: c.pem, keyPath: k.pem}\n",
    );
    let NamerKind::Consul(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!(c.port, 8501);
    assert_eq!(c.consistency_mode, ConsulConsistency::Stale);
    assert_eq!(c.token_file, Some(PathBuf::from("token")));
    assert_eq!(c.weights[0].weight, 0.1);
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.trust_certs, vec![PathBuf::from("ca.pem")]);
    assert_eq!(
        tls.client_auth.as_ref().unwrap().key_path,
        PathBuf::from("k.pem")
    );

    let n = namers("  - {kind: consul, prefix: /#/c, useHealthCheck: false}\n");
    let NamerKind::Consul(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!(
        c.health_statuses.len(),
        4,
        "Linkerd 1: every instance, healthy or not"
    );
    // Linkerd 1's `failFast` is accepted and changes nothing; it is a consul key only.
    let with = namers("  - {kind: io.l5d.consul, prefix: /#/c, failFast: true}\n");
    let without = namers("  - {kind: io.l5d.consul, prefix: /#/c}\n");
    assert_eq!(with, without);
    let e = namer_err("  - {kind: marathon, prefix: /#/m, failFast: true}\n");
    assert_eq!(e.key_path(), Some("namers[0].failFast"), "{e}");
    let e = namer_err("  - {kind: consul, prefix: /#/c, healthStatuses: [ok]}\n");
    assert_eq!(e.key_path(), Some("namers[0].healthStatuses[0]"));
    let e = namer_err("  - {kind: consul, prefix: /#/c, token: a, tokenFile: b}\n");
    assert_eq!(e.key_path(), Some("namers[0].tokenFile"));
    let e = namer_err("  - {kind: consul, prefix: /#/c, wait: 11m}\n");
    assert_eq!(e.key_path(), Some("namers[0].wait"));
    let e = namer_err("  - {kind: consul, prefix: /#/c, tls: {disableValidation: true}}\n");
    assert_eq!(e.key_path(), Some("namers[0].tls.disableValidation"));
    let e = namer_err("  - {kind: consul, prefix: /#/c, weights: [{tag: a, weight: -1}]}\n");
    assert_eq!(e.key_path(), Some("namers[0].weights[0].weight"));
    let e = namer_err("  - {kind: consul, prefix: /#/c, labelSelector: a=b}\n");
    assert!(
        e.message().contains("not a setting of kind `consul`"),
        "{e}"
    );
}

#[test]
fn k8s_api_from_url_host_or_nothing() {
    let n = namers("  - {kind: k8s, prefix: /#/k8s}\n");
    let NamerKind::K8s(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!(c.api, K8sApi::default());
    let n = namers("  - {kind: io.l5d.k8s, prefix: /#/io.l5d.k8s, host: localhost, port: 8001}\n");
    let NamerKind::K8s(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!(c.api.url.as_deref(), Some("http://localhost:8001"));
    let n = namers(
        "  - {kind: k8s, prefix: /#/k8s, url: 'https://10.0.0.1:6443/', kubeconfig: kc, context: dev, labelSelector: 'app=web'}\n",
    );
    let NamerKind::K8s(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!(c.api.url.as_deref(), Some("https://10.0.0.1:6443"));
    assert_eq!(c.api.context.as_deref(), Some("dev"));
    let e = namer_err("  - {kind: k8s, prefix: /#/k8s, url: 'ftp://x'}\n");
    assert_eq!(e.key_path(), Some("namers[0].url"));
    let e = namer_err("  - {kind: k8s, prefix: /#/k8s, url: 'http://x', host: y}\n");
    assert_eq!(e.key_path(), Some("namers[0].host"));
}

#[test]
fn marathon_defaults_and_ttl_ms() {
    let n = namers("  - {kind: marathon, prefix: /#/marathon}\n");
    let NamerKind::Marathon(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!((c.host.as_str(), c.port), ("marathon.mesos", 80));
    assert_eq!(c.ttl, Duration::from_secs(5));
    let n = namers(
        "  - {kind: io.l5d.marathon, prefix: /#/m, uriPrefix: /marathon/, ttlMs: 2500, useHealthCheck: true}\n",
    );
    let NamerKind::Marathon(c) = &n[0].kind else {
        panic!()
    };
    assert_eq!(c.uri_prefix, "/marathon");
    assert_eq!(c.ttl, Duration::from_millis(2500));
    assert!(c.use_health_check);
    let e = namer_err("  - {kind: marathon, prefix: /#/m, ttl: 1s, ttlMs: 5}\n");
    assert_eq!(e.key_path(), Some("namers[0].ttlMs"));
    let e = namer_err("  - {kind: marathon, prefix: /#/m, uriPrefix: marathon}\n");
    assert_eq!(e.key_path(), Some("namers[0].uriPrefix"));
    let e = namer_err("  - {kind: fs, prefix: /#/m, rootDir: x, ttl: 1s}\n");
    assert_eq!(e.key_path(), Some("namers[0].ttl"));
}

#[test]
fn transformers_of_every_kind() {
    let n = namers(
        "  - kind: fs\n    prefix: /#/fs\n    rootDir: d\n    transformers:\n      - {kind: io.l5d.specificHost, host: 10.0.0.7}\n      - {kind: replace, path: /$/inet/127.0.0.1/4140}\n      - {kind: const, path: /svc/x}\n      - {kind: k8s.daemonset, namespace: linkerd, service: l5d, port: incoming}\n      - {kind: io.l5d.k8s.daemonset, namespace: linkerd, service: l5d, port: 4141, hostNetwork: true}\n      - {kind: k8s.localnode, hostNetwork: true}\n",
    );
    let t = &n[0].transformers;
    assert_eq!(
        t[0],
        TransformerConfig::SpecificHost {
            host: "10.0.0.7".parse().unwrap()
        }
    );
    assert!(
        matches!(&t[1], TransformerConfig::Replace { path } if path.to_string() == "/$/inet/127.0.0.1/4140")
    );
    assert!(matches!(&t[2], TransformerConfig::Const { .. }));
    let TransformerConfig::K8sDaemonset(d) = &t[3] else {
        panic!()
    };
    assert_eq!((d.port.as_str(), d.host_network), ("incoming", false));
    let TransformerConfig::K8sDaemonset(d) = &t[4] else {
        panic!()
    };
    assert_eq!((d.port.as_str(), d.host_network), ("4141", true));
    assert_eq!(
        t[5],
        TransformerConfig::K8sLocalnode(LocalnodeConfig { host_network: true })
    );

    let bad = |t: &str| {
        namer_err(&format!(
            "  - {{kind: fs, prefix: /#/fs, rootDir: d, transformers: [{t}]}}\n"
        ))
    };
    let e = bad("{kind: specificHost, host: web}");
    assert_eq!(e.key_path(), Some("namers[0].transformers[0].host"));
    let e = bad("{kind: replace}");
    assert_eq!(e.key_path(), Some("namers[0].transformers[0].path"));
    let e = bad("{kind: k8s.daemonset, namespace: a, service: b}");
    assert_eq!(e.key_path(), Some("namers[0].transformers[0].port"));
    let e = bad("{kind: port, port: http}");
    assert_eq!(e.key_path(), Some("namers[0].transformers[0].port"));
    let e = bad("{kind: const, path: /x, host: 1.2.3.4}");
    assert!(e.message().contains("not a setting of kind `const`"), "{e}");
}

#[test]
fn discovery_config_serializes_with_kind_names() {
    let c = parse(&format!(
        "namers:\n  - {{kind: io.l5d.consul, prefix: /#/c, transformers: [{{kind: k8s.localnode}}]}}\n  - {{kind: dnssrv, prefix: /#/d}}\n{MINIMAL}"
    ));
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["namers"][0]["kind"], "consul");
    assert_eq!(v["namers"][0]["transformers"][0]["kind"], "k8s.localnode");
    assert_eq!(v["namers"][1]["kind"], "dnssrv");
    assert_eq!(v["namers"][1]["minTtl"], "1s");
}
