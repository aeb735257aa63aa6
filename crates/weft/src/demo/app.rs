//! `weft demo-app`: one instance of the demo's currency app. `web` and `converter` call the
//! next service through their sidecar's outbound router (`Host` names the service); `rates`
//! answers from a fixed table after a configurable delay.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::http::{self as client, Client};
use super::layout::Service;

/// How long an app waits for the service it calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Value of one unit in US dollars: a small, fixed table so answers are deterministic.
const USD_VALUE: &[(&str, f64)] = &[
    ("USD", 1.0),
    ("EUR", 1.08),
    ("GBP", 1.27),
    ("CHF", 1.12),
    ("JPY", 0.0067),
];

/// Arguments of one demo service instance (`weft demo-app`, started by `weft demo`).
#[derive(Args, Debug)]
pub(crate) struct AppArgs {
    /// Which service this instance is.
    #[arg(long, value_enum)]
    service: Service,
    /// Address to serve on.
    #[arg(long)]
    listen: SocketAddr,
    /// The sidecar's outbound router, through which web and converter call the next service.
    #[arg(long)]
    outbound: Option<SocketAddr>,
    /// Fixed response delay in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Random extra delay, up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Instance name reported in answers (default: the service name).
    #[arg(long)]
    name: Option<String>,
    /// Exit when stdin closes: the parent demo died without stopping us.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

/// Runs one app instance until SIGTERM/SIGINT (or stdin EOF when asked).
pub(crate) fn run_app(args: AppArgs) -> ExitCode {
    if args.service != Service::Rates && args.outbound.is_none() {
        eprintln!("weft demo-app: --outbound is required for {}", args.service);
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(serve(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft demo-app: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every request handler needs.
struct App {
    service: Service,
    name: String,
    outbound: Option<SocketAddr>,
    delay_ms: u64,
    jitter_ms: u64,
    client: Client,
}

async fn serve(args: AppArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let app = Arc::new(App {
        service: args.service,
        name: args.name.unwrap_or_else(|| args.service.name().to_owned()),
        outbound: args.outbound,
        delay_ms: args.delay_ms,
        jitter_ms: args.jitter_ms,
        client: client::client(),
    });
    // The parent waits for this line instead of polling the port.
    let line = json!({"event": "listening", "addr": listener.local_addr()?.to_string()});
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);

    let stop = stopped(args.exit_on_stdin_eof);
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(app.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Resolves on SIGTERM or SIGINT, or on stdin EOF when `watch_stdin`.
async fn stopped(watch_stdin: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let stdin_closed = async move {
        if !watch_stdin {
            return std::future::pending().await;
        }
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        // A plain thread: a blocking read must not hold up the runtime's shutdown.
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        });
        let _ = closed_rx.await;
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return stdin_closed.await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stdin_closed => {}
    }
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => (StatusCode::OK, json!({"ok": true})),
        (&Method::GET, "/rate") if app.service == Service::Rates => rate(&app, &query).await,
        (&Method::GET, "/convert") if app.service != Service::Rates => convert(&app, &query).await,
        _ => (
            StatusCode::NOT_FOUND,
            json!({"error": format!("{} serves no {} {}", app.name, req.method(), req.uri().path())}),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// rates: `GET /rate?from=EUR&to=USD`.
async fn rate(app: &App, query: &str) -> (StatusCode, Value) {
    let jitter = if app.jitter_ms > 0 {
        fastrand::u64(0..=app.jitter_ms)
    } else {
        0
    };
    tokio::time::sleep(Duration::from_millis(app.delay_ms + jitter)).await;
    let (from, to) = (param(query, "from"), param(query, "to"));
    match (usd_value(from), usd_value(to)) {
        (Some(f), Some(t)) => (
            StatusCode::OK,
            json!({"from": from, "to": to, "rate": round(f / t, 6), "replica": app.name}),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            json!({"error": format!("unknown currency pair {from:?} -> {to:?}")}),
        ),
    }
}

/// web and converter: `GET /convert?from=EUR&to=USD&amount=100`. web relays to converter;
/// converter asks rates and multiplies. Upstream failures become 502, client errors pass.
async fn convert(app: &App, query: &str) -> (StatusCode, Value) {
    let amount: f64 = match param(query, "amount").parse() {
        Ok(a) if f64::is_finite(a) && a >= 0.0 => a,
        _ => return (StatusCode::BAD_REQUEST, json!({"error": "bad amount"})),
    };
    let (from, to) = (param(query, "from"), param(query, "to"));
    let path = match app.service {
        Service::Web => format!("/convert?from={from}&to={to}&amount={amount}"),
        _ => format!("/rate?from={from}&to={to}"),
    };
    let (Some(outbound), Some(next)) = (app.outbound, app.service.downstream()) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "no outbound"}),
        );
    };
    let reply = match client::get(&app.client, outbound, next.name(), &path, CALL_TIMEOUT).await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, json!({"error": format!("{e:#}")})),
    };
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if !reply.status.is_success() {
        let status = if reply.status.is_client_error() {
            reply.status
        } else {
            StatusCode::BAD_GATEWAY
        };
        let why = reply.proxy_error.clone().unwrap_or_else(|| reply.text());
        let error = format!("{next} answered {}: {why}", reply.status);
        return (status, json!({"error": error}));
    }
    match app.service {
        Service::Web => (StatusCode::OK, body),
        _ => match body["rate"].as_f64() {
            Some(rate) => (
                StatusCode::OK,
                json!({"from": from, "to": to, "amount": amount, "result": round(amount * rate, 2),
                       "rate": rate, "replica": body["replica"]}),
            ),
            None => (
                StatusCode::BAD_GATEWAY,
                json!({"error": format!("rates sent no rate: {}", reply.text())}),
            ),
        },
    }
}

/// `x` rounded to `digits` decimals, so answers read like money rather than float noise.
fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn usd_value(code: &str) -> Option<f64> {
    USD_VALUE.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
}

/// A query parameter's raw value (`""` when absent). The demo's values are plain ASCII
/// codes and numbers, so no percent-decoding is needed.
fn param<'q>(query: &'q str, key: &str) -> &'q str {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map_or("", |(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_finds_values() {
        let q = "from=EUR&to=USD&amount=100";
        assert_eq!(param(q, "to"), "USD");
        assert_eq!(param(q, "amount"), "100");
        assert_eq!(param(q, "missing"), "");
    }

    #[test]
    fn rate_table_is_consistent() {
        let eur_usd = usd_value("EUR").unwrap() / usd_value("USD").unwrap();
        assert!((eur_usd - 1.08).abs() < 1e-12);
        assert_eq!(usd_value("XXX"), None);
    }
}
