//! The one HTTP client shape the demo needs: `GET` a path on an address with a `Host`
//! header, a deadline, and a bounded body.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest body the demo reads (metrics pages are a few tens of KiB).
const MAX_BODY: usize = 4 << 20;

/// A pooled HTTP/1 client. Cheap to clone.
pub(crate) type Client = hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>;

/// A new pooled client; idle connections close before the proxies' keep-alive would.
pub(crate) fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(2))
        .build(connector)
}

/// A whole response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    /// The `l5d-proxy-error` header, when a proxy generated the response.
    pub(crate) proxy_error: Option<String>,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as text, for error messages (lossy, trimmed, at most 200 bytes).
    pub(crate) fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((i, _)) => format!("{}...", &text[..i]),
            None => text.to_owned(),
        }
    }
}

/// `GET http://{addr}{path}` with `Host: {host}`, the whole exchange bounded by `timeout`.
///
/// Errors name the address and what failed (connect, timeout, body).
pub(crate) async fn get(
    client: &Client,
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let uri = format!("http://{addr}{path}");
    let req = Request::get(&uri)
        .header(header::HOST, host)
        .body(Empty::new())
        .with_context(|| format!("bad request URI {uri}"))?;
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| anyhow!("GET {uri} (Host: {host}): {}", chain(&e)))?;
        let status = resp.status();
        let proxy_error = resp
            .headers()
            .get("l5d-proxy-error")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow!("GET {uri} (Host: {host}): reading body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            proxy_error,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("GET {uri} (Host: {host}): no response within {timeout:?}"))?
}

/// An error and its sources on one line (hyper-util's errors say little at the top level).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
