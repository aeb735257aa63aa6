//! End to end: a real gRPC bidirectional stream (python `grpcio` client and server, scripts in
//! `tests/grpc/`) through two weft proxies, outbound then inbound, as between two sidecars.
//!
//! Needs `python3` with `grpcio` (`pip install grpcio`); the test fails, naming what is
//! missing, rather than skip (see `support/grpc.rs`).

mod support;

use std::time::Duration;

use support::grpc::{start_echo_server, ChatClient};
use support::*;

/// How long the stream must stay open and flowing.
const STREAM_SECS: u64 = 120;
/// One message each way every this many seconds.
const INTERVAL_SECS: f64 = 0.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bidi_stream_through_two_proxies_stays_open_and_flowing() {
    let (_server, port) = start_echo_server().await;

    // Inbound weft in front of the app; outbound weft sends `echo` to the inbound one. Both
    // with default timeouts: nothing may cut a long-lived stream unless configured.
    let inbound_disco = Disco::new();
    inbound_disco.write("echo", &format!("127.0.0.1 {port}\n"));
    let inbound = Weft::start(
        bin(),
        &config(&inbound_disco, &[router("inbound", "/svc => /#/fs;", &[])]),
    )
    .await;
    let hop = inbound.router("inbound");
    let outbound_disco = Disco::new();
    outbound_disco.write("echo", &format!("{} {}\n", hop.ip(), hop.port()));
    let outbound = Weft::start(
        bin(),
        &config(
            &outbound_disco,
            &[router(
                "outbound",
                "/svc => /#/fs;",
                &["service: {responseClassifier: grpc.default}"],
            )],
        ),
    )
    .await;
    let entry = outbound.router("outbound");

    let report = ChatClient::spawn(entry, "echo", STREAM_SECS, INTERVAL_SECS)
        .report()
        .await;
    let context = format!(
        "client report: {report}\n--- outbound weft stderr ---\n{}\n--- inbound weft stderr ---\n{}",
        outbound.stderr(),
        inbound.stderr()
    );

    assert_eq!(
        report["status"], "OK",
        "the stream ended with an error\n{context}"
    );
    let sent = report["sent"].as_u64().unwrap_or(0);
    let expected = (STREAM_SECS as f64 / INTERVAL_SECS) as u64;
    assert!(
        sent + 2 >= expected,
        "the client sent {sent} messages, expected about {expected}\n{context}"
    );
    assert_eq!(
        report["received"].as_u64(),
        Some(sent),
        "echoes lost\n{context}"
    );
    assert_eq!(report["out_of_order"], 0, "echoes out of order\n{context}");
    let elapsed = report["elapsed"].as_f64().unwrap_or(0.0);
    assert!(
        elapsed >= STREAM_SECS as f64,
        "the stream lasted {elapsed:.1}s, not {STREAM_SECS}s\n{context}"
    );
    // Flowing all along: no stall longer than a few message intervals.
    let max_gap = report["max_gap"].as_f64().unwrap_or(f64::MAX);
    assert!(
        max_gap < 5.0,
        "the stream stalled for {max_gap:.1}s\n{context}"
    );

    // One stream, one success at each proxy (grpc-status 0 in the trailers).
    for (weft, label) in [(&outbound, "outbound"), (&inbound, "inbound")] {
        let counted = |text: &str, class: &str| {
            metrics::sum(
                text,
                "weft_responses_total",
                &[("service", "/svc/echo"), ("classification", class)],
            )
        };
        // The proxy counts the exchange when its end passes through; poll briefly.
        let text = eventually(Duration::from_secs(10), || async {
            let text = get_metrics(weft.admin()).await;
            (counted(&text, "success") + counted(&text, "failure") >= 1.0).then_some(text)
        })
        .await
        .unwrap_or_else(|| panic!("{label} weft never counted the stream\n{context}"));
        assert_eq!(
            (counted(&text, "success"), counted(&text, "failure")),
            (1.0, 0.0),
            "{label} weft responses\n{text}"
        );
    }
}
