//! Micro-benchmarks of per-request work in the proxy (`cargo bench -p weft-proxy`): header
//! rewriting between hops, metrics recording, the cost of tap when no tap is open, and the
//! balancer's P2C pick (through `weft_proxy::bench_support`).
//!
//! Crate-private code is measured through `weft_proxy::bench_support`, which runs it as the
//! router does.
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Uri};
use weft_config::ViaPolicy;
use weft_proxy::bench_support::{rewrite_request_head, rewrite_response_head};
use weft_telemetry::{Classification, Metrics};

/// Request headers as a browser or an SDK sends them, with hop-by-hop ones to strip.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "books.default.svc.cluster.local"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("connection", "keep-alive, x-hop"),
        ("keep-alive", "timeout=5"),
        ("x-hop", "1"),
        ("x-request-id", "5f1c9f0e-8a9b-4c1e-9d4a-3f6b2a7c1d00"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("via", "1.1 edge"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    h
}

fn response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("content-type", "application/json"),
        ("content-length", "512"),
        ("date", "Sun, 22 Nov 2026 13:00:00 GMT"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("server", "bench"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let uri: Uri = "/books/1?x=y".parse().expect("a valid URI");
    c.bench_function("headers_request_rewrite", |b| {
        b.iter_batched(
            request_headers,
            |h| rewrite_request_head(&uri, h, ViaPolicy::None),
            BatchSize::SmallInput,
        )
    });

    c.bench_function("headers_response_rewrite", |b| {
        b.iter_batched_ref(
            response_headers,
            |h| rewrite_response_head(h, false),
            BatchSize::SmallInput,
        )
    });

    let metrics = Metrics::new("bench");
    let service = metrics
        .router("outbound")
        .service("/svc/books", "[default]");
    c.bench_function("metrics_record_request", |b| {
        b.iter(|| {
            service.request();
            service.latency(black_box(0.000_42));
            service.response(black_box(200), Classification::success, "", "");
        })
    });

    // What the request path pays for tap when no tap is open: the check it makes before
    // building anything for tap (see `Router::forward`).
    let tap = std::sync::Arc::new(weft_telemetry::tap::Tap::default());
    c.bench_function("tap_closed", |b| b.iter(|| black_box(tap.is_active())));
    for n in [3, 100] {
        let balancer = weft_proxy::bench_support::BalancerBench::new(n);
        c.bench_function(&format!("balancer_pick_{n}"), |b| {
            b.iter(|| black_box(balancer.pick()))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
