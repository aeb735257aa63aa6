//! Entry points for the criterion benchmarks in `benches/`: not part of weft-proxy's API
//! (hidden from its docs), only a way to measure crate-private code as the router runs it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::{HeaderMap, Uri, Version};
use weft_config::{ClientConfig, ViaPolicy};
use weft_naming::{AddrSet, Address};
use weft_telemetry::Metrics;

use crate::endpoint::Balancer;
use crate::headers::{
    append_via, hop_count, local_dtab, rewrite_request, strip_hop_by_hop, via_hops, Carried,
};

/// A balancer over `n` endpoints as the router builds it (default client config: P2C over
/// peak EWMA, failure accrual on), with no connection opened.
pub struct BalancerBench {
    balancer: Balancer,
}

impl BalancerBench {
    /// A balancer over `n` endpoints on 10.0.0.0/16 with equal weights.
    pub fn new(n: usize) -> BalancerBench {
        let config = ClientConfig::default();
        let metrics = Metrics::new("bench").router("bench").client("/#/bench");
        let balancer = Balancer::new(&config, metrics, false, None, Vec::new().into());
        let addrs: AddrSet = (0..n)
            .map(|i| {
                let ip = Ipv4Addr::new(10, 0, (i / 256) as u8, (i % 256) as u8);
                Address::new(SocketAddr::new(IpAddr::V4(ip), 8080))
            })
            .collect::<Vec<_>>()
            .into();
        balancer.update(&addrs);
        BalancerBench { balancer }
    }

    /// One pick, as each request attempt makes it: two random candidates, the one with the
    /// lower peak-EWMA cost wins. `None` if every endpoint is ejected (never, here).
    pub fn pick(&self) -> Option<SocketAddr> {
        match self.balancer.pick(&[]) {
            crate::endpoint::Pick::Endpoint(e) => Some(e.addr),
            _ => None,
        }
    }
}

/// The request-head work of the router for one HTTP/1.1 request: one scan for the headers
/// routing acts on, loop checks, the per-request dtab, and the rewrite for the upstream
/// (`via` as the router's policy). Returns the upstream URI and headers.
pub fn rewrite_request_head(uri: &Uri, headers: HeaderMap, via: ViaPolicy) -> (Uri, HeaderMap) {
    let carried = Carried::scan(&headers);
    std::hint::black_box(carried.via && via_hops(&headers) > 0);
    std::hint::black_box(hop_count(&headers, carried));
    let local = local_dtab(&headers, carried).unwrap_or_default();
    rewrite_request(
        uri.clone(),
        headers,
        Version::HTTP_11,
        &local,
        None,
        carried,
        via,
    )
    .unwrap_or_else(|_| (uri.clone(), HeaderMap::new()))
}

/// The response-head work for one response: hop-by-hop headers out, and `Via` in when
/// `via` is set.
pub fn rewrite_response_head(headers: &mut HeaderMap, via: bool) {
    strip_hop_by_hop(headers);
    if via {
        append_via(headers, Version::HTTP_11);
    }
}
