//! What a bound client's balancer knows right now, for people: the dashboard's service page
//! reads it through [`crate::Router::client_state`]. Reading takes each endpoint's short
//! locks once and never changes anything.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::Endpoint;

/// One bound client (balancer): its endpoints and how TLS reaches them.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientState {
    /// TLS towards the endpoints: `mesh: <SPIFFE ID>` (mutual TLS to peer proxies, which must
    /// present that identity) or `origin: <name>` (TLS to servers outside the mesh, whose
    /// certificate must carry the name); `None` for plaintext.
    pub tls: Option<String>,
    /// The endpoints, sorted by address.
    pub endpoints: Vec<EndpointState>,
}

/// One endpoint of a bound client.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointState {
    /// Where connections go.
    pub addr: SocketAddr,
    /// Its discovery weight (1 unless the namer says otherwise).
    pub weight: f64,
    /// The peak-EWMA latency estimate in seconds, when recent (within the client's decay).
    pub latency_ewma_secs: Option<f64>,
    /// Requests in flight to it now.
    pub pending: u32,
    /// Failure accrual: `alive`, `ejected` or `probing` (one probe in flight).
    pub accrual: &'static str,
    /// For an ejected endpoint, seconds since it was ejected.
    pub ejected_for_secs: Option<f64>,
    /// For an ejected endpoint, seconds until it may carry a probe (0 once due).
    pub next_probe_in_secs: Option<f64>,
}

// === impl Endpoint ===

impl Endpoint {
    pub(super) fn state(&self, now: Instant) -> EndpointState {
        let (accrual, ejected) = self.accrual.view();
        EndpointState {
            addr: self.addr,
            weight: self.weight,
            latency_ewma_secs: self.load.estimate(now).map(|ns| ns / 1e9),
            pending: self.load.pending(),
            accrual,
            ejected_for_secs: ejected.map(|(since, _)| now.duration_since(since).as_secs_f64()),
            next_probe_in_secs: ejected
                .map(|(_, until)| until.saturating_duration_since(now).as_secs_f64()),
        }
    }
}
