//! Entry points for the criterion benchmarks in `benches/`: not part of weft-proxy's API
//! (hidden from its docs), only a way to measure crate-private code as the router runs it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use weft_config::ClientConfig;
use weft_naming::{AddrSet, Address};
use weft_telemetry::Metrics;

use crate::balance::{Balancer, Pick};
use crate::client::ClientParams;

/// A balancer over `n` endpoints as the router builds it (default client config: P2C over
/// peak EWMA, failure accrual on), with no connection opened.
pub struct BalancerBench {
    balancer: Balancer,
}

impl BalancerBench {
    /// A balancer over `n` endpoints on 10.0.0.0/16 with equal weights.
    pub fn new(n: usize) -> BalancerBench {
        let config = ClientConfig::default();
        let params = ClientParams {
            connect_timeout: config.connect_timeout,
            pool_idle_timeout: config.pool_idle_timeout,
        };
        let metrics = Metrics::new("bench").router("bench").client("/#/bench");
        let balancer = Balancer::new(params, &config, metrics, false, None);
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
    /// lower peak-EWMA load wins. `None` if every endpoint is ejected (never, here).
    pub fn pick(&self) -> Option<SocketAddr> {
        match self.balancer.pick(&[]) {
            Pick::Endpoint(e) => Some(e.addr),
            Pick::Empty | Pick::AllEjected { .. } => None,
        }
    }
}
