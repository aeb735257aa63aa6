//! Unit tests of the whole file: defaults, every key, every error's position, round trips,
//! and garbage that must not panic.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Config {
    match Config::parse(text, "weft.yaml") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(text: &str) -> ConfigError {
    match Config::parse(text, "weft.yaml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

/// Asserts an error's line, column, key path and that its message contains `needle`.
#[track_caller]
fn assert_err(e: &ConfigError, line: usize, column: usize, key_path: Option<&str>, needle: &str) {
    assert_eq!(
        (e.line(), e.column()),
        (Some(line), Some(column)),
        "position of: {e}"
    );
    assert_eq!(e.key_path(), key_path, "key path of: {e}");
    assert!(
        e.message().contains(needle),
        "message of {e} lacks {needle:?}"
    );
    assert!(
        !e.message().contains(" at line "),
        "library position leaked: {e}"
    );
}

fn path(s: &str) -> weft_naming::Path {
    weft_naming::Path::read(s).unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const MINIMAL: &str = "routers:\n  - label: r\n    servers: [{port: 4140}]\n";

/// Every key of the file, each set to something other than its default.
const FULL: &str = r#"# every key
admin:
  ip: 0.0.0.0
  port: 9991
  shutdownGrace: 30s
namers:
  - kind: fs
    prefix: /#/fs
    rootDir: disco
    transformers:
      - {kind: port, port: 4143}
      - {kind: localhost}
  - {kind: fs, prefix: /#/other, rootDir: /etc/weft/other}
routers:
  - label: outbound
    protocol: http
    servers:
      - {ip: 127.0.0.1, port: 4140}
      - {ip: "::1", port: 4140}
    identifier: {kind: path, segments: 2, consume: true}
    dtab: |
      /svc => /#/fs;
      /svc/b => /$/inet/127.0.0.1/9000;
    dstPrefix: /http
    bindingTimeout: 2s
    maxHops: 8
    maxHeaderBytes: 16384
    client:
      loadBalancer: {kind: ewma, decay: 20s}
      failureAccrual: {kind: consecutiveFailures, failures: 3, backoff: {min: 1s, max: 60s}}
      connectTimeout: 250ms
      poolIdleTimeout: 1m
    service:
      totalTimeout: 10s
      retries: {budget: {percentCanRetry: 0.5, minRetriesPerSec: 3, ttl: 30s}}
      responseClassifier: retryableRead5XX
  - label: in-bound_2.x
    servers: [{ip: 0.0.0.0, port: 4143}]
    identifier: {kind: header, header: X-Name}
    client:
      failureAccrual: {kind: none}
    service:
      responseClassifier: retryableIdempotent5XX
  - label: c
    servers: [{port: 0}, {port: 0}]
    identifier: {kind: methodAndHost}
    service: {responseClassifier: retryableAll5XX}
  - label: d
    servers: [{port: 4150}]
    identifier: {kind: static, path: /svc/static}
    service: {responseClassifier: allSuccessful}
  - label: e
    servers: [{port: 4151}]
    identifier: {kind: header.token, header: x-host}
"#;

// === defaults ===

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
            addr: "127.0.0.1:4140".parse().unwrap()
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
    let doc = include_str!("../../../docs/configuration.md");
    assert!(
        doc.contains(Config::DEFAULT_YAML),
        "docs/configuration.md must quote src/default.yaml verbatim"
    );
}

#[test]
fn docs_full_example_parses() {
    let doc = include_str!("../../../docs/configuration.md");
    let example = doc
        .split("## A full example")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("docs/configuration.md has a full example");
    let c = Config::parse(example, "docs/weft.yaml").unwrap();
    assert_eq!(c.routers.len(), 2);
    assert_eq!(c.namers.len(), 2);
    assert_eq!(c.routers[0].service.total_timeout, Some(secs(30)));
}

// === round trips ===

/// Serializing, then parsing the output, gives the same configuration (compared as JSON,
/// since a dtab has no float and `RouterConfig` holds an `f64`).
#[track_caller]
fn assert_round_trips(c: &Config) {
    let json = serde_json::to_string(c).unwrap();
    let again = parse(&json);
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

// === errors: syntax and shape ===

#[test]
fn unknown_key_at_top_level() {
    let e = err("admin: {}\nroutes: []\n");
    assert_err(
        &e,
        2,
        1,
        None,
        "unknown field `routes`, expected one of `admin`, `namers`, `routers`",
    );
    assert_eq!(
        e.to_string(),
        "weft.yaml:2:1: unknown field `routes`, expected one of `admin`, `namers`, `routers`"
    );
}

#[test]
fn unknown_key_nested() {
    let e = err("routers:\n  - label: a\n    lable: b\n");
    assert_err(
        &e,
        3,
        5,
        Some("routers[0]"),
        "unknown field `lable`, expected one of `label`, `protocol`",
    );
    assert!(
        e.to_string()
            .starts_with("weft.yaml:3:5: routers[0]: unknown field `lable`"),
        "{e}"
    );

    let e = err(&format!(
        "{MINIMAL}    client:\n      loadBalancer: {{kind: ewma, decy: 1s}}\n"
    ));
    assert_err(
        &e,
        5,
        34,
        Some("routers[0].client.loadBalancer"),
        "unknown field `decy`",
    );

    let e = err(&format!(
        "{MINIMAL}    service: {{retries: {{budget: {{percent: 1}}}}}}\n"
    ));
    assert_err(
        &e,
        4,
        34,
        Some("routers[0].service.retries.budget"),
        "unknown field `percent`",
    );

    let e = err("admin: {ip: 127.0.0.1, adress: x}\n");
    assert_err(&e, 1, 24, Some("admin"), "unknown field `adress`");
}

#[test]
fn bad_duration() {
    let text = format!("{MINIMAL}    client:\n      connectTimeout: 1x\n");
    let e = err(&text);
    assert_err(
        &e,
        5,
        23,
        Some("routers[0].client.connectTimeout"),
        "invalid duration",
    );
    assert_eq!(
        e.to_string(),
        "weft.yaml:5:23: routers[0].client.connectTimeout: invalid duration \"1x\": expected a number with a unit, like 250ms or 10s"
    );
}

#[test]
fn bare_number_duration_asks_for_a_unit() {
    let e = err(&format!("{MINIMAL}    bindingTimeout: 10\n"));
    assert_err(
        &e,
        4,
        21,
        Some("routers[0].bindingTimeout"),
        "a unit is needed",
    );
    let e = err(&format!("{MINIMAL}    bindingTimeout: \"10\"\n"));
    assert_err(
        &e,
        4,
        21,
        Some("routers[0].bindingTimeout"),
        "a unit is needed",
    );
    let e = err("admin: {shutdownGrace: 1.5}\n");
    assert_err(&e, 1, 24, Some("admin.shutdownGrace"), "a unit is needed");
    let e = err("admin: {shutdownGrace: [1]}\n");
    assert_err(
        &e,
        1,
        24,
        Some("admin.shutdownGrace"),
        "a duration with a unit",
    );
}

#[test]
fn bad_ip() {
    let e = err("routers:\n  - label: a\n    servers:\n      - ip: 127.0.0.256\n        port: 1\n");
    assert_err(
        &e,
        4,
        13,
        Some("routers[0].servers[0].ip"),
        "invalid IP address \"127.0.0.256\"",
    );
    let e = err("admin:\n  ip: localhost\n");
    assert_err(&e, 2, 7, Some("admin.ip"), "invalid IP address");
}

#[test]
fn port_out_of_range() {
    let e = err("routers:\n  - label: a\n    servers: [{ip: 1.2.3.4, port: 70000}]\n");
    assert_err(
        &e,
        3,
        35,
        Some("routers[0].servers[0].port"),
        "port 70000 out of range",
    );
    let e = err("admin: {port: -1}\n");
    assert_err(&e, 1, 15, Some("admin.port"), "port -1 out of range");
    let e = err("admin: {port: http}\n");
    assert_err(&e, 1, 15, Some("admin.port"), "expected a port number");
}

#[test]
fn wrong_types_and_unknown_kinds() {
    let e = err("routers: {}\n");
    assert_err(&e, 1, 10, Some("routers"), "expected a sequence");
    let e = err("routers:\n  - label: a\n    servers: [{port: 1}]\n    protocol: tcp\n");
    assert_err(
        &e,
        4,
        15,
        Some("routers[0].protocol"),
        "unknown variant `tcp`, expected `http`",
    );
    let e = err(&format!("{MINIMAL}    identifier: {{kind: foo}}\n"));
    assert_err(
        &e,
        4,
        24,
        Some("routers[0].identifier.kind"),
        "unknown variant `foo`",
    );
    let e = err(&format!(
        "{MINIMAL}    service: {{responseClassifier: retryable5XX}}\n"
    ));
    assert_err(
        &e,
        4,
        35,
        Some("routers[0].service.responseClassifier"),
        "expected one of `nonRetryable5XX`",
    );
    let e = err(&format!(
        "{MINIMAL}    client: {{loadBalancer: {{kind: p2c}}}}\n"
    ));
    assert_err(
        &e,
        4,
        35,
        Some("routers[0].client.loadBalancer.kind"),
        "expected `ewma`",
    );
    let e = err(&format!("{MINIMAL}    maxHops: -3\n"));
    assert_err(&e, 4, 14, Some("routers[0].maxHops"), "expected u32");
    let e = err(&format!(
        "{MINIMAL}    identifier: {{kind: header, header: \"a b\"}}\n"
    ));
    assert_err(
        &e,
        4,
        40,
        Some("routers[0].identifier.header"),
        "invalid header name",
    );
    let e = err(&format!("{MINIMAL}    dstPrefix: svc\n"));
    assert_err(&e, 4, 16, Some("routers[0].dstPrefix"), "invalid path");
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let e = err("admin:\n  ip: \"127.0.0.1\n");
    assert_eq!(e.line(), Some(3), "{e}");
    assert_eq!(e.key_path(), Some("admin.ip"), "{e}");
    assert_eq!(
        e.to_string(),
        "weft.yaml:3:1: admin.ip: found unexpected end of stream, while scanning a quoted scalar at line 2 column 7"
    );
    let e = err("admin: [1,2\n");
    assert_err(
        &e,
        1,
        8,
        Some("admin"),
        "invalid type: sequence, expected a mapping",
    );
    let e = err("routers:\n  - label: a\n   bad indentation: x\n");
    assert!(e.line().is_some(), "{e}");
}

// === errors: validation ===

#[test]
fn bad_dtab_at_line_n_of_a_block() {
    let text = "routers:
  - label: a
    servers: [{port: 1}]
    dtab: |
      /svc => /#/fs;

      /foo => /bar;
      /baz /qux;
";
    let e = err(text);
    // dtab line 4 ("/baz /qux;") is file line 4 + 4; '/qux' is at column 6 + 6.
    assert_err(
        &e,
        8,
        12,
        Some("routers[0].dtab"),
        "invalid dtab: expected '=>'",
    );
    assert!(
        !e.message().contains("line 4"),
        "dtab-relative position leaked: {e}"
    );
}

#[test]
fn bad_dtab_in_a_single_line_scalar() {
    let e = err("routers:\n  - label: a\n    servers: [{port: 1}]\n    dtab: \"/svc => /#/fs; /baz /qux;\"\n");
    assert_err(&e, 4, 32, Some("routers[0].dtab"), "invalid dtab");
    let e = err(
        "routers:\n  - label: a\n    servers: [{port: 1}]\n    dtab: /svc => /#/fs; /baz /qux;\n",
    );
    assert_err(&e, 4, 31, Some("routers[0].dtab"), "invalid dtab");
}

#[test]
fn bad_dtab_in_a_later_router_of_a_flow_sequence() {
    let e = err("routers: [{label: a, servers: [{port: 1}]}, {label: b, servers: [{port: 2}], dtab: '/a =>'}]\n");
    assert_eq!(
        (e.line(), e.key_path()),
        (Some(1), Some("routers[1].dtab")),
        "{e}"
    );
}

#[test]
fn duplicate_labels() {
    let e = err("routers:\n  - label: a\n    servers: [{port: 1}]\n  - label: b\n    servers: [{port: 2}]\n  - label: a\n    servers: [{port: 3}]\n");
    assert_err(
        &e,
        6,
        12,
        Some("routers[2].label"),
        "duplicate router label \"a\": already used by routers[0]",
    );
}

#[test]
fn duplicate_listen_addresses() {
    let e = err("routers:\n  - label: a\n    servers: [{port: 4140}]\n  - label: b\n    servers:\n      - {ip: 0.0.0.0, port: 4140}\n");
    assert_err(
        &e,
        6,
        9,
        Some("routers[1].servers[0]"),
        "listen address 0.0.0.0:4140 is already used by routers[0].servers[0]",
    );
    let e = err("routers:\n  - label: a\n    servers: [{port: 9990}]\n");
    assert_err(
        &e,
        3,
        15,
        Some("routers[0].servers[0]"),
        "already used by admin",
    );
    // Different address families do not conflict; port 0 never does.
    parse("routers:\n  - label: a\n    servers: [{ip: 0.0.0.0, port: 1}, {ip: '::', port: 1}, {port: 0}, {port: 0}]\n");
}

#[test]
fn missing_routers() {
    for text in [
        "",
        "# nothing\n",
        "admin: {port: 9990}\n",
        "routers:\n",
        "routers: []\n",
    ] {
        let e = err(text);
        assert_eq!(e.key_path(), Some("routers"), "{text:?}: {e}");
        assert!(e.message().starts_with("no routers"), "{e}");
        assert!(e.line().is_some(), "{e}");
    }
    let e = err("routers: []\n");
    assert_err(&e, 1, 10, Some("routers"), "no routers");
}

#[test]
fn router_without_servers() {
    let e = err("routers:\n  - label: a\n    dtab: /a => /b\n");
    assert_err(&e, 2, 5, Some("routers[0].servers"), "missing `servers`");
    let e = err("routers:\n  - label: a\n    servers: []\n");
    assert_err(&e, 3, 14, Some("routers[0].servers"), "no servers");
    let e = err("routers:\n  - label: a\n    servers: [{ip: 0.0.0.0}]\n");
    assert_err(
        &e,
        3,
        15,
        Some("routers[0].servers[0].port"),
        "missing `port`",
    );
}

#[test]
fn router_label_is_required_and_plain() {
    let e = err("routers:\n  - servers: [{port: 1}]\n");
    assert_err(&e, 2, 5, Some("routers[0].label"), "missing `label`");
    let e = err("routers:\n  - label: 'a b'\n    servers: [{port: 1}]\n");
    assert_err(&e, 2, 12, Some("routers[0].label"), "invalid label");
}

#[test]
fn namer_errors() {
    let tail = MINIMAL;
    let e = err(&format!(
        "namers:\n  - {{kind: fs, prefix: /io.l5d.fs, rootDir: x}}\n{tail}"
    ));
    assert_err(&e, 2, 24, Some("namers[0].prefix"), "must start with /#/");
    let e = err(&format!(
        "namers:\n  - {{kind: fs, prefix: /#, rootDir: x}}\n{tail}"
    ));
    assert_err(&e, 2, 24, Some("namers[0].prefix"), "must start with /#/");
    let e = err(&format!("namers:\n  - {{kind: fs, prefix: /#/a, rootDir: x}}\n  - {{kind: fs, prefix: /#/a, rootDir: y}}\n{tail}"));
    assert_err(
        &e,
        3,
        24,
        Some("namers[1].prefix"),
        "duplicate namer prefix /#/a",
    );
    let e = err(&format!("namers:\n  - {{kind: fs, prefix: /#/a}}\n{tail}"));
    assert_err(&e, 2, 5, Some("namers[0].rootDir"), "missing `rootDir`");
    let e = err(&format!(
        "namers:\n  - {{prefix: /#/a, rootDir: x}}\n{tail}"
    ));
    assert_err(&e, 2, 5, Some("namers[0].kind"), "missing `kind`");
    let e = err(&format!("namers:\n  - {{kind: k8s, prefix: /#/a}}\n{tail}"));
    assert_err(&e, 2, 12, Some("namers[0].kind"), "unknown variant `k8s`");
    let e = err(&format!("namers:\n  - kind: fs\n    prefix: /#/a\n    rootDir: x\n    transformers: [{{kind: port, port: 0}}]\n{tail}"));
    assert_err(
        &e,
        5,
        39,
        Some("namers[0].transformers[0].port"),
        "must not be 0",
    );
    let e = err(&format!("namers:\n  - kind: fs\n    prefix: /#/a\n    rootDir: x\n    transformers: [{{kind: port}}]\n{tail}"));
    assert_err(
        &e,
        5,
        20,
        Some("namers[0].transformers[0].port"),
        "missing `port`",
    );
    let e = err(&format!("namers:\n  - kind: fs\n    prefix: /#/a\n    rootDir: x\n    transformers: [{{kind: localhost, port: 1}}]\n{tail}"));
    assert_err(
        &e,
        5,
        44,
        Some("namers[0].transformers[0].port"),
        "not a setting of kind `localhost`",
    );
}

#[test]
fn identifier_errors() {
    let e = err(&format!(
        "{MINIMAL}    identifier: {{kind: path, segments: 0}}\n"
    ));
    assert_err(
        &e,
        4,
        40,
        Some("routers[0].identifier.segments"),
        "at least 1",
    );
    let e = err(&format!(
        "{MINIMAL}    identifier: {{kind: header.token, segments: 2}}\n"
    ));
    assert_err(
        &e,
        4,
        48,
        Some("routers[0].identifier.segments"),
        "not a setting of kind `header.token`",
    );
    let e = err(&format!("{MINIMAL}    identifier: {{kind: static}}\n"));
    assert_err(
        &e,
        4,
        17,
        Some("routers[0].identifier.path"),
        "missing `path`",
    );
    let e = err(&format!("{MINIMAL}    identifier: {{header: host}}\n"));
    assert_err(
        &e,
        4,
        17,
        Some("routers[0].identifier.kind"),
        "missing `kind`",
    );
}

#[test]
fn range_errors() {
    let e = err(&format!(
        "{MINIMAL}    service:\n      retries: {{budget: {{percentCanRetry: 1.5}}}}\n"
    ));
    assert_err(
        &e,
        5,
        43,
        Some("routers[0].service.retries.budget.percentCanRetry"),
        "out of range",
    );
    let e = err(&format!(
        "{MINIMAL}    service:\n      retries: {{budget: {{percentCanRetry: -0.1}}}}\n"
    ));
    assert_err(
        &e,
        5,
        43,
        Some("routers[0].service.retries.budget.percentCanRetry"),
        "out of range",
    );
    let e = err(&format!(
        "{MINIMAL}    service:\n      retries: {{budget: {{percentCanRetry: .nan}}}}\n"
    ));
    assert_err(
        &e,
        5,
        43,
        Some("routers[0].service.retries.budget.percentCanRetry"),
        "out of range",
    );
    let e = err(&format!("{MINIMAL}    maxHops: 0\n"));
    assert_err(&e, 4, 14, Some("routers[0].maxHops"), "at least 1");
    let e = err(&format!("{MINIMAL}    maxHeaderBytes: 0\n"));
    assert_err(&e, 4, 21, Some("routers[0].maxHeaderBytes"), "at least 1");
    let e = err(&format!("{MINIMAL}    client: {{connectTimeout: 0s}}\n"));
    assert_err(
        &e,
        4,
        30,
        Some("routers[0].client.connectTimeout"),
        "greater than zero",
    );
    let e = err(&format!("{MINIMAL}    service: {{totalTimeout: 0ms}}\n"));
    assert_err(
        &e,
        4,
        29,
        Some("routers[0].service.totalTimeout"),
        "greater than zero",
    );
    let e = err(&format!(
        "{MINIMAL}    client: {{failureAccrual: {{kind: consecutiveFailures, failures: 0}}}}\n"
    ));
    assert_err(
        &e,
        4,
        68,
        Some("routers[0].client.failureAccrual.failures"),
        "at least 1",
    );
}

#[test]
fn backoff_min_above_max() {
    let text = format!(
        "{MINIMAL}    client:\n      failureAccrual:\n        kind: consecutiveFailures\n        backoff: {{min: 10s, max: 1s}}\n"
    );
    let e = err(&text);
    assert_err(
        &e,
        7,
        18,
        Some("routers[0].client.failureAccrual.backoff"),
        "backoff min (10s) is greater than max (1s)",
    );
    let e = err(&format!(
        "{MINIMAL}    client: {{failureAccrual: {{kind: none, failures: 3}}}}\n"
    ));
    assert_err(
        &e,
        4,
        53,
        Some("routers[0].client.failureAccrual.failures"),
        "not a setting of kind `none`",
    );
}

#[test]
fn io_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let e = Config::load(&missing).unwrap_err();
    assert!(e.is_io());
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(e.line(), None);
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{shown}"
    );
}

#[test]
fn load_reports_the_path_as_origin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(
        &file,
        "routers:\n  - label: a\n    servers: [{port: 1}]\n    maxHops: x\n",
    )
    .unwrap();
    let e = Config::load(&file).unwrap_err();
    assert_eq!(e.origin(), file.display().to_string());
    assert!(
        e.to_string()
            .starts_with(&format!("{}:4:14: routers[0].maxHops: ", file.display())),
        "{e}"
    );
}

// === never panic ===

#[test]
fn garbage_never_panics() {
    let mut inputs: Vec<String> = [
        "",
        " ",
        "\n\n",
        "~",
        "null",
        "[]",
        "{}",
        "-",
        "---",
        "--- !tag\n",
        "...",
        "'",
        "\"",
        "[",
        "{",
        "a: [",
        "*alias",
        "&a [*a]",
        "!!binary aGVsbG8=",
        "routers: *x",
        "routers: [[[[]]]]",
        "routers: [{label: a, servers: [{port: 1}], dtab: [1]}]",
        "routers: [~]",
        "routers: [1, 2]",
        "routers:\n  - label:\n      nested: map\n",
        "\u{0}",
        "\u{feff}routers: []",
        "\t\t: :",
        "routers: [{label: a, servers: [{port: 1}], dtab: '\u{1F600} => /x'}]",
        "routers: [{label: a, servers: [{port: 1}], dtab: \"/a => /b;\\n\\n/\u{e9} /x\"}]",
        "routers: [{label: a, servers: [{port: 1}], dtab: >\n    /a => /b;\n    /c /d;\n}]",
        "routers: [{label: a, servers: [{port: 1}], dtab: |99\n  x\n}]",
        "admin: {shutdownGrace: 99999999999999999999999s}",
        "admin: {shutdownGrace: 18446744073709551615s}",
        "routers: [{label: a, servers: [{port: 1}], maxHeaderBytes: 99999999999999999999999}]",
        "a: &a {b: *a}",
        "? [a]\n: b",
        "{[1]: 2}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    inputs.push("[".repeat(10_000));
    inputs.push("a:\n".repeat(1_000));
    inputs.push(format!("x: {}", "- ".repeat(5_000)));
    // Every prefix of the full example, and the example with a byte replaced.
    for end in (0..FULL.len()).filter(|&i| FULL.is_char_boundary(i)) {
        inputs.push(FULL[..end].to_string());
    }
    for (i, _) in FULL.char_indices().step_by(7) {
        for c in [':', '-', '[', '{', '|', '"', ' ', '\n', '&', '*', '#'] {
            let mut s = FULL.to_string();
            s.replace_range(
                i..i + FULL[i..].chars().next().map_or(0, char::len_utf8),
                &c.to_string(),
            );
            inputs.push(s);
        }
    }
    for text in &inputs {
        if let Err(e) = Config::parse(text, "fuzz.yaml") {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.yaml"), "{shown}");
        }
    }
}
