//! `tracing`, `statsd` and `accessLog`: defaults, every key, and rejections with positions.

use std::path::PathBuf;

use super::*;
use crate::*;

#[test]
fn absent_means_off() {
    let c = parse(MINIMAL);
    assert_eq!(c.tracing, None);
    assert_eq!(c.statsd, None);
    assert_eq!(c.routers[0].access_log, None);
    let json = serde_json::to_value(&c).unwrap();
    assert!(json.get("tracing").is_none() && json.get("statsd").is_none());
    assert!(json["routers"][0].get("accessLog").is_none());
}

#[test]
fn defaults() {
    let c = parse(&format!(
        "{MINIMAL}    accessLog: {{path: \"-\"}}\ntracing: {{}}\nstatsd: {{address: \"statsd.local:8125\"}}\n"
    ));
    assert_eq!(c.tracing, Some(TracingConfig::default()));
    let t = c.tracing.unwrap();
    assert_eq!((t.sample_rate, t.service_name.as_str()), (1.0, "weft"));
    assert_eq!((t.otlp, t.zipkin), (None, None));
    assert_eq!(
        c.statsd,
        Some(StatsdConfig {
            address: "statsd.local:8125".to_owned(),
            prefix: "weft".to_owned(),
            interval: secs(10),
        })
    );
    assert_eq!(
        c.routers[0].access_log,
        Some(AccessLogConfig {
            path: AccessLogTarget::Stdout,
            format: AccessLogFormat::Json,
        })
    );
}

const ALL: &str = r#"routers:
  - label: r
    servers: [{port: 4140}]
    accessLog: {path: logs/access.log, format: common}
tracing:
  sampleRate: 0.1
  otlp: {endpoint: "http://127.0.0.1:4318/v1/traces"}
  zipkin: {endpoint: "http://zipkin:9411/api/v2/spans"}
  serviceName: edge
statsd: {address: "[::1]:8125", prefix: prod.weft, interval: 500ms}
"#;

#[test]
fn every_key() {
    let c = Config::parse(ALL, "/etc/weft/weft.yaml").unwrap();
    let t = c.tracing.as_ref().unwrap();
    assert_eq!(t.sample_rate, 0.1);
    assert_eq!(
        t.otlp.as_ref().unwrap().endpoint,
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        t.zipkin.as_ref().unwrap().endpoint,
        "http://zipkin:9411/api/v2/spans"
    );
    assert_eq!(t.service_name, "edge");
    let s = c.statsd.as_ref().unwrap();
    assert_eq!(
        (s.address.as_str(), s.prefix.as_str(), s.interval),
        (
            "[::1]:8125",
            "prod.weft",
            std::time::Duration::from_millis(500)
        )
    );
    assert_eq!(
        c.routers[0].access_log,
        Some(AccessLogConfig {
            // Relative to the config file's directory.
            path: AccessLogTarget::File(PathBuf::from("/etc/weft/logs/access.log")),
            format: AccessLogFormat::Common,
        })
    );
    // Round trips through the file's own shape.
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(parse(&json), c, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["statsd"]["interval"], "500ms");
    assert_eq!(v["tracing"]["sampleRate"], 0.1);
    assert_eq!(
        v["tracing"]["otlp"]["endpoint"],
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(v["routers"][0]["accessLog"]["format"], "common");
    assert_eq!(
        v["routers"][0]["accessLog"]["path"],
        "/etc/weft/logs/access.log"
    );
    let yaml = serde_yaml_ng::to_string(&c).unwrap();
    assert_eq!(parse(&yaml), c, "{yaml}");
}

#[test]
fn tracing_errors() {
    let e = err(&format!("{MINIMAL}tracing: {{sampleRate: 1.5}}\n"));
    assert_err(&e, 4, 23, Some("tracing.sampleRate"), "out of range");
    let e = err(&format!("{MINIMAL}tracing: {{sampleRate: .nan}}\n"));
    assert_err(&e, 4, 23, Some("tracing.sampleRate"), "out of range");
    let e = err(&format!("{MINIMAL}tracing:\n  otlp: {{}}\n"));
    assert_err(
        &e,
        5,
        9,
        Some("tracing.otlp.endpoint"),
        "missing `endpoint`",
    );
    let e = err(&format!(
        "{MINIMAL}tracing:\n  zipkin: {{endpoint: \"https://z:9411/api/v2/spans\"}}\n"
    ));
    assert_err(
        &e,
        5,
        22,
        Some("tracing.zipkin.endpoint"),
        "https is not supported",
    );
    let e = err(&format!(
        "{MINIMAL}tracing:\n  otlp: {{endpoint: \"127.0.0.1:4318\"}}\n"
    ));
    assert_err(
        &e,
        5,
        20,
        Some("tracing.otlp.endpoint"),
        "expected an http URL",
    );
    let e = err(&format!("{MINIMAL}tracing: {{serviceName: \"\"}}\n"));
    assert_err(&e, 4, 24, Some("tracing.serviceName"), "must not be empty");
    let e = err(&format!(
        "{MINIMAL}tracing: {{sampleRate: 1, otlp: {{endpont: x}}}}\n"
    ));
    assert_err(
        &e,
        4,
        33,
        Some("tracing.otlp"),
        "unknown field `endpont`, expected `endpoint`",
    );
    let e = err(&format!("{MINIMAL}tracing: {{sample: 1}}\n"));
    assert_err(&e, 4, 11, Some("tracing"), "unknown field `sample`");
}

#[test]
fn statsd_errors() {
    let e = err(&format!("{MINIMAL}statsd: {{prefix: weft}}\n"));
    assert_err(&e, 4, 9, Some("statsd.address"), "missing `address`");
    for bad in [
        "127.0.0.1",
        "127.0.0.1:0",
        "host:99999",
        ":8125",
        "[::1:8125",
        "a b:1",
    ] {
        let e = err(&format!("{MINIMAL}statsd: {{address: \"{bad}\"}}\n"));
        assert_err(&e, 4, 19, Some("statsd.address"), "expected host:port");
    }
    let e = err(&format!(
        "{MINIMAL}statsd: {{address: \"h:1\", prefix: \"a..b\"}}\n"
    ));
    assert_err(&e, 4, 34, Some("statsd.prefix"), "invalid prefix");
    let e = err(&format!(
        "{MINIMAL}statsd: {{address: \"h:1\", interval: 0s}}\n"
    ));
    assert_err(&e, 4, 36, Some("statsd.interval"), "greater than zero");
    let e = err(&format!(
        "{MINIMAL}statsd: {{address: \"h:1\", interval: 10}}\n"
    ));
    assert_err(&e, 4, 36, Some("statsd.interval"), "a unit is needed");
}

#[test]
fn access_log_errors() {
    let e = err(&format!("{MINIMAL}    accessLog: {{format: json}}\n"));
    assert_err(
        &e,
        4,
        16,
        Some("routers[0].accessLog.path"),
        "missing `path`",
    );
    let e = err(&format!(
        "{MINIMAL}    accessLog: {{path: a.log, format: xml}}\n"
    ));
    assert_err(
        &e,
        4,
        38,
        Some("routers[0].accessLog.format"),
        "unknown variant `xml`, expected `json` or `common`",
    );
}

#[test]
fn docs_full_example_has_telemetry() {
    let doc = include_str!("../../../../docs/configuration.md");
    let example = doc
        .split("## A full example")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("docs/configuration.md has a full example");
    let c = Config::parse(example, "docs/weft.yaml").unwrap();
    assert_eq!(c.tracing.as_ref().unwrap().sample_rate, 0.1);
    assert!(c.tracing.as_ref().unwrap().zipkin.is_some());
    assert_eq!(c.statsd.as_ref().unwrap().address, "127.0.0.1:8125");
    assert_eq!(
        c.routers[1].access_log.as_ref().unwrap().format,
        AccessLogFormat::Common
    );
}

#[test]
fn observability_doc_examples_parse() {
    // Every yaml block of docs/observability.md is a whole, valid file.
    let doc = include_str!("../../../../docs/observability.md");
    let mut n = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let text = block.split("```").next().unwrap();
        if let Err(e) = Config::parse(text, "docs/observability.md") {
            panic!("{e}\n{text}");
        }
        n += 1;
    }
    assert!(n >= 1);
}
