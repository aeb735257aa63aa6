//! The Kubernetes namer's EndpointSlice conversion (`discovery.k8s.io/v1`), on any JSON the
//! API server (or something pretending to be one) sends. Input: the port label on the first
//! line, then the slice. Addresses are sorted, unique, with a non-zero port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_discovery::fuzz_support::k8s_endpoint_slice;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (port, body) = text.split_once('\n').unwrap_or(("http", text));
    if let Ok(addrs) = k8s_endpoint_slice(body.as_bytes(), port) {
        assert!(addrs.windows(2).all(|w| w[0] < w[1]));
        assert!(addrs.iter().all(|a| a.port() != 0));
    }
});
