//! A real upstream HTTP server with scripted misbehaviour.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::BoxError;

/// Request header: when present (any value), the upstream answers with an [`Echo`] body.
pub const ECHO_HEADER: &str = "x-upstream-echo";
/// Request header: milliseconds to wait before answering this one request.
pub const DELAY_HEADER: &str = "x-upstream-delay-ms";

/// A real HTTP server on `127.0.0.1:0`, speaking HTTP/1.1 and HTTP/2 with prior knowledge
/// (hyper-util's `auto` server), spawned on the current tokio runtime.
///
/// Every response carries `x-upstream: <name>`; the default body is `hello from <name>\n`.
/// A request with the header `x-upstream-echo` (or every request, with [`Behaviour::echo`])
/// gets a JSON [`Echo`] of what the upstream received. The server stops accepting and
/// drops its connections when the `Upstream` is dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What an [`Upstream`] does with requests. Built with chained setters; the default answers
/// 200 at once with a body naming the upstream.
#[derive(Clone, Debug)]
pub struct Behaviour {
    status: StatusCode,
    delay: Duration,
    echo: bool,
    slow_body: Option<(usize, Duration)>,
    trailers: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    fault: Option<Fault>,
    idle_close: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Reset,
    Truncate,
}

/// What an upstream saw of one request, as returned in an echo body (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Echo {
    /// The upstream's name.
    pub upstream: String,
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The request target's authority (HTTP/2 `:authority`), if it had one.
    #[serde(default)]
    pub authority: Option<String>,
    /// Request headers, lowercase names, values in order of arrival.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Request body (lossy UTF-8).
    pub body: String,
    /// Request trailers, if any arrived.
    pub trailers: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    behaviour: Mutex<Behaviour>,
    requests: AtomicUsize,
    connections: AtomicUsize,
}

/// Per-connection state for the idle-close behaviour.
#[derive(Debug)]
struct ConnState {
    active: AtomicUsize,
    last_active: Mutex<Instant>,
}

/// A response body fed by a task through a channel, with an optional exact length.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    exact: Option<u64>,
}

// === impl Upstream ===

impl Upstream {
    /// Binds `127.0.0.1:0` and starts serving with `behaviour`. Must be called within a
    /// tokio runtime.
    pub async fn start(name: &str, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream local addr");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            behaviour: Mutex::new(behaviour),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Upstream { addr, shared, task }
    }

    /// Starts an upstream that answers 200 naming itself.
    pub async fn ok(name: &str) -> Upstream {
        Upstream::start(name, Behaviour::new()).await
    }

    /// The upstream's name, as sent in `x-upstream`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// An `fs` namer line for this upstream: `127.0.0.1 PORT\n`.
    pub fn fs_line(&self) -> String {
        format!("{} {}\n", self.addr.ip(), self.addr.port())
    }

    /// Requests received so far (including those answered with a fault).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Replaces the behaviour for requests (and connections) from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().expect("behaviour lock") = behaviour;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Dropping the accept task drops the listener and the JoinSet of connections.
        self.task.abort();
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released), for "connection
/// refused" cases. Another process could take it in between; tests accept that tiny risk.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind for a closed port");
    l.local_addr().expect("local addr").port()
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                conns.spawn(serve_conn(stream, shared.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_conn(mut stream: TcpStream, shared: Arc<Shared>) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _ = stream.set_nodelay(true);
    let behaviour = shared.behaviour();
    if behaviour.fault == Some(Fault::Reset) {
        // Wait for (the start of) a request, then reset: SO_LINGER 0 makes close send RST.
        let mut buf = vec![0u8; 64 * 1024];
        if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
            shared.requests.fetch_add(1, Ordering::SeqCst);
        }
        let _ = stream.set_zero_linger();
        drop(stream);
        return;
    }
    let conn_state = Arc::new(ConnState {
        active: AtomicUsize::new(0),
        last_active: Mutex::new(Instant::now()),
    });
    let svc = {
        let shared = shared.clone();
        let conn_state = conn_state.clone();
        service_fn(move |req| handle(req, shared.clone(), conn_state.clone()))
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let Some(idle) = behaviour.idle_close else {
        let _ = conn.await;
        return;
    };
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep(idle / 4), if !closing => {
                let last = *conn_state.last_active.lock().expect("conn state lock");
                if conn_state.active.load(Ordering::SeqCst) == 0 && last.elapsed() >= idle {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
) -> Result<Response<ChannelBody>, Infallible> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    conn.active.fetch_add(1, Ordering::SeqCst);
    let resp = respond(req, &shared).await;
    *conn.last_active.lock().expect("conn state lock") = Instant::now();
    conn.active.fetch_sub(1, Ordering::SeqCst);
    Ok(resp)
}

async fn respond(req: Request<Incoming>, shared: &Shared) -> Response<ChannelBody> {
    let b = shared.behaviour();
    let echo_wanted = b.echo || req.headers().contains_key(ECHO_HEADER);
    let delay = req
        .headers()
        .get(DELAY_HEADER)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(b.delay);
    let (parts, body) = req.into_parts();
    let (req_body, req_trailers) = match body.collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned();
            (c.to_bytes(), trailers)
        }
        Err(e) => (Bytes::from(format!("<body error: {e}>")), None),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let payload = if echo_wanted {
        let echo = Echo {
            upstream: shared.name.clone(),
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "/".into()),
            version: format!("{:?}", parts.version),
            authority: parts.uri.authority().map(|a| a.to_string()),
            headers: header_map(&parts.headers),
            body: String::from_utf8_lossy(&req_body).into_owned(),
            trailers: req_trailers.as_ref().map(header_map),
        };
        Bytes::from(serde_json::to_vec(&echo).expect("echo serializes"))
    } else {
        Bytes::from(format!("hello from {}\n", shared.name))
    };

    let (tx, rx) = mpsc::channel(4);
    let streaming = b.slow_body.is_some() || !b.trailers.is_empty();
    let exact = (!streaming).then_some(payload.len() as u64);
    let mut resp = Response::new(ChannelBody { rx, exact });
    *resp.status_mut() = b.status;
    let h = resp.headers_mut();
    h.insert("x-upstream", hv(&shared.name));
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(if echo_wanted {
            "application/json"
        } else {
            "text/plain"
        }),
    );
    for (k, v) in &b.headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            hv(v),
        );
    }
    tokio::spawn(produce_body(payload, b, tx));
    resp
}

async fn produce_body(
    payload: Bytes,
    b: Behaviour,
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) {
    if b.fault == Some(Fault::Truncate) {
        // Headers went out with the full length; send half, then fail the body.
        // The pause lets the headers and the first half reach the peer before the failure,
        // so it sees a failure mid-body, not before the response.
        let half = payload.slice(..payload.len() / 2);
        let _ = tx.send(Ok(Frame::data(half))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tx.send(Err("truncated on cue".into())).await;
        return;
    }
    match b.slow_body {
        Some((chunks, interval)) if chunks > 0 => {
            let size = payload.len().div_ceil(chunks).max(1);
            let mut rest = payload;
            while !rest.is_empty() {
                let n = size.min(rest.len());
                let chunk = rest.split_to(n);
                if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
                if !rest.is_empty() {
                    tokio::time::sleep(interval).await;
                }
            }
        }
        _ => {
            if !payload.is_empty() && tx.send(Ok(Frame::data(payload))).await.is_err() {
                return;
            }
        }
    }
    if !b.trailers.is_empty() {
        let mut map = HeaderMap::new();
        for (k, v) in &b.trailers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("trailer name"),
                hv(v),
            );
        }
        let _ = tx.send(Ok(Frame::trailers(map))).await;
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("valid header value")
}

fn header_map(h: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in h {
        out.entry(k.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    out
}

// === impl Shared ===

impl Shared {
    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().expect("behaviour lock").clone()
    }
}

// === impl Behaviour ===

impl Behaviour {
    /// Answer 200 at once with `hello from <name>\n`.
    pub fn new() -> Behaviour {
        Behaviour {
            status: StatusCode::OK,
            delay: Duration::ZERO,
            echo: false,
            slow_body: None,
            trailers: Vec::new(),
            headers: Vec::new(),
            fault: None,
            idle_close: None,
        }
    }

    /// Answer with this status code.
    pub fn status(mut self, code: u16) -> Self {
        self.status = StatusCode::from_u16(code).expect("valid status code");
        self
    }

    /// Wait this long (after reading the whole request) before sending response headers.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Answer every request with an [`Echo`] JSON body.
    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }

    /// Send the body in `chunks` pieces, `interval` apart (chunked / DATA frames).
    pub fn slow_body(mut self, chunks: usize, interval: Duration) -> Self {
        self.slow_body = Some((chunks, interval));
        self
    }

    /// End the response with these trailers.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Add this response header (appended; may repeat).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Read the start of each request, then reset the TCP connection (RST, no response).
    pub fn reset(mut self) -> Self {
        self.fault = Some(Fault::Reset);
        self
    }

    /// Send response headers announcing the full length and half the body, then, 100 ms
    /// later, fail the body (HTTP/1: the connection closes mid-body; HTTP/2: RST_STREAM).
    pub fn truncate(mut self) -> Self {
        self.fault = Some(Fault::Truncate);
        self
    }

    /// Close keep-alive connections that have been idle this long.
    pub fn idle_close(mut self, d: Duration) -> Self {
        self.idle_close = Some(d);
        self
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::new()
    }
}

// === impl Echo ===

impl Echo {
    /// Parses an echo body.
    pub fn parse(body: &[u8]) -> Echo {
        serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "not an echo body ({e}): {:?}",
                String::from_utf8_lossy(body)
            )
        })
    }

    /// All values of a request header joined with `, ` (as RFC 9110 allows for lists).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|vs| vs.join(", "))
    }

    /// Whether the request had this header.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.contains_key(&name.to_ascii_lowercase())
    }

    /// A request trailer's value, if trailers arrived.
    pub fn trailer(&self, name: &str) -> Option<String> {
        self.trailers
            .as_ref()?
            .get(&name.to_ascii_lowercase())
            .map(|vs| vs.join(", "))
    }
}

// === impl ChannelBody ===

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    #[tokio::test]
    async fn upstream_answers_http1_and_http2() {
        let up = Upstream::ok("books").await;
        for client in [Client::http1(up.addr()), Client::http2(up.addr())] {
            let r = client.get("books", "/").await.expect("request");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-upstream"), Some("books"));
            assert_eq!(r.text(), "hello from books\n");
        }
        assert_eq!(up.requests(), 2);
    }

    #[tokio::test]
    async fn upstream_echoes_headers_body_and_trailers_over_h2() {
        let up = Upstream::start("e", Behaviour::new().echo().trailer("grpc-status", "0")).await;
        let mut trailers = HeaderMap::new();
        trailers.insert("x-req-trailer", HeaderValue::from_static("t1"));
        let req = Client::request("e", "/p?q=1")
            .method("POST")
            .header("via", "1.1 other")
            .body(TestBodyAlias::with_trailers("payload", trailers))
            .expect("request");
        let r = Client::http2(up.addr()).send(req).await.expect("send");
        let echo = r.echo();
        assert_eq!(echo.method, "POST");
        assert_eq!(echo.path, "/p?q=1");
        assert_eq!(echo.version, "HTTP/2.0");
        assert_eq!(echo.header("via").as_deref(), Some("1.1 other"));
        assert_eq!(echo.body, "payload");
        assert_eq!(echo.trailer("x-req-trailer").as_deref(), Some("t1"));
        assert_eq!(r.trailer("grpc-status"), Some("0"));
    }

    use crate::TestBody as TestBodyAlias;

    #[tokio::test]
    async fn upstream_delays_and_streams_slowly() {
        let up = Upstream::start(
            "slow",
            Behaviour::new()
                .delay(Duration::from_millis(200))
                .slow_body(3, Duration::from_millis(50)),
        )
        .await;
        let start = Instant::now();
        let r = Client::http1(up.addr())
            .get("slow", "/")
            .await
            .expect("req");
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.text(), "hello from slow\n");
    }

    #[tokio::test]
    async fn upstream_resets_and_truncates_on_cue() {
        let up = Upstream::start("r", Behaviour::new().reset()).await;
        assert!(Client::http1(up.addr()).get("r", "/").await.is_err());
        assert_eq!(up.requests(), 1);
        up.set_behaviour(Behaviour::new().truncate());
        assert!(Client::http1(up.addr()).get("r", "/").await.is_err());
        assert!(Client::http2(up.addr()).get("r", "/").await.is_err());
    }

    #[tokio::test]
    async fn upstream_closes_idle_connections() {
        let up =
            Upstream::start("i", Behaviour::new().idle_close(Duration::from_millis(100))).await;
        let mut s = TcpStream::connect(up.addr()).await.expect("connect");
        use tokio::io::AsyncWriteExt;
        s.write_all(b"GET / HTTP/1.1\r\nhost: i\r\n\r\n")
            .await
            .expect("write");
        let mut all = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
        assert!(read.is_ok(), "idle connection was not closed");
        assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    }
}
