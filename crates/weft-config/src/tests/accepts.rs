//! Accepted files: defaults, every key, the embedded default, round trips.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::*;

// === defaults ===

#[test]
fn transparency_and_protocol_keys() {
    let c = parse(
        "routers:\n  - label: edge\n    via: both\n    client: {protocol: http1}\n    \
         servers: [{port: 80, clearContext: true}, {port: 81}]\n  - label: b\n    via: request\n    \
         client: {protocol: http2}\n    servers: [{port: 82}]\n",
    );
    let (edge, b) = (&c.routers[0], &c.routers[1]);
    assert_eq!(edge.via, ViaPolicy::Both);
    assert!(edge.via.on_requests() && edge.via.on_responses());
    assert_eq!(b.via, ViaPolicy::Request);
    assert!(b.via.on_requests() && !b.via.on_responses());
    assert_eq!(edge.client.protocol, UpstreamProtocol::Http1);
    assert_eq!(b.client.protocol, UpstreamProtocol::Http2);
    assert!(edge.servers[0].clear_context);
    assert!(!edge.servers[1].clear_context, "off unless set");
    // The served config parses back to the same one.
    let json = serde_json::to_string(&c).expect("serializes");
    let yaml: serde_json::Value = serde_json::from_str(&json).expect("json");
    let again = parse(&serde_yaml_ng::to_string(&yaml).expect("yaml"));
    assert_eq!(again, c);
}

#[test]
fn every_default() {
    let c = parse(MINIMAL);
    assert_eq!(
        c.admin.addr,
        "127.0.0.1:9990".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.admin.shutdown_grace, secs(10));
    assert_eq!(c.admin, AdminConfig::default());
    assert!(c.namers.is_empty());
    let r = &c.routers[0];
    assert_eq!(r.label, "r");
    assert_eq!(r.protocol, Protocol::Http);
    assert_eq!(
        r.servers,
        [ServerConfig {
            addr: "127.0.0.1:4140".parse().unwrap(),
            tls: None,
            clear_context: false,
        }]
    );
    assert_eq!(
        r.identifier,
        IdentifierConfig::HeaderToken {
            header: http::header::HOST
        }
    );
    assert_eq!(r.dtab, weft_naming::Dtab::default());
    assert_eq!(r.dst_prefix, path("/svc"));
    assert_eq!(r.binding_timeout, secs(10));
    assert_eq!(r.max_hops, 16);
    assert_eq!(r.max_header_bytes, 65536);
    assert_eq!(
        r.via,
        ViaPolicy::None,
        "the app sees requests as if called directly"
    );
    assert_eq!(r.client.protocol, UpstreamProtocol::Auto);
    assert_eq!(r.client.connect_timeout, secs(1));
    assert_eq!(r.client.pool_idle_timeout, secs(3));
    assert_eq!(r.client.load_balancer.decay, secs(10));
    assert_eq!(
        r.client.failure_accrual,
        FailureAccrualConfig::ConsecutiveFailures {
            failures: 5,
            backoff: Backoff {
                min: secs(5),
                max: secs(300)
            }
        }
    );
    assert_eq!(r.client, ClientConfig::default());
    assert_eq!(r.service.total_timeout, None);
    assert_eq!(r.service.retries.budget.percent_can_retry, 0.2);
    assert_eq!(r.service.retries.budget.min_retries_per_sec, 10);
    assert_eq!(r.service.retries.budget.ttl, secs(10));
    assert_eq!(
        r.service.response_classifier,
        ResponseClassifier::NonRetryable5XX
    );
    assert_eq!(r.service, ServiceConfig::default());
}

#[test]
fn kind_defaults() {
    let c = parse(
        "routers:
  - label: a
    servers: [{port: 1}]
    identifier: {kind: path}
    client: {failureAccrual: {kind: consecutiveFailures}, loadBalancer: {kind: ewma}}
  - label: b
    servers: [{port: 2}]
    identifier: {kind: header}
  - label: c
    servers: [{port: 3}]
    identifier: {kind: header.token}
    client: {failureAccrual: {kind: consecutiveFailures, backoff: {max: 10m}}}
",
    );
    assert_eq!(
        c.routers[0].identifier,
        IdentifierConfig::Path {
            segments: 1,
            consume: false
        }
    );
    assert_eq!(c.routers[0].client, ClientConfig::default());
    assert_eq!(
        c.routers[1].identifier,
        IdentifierConfig::Header {
            header: http::HeaderName::from_static("l5d-name")
        }
    );
    assert_eq!(c.routers[2].identifier, IdentifierConfig::default());
    assert_eq!(
        c.routers[2].client.failure_accrual,
        FailureAccrualConfig::ConsecutiveFailures {
            failures: 5,
            backoff: Backoff {
                min: secs(5),
                max: secs(600)
            }
        }
    );
}

#[test]
fn null_values_mean_defaults() {
    let c = parse("admin:\nnamers:\nrouters:\n  - label: r\n    servers: [{port: 1}]\n    client:\n    service:\n    dtab:\n");
    assert_eq!(c.admin, AdminConfig::default());
    assert_eq!(c.routers[0].client, ClientConfig::default());
}

// === every key ===

#[test]
fn every_key() {
    let c = Config::parse(FULL, "/etc/weft/weft.yaml").unwrap();
    assert_eq!(c.admin.addr, "0.0.0.0:9991".parse::<SocketAddr>().unwrap());
    assert_eq!(c.admin.shutdown_grace, secs(30));
    assert_eq!(c.admin.drain_announce, secs(2));

    assert_eq!(c.namers.len(), 2);
    assert_eq!(c.namers[0].prefix, path("/#/fs"));
    assert_eq!(
        c.namers[0].kind,
        NamerKind::Fs {
            root_dir: "/etc/weft/disco".into()
        }
    );
    assert_eq!(
        c.namers[0].transformers,
        [
            TransformerConfig::Port { port: 4143 },
            TransformerConfig::Localhost
        ]
    );
    assert_eq!(
        c.namers[1].kind,
        NamerKind::Fs {
            root_dir: "/etc/weft/other".into()
        }
    );

    let r = &c.routers[0];
    assert_eq!(r.label, "outbound");
    assert_eq!(r.protocol, Protocol::Http);
    assert_eq!(
        r.servers[0].addr,
        "127.0.0.1:4140".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        r.servers[1].addr,
        "[::1]:4140".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        r.identifier,
        IdentifierConfig::Path {
            segments: 2,
            consume: true
        }
    );
    assert_eq!(
        r.dtab,
        weft_naming::Dtab::read("/svc => /#/fs; /svc/b => /$/inet/127.0.0.1/9000").unwrap()
    );
    assert_eq!(r.dst_prefix, path("/http"));
    assert_eq!(r.binding_timeout, secs(2));
    assert_eq!(r.max_hops, 8);
    assert_eq!(r.max_header_bytes, 16384);
    assert_eq!(r.client.load_balancer.decay, secs(20));
    assert_eq!(
        r.client.failure_accrual,
        FailureAccrualConfig::ConsecutiveFailures {
            failures: 3,
            backoff: Backoff {
                min: secs(1),
                max: secs(60)
            }
        }
    );
    assert_eq!(r.client.connect_timeout, Duration::from_millis(250));
    assert_eq!(r.client.pool_idle_timeout, secs(60));
    assert_eq!(r.service.total_timeout, Some(secs(10)));
    assert_eq!(r.service.retries.budget.percent_can_retry, 0.5);
    assert_eq!(r.service.retries.budget.min_retries_per_sec, 3);
    assert_eq!(r.service.retries.budget.ttl, secs(30));
    assert_eq!(
        r.service.response_classifier,
        ResponseClassifier::RetryableRead5XX
    );

    let r = &c.routers[1];
    assert_eq!(r.label, "in-bound_2.x");
    assert_eq!(
        r.identifier,
        IdentifierConfig::Header {
            header: http::HeaderName::from_static("x-name")
        }
    );
    assert_eq!(r.client.failure_accrual, FailureAccrualConfig::None);
    assert_eq!(
        r.service.response_classifier,
        ResponseClassifier::RetryableIdempotent5XX
    );

    let r = &c.routers[2];
    assert_eq!(r.servers.len(), 2, "port 0 may repeat");
    assert_eq!(r.identifier, IdentifierConfig::MethodAndHost);
    assert_eq!(
        r.service.response_classifier,
        ResponseClassifier::RetryableAll5XX
    );

    let r = &c.routers[3];
    assert_eq!(
        r.identifier,
        IdentifierConfig::Static {
            path: path("/svc/static")
        }
    );
    assert_eq!(
        r.service.response_classifier,
        ResponseClassifier::AllSuccessful
    );

    let r = &c.routers[4];
    assert_eq!(
        r.identifier,
        IdentifierConfig::HeaderToken {
            header: http::HeaderName::from_static("x-host")
        }
    );
}

#[test]
fn durations_take_units() {
    for (text, want) in [
        ("250ms", Duration::from_millis(250)),
        ("10s", secs(10)),
        ("1m", secs(60)),
        ("1m 30s", secs(90)),
        ("2h", secs(7200)),
        ("\"5s\"", secs(5)),
    ] {
        let c = parse(&format!("{MINIMAL}    bindingTimeout: {text}\n"));
        assert_eq!(c.routers[0].binding_timeout, want, "{text}");
    }
}

#[test]
fn root_dir_is_relative_to_the_config_file() {
    let yaml = format!("namers: [{{kind: fs, prefix: /#/fs, rootDir: ./disco}}]\n{MINIMAL}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(
        c.namers[0].kind,
        NamerKind::Fs {
            root_dir: dir.path().join("./disco")
        }
    );

    let c = parse(&yaml);
    assert_eq!(
        c.namers[0].kind,
        NamerKind::Fs {
            root_dir: "./disco".into()
        }
    );
}

// === embedded default ===

#[test]
fn embedded_default_parses() {
    let c = Config::embedded_default();
    assert_eq!(c.admin, AdminConfig::default());
    assert_eq!(c.namers.len(), 1);
    assert_eq!(c.namers[0].prefix, path("/#/fs"));
    assert_eq!(
        c.namers[0].kind,
        NamerKind::Fs {
            root_dir: "./disco".into()
        }
    );
    assert_eq!(c.routers.len(), 2);
    let (out, inb) = (&c.routers[0], &c.routers[1]);
    assert_eq!(out.label, "outbound");
    assert_eq!(
        out.servers[0].addr,
        "127.0.0.1:4140".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(out.dtab, weft_naming::Dtab::read("/svc => /#/fs;").unwrap());
    assert_eq!(inb.label, "inbound");
    assert_eq!(
        inb.servers[0].addr,
        "0.0.0.0:4143".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        inb.dtab,
        weft_naming::Dtab::read("/svc => /$/inet/127.0.0.1/8080;").unwrap()
    );
    for r in &c.routers {
        assert_eq!(r.client, ClientConfig::default());
        assert_eq!(r.service, ServiceConfig::default());
        assert_eq!(r.identifier, IdentifierConfig::default());
    }
}

#[test]
fn docs_show_the_embedded_default() {
    let doc = include_str!("../../../../docs/configuration.md");
    assert!(
        doc.contains(Config::DEFAULT_YAML),
        "docs/configuration.md must quote src/default.yaml verbatim"
    );
}

#[test]
fn docs_full_example_parses() {
    let doc = include_str!("../../../../docs/configuration.md");
    let example = doc
        .split("## A full example")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("docs/configuration.md has a full example");
    let c = Config::parse(example, "docs/weft.yaml").unwrap();
    assert_eq!(c.routers.len(), 4);
    assert!(c.routers[2].servers[0].tls.is_some());
    assert!(matches!(
        c.routers[3].client.tls,
        Some(ClientTlsConfig::Origin { .. })
    ));
    assert_eq!(c.namers.len(), 2);
    assert_eq!(c.routers[0].service.total_timeout, Some(secs(30)));
}

// === round trips ===

/// Serializing, then parsing the output, gives the same configuration.
#[track_caller]
pub(super) fn assert_round_trips(c: &Config) {
    let json = serde_json::to_string(c).unwrap();
    let again = parse(&json);
    assert_eq!(&again, c, "via JSON:\n{json}");
    assert_eq!(serde_json::to_string(&again).unwrap(), json, "via JSON");
    let yaml = serde_yaml_ng::to_string(c).unwrap();
    let again = parse(&yaml);
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        json,
        "via YAML:\n{yaml}"
    );
}

#[test]
fn serialize_round_trips_through_parse() {
    assert_round_trips(&Config::embedded_default());
    assert_round_trips(&parse(MINIMAL));
    assert_round_trips(&Config::parse(FULL, "/etc/weft/weft.yaml").unwrap());
}

#[test]
fn serialize_uses_file_keys_and_duration_strings() {
    let c = Config::parse(FULL, "/etc/weft/weft.yaml").unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["admin"]["shutdownGrace"], "30s");
    assert_eq!(v["admin"]["drainAnnounce"], "2s");
    assert_eq!(v["admin"]["port"], 9991);
    assert_eq!(v["routers"][0]["client"]["connectTimeout"], "250ms");
    assert_eq!(v["routers"][0]["client"]["loadBalancer"]["kind"], "ewma");
    assert_eq!(v["routers"][0]["service"]["totalTimeout"], "10s");
    assert_eq!(v["routers"][0]["identifier"]["kind"], "path");
    assert_eq!(v["routers"][1]["client"]["failureAccrual"]["kind"], "none");
    assert_eq!(
        v["routers"][1]["service"]["responseClassifier"],
        "retryableIdempotent5XX"
    );
    assert_eq!(v["namers"][0]["rootDir"], "/etc/weft/disco");
    assert_eq!(v["namers"][0]["transformers"][0]["kind"], "port");
    assert!(v["routers"][1]["service"].get("totalTimeout").is_none());
}

#[test]
fn the_drain_announce_window_is_part_of_the_grace() {
    let c =
        parse("admin: {shutdownGrace: 200ms}\nrouters:\n  - label: r\n    servers: [{port: 1}]\n");
    assert_eq!(
        c.admin.drain_announce,
        Duration::from_millis(200),
        "cut to the grace"
    );
    let c = parse("admin: {drainAnnounce: 0s}\nrouters:\n  - label: r\n    servers: [{port: 1}]\n");
    assert_eq!(
        c.admin.drain_announce,
        Duration::ZERO,
        "zero closes the listeners at once"
    );
    assert_eq!(c.admin.shutdown_grace, secs(10));
}
