//! A small HTTP client for the CLI commands that talk to a running proxy's admin server.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long a CLI command waits for one admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// GETs `path_and_query` from the admin server at `addr` (`host:port`) and returns the body
/// as text. Errors: unreachable admin, timeout, a non-2xx status (with the body's first line).
pub(crate) async fn get(addr: &str, path_and_query: &str) -> anyhow::Result<String> {
    let uri: http::Uri = format!("http://{addr}{path_and_query}")
        .parse()
        .with_context(|| format!("bad admin address {addr:?}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let rsp = tokio::time::timeout(ADMIN_TIMEOUT, client.get(uri))
        .await
        .with_context(|| format!("admin {addr}: no answer within {ADMIN_TIMEOUT:?}"))?
        .with_context(|| format!("admin {addr}: unreachable"))?;
    let status = rsp.status();
    let body = rsp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("admin {addr}: body"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        bail!(
            "admin {addr}: {status}: {}",
            text.lines().next().unwrap_or("")
        );
    }
    Ok(text)
}

/// `?k=v&k=v`, values percent-encoded but for unreserved characters (RFC 3986 section 2.3):
/// the query of an admin or control API request.
pub(crate) fn form_query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("?");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_./~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}
