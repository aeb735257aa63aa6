//! Tracing and access logs end to end: a span per request exported to a real Zipkin-format
//! receiver, trace context propagated to the upstream, and an access log line per request.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;

/// A Zipkin v2 receiver: collects the JSON bodies POSTed to it.
async fn zipkin_receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let spans = Arc::new(Mutex::new(Vec::new()));
    let store = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        if let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(&body) {
                            store.lock().expect("lock").extend(list);
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b""))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_context_propagates_and_requests_are_logged() {
    let (zipkin, spans) = zipkin_receiver().await;
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let log_dir = tempfile::tempdir().expect("tempdir");
    let log_path = log_dir.path().join("access.log");
    let config =
        format!(
        "tracing: {{sampleRate: 1.0, zipkin: {{endpoint: 'http://{zipkin}/api/v2/spans'}}}}\n{}",
        config(
            &disco,
            &[router(
                "outbound",
                "/svc => /#/fs;",
                &[&format!("accessLog: {{path: '{}', format: json}}", log_path.display())],
            )]
        )
    );
    let weft = Weft::start(bin(), &config).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = weft
        .http1("outbound")
        .get_with(
            "books",
            "/page",
            &[("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01"))],
        )
        .await
        .expect("request");
    assert_eq!(r.status.as_u16(), 200);
    let upstream_tp = r
        .echo()
        .headers
        .get("traceparent")
        .and_then(|v| v.first().cloned());
    let upstream_tp = upstream_tp.expect("the upstream got a traceparent");
    assert!(upstream_tp.contains(trace_id), "same trace: {upstream_tp}");
    assert!(
        !upstream_tp.contains("00f067aa0ba902b7"),
        "our span is the new parent: {upstream_tp}"
    );

    let span = eventually(Duration::from_secs(20), || {
        let spans = spans.clone();
        async move { spans.lock().expect("lock").first().cloned() }
    })
    .await
    .expect("a span reached the Zipkin receiver");
    assert_eq!(span["traceId"], trace_id, "{span}");
    assert_eq!(span["parentId"], "00f067aa0ba902b7", "{span}");

    let line = eventually(Duration::from_secs(10), || {
        let path = log_path.clone();
        async move {
            let text = std::fs::read_to_string(&path).ok()?;
            text.lines().next().map(str::to_string)
        }
    })
    .await
    .expect("an access log line");
    let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(entry["status"], 200, "{entry}");
    assert_eq!(entry["service"], "/svc/books", "{entry}");
}
