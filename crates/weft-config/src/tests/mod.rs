//! Unit tests of the whole file: what is accepted (defaults, every key, the embedded default,
//! round trips), what is rejected and where, and garbage that must not panic.

mod accepts;
mod control;
mod discovery;
mod interpreter;
mod objectives;
mod rejects;
mod resilience;
mod telemetry;
mod tls;

use std::time::Duration;

use super::*;

pub(super) fn parse(text: &str) -> Config {
    match Config::parse(text, "weft.yaml") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

pub(super) fn err(text: &str) -> ConfigError {
    match Config::parse(text, "weft.yaml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

/// Asserts an error's line, column, key path and that its message contains `needle`.
#[track_caller]
pub(super) fn assert_err(
    e: &ConfigError,
    line: usize,
    column: usize,
    key_path: Option<&str>,
    needle: &str,
) {
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

pub(super) fn path(s: &str) -> weft_naming::Path {
    weft_naming::Path::read(s).unwrap()
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) const MINIMAL: &str = "routers:\n  - label: r\n    servers: [{port: 4140}]\n";

/// Every key of the file, each set to something other than its default.
pub(super) const FULL: &str = r#"# every key
admin:
  ip: 0.0.0.0
  port: 9991
  shutdownGrace: 30s
  drainAnnounce: 2s
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
      failFastTimeout: 5s
      requeueBudget: {percentCanRetry: 0.1, minRetriesPerSec: 5, ttl: 20s}
    service:
      totalTimeout: 10s
      attemptTimeout: 2s
      retries:
        budget: {percentCanRetry: 0.5, minRetriesPerSec: 3, ttl: 30s}
        backoff: {kind: constant, delay: 20ms}
        bufferBytes: 1024
      responseClassifier: retryableRead5XX
      objectives:
        - {kind: successRate, target: 99.95%, window: 30d}
        - {kind: latency, threshold: 250ms, target: 99%, window: 7d, prefix: /http/books}
      profiles:
        - prefix: /http/books
          routes:
            - name: list books
              match: {method: GET, pathPrefix: /books/}
              timeout: 1s
              isRetryable: true
              responseClassifier: retryableAll5XX
            - name: books/by-id
              match: {pathRegex: "/books/[0-9]+"}
            - name: health_check.v1
              match: {method: HEAD, path: /healthz}
              isRetryable: false
        - prefix: /http/books/grpc
          routes:
            - name: get
              match: {grpcService: books.v1.Library, grpcMethod: GetBook}
              responseClassifier: grpc.default
            - name: all
              match: {grpcService: books.v1.Library}
              responseClassifier: {kind: grpc, retryableStatusCodes: [14, 4]}
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
    client:
      failureAccrual: {kind: successRate, successRate: 0.9, requests: 50, backoff: {min: 2s, max: 20s}}
    service: {responseClassifier: retryableAll5XX}
  - label: d
    servers: [{port: 4150}]
    identifier: {kind: static, path: /svc/static}
    service: {responseClassifier: allSuccessful}
  - label: e
    servers: [{port: 4151}]
    identifier: {kind: header.token, header: x-host}
    service:
      retries: {backoff: {kind: jittered, min: 1ms, max: 1s}, bufferBytes: 0}
      responseClassifier: {kind: grpc, retryableStatusCodes: [8]}
"#;

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
