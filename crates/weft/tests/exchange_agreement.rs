//! The end of an exchange is recorded in one place (issue 13): tap, the access log and the
//! response metrics say the same about how each exchange ended, whether the response
//! completed, the upstream broke it midway, or the client went away before its end.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_test::tap::TapStream;

/// How one exchange must have ended, in every record of it.
struct Expected {
    service: &'static str,
    /// The `error` of tap's `end` event and of the access log (`None`: no error), and the
    /// `error` label of the metrics (`""` for none).
    error: Option<&'static str>,
    /// The `fault` label (`""` for none).
    fault: &'static str,
    classification: &'static str,
}

/// The access log's lines for `service`, parsed.
fn logged(path: &Path, service: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("an access log line is JSON"))
        .filter(|e| e["service"] == service)
        .collect()
}

/// `GET /` for `host` on a raw connection: reads the response head and the first chunk of
/// its body, then closes the connection before the body ends.
async fn get_and_leave_early(addr: SocketAddr, host: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let first_chunk = async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "the response ended before its body: {got:?}");
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() > end + 4 {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), first_chunk)
        .await
        .expect("the head and a first chunk within 10s");
    drop(s);
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_access_log_and_metrics_agree_on_how_each_exchange_ended() {
    let complete = Upstream::start("complete", Behaviour::new()).await;
    let truncated = Upstream::start("truncated", Behaviour::new().truncate()).await;
    // An echo body is a few hundred bytes: fifty chunks 100 ms apart outlast the client.
    let cancelled = Upstream::start(
        "cancelled",
        Behaviour::new()
            .echo()
            .slow_body(50, Duration::from_millis(100)),
    )
    .await;
    let disco = Disco::new();
    for u in [&complete, &truncated, &cancelled] {
        disco.write(u.name(), &u.fs_line());
    }
    let logs = tempfile::tempdir().expect("tempdir");
    let log: PathBuf = logs.path().join("access.log");
    let access_log = format!("accessLog: {{path: '{}', format: json}}", log.display());
    let weft = Weft::start(
        bin(),
        &config(
            &disco,
            &[router("outbound", "/svc => /#/fs;", &[&access_log])],
        ),
    )
    .await;
    let tap = TapStream::open(weft.admin(), "router=outbound").await;
    let client = weft.http1("outbound");

    // (i) A response with a Content-Length, read to its end.
    let r = client
        .get("complete", "/")
        .await
        .expect("a complete response");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from complete\n");
    assert!(r.header("content-length").is_some(), "{:?}", r.headers);

    // (ii) The upstream dies after half of the body: the client sees the connection close
    // short of the Content-Length.
    let e = client
        .get("truncated", "/")
        .await
        .expect_err("the client sees the body broken");
    assert!(e.to_string().contains("body"), "{e}");

    // (iii) The client reads the head and a first chunk, then goes away.
    let got = get_and_leave_early(weft.router("outbound"), "cancelled").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    let expected = [
        Expected {
            service: "/svc/complete",
            error: None,
            fault: "",
            classification: "success",
        },
        Expected {
            service: "/svc/truncated",
            error: Some("upstream-reset"),
            fault: "upstream",
            classification: "failure",
        },
        Expected {
            service: "/svc/cancelled",
            error: Some("cancelled"),
            fault: "downstream",
            // The client cancelling does not make the service fail.
            classification: "success",
        },
    ];
    for want in &expected {
        let service = want.service;
        // The tap's `end` comes after the metrics are recorded (one place records both).
        let tapped = tap.ended(service, Duration::from_secs(20)).await;
        let end = tapped.end.clone().expect("an end event");
        assert_eq!(
            (
                end["error"].as_str(),
                &tapped.rsp.as_ref().map(|r| &r["status"])
            ),
            (want.error, &Some(&Value::from(200))),
            "tap of {service}: {tapped:?}"
        );

        let line = eventually(Duration::from_secs(10), || async {
            logged(&log, service).into_iter().next()
        })
        .await
        .unwrap_or_else(|| panic!("an access log line for {service}"));
        assert_eq!(
            (line["error"].as_str(), &line["status"]),
            (want.error, &Value::from(200)),
            "access log of {service}: {line}"
        );

        let text = get_metrics(weft.admin()).await;
        let samples = metrics::matching(&text, "weft_responses_total", &[("service", service)]);
        let labels: Vec<_> = samples
            .iter()
            .map(|s| {
                (
                    s.label("status_code"),
                    s.label("error"),
                    s.label("fault"),
                    s.label("classification"),
                    s.value,
                )
            })
            .collect();
        assert_eq!(
            labels,
            [(
                Some("200"),
                Some(want.error.unwrap_or("")),
                Some(want.fault),
                Some(want.classification),
                1.0
            )],
            "weft_responses_total of {service}"
        );
    }
    // One exchange each, no more: nothing was recorded twice.
    for want in &expected {
        assert_eq!(logged(&log, want.service).len(), 1, "{}", want.service);
        assert_eq!(tap.exchanges(want.service).len(), 1, "{}", want.service);
    }
}
