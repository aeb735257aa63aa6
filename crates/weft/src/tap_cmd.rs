//! `weft tap`: watch live requests through a running proxy, as Linkerd's `tap` shows them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::output::Output;

/// Arguments of `weft tap`.
#[derive(Args, Debug)]
pub(crate) struct TapArgs {
    /// Admin address of the proxy to tap, e.g. 127.0.0.1:9990.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9990")]
    admin: String,
    /// Only requests of this router (e.g. outbound).
    #[arg(long)]
    router: Option<String>,
    /// Only requests for this logical name, e.g. /svc/books.
    #[arg(long)]
    service: Option<String>,
    /// Only requests of this service-profile route.
    #[arg(long)]
    route: Option<String>,
    /// Only requests with this authority (Host).
    #[arg(long)]
    authority: Option<String>,
    /// Only requests with this method.
    #[arg(long)]
    method: Option<String>,
    /// Only requests whose path starts with this prefix.
    #[arg(long)]
    path: Option<String>,
    /// Only responses with this status code.
    #[arg(long)]
    status: Option<u16>,
    /// At most this many requests per second are reported (the rest are skipped).
    #[arg(long, default_value_t = 100)]
    max_rps: u32,
    /// Stop after this many requests have ended.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Output format: text lines, or the JSON events as received.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub(crate) fn run(args: TapArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(tap(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft tap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn tap(args: TapArgs) -> anyhow::Result<()> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let filters = [
        ("router", &args.router),
        ("service", &args.service),
        ("route", &args.route),
        ("authority", &args.authority),
        ("method", &args.method),
        ("path", &args.path),
    ];
    for (k, v) in filters {
        if let Some(v) = v {
            query.append_pair(k, v);
        }
    }
    if let Some(s) = args.status {
        query.append_pair("status", &s.to_string());
    }
    query.append_pair("maxRps", &args.max_rps.to_string());
    let uri: http::Uri = format!("http://{}/tap?{}", args.admin, query.finish())
        .parse()
        .with_context(|| format!("bad admin address {:?}", args.admin))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let rsp = client
        .get(uri)
        .await
        .with_context(|| format!("admin {}: unreachable", args.admin))?;
    let status = rsp.status();
    let mut body = rsp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        bail!(
            "admin {}: {status}: {}",
            args.admin,
            String::from_utf8_lossy(&text).trim()
        );
    }
    let mut pending = Vec::new();
    let mut ended = 0u64;
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.context("tap stream")?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                eprintln!("weft tap: skipping a line that is not JSON");
                continue;
            };
            let text = match args.output {
                Output::Json => event.to_string(),
                Output::Text => render(&event),
            };
            // A closed stdout (`weft tap | head`) ends the tap quietly.
            if writeln!(out, "{text}").is_err() || out.flush().is_err() {
                return Ok(());
            }
            if event["type"] == "end" {
                ended += 1;
                if args.count.is_some_and(|n| ended >= n) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// One event as a line: `req id=.. proxy=.. src=.. :method=GET :authority=.. :path=..`, then
/// `rsp id=.. :status=200 latency=1684µs`, then `end id=.. duration=58µs response-length=3329B`.
fn render(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
    let n = |k: &str| e[k].as_u64().unwrap_or(0);
    let id = format!("id=0:{} proxy={}", n("id"), s("router"));
    match e["type"].as_str().unwrap_or("") {
        "req" => format!(
            "req {id} src={} tls={} :method={} :authority={} :path={} service={} route={}",
            s("src"),
            e["tls"].as_bool().unwrap_or(false),
            s("method"),
            s("authority"),
            s("path"),
            s("service"),
            s("route")
        ),
        "rsp" => {
            let mut line = format!(
                "rsp {id} dst={} :status={} latency={}µs",
                s("dst"),
                n("status"),
                n("latency_us")
            );
            if let Some(err) = e["proxy_error"].as_str() {
                line.push_str(&format!(" l5d-proxy-error={err}"));
            }
            line
        }
        "end" => {
            let mut line = format!(
                "end {id} duration={}µs response-length={}B",
                n("duration_us"),
                n("response_bytes")
            );
            if let Some(code) = e["grpc_status"].as_u64() {
                line.push_str(&format!(" grpc-status={code}"));
            }
            if let Some(err) = e["error"].as_str() {
                line.push_str(&format!(" error={err}"));
            }
            line
        }
        other => format!("{other} {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_familiar_lines() {
        let req = serde_json::json!({"type":"req","id":1,"router":"out","src":"127.0.0.1:48314","tls":false,
            "method":"GET","authority":"rates","path":"/rate","service":"/svc/rates","route":"[default]"});
        assert_eq!(
            render(&req),
            "req id=0:1 proxy=out src=127.0.0.1:48314 tls=false :method=GET :authority=rates :path=/rate service=/svc/rates route=[default]"
        );
        let rsp = serde_json::json!({"type":"rsp","id":1,"router":"out","dst":"127.0.0.1:8080","status":200,"latency_us":1684,"proxy_error":null});
        assert_eq!(
            render(&rsp),
            "rsp id=0:1 proxy=out dst=127.0.0.1:8080 :status=200 latency=1684µs"
        );
        let end = serde_json::json!({"type":"end","id":1,"router":"out","duration_us":58,"response_bytes":3329,"grpc_status":null,"error":null});
        assert_eq!(
            render(&end),
            "end id=0:1 proxy=out duration=58µs response-length=3329B"
        );
    }
}
