//! Micro-benchmarks of per-request work in the proxy (`cargo bench -p weft-proxy`): header
//! rewriting between hops, metrics recording, the cost of tap when no tap is open, and the
//! balancer's P2C pick (through `weft_proxy::bench_support`).
//!
//! The header functions are crate-private, so this file compiles `src/headers.rs` itself
//! (its only in-crate dependency is the error type, which is public) and measures exactly the
//! code the router runs per request: `via_hops`, `local_dtab` and `rewrite_request` on the
//! request head, `strip_hop_by_hop` + `append_via` on the response head. Should `headers.rs`
//! come to need more of the crate, expose it instead (e.g. a `#[doc(hidden)] pub mod`).
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

#[path = "../src/headers.rs"]
#[allow(dead_code, unreachable_pub)]
mod headers;

/// What `headers.rs` imports as `crate::error`.
mod error {
    pub(crate) use weft_proxy::{ErrorKind, ProxyError};
}

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Uri, Version};
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
            |h| {
                let carried = headers::Carried::scan(&h);
                black_box(carried.via && headers::via_hops(&h) > 0);
                let local = headers::local_dtab(&h, carried).expect("no dtab headers");
                headers::rewrite_request(&uri, h, Version::HTTP_11, &local, None, carried)
                    .expect("a valid request")
            },
            BatchSize::SmallInput,
        )
    });

    c.bench_function("headers_response_rewrite", |b| {
        b.iter_batched_ref(
            response_headers,
            |h| {
                headers::strip_hop_by_hop(h);
                headers::append_via(h, Version::HTTP_11);
            },
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
            service.response(black_box(200), Classification::success, "");
        })
    });

    // What the request path pays for tap when no tap is open: the check it makes before
    // building anything for tap (see `Router::forward`).
    let tap = std::sync::Arc::new(weft_proxy::Tap::default());
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
