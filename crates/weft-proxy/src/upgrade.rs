//! HTTP/1.1 Upgrade (WebSocket, RFC 9110 section 7.8) and CONNECT (section 9.3.6): the
//! request goes to the endpoint on a connection of its own; when the endpoint agrees (101, or
//! 2xx for CONNECT), both connections are handed over to a byte copier, end to end.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

use crate::error::{ErrorKind, ProxyError};
use crate::headers::Carried;
use crate::tcp::copy_both_ways;

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

/// Sends an upgrade request to `endpoint` and, if it switches, splices the two connections.
/// `head` is the rewritten request head (hop-by-hop headers already removed); the `Upgrade`
/// header of the original request is put back.
pub(crate) async fn forward(
    mut downstream: Request<Incoming>,
    head: (Method, http::Uri, HeaderMap),
    upgrade: Option<HeaderValue>,
    endpoint: SocketAddr,
    connect_timeout: Duration,
    idle: Duration,
    counters: [Counter; 2],
) -> Result<Response<Incoming>, ProxyError> {
    let connect_err = |kind, e: Option<std::io::Error>| {
        let err = ProxyError::new(kind, format!("endpoint {endpoint}"));
        match e {
            Some(e) => err.with_source(e),
            None => err,
        }
    };
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(endpoint)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(connect_err(ErrorKind::ConnectionRefused, Some(e)))
        }
        Ok(Err(e)) => return Err(connect_err(ErrorKind::ConnectFailed, Some(e))),
        Err(_) => return Err(connect_err(ErrorKind::ConnectTimeout, None)),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProxyError::new(ErrorKind::UpstreamProtocol, "handshake").with_source(e))?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%error, "upgraded upstream connection ended");
        }
    });
    let (method, uri, mut headers) = head;
    let is_connect = method == Method::CONNECT;
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.method_mut() = method;
    // CONNECT carries an authority-form target; everything else the origin form.
    *req.uri_mut() = if is_connect {
        uri.authority()
            .map(|a| http::Uri::try_from(a.as_str()))
            .transpose()
            .ok()
            .flatten()
            .unwrap_or(uri)
    } else {
        uri.path_and_query()
            .map(|p| http::Uri::try_from(p.as_str()))
            .transpose()
            .ok()
            .flatten()
            .unwrap_or(uri)
    };
    *req.headers_mut() = headers;
    let mut rsp = sender.send_request(req).await.map_err(|e| {
        ProxyError::new(ErrorKind::UpstreamReset, format!("endpoint {endpoint}")).with_source(e)
    })?;
    if switches_protocols(is_connect, rsp.status()) {
        let down = hyper::upgrade::on(&mut downstream);
        let up = hyper::upgrade::on(&mut rsp);
        tokio::spawn(async move {
            match tokio::try_join!(down, up) {
                Ok((down, up)) => {
                    copy_both_ways(TokioIo::new(down), TokioIo::new(up), idle, counters).await
                }
                Err(error) => tracing::debug!(%error, "upgrade failed"),
            }
        });
    }
    Ok(rsp)
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
