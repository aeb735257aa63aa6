//! Opaque TCP proxying: a connection that is not HTTP is routed by the name `/tcp/<port>`
//! (the port it arrived on), balanced per connection like HTTP, connected through the same
//! path as requests (so TLS to peers and outside servers applies), and copied both ways.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use weft_naming::{Dtab, Path};
use weft_tls::Alpn;

use super::copy::copy_both_ways;
use crate::clients::Clients;
use crate::error::ProxyError;

/// Proxies `downstream`, which arrived on local port `port`, to an endpoint of
/// `/tcp/<port>`; the stream closes after `idle` without a byte either way.
///
/// # Errors
/// Binding, picking (`no-endpoints`) or connecting failed; the connection is
/// then closed.
pub(crate) async fn proxy<D>(
    downstream: D,
    clients: &Clients,
    port: u16,
    idle: Duration,
    counters: [Counter; 2],
) -> Result<(), ProxyError>
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let name = Path::from_labels(["tcp".to_string(), port.to_string()]);
    let balancer = clients
        .bind(&clients.service(&name), &Dtab::empty())
        .await?;
    let endpoint = balancer.pick_endpoint(&[])?;
    crate::record_in_span("endpoint", &endpoint.addr);
    let upstream = balancer.connect(&endpoint, Alpn::None).await?;
    balancer.record(&endpoint, true);
    copy_both_ways(downstream, upstream, idle, counters).await;
    Ok(())
}
