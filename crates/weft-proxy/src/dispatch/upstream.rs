//! Which HTTP version a request goes upstream with, decided per attempt from the client's
//! `protocol`, whether the endpoint is a peer proxy, and what the endpoint turned out to
//! speak (`docs/protocols.md`, "Upstream protocol").
//!
//! - A peer proxy (`port` transformer) gets every request over its one multiplexed HTTP/2
//!   connection; an HTTP/1 request is marked `l5d-orig-proto` so the peer restores it.
//! - `auto` sends each request with the version it arrived in, except HTTP/2 to an endpoint
//!   that refused HTTP/2: those go as HTTP/1.1.
//! - `http1` and `http2` send every request with that version.
//!
//! gRPC needs HTTP/2: to an endpoint that cannot take it, it fails with `upstream-protocol`.

use http::header::{HeaderValue, COOKIE};
use http::{Request, Version};
use weft_config::UpstreamProtocol;

use super::classify::is_grpc;
use super::Head;
use crate::endpoint::{Balancer, Endpoint, ReplayBody};
use crate::error::{ErrorKind, Fault, ProxyError, Retry};
use crate::headers::case;
use crate::headers::{absolute_form, HOP_COUNT, ORIG_PROTO};

/// Sets the version `req` (whose head is `head`) goes upstream with and adapts the head to
/// it; a request to a weft proxy gets the hop count that catches routing loops.
///
/// # Errors
/// `upstream-protocol` (502, the configuration's fault, not retried) for gRPC to an endpoint
/// that speaks HTTP/1.1 only or to a client configured `http1`, and for any request to an
/// HTTP/1.1-only endpoint when the client is configured `http2`.
pub(crate) fn prepare(
    req: &mut Request<ReplayBody>,
    head: &Head,
    balancer: &Balancer,
    endpoint: &Endpoint,
) -> Result<(), ProxyError> {
    if endpoint.is_proxy() {
        req.headers_mut()
            .insert(HOP_COUNT, HeaderValue::from(head.hops.saturating_add(1)));
    }
    let arrived = head.version;
    // Peer proxies always speak HTTP/2: what an endpoint refused says nothing about them.
    let h1_only = !balancer.is_meshed() && endpoint.is_http1_only();
    let h2 = match balancer.protocol() {
        _ if balancer.is_meshed() => true,
        UpstreamProtocol::Auto => arrived == Version::HTTP_2 && !h1_only,
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::Http2 if h1_only => {
            return Err(unsupported(format!(
                "client.protocol is http2, and endpoint {} speaks HTTP/1.1 only",
                endpoint.addr
            )))
        }
        UpstreamProtocol::Http2 => true,
    };
    if h2 {
        *req.version_mut() = Version::HTTP_2;
        let mut uri = std::mem::take(req.uri_mut());
        absolute_form(&mut uri, req.headers())?;
        *req.uri_mut() = uri;
        if arrived != Version::HTTP_2 && balancer.is_meshed() {
            // Proxy-to-proxy: the original protocol marked so the peer restores it towards
            // its application, and the header names' spelling with it.
            req.headers_mut()
                .insert(ORIG_PROTO, HeaderValue::from_static("HTTP/1.1"));
            if let Some(spelled) = case::spellings_of(req.extensions()) {
                req.headers_mut().insert(case::ORIG_HEADER_CASE, spelled);
            }
        }
        return Ok(());
    }
    if is_grpc(req.headers()) {
        let why = if h1_only {
            format!("endpoint {} speaks HTTP/1.1 only", endpoint.addr)
        } else {
            "client.protocol is http1".to_string()
        };
        return Err(unsupported(format!("gRPC needs HTTP/2, and {why}")));
    }
    *req.version_mut() = Version::HTTP_11;
    if arrived == Version::HTTP_2 {
        join_cookies(req.headers_mut());
    }
    Ok(())
}

fn unsupported(detail: String) -> ProxyError {
    ProxyError::new(ErrorKind::UpstreamProtocol, detail)
        .with_fault(Fault::Proxy)
        .with_retry(Retry::Never)
}

/// HTTP/2 may split `Cookie` into one field per cookie; HTTP/1.1 wants them on one line,
/// joined with "; " (RFC 9113 section 8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_split_by_http2_join_for_http1() {
        let mut h = http::HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "a=1; b=2");
    }
}
