//! The tracer end to end: sampling, propagation, and export to a real HTTP receiver that
//! decodes the wire formats (Zipkin v2 JSON; OTLP protobuf).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use weft_config::{ExporterConfig, TracingConfig};

use super::*;

/// One POST the receiver got: path, content type, body.
type Received = (String, String, Bytes);

/// A collector on 127.0.0.1:0 that answers 202 to every request and reports what it got.
async fn receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let ct = req
                            .headers()
                            .get(http::header::CONTENT_TYPE)
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send((path, ct, body));
                        let mut rsp = http::Response::new(Full::new(Bytes::new()));
                        *rsp.status_mut() = http::StatusCode::ACCEPTED;
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn config(otlp: Option<String>, zipkin: Option<String>, sample_rate: f64) -> TracingConfig {
    let exporter = |u: String| ExporterConfig {
        endpoint: u.parse().unwrap(),
    };
    TracingConfig {
        sample_rate,
        otlp: otlp.map(exporter),
        zipkin: zipkin.map(exporter),
        service_name: "weft-test".to_owned(),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an export within 10s")
        .expect("the receiver is running")
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn without_exporters_nothing_is_recorded() {
    let metrics = Metrics::new("0");
    let h = headers(&[("traceparent", PARENT)]);
    assert!(Tracer::new(None, &metrics)
        .start(&h, "out", "GET", "/", "a")
        .is_none());
    let cfg = config(None, None, 1.0);
    assert!(Tracer::new(Some(&cfg), &metrics)
        .start(&h, "out", "GET", "/", "a")
        .is_none());
}

#[tokio::test]
async fn sampling_is_parent_based_then_by_ratio() {
    let metrics = Metrics::new("0");
    // The exporter never gets anything here: it only has to exist.
    let never = config(Some("http://127.0.0.1:9/v1/traces".to_owned()), None, 0.0);
    let tracer = Tracer::new(Some(&never), &metrics);
    assert!(tracer
        .start(&HeaderMap::new(), "r", "GET", "/", "a")
        .is_none());
    let sampled = headers(&[("traceparent", PARENT)]);
    let mut span = tracer.start(&sampled, "r", "GET", "/", "a").unwrap();
    span.pending = None; // not exported
    let always = config(Some("http://127.0.0.1:9/v1/traces".to_owned()), None, 1.0);
    let tracer = Tracer::new(Some(&always), &metrics);
    let denied = headers(&[("x-b3-sampled", "0")]);
    assert!(tracer.start(&denied, "r", "GET", "/", "a").is_none());
    let unsampled = headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]);
    assert!(tracer.start(&unsampled, "r", "GET", "/", "a").is_none());

    // The ratio sampler decides on the trace id: deterministic, and close to the rate.
    let id = |n: u64| {
        let mut b = [0u8; 16];
        b[8..].copy_from_slice(&n.to_be_bytes());
        TraceId(b)
    };
    assert!(ratio_sampled(id(0), 0.5));
    assert!(!ratio_sampled(id(u64::MAX), 0.5));
    let hits = (0..10_000)
        .filter(|_| ratio_sampled(TraceId::random(), 0.1))
        .count();
    assert!((700..1300).contains(&hits), "{hits}");
}

#[tokio::test]
async fn exports_zipkin_json_and_otlp_protobuf_to_real_receivers() {
    let (addr, mut rx) = receiver().await;
    let cfg = config(
        Some(format!("http://{addr}/v1/traces")),
        Some(format!("http://{addr}/api/v2/spans")),
        1.0,
    );
    let metrics = Metrics::new("0");
    let tracer = Tracer::new(Some(&cfg), &metrics);

    let incoming = headers(&[("traceparent", PARENT), ("tracestate", "rojo=1")]);
    let span = tracer
        .start(&incoming, "outbound", "GET", "/books/1", "books:8080")
        .expect("sampled by the caller");
    let mut upstream = HeaderMap::new();
    span.inject(&mut upstream);
    let ours = span.span_id().unwrap();
    assert_eq!(
        upstream["traceparent"],
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{ours}-01").as_str()
    );
    assert_eq!(upstream["tracestate"], "rojo=1");
    assert_eq!(upstream["x-b3-parentspanid"], "00f067aa0ba902b7");
    span.finish(
        502,
        Some("10.1.2.3:8080".parse().unwrap()),
        Some("connection-refused"),
        "/svc/books",
        "[default]",
    );

    let mut zipkin = None;
    let mut otlp = None;
    while zipkin.is_none() || otlp.is_none() {
        let (path, ct, body) = next(&mut rx).await;
        match path.as_str() {
            "/api/v2/spans" => zipkin = Some((ct, body)),
            "/v1/traces" => otlp = Some((ct, body)),
            other => panic!("unexpected path {other}"),
        }
    }

    let (ct, body) = zipkin.unwrap();
    assert_eq!(ct, "application/json");
    let spans: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let s = &spans[0];
    assert_eq!(spans.as_array().unwrap().len(), 1);
    assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(s["parentId"], "00f067aa0ba902b7");
    assert_eq!(s["id"], ours.to_string());
    assert_eq!(s["name"], "outbound GET");
    assert_eq!(s["kind"], "SERVER");
    assert_eq!(s["localEndpoint"]["serviceName"], "weft-test");
    assert!(s["timestamp"].as_u64().unwrap() > 1_600_000_000_000_000);
    assert!(s["duration"].as_u64().unwrap() >= 1);
    let tags = &s["tags"];
    assert_eq!(tags["http.request.method"], "GET");
    assert_eq!(tags["url.path"], "/books/1");
    assert_eq!(tags["server.address"], "books:8080");
    assert_eq!(tags["http.response.status_code"], "502");
    assert_eq!(tags["weft.router"], "outbound");
    assert_eq!(tags["weft.service"], "/svc/books");
    assert_eq!(tags["weft.route"], "[default]");
    assert_eq!(tags["net.peer.address"], "10.1.2.3:8080");
    assert_eq!(tags["error"], "connection-refused");

    let (ct, body) = otlp.unwrap();
    assert_eq!(ct, "application/x-protobuf");
    let req = ExportTraceServiceRequest::decode(body).unwrap();
    let rs = &req.resource_spans[0];
    let service = &rs.resource.as_ref().unwrap().attributes[0];
    assert_eq!(service.key, "service.name");
    assert_eq!(
        service.value.as_ref().unwrap().value,
        Some(Any::StringValue("weft-test".to_owned()))
    );
    let s = &rs.scope_spans[0].spans[0];
    assert_eq!(
        s.trace_id,
        [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36
        ]
    );
    assert_eq!(
        s.parent_span_id,
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(s.span_id, ours.0);
    assert_eq!(s.trace_state, "rojo=1");
    assert_eq!(s.name, "outbound GET");
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano && s.start_time_unix_nano > 0);
    let attr = |k: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone()?.value)
    };
    assert_eq!(attr("http.response.status_code"), Some(Any::IntValue(502)));
    assert_eq!(
        attr("url.path"),
        Some(Any::StringValue("/books/1".to_owned()))
    );
    assert_eq!(
        attr("net.peer.address"),
        Some(Any::StringValue("10.1.2.3:8080".to_owned()))
    );
    assert_eq!(
        attr("weft.service"),
        Some(Any::StringValue("/svc/books".to_owned()))
    );
    let status = s.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (2, "connection-refused")
    );

    // Both exporters count what the collector took (once its answer is read).
    wait_for(
        &metrics,
        r#"weft_trace_spans_exported_total{exporter="zipkin"} 1"#,
    )
    .await;
    wait_for(
        &metrics,
        r#"weft_trace_spans_exported_total{exporter="otlp"} 1"#,
    )
    .await;
}

async fn wait_for(metrics: &Metrics, want: &str) {
    for _ in 0..500 {
        if metrics.encode().contains(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{want} not in {}", metrics.encode());
}

#[tokio::test]
async fn a_root_span_in_b3_single_form_and_a_cancelled_span() {
    let (addr, mut rx) = receiver().await;
    let cfg = config(None, Some(format!("http://{addr}/api/v2/spans")), 1.0);
    let metrics = Metrics::new("0");
    let tracer = Tracer::new(Some(&cfg), &metrics);
    // `b3: 1` alone: sampled, no ids: we start the trace, answering in the single form.
    let span = tracer
        .start(&headers(&[("b3", "1")]), "in", "POST", "/x", "app")
        .unwrap();
    let mut upstream = HeaderMap::new();
    span.inject(&mut upstream);
    let trace = span.trace_id().unwrap();
    let id = span.span_id().unwrap();
    assert_eq!(upstream["b3"], format!("{trace}-{id}-1").as_str());
    assert!(upstream.get("x-b3-traceid").is_none());
    drop(span);

    let (_, _, body) = next(&mut rx).await;
    let spans: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let s = &spans[0];
    assert_eq!(s["traceId"], trace.to_string());
    assert!(s.get("parentId").is_none());
    assert_eq!(s["tags"]["error"], "cancelled");
    assert!(s["tags"].get("http.response.status_code").is_none());
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    // A runtime that is never driven: the export task never runs and the queue stays full.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let cfg = config(Some("http://127.0.0.1:9/v1/traces".to_owned()), None, 1.0);
    let metrics = Metrics::new("0");
    let tracer = Tracer::new(Some(&cfg), &metrics);
    for _ in 0..export::QUEUE_CAPACITY + 7 {
        let span = tracer
            .start(&HeaderMap::new(), "r", "GET", "/", "a")
            .unwrap();
        span.finish(200, None, None, "/svc/a", "[default]");
    }
    let text = metrics.encode();
    assert!(
        text.contains(r#"weft_trace_spans_dropped_total{exporter="otlp",reason="queue_full"} 7"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_export_is_counted() {
    // A port with nothing listening: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = config(
        None,
        Some(format!("http://127.0.0.1:{port}/api/v2/spans")),
        1.0,
    );
    let metrics = Metrics::new("0");
    let tracer = Tracer::new(Some(&cfg), &metrics);
    let span = tracer
        .start(&HeaderMap::new(), "r", "GET", "/", "a")
        .unwrap();
    span.finish(200, None, None, "/svc/a", "[default]");
    let want = r#"weft_trace_spans_dropped_total{exporter="zipkin",reason="export_failed"} 1"#;
    wait_for(&metrics, want).await;
}
