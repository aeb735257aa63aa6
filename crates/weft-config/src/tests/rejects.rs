//! Rejected files: each error names the right line, column and key path.

use super::*;
use crate::*;

// === errors: syntax and shape ===

#[test]
fn unknown_key_at_top_level() {
    let e = err("admin: {}\nroutes: []\n");
    assert_err(
        &e,
        2,
        1,
        None,
        "unknown field `routes`, expected one of `admin`, `namers`, `routers`, `tracing`, `statsd`, `identity`, `upgrade`",
    );
    assert_eq!(
        e.to_string(),
        "weft.yaml:2:1: unknown field `routes`, expected one of `admin`, `namers`, `routers`, `tracing`, `statsd`, `identity`, `upgrade`"
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
    let e = err("routers:\n  - label: a\n    servers: [{port: 1}]\n    protocol: udp\n");
    assert_err(
        &e,
        4,
        15,
        Some("routers[0].protocol"),
        "unknown variant `udp`, expected `http` or `tcp`",
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
    let e = err(&format!("{MINIMAL}    via: always\n"));
    assert_err(
        &e,
        4,
        10,
        Some("routers[0].via"),
        "unknown variant `always`, expected one of `request`, `response`, `both`, `none`",
    );
    let e = err(&format!("{MINIMAL}    client: {{protocol: h3}}\n"));
    assert_err(
        &e,
        4,
        24,
        Some("routers[0].client.protocol"),
        "unknown variant `h3`, expected one of `auto`, `http1`, `http2`",
    );
    let e = err("routers:\n  - label: a\n    servers: [{port: 1, clearContext: yes}]\n");
    assert_err(
        &e,
        3,
        39,
        Some("routers[0].servers[0].clearContext"),
        "expected a boolean",
    );
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
    let e = err(&format!("namers:\n  - {{kind: zk, prefix: /#/a}}\n{tail}"));
    assert_err(&e, 2, 12, Some("namers[0].kind"), "unknown variant `zk`");
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

#[test]
fn config_error_is_a_plain_std_error() {
    fn assert_traits<T: std::error::Error + Send + Sync + 'static>() {}
    assert_traits::<ConfigError>();
    let e = err("routers:\n  - label: a\n    servers: [{port: 1}]\n    dtab: |\n      /a => /b;\n      /c /d;\n");
    assert_eq!(
        e.to_string(),
        "weft.yaml:6:10: routers[0].dtab: invalid dtab: expected '=>', found '/'"
    );
    assert!(std::error::Error::source(&e).is_none());
}

#[test]
fn tls_settings_need_an_identity_and_spiffe_ids() {
    let e = err(&format!("{MINIMAL}    tls: {{requireTls: true}}\n"));
    assert!(e.to_string().contains("routers[0].tls"), "{e}");
    assert!(e.to_string().contains("identity"), "{e}");
    let with_identity = |extra: &str| {
        format!("identity: {{cert: c.pem, key: k.pem, trustBundle: b.pem}}\n{MINIMAL}{extra}")
    };
    let e = err(&with_identity("    tls: {authorizedClients: [web]}\n"));
    assert!(
        e.to_string()
            .contains("routers[0].tls.authorizedClients[0]"),
        "{e}"
    );
    let e = err(&with_identity("    client: {tls: {serverIdentity: web}}\n"));
    assert!(
        e.to_string()
            .contains("routers[0].client.tls.serverIdentity"),
        "{e}"
    );
    let e = err("identity: {cert: c.pem}\nroutes: []\n");
    assert!(e.to_string().contains("routes"), "{e}");
}
