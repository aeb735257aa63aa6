//! The Consul namer's response parsers: `/v1/health/service/<service>` (instances to
//! addresses) and `/v1/catalog/services`, on any body. Addresses published are sorted,
//! unique, with a usable port and a non-negative weight.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_discovery::fuzz_support::{consul_catalog, consul_health};

fuzz_target!(|data: &[u8]| {
    if let Ok((addrs, _skipped)) = consul_health(data) {
        assert!(addrs.windows(2).all(|w| w[0].addr < w[1].addr));
        assert!(addrs.iter().all(|a| a.addr.port() != 0));
        assert!(addrs
            .iter()
            .all(|a| a.weight.is_finite() && a.weight >= 0.0));
    }
    let _ = consul_catalog(data);
});
