//! HTTP/1.1 Upgrade (WebSocket, RFC 9110 section 7.8) and CONNECT (section 9.3.6): the
//! request goes to the endpoint on a connection of its own, made by the endpoint's one
//! connect path (so mesh mTLS and TLS to outside servers apply, as to any request); when the
//! endpoint agrees (101, or 2xx for CONNECT), both connections are handed to the byte
//! copier, end to end.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use weft_naming::Dtab;
use weft_tls::Alpn;

use super::copy::copy_both_ways;
use crate::clients::{Clients, Service};
use crate::dispatch::{Classifier, Forwarded};
use crate::endpoint::origin_form;
use crate::error::{ErrorKind, ProxyError};
use crate::headers::{Carried, HOP_COUNT};

/// What forwarding one upgrade request needs.
pub(crate) struct Upgrade<'a> {
    pub(crate) clients: &'a Clients,
    /// The request's own dtab (`l5d-dtab`, `l5d-ctx-dtab`).
    pub(crate) local: &'a Dtab,
    pub(crate) service: &'a Service,
    pub(crate) classifier: Classifier,
    /// Weft proxies the request passed through before this one (`l5d-hop-count`).
    pub(crate) hops: u32,
    /// Where the spliced tunnel runs (the server's connection tracker).
    pub(crate) tunnels: &'a super::Tunnels,
    /// The tunnel closes after this long without a byte either way (`tcpIdleTimeout`).
    pub(crate) idle: Duration,
    /// Bytes to the upstream and to the downstream.
    pub(crate) counters: [Counter; 2],
}

/// True for requests that switch protocols: `Connection: upgrade` with an `Upgrade` header,
/// or CONNECT. `carried` is [`Carried::scan`] of the request's headers: without `Upgrade`,
/// `Connection` is not parsed.
pub(crate) fn is_upgrade<B>(req: &Request<B>, carried: Carried) -> bool {
    if req.method() == Method::CONNECT {
        return true;
    }
    carried.upgrade
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Whether a response with `status` hands the connection over to another protocol: 2xx for
/// CONNECT (RFC 9110 section 9.3.6), 101 for any other request (section 15.2.2).
pub(crate) fn switches_protocols(is_connect: bool, status: StatusCode) -> bool {
    if is_connect {
        status.is_success()
    } else {
        status == StatusCode::SWITCHING_PROTOCOLS
    }
}

impl Upgrade<'_> {
    /// Sends `downstream` (with the rewritten target `uri` and `headers`, hop-by-hop headers
    /// already removed; its `Upgrade` is put back) to an endpoint of the name and, if the
    /// endpoint switches, splices the two connections.
    ///
    /// # Errors
    /// Binding, picking and connecting fail as for any request (`upstream-tls` included);
    /// `upstream-reset` when the endpoint fails before its response.
    pub(crate) async fn forward(
        self,
        mut downstream: Request<Incoming>,
        uri: Uri,
        mut headers: HeaderMap,
    ) -> Result<Forwarded, ProxyError> {
        let balancer = self.clients.bind(self.service, self.local).await?;
        let endpoint = balancer.pick_endpoint(&[])?;
        crate::record_in_span("endpoint", &endpoint.addr);
        let io = balancer.connect(&endpoint, Alpn::Http1).await?;
        let addr = endpoint.addr;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| {
                ProxyError::new(ErrorKind::UpstreamProtocol, format!("endpoint {addr}"))
                    .with_source(e)
            })?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upgraded upstream connection ended");
            }
        });
        let is_connect = downstream.method() == Method::CONNECT;
        if endpoint.is_proxy() {
            // A weft proxy counts the hop, so a loop of upgrades ends like any other.
            headers.insert(HOP_COUNT, HeaderValue::from(self.hops.saturating_add(1)));
        }
        if let Some(protocol) = downstream.headers().get(header::UPGRADE).cloned() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol);
        }
        // Taken first, so the extensions carried upstream (header spelling) leave it behind.
        let down = hyper::upgrade::on(&mut downstream);
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = downstream.method().clone();
        *req.headers_mut() = headers;
        *req.extensions_mut() = downstream.extensions().clone();
        *req.uri_mut() = if is_connect {
            // CONNECT carries an authority-form target (RFC 9112 section 3.2.3).
            uri.authority()
                .and_then(|a| Uri::try_from(a.as_str()).ok())
                .unwrap_or(uri)
        } else {
            uri
        };
        origin_form(&mut req);
        let mut rsp = match sender.send_request(req).await {
            Ok(rsp) => rsp,
            Err(e) => {
                balancer.record(&endpoint, false);
                let err = ProxyError::new(ErrorKind::UpstreamReset, format!("endpoint {addr}"));
                return Err(err.with_source(e));
            }
        };
        if switches_protocols(is_connect, rsp.status()) {
            let up = hyper::upgrade::on(&mut rsp);
            let (idle, counters) = (self.idle, self.counters);
            let tunnel = async move {
                match tokio::try_join!(down, up) {
                    Ok((down, up)) => {
                        copy_both_ways(TokioIo::new(down), TokioIo::new(up), idle, counters).await
                    }
                    Err(error) => tracing::debug!(%error, "upgrade failed"),
                }
            };
            self.tunnels.0.spawn(tunnel);
        }
        Ok(Forwarded::upgraded(
            rsp,
            self.classifier,
            balancer,
            endpoint,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_websocket_and_connect() {
        let ws = Request::builder()
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(is_upgrade(&ws, Carried::scan(ws.headers())));
        let plain = Request::builder()
            .header("upgrade", "h2c")
            .body(())
            .unwrap();
        assert!(
            !is_upgrade(&plain, Carried::scan(plain.headers())),
            "Upgrade without Connection: upgrade is ignored"
        );
        let connect = Request::builder()
            .method("CONNECT")
            .uri("db:5432")
            .body(())
            .unwrap();
        assert!(is_upgrade(&connect, Carried::scan(connect.headers())));
    }
}
