//! Shared helpers for weft's end-to-end tests (each test file includes this module).

#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
pub use weft_test::{
    closed_port, get_metrics, metrics, raw, Behaviour, Client, Disco, Echo, TestBody,
    TestResponse, Upstream, Weft,
};

/// The weft binary built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_weft");

/// A config with the admin server, one `fs` namer on `disco` at `/#/fs`, and the given
/// routers (YAML list items, see [`router`]). Every port is 0.
pub fn config(disco: &Disco, routers: &[String]) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}'}}\n\
         routers:\n{}",
        disco.path().display(),
        routers.concat()
    )
}

/// One router list item: `label`, one server on 127.0.0.1:0, `dtab`, and `extra` YAML keys
/// (each line at the router's key indentation, e.g. `identifier: {kind: methodAndHost}`).
pub fn router(label: &str, dtab: &str, extra: &[&str]) -> String {
    let mut s = format!("  - label: {label}\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n");
    for e in extra {
        s.push_str(&format!("    {e}\n"));
    }
    s.push_str("    dtab: |\n");
    for line in dtab.lines() {
        s.push_str(&format!("      {}\n", line.trim()));
    }
    s
}

/// The usual single-router config: router `outbound` with `dtab` over the `fs` namer.
pub fn outbound_config(disco: &Disco, dtab: &str) -> String {
    config(disco, &[router("outbound", dtab, &[])])
}

/// Starts weft with router `outbound` and dtab `/svc => /#/fs;`.
pub async fn start_fs_weft(disco: &Disco) -> Weft {
    Weft::start(BIN, &outbound_config(disco, "/svc => /#/fs;")).await
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `within`; `None` after.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts a proxy-generated error: status, `l5d-proxy-error`, and a short text body.
pub fn assert_proxy_error(r: &TestResponse, status: u16, reason: &str) {
    assert_eq!(
        (r.status.as_u16(), r.proxy_error()),
        (status, Some(reason)),
        "expected {status} with l5d-proxy-error: {reason}; got {} {:?} body {:?}",
        r.status,
        r.headers,
        r.text()
    );
    assert!(
        r.upstream().is_none(),
        "a proxy error must not come from an upstream"
    );
    assert!(!r.body.is_empty(), "proxy errors carry a short text body");
}
