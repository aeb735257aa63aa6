//! Entry points for the fuzz targets in `fuzz/` (see `docs/fuzzing.md`): not part of
//! weft-discovery's API (hidden from its docs), only a way to feed untrusted bytes to the
//! crate-private response parsers exactly as the namers read them.
//!
//! The DNS SRV namer has no entry here: its answers are decoded by hickory, and what weft
//! does with them afterwards takes typed records, not bytes.

use std::net::SocketAddr;

use weft_naming::{Address, Resolution};

/// A Consul `GET /v1/health/service/<service>` body: the addresses the namer would publish
/// (passing instances only, sorted, one per address) and how many instances were skipped for
/// a bad address or port.
///
/// # Errors
/// The body is not JSON of that shape, as a message.
pub fn consul_health(body: &[u8]) -> Result<(Vec<Address>, usize), String> {
    crate::consul::health_body(body)
}

/// A Consul `GET /v1/catalog/services` body: how many services it lists.
///
/// # Errors
/// The body is not JSON of that shape, as a message.
pub fn consul_catalog(body: &[u8]) -> Result<usize, String> {
    crate::consul::catalog_body(body)
}

/// One Kubernetes EndpointSlice (`discovery.k8s.io/v1`, JSON): the serving addresses on the
/// port labelled `port` (a port name or number), sorted and without duplicates.
///
/// # Errors
/// The body is not an EndpointSlice, or the slice is malformed (a port out of range, an
/// address that is not an IP address).
pub fn k8s_endpoint_slice(body: &[u8], port: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs = crate::k8s::slice_body(body, port)?;
    Ok(addrs.iter().map(|a| a.addr).collect())
}

/// A Marathon `GET /v2/apps?embed=apps.tasks` body: the resolution of every app in it.
///
/// # Errors
/// The body is not JSON of that shape, as a message.
pub fn marathon_apps(body: &[u8], use_health_check: bool) -> Result<Vec<Resolution>, String> {
    crate::marathon::apps_body(body, use_health_check)
}

/// Marathon's `/v2/events` stream arriving in `chunks`: each event's type and whether the
/// namer reads the apps again after it.
///
/// # Errors
/// An event or line over the parser's limit (1 MiB).
pub fn marathon_events(chunks: &[&[u8]]) -> Result<Vec<(String, bool)>, String> {
    crate::marathon::event_chunks(chunks)
}
