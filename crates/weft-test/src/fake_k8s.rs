//! [`FakeKube`]: a Kubernetes API server for EndpointSlices, for the `k8s` namer's tests.
//!
//! The real API server cannot be installed here, so this one follows the documented API
//! ("API Concepts: efficient detection of changes", and the EndpointSlice v1 reference) for
//! the two requests the namer makes:
//!
//! - list: `GET /apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices?labelSelector=...`
//!   answers an `EndpointSliceList` whose `metadata.resourceVersion` is the store's current
//!   version (pagination parameters are accepted and everything fits one page);
//! - watch: the same with `watch=true&resourceVersion=N&allowWatchBookmarks=true` streams
//!   newline-delimited JSON watch events `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR",
//!   "object":{...}}`: first every change after `N` still in the history, then live changes.
//!   A version older than the history ([`FakeKube::expire_watches`] compacts it) gets an
//!   `ERROR` event whose object is a `Status` with `code: 410` (reason `Expired`) and the
//!   stream ends, which is what the API server does for "too old resource version": the
//!   client must list again.
//!
//! Label selectors support the equality form (`k=v`, `k==v`, comma separated). Objects are
//! stored as given, with `metadata.resourceVersion` set on every change. The server can be
//! stopped (every connection closed) and started again on the same port, and raw lines (a
//! malformed event) can be sent to the live watches.
//!
//! Like the API server it can serve HTTPS ([`FakeKube::start_tls`]) and require a bearer
//! token ([`FakeKube::require_token`]): a request without `Authorization: Bearer <token>` is
//! answered `401 Unauthorized` with a `Status` body, as the API server answers a request it
//! cannot authenticate.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
/// The JSON objects the fake stores and serves (`serde_json::Value`).
pub use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

const PREFIX: &str = "/apis/discovery.k8s.io/v1/namespaces/";

/// A fake Kubernetes API server on `127.0.0.1` serving EndpointSlices (see the module docs).
/// Dropping it stops it.
pub struct FakeKube {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Mutex<Option<JoinHandle<()>>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

#[derive(Default)]
struct State {
    /// The store's resource version: bumped on every change.
    rv: u64,
    /// Current objects by (namespace, name).
    objects: BTreeMap<(String, String), Value>,
    /// Every change still remembered: (resource version, namespace, event type, object).
    history: Vec<(u64, String, &'static str, Value)>,
    /// Watches from a version below this get 410 Gone.
    compacted: u64,
    /// Changes are sent to live watches (see [`FakeKube::set_announce`]).
    quiet: bool,
    /// Accept requests and never answer them.
    hang: bool,
    /// Answer a watch from a compacted version with HTTP 410 rather than an `ERROR` event.
    gone_as_http: bool,
    watches: Vec<Watch>,
    /// Every request's path and query, in order.
    requests: Vec<String>,
    /// The bearer token every request must carry, if any.
    token: Option<String>,
    /// Requests refused for a missing or wrong token.
    unauthorized: usize,
}

struct Watch {
    namespace: String,
    selector: Vec<(String, String)>,
    tx: mpsc::UnboundedSender<Bytes>,
}

type Body = BoxBody<Bytes, Infallible>;

impl FakeKube {
    /// Starts an empty server on an ephemeral port.
    pub async fn start() -> FakeKube {
        FakeKube::start_with(None).await
    }

    /// Starts an empty server on an ephemeral port that speaks HTTPS only, with `config`
    /// (its certificate should be for the IP address `127.0.0.1`).
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> FakeKube {
        FakeKube::start_with(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> FakeKube {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let fake = FakeKube {
            addr,
            state: Arc::default(),
            server: Mutex::new(None),
            tls,
        };
        fake.serve(listener);
        fake
    }

    /// `http://127.0.0.1:<port>` (`https://` with TLS), the `url` to configure.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// With `Some(token)`, every request must carry `Authorization: Bearer <token>`; others
    /// are answered 401 (and counted, see [`FakeKube::unauthorized`]).
    pub fn require_token(&self, token: Option<&str>) {
        self.lock().token = token.map(str::to_owned);
    }

    /// Requests refused so far for a missing or wrong bearer token.
    pub fn unauthorized(&self) -> usize {
        self.lock().unauthorized
    }

    /// Creates or replaces the EndpointSlice `object` (its `metadata.name` is the key) in
    /// `namespace`: an `ADDED` or `MODIFIED` event.
    pub fn apply(&self, namespace: &str, mut object: Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let mut s = self.lock();
        s.rv += 1;
        object["metadata"]["namespace"] = json!(namespace);
        object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let key = (namespace.to_string(), name);
        let kind = if s.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        s.objects.insert(key, object.clone());
        s.record(namespace, kind, object);
    }

    /// Deletes the EndpointSlice `name` in `namespace`: a `DELETED` event.
    pub fn delete(&self, namespace: &str, name: &str) {
        let mut s = self.lock();
        let Some(mut object) = s.objects.remove(&(namespace.to_string(), name.to_string())) else {
            return;
        };
        s.rv += 1;
        object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        s.record(namespace, "DELETED", object);
    }

    /// With `false`, later changes reach neither live watches nor the history, as if the
    /// watch cache fell behind; [`FakeKube::expire_watches`] then makes clients list again.
    pub fn set_announce(&self, announce: bool) {
        self.lock().quiet = !announce;
    }

    /// With `true`, requests are accepted (connections too) and never answered: a server that
    /// hangs.
    pub fn set_hang(&self, hang: bool) {
        self.lock().hang = hang;
    }

    /// With `true`, a watch from a compacted version is answered `410 Gone` with a `Status`
    /// body (the other form the API documents) instead of a 200 stream with an `ERROR` event.
    pub fn set_gone_as_http(&self, http: bool) {
        self.lock().gone_as_http = http;
    }

    /// Compacts the history (watches from any version before now get 410 Gone) and ends every
    /// live watch with an `ERROR` event carrying a 410 `Status`.
    pub fn expire_watches(&self) {
        let mut s = self.lock();
        s.compacted = s.rv + 1;
        s.history.clear();
        let line = gone_line(s.rv);
        for w in s.watches.drain(..) {
            let _ = w.tx.send(line.clone());
        }
    }

    /// Compacts the history like [`FakeKube::expire_watches`], but ends live watches
    /// normally: their clients find out when they watch again from their old version.
    pub fn compact_and_end_watches(&self) {
        let mut s = self.lock();
        s.compacted = s.rv + 1;
        s.history.clear();
        s.watches.clear();
    }

    /// Ends every live watch normally (as the API server does when a watch's
    /// `timeoutSeconds` runs out); clients watch again from their last resource version.
    pub fn end_watches(&self) {
        self.lock().watches.clear();
    }

    /// Sends a `BOOKMARK` event at the current resource version to every live watch.
    pub fn bookmark(&self) {
        let s = self.lock();
        let event = json!({
            "type": "BOOKMARK",
            "object": {
                "kind": "EndpointSlice",
                "apiVersion": "discovery.k8s.io/v1",
                "metadata": {"resourceVersion": s.rv.to_string()},
                "addressType": "IPv4",
                "endpoints": null,
            }
        });
        s.broadcast_all(line(&event));
    }

    /// Sends `raw` (a newline is added) to every live watch as it is, e.g. a malformed event.
    pub fn send_raw(&self, raw: &str) {
        let mut bytes = raw.as_bytes().to_vec();
        bytes.push(b'\n');
        self.lock().broadcast_all(Bytes::from(bytes));
    }

    /// Live watches now.
    pub fn watches(&self) -> usize {
        let mut s = self.lock();
        s.watches.retain(|w| !w.tx.is_closed());
        s.watches.len()
    }

    /// Every request so far (path and query), in order.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Requests so far that were answered lists (not watches).
    pub fn lists(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| !r.contains("watch=true") && !r.contains("watch=1"))
            .filter(|r| !r.starts_with("(unanswered)"))
            .count()
    }

    /// Stops listening and closes every connection (the store is kept).
    pub fn stop(&self) {
        if let Some(server) = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            server.abort();
        }
        self.lock().watches.clear();
    }

    /// Listens again on the same port after [`FakeKube::stop`].
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let tls = self.tls.clone();
        let server = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, tls) = (state.clone(), tls.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            let hang = lock(&state).hang;
                            if hang {
                                lock(&state)
                                    .requests
                                    .push(format!("(unanswered) {}", req.uri()));
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, Infallible>(handle(&state, req))
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(server);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.stop();
    }
}

impl State {
    fn record(&mut self, namespace: &str, kind: &'static str, object: Value) {
        if self.quiet {
            return;
        }
        let event = line(&json!({"type": kind, "object": object}));
        self.watches.retain(|w| {
            if w.namespace != namespace || !matches(&w.selector, &object) {
                return !w.tx.is_closed();
            }
            w.tx.send(event.clone()).is_ok()
        });
        self.history
            .push((self.rv, namespace.to_string(), kind, object));
    }

    fn broadcast_all(&self, line: Bytes) {
        for w in &self.watches {
            let _ = w.tx.send(line.clone());
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Body> {
    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
    let uri = req.uri().clone();
    s.requests.push(
        uri.path_and_query()
            .map_or(String::new(), |p| p.to_string()),
    );
    if let Some(token) = &s.token {
        let expected = format!("Bearer {token}");
        let given = req.headers().get(http::header::AUTHORIZATION);
        if given.map(|v| v.as_bytes()) != Some(expected.as_bytes()) {
            s.unauthorized += 1;
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
    }
    let namespace = uri
        .path()
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix("/endpointslices"))
        .filter(|ns| !ns.contains('/'));
    let Some(namespace) = namespace else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let query: BTreeMap<String, String> = form_urlencoded_pairs(uri.query().unwrap_or_default());
    let selector = match parse_selector(query.get("labelSelector").map_or("", |s| s)) {
        Some(sel) => sel,
        None => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "unable to parse requirement",
            )
        }
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if !watch {
        let items: Vec<Value> = s
            .objects
            .iter()
            .filter(|((ns, _), o)| ns == namespace && matches(&selector, o))
            .map(|(_, o)| o.clone())
            .collect();
        let list = json!({
            "kind": "EndpointSliceList",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": s.rv.to_string()},
            "items": items,
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(list.to_string())).boxed())
            .expect("valid response");
    }
    let from: u64 = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => 0,
        Some(v) => match v.parse() {
            Ok(v) => v,
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid resourceVersion",
                )
            }
        },
    };
    let (tx, rx) = mpsc::unbounded_channel();
    if from == 0 {
        // "Start at most recent": synthetic ADDED events for the current state.
        for ((ns, _), o) in &s.objects {
            if ns == namespace && matches(&selector, o) {
                let _ = tx.send(line(&json!({"type": "ADDED", "object": o})));
            }
        }
    } else if from + 1 < s.compacted && s.gone_as_http {
        let message = format!("too old resource version: {from}");
        return status(StatusCode::GONE, "Expired", &message);
    } else if from + 1 < s.compacted {
        let _ = tx.send(gone_line(from));
        drop(tx);
        return stream_response(rx);
    } else {
        for (rv, ns, kind, o) in &s.history {
            if *rv > from && ns == namespace && matches(&selector, o) {
                let _ = tx.send(line(&json!({"type": kind, "object": o})));
            }
        }
    }
    s.watches.push(Watch {
        namespace: namespace.to_string(),
        selector,
        tx,
    });
    stream_response(rx)
}

fn stream_response(rx: mpsc::UnboundedReceiver<Bytes>) -> Response<Body> {
    let stream = futures_stream(rx);
    Response::builder()
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response")
}

fn futures_stream(
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))))
}

/// A `Status` object answered with `code` (the API's error body).
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("valid response")
}

/// The `ERROR` watch event for a resource version that is too old.
fn gone_line(rv: u64) -> Bytes {
    line(&json!({
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("too old resource version: {rv}"),
            "reason": "Expired",
            "code": 410,
        }
    }))
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn matches(selector: &[(String, String)], object: &Value) -> bool {
    selector
        .iter()
        .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v))
}

/// `k=v,k2==v2` into pairs; `None` for a form this fake does not support.
fn parse_selector(s: &str) -> Option<Vec<(String, String)>> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (k, v) = r.split_once("==").or_else(|| r.split_once('='))?;
            (!k.ends_with('!')).then(|| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn form_urlencoded_pairs(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An EndpointSlice of `service` named `name`, shaped like the API reference's: one port
/// `{name: port_name, port, protocol: TCP}` and one endpoint per `(ip, ready, terminating,
/// node)`, zone `zone-a`.
pub fn endpoint_slice(
    name: &str,
    service: &str,
    port_name: &str,
    port: u16,
    endpoints: &[(&str, bool, bool, &str)],
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready, terminating, node)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
                "nodeName": node,
                "zone": "zone-a",
            })
        })
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    })
}
