//! A small HTTP client for the `weft dtab` verbs that talk to a control plane's API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long one API request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The control plane's default API address (namerd's port).
pub(crate) const DEFAULT_CONTROL: &str = "127.0.0.1:4180";

/// Where the control plane is and the credential for writes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ControlOpts {
    /// The control plane's HTTP API, `host:port` or `http://host:port`.
    #[arg(long, value_name = "ADDR", env = "WEFT_CONTROL", default_value = DEFAULT_CONTROL)]
    pub(crate) control: String,
    /// A file holding the bearer token for writes (the control plane's `auth.tokenFile`).
    #[arg(long, value_name = "FILE", env = "WEFT_CONTROL_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
}

/// One answer of the API.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// The version in the `ETag` header, without quotes.
    pub(crate) fn etag(&self) -> Option<String> {
        let v = self.headers.get(http::header::ETAG)?.to_str().ok()?;
        Some(v.trim_matches('"').to_owned())
    }

    /// The body's first line: the API's reason on errors.
    pub(crate) fn reason(&self) -> &str {
        self.body.lines().next().unwrap_or("").trim()
    }
}

/// Sends one request to the API at `control` (`host:port` or `http://host:port`).
/// `headers` are added as given; with `token_file`, `Authorization: Bearer` too.
pub(crate) async fn request(
    opts: &ControlOpts,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: Option<Bytes>,
) -> anyhow::Result<Answer> {
    let base = opts.control.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let uri: http::Uri = format!("{base}{path_and_query}")
        .parse()
        .with_context(|| format!("bad control address {:?}", opts.control))?;
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    if let Some(file) = &opts.token_file {
        let token = std::fs::read_to_string(file)
            .with_context(|| format!("--token-file {}", file.display()))?;
        req = req.header("authorization", format!("Bearer {}", token.trim()));
    }
    let req = req.body(Full::new(body.unwrap_or_default()))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let control = &opts.control;
    let rsp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| anyhow!("control plane {control}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("control plane {control}: unreachable"))?;
    let status = rsp.status();
    let headers = rsp.headers().clone();
    let body = rsp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("control plane {control}: body"))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
