//! Unit tests of dispatch against in-memory endpoints: real hyper servers on in-memory
//! connections, scripted per address, reached through the same pool, connect path and
//! balancer as the network ones. What each test checks is the decision the dispatcher made
//! (retry, requeue, fresh connection, failfast, give up) and what it counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use weft_config::Config;
use weft_naming::{Dtab, Path};
use weft_telemetry::Metrics;

use super::*;
use crate::endpoint::memory::Dial;
use crate::endpoint::{ReplayError, Source};
use crate::error::Fault;

/// The two endpoints of `/svc/books` in these tests.
const A: &str = "127.0.0.1:1001";
const B: &str = "127.0.0.1:1002";

/// What an in-memory endpoint does with the `n`-th request (counting from 1) of all its
/// connections, which is the `on_conn`-th on its connection.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// Close the connection without answering.
    Close,
}

type Script = dyn Fn(usize, usize) -> Reply + Send + Sync;

/// An in-memory endpoint: a script, and what it saw.
struct App {
    /// `None`: connections are refused.
    script: Option<Box<Script>>,
    requests: AtomicUsize,
    connections: AtomicUsize,
}

impl App {
    fn serving(script: impl Fn(usize, usize) -> Reply + Send + Sync + 'static) -> Arc<App> {
        Arc::new(App {
            script: Some(Box::new(script)),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        })
    }

    fn ok() -> Arc<App> {
        App::serving(|_, _| Reply::Status(200))
    }

    fn refusing() -> Arc<App> {
        Arc::new(App {
            script: None,
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        })
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Serves one in-memory HTTP/1.1 connection.
    fn accept(self: &Arc<Self>) -> Option<tokio::io::DuplexStream> {
        self.script.as_ref()?;
        self.connections.fetch_add(1, Ordering::SeqCst);
        let (client, server) = tokio::io::duplex(64 * 1024);
        let app = self.clone();
        let on_conn = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                let on_conn = on_conn.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    let n = app.requests.fetch_add(1, Ordering::SeqCst) + 1;
                    // Read the whole request body first, as an application would.
                    let _ = req.into_body().collect().await;
                    let script = app.script.as_ref().expect("a serving app");
                    match script(n, on_conn) {
                        Reply::Status(code) => {
                            let mut rsp = Response::new(Full::new(Bytes::from_static(b"hi")));
                            *rsp.status_mut() = StatusCode::from_u16(code).expect("a status");
                            Ok(rsp)
                        }
                        Reply::Close => Err("closing without an answer"),
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), svc)
                .await;
        });
        Some(client)
    }
}

/// Clients for a router `r` whose `/svc/books` has endpoints A and B (from an `fs` file),
/// served by `apps`, with `client` and `service` settings.
struct Test {
    clients: Clients,
    metrics: Metrics,
    config: weft_config::RouterConfig,
    _dir: tempfile::TempDir,
}

impl Test {
    async fn new(apps: &[(&str, Arc<App>)], client: &str, service: &str) -> Test {
        let dir = tempfile::tempdir().expect("a temp dir");
        let lines: String = apps
            .iter()
            .map(|(addr, _)| addr.replace(':', " ") + "\n")
            .collect();
        std::fs::write(dir.path().join("books"), lines).expect("written");
        let yaml = format!(
            "namers: [{{kind: fs, prefix: /#/fs, rootDir: '{}'}}]\n\
             routers:\n  - label: r\n    servers: [{{port: 0}}]\n    dtab: /svc => /#/fs;\n    \
             client: {client}\n    service: {service}\n",
            dir.path().display()
        );
        let config = Config::parse(&yaml, "test.yaml").expect("a valid config");
        let rc = config.routers[0].clone();
        let metrics = Metrics::new("test");
        let by_addr: HashMap<SocketAddr, Arc<App>> = apps
            .iter()
            .map(|(a, app)| (a.parse().expect("an address"), app.clone()))
            .collect();
        let dial = Dial(Arc::new(move |addr| by_addr.get(&addr)?.accept()));
        let clients = Clients::new(
            &rc,
            crate::namers::interpreter(&config.namers).unwrap(),
            metrics.router("r"),
            None,
            None,
            Vec::new().into(),
        )
        .with_dial(dial);
        Test {
            clients,
            metrics,
            config: rc,
            _dir: dir,
        }
    }

    /// Sends one HTTP/1.1 request for `/svc/books` with `method` and `body`.
    async fn send(&self, method: Method, body: Source) -> Result<Forwarded, ProxyError> {
        self.send_as(method, Version::HTTP_11, body).await
    }

    /// Sends one request for `/svc/books` that arrived as `version`.
    async fn send_as(
        &self,
        method: Method,
        version: Version,
        body: Source,
    ) -> Result<Forwarded, ProxyError> {
        let name = Path::read("/svc/books").expect("a path");
        let service = self.clients.service(&name);
        let metrics = service.route_metrics("[default]");
        let cfg = &self.config.service;
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("books"));
        let dispatch = Dispatch {
            head: Head {
                method,
                uri: "http://books/".parse().expect("a URI"),
                version,
                headers,
                extensions: Extensions::new(),
                hops: 0,
            },
            body: ReplayBody::new(body, cfg.retries.buffer_bytes),
            classifier: Classifier {
                classifier: cfg.response_classifier.clone(),
                route_retryable: false,
            },
            service: &metrics,
            budget: &service.budget,
            backoff: cfg.retries.backoff,
            attempt_timeout: cfg.attempt_timeout,
        };
        dispatch.run(&self.clients, &Dtab::empty(), &service).await
    }

    /// Sends a GET without a body and returns its status, reading the response to its end
    /// (so its connection goes back to the pool).
    async fn get(&self) -> Result<u16, ErrorKind> {
        let fwd = self
            .send(Method::GET, empty())
            .await
            .map_err(|e| e.kind())?;
        let status = fwd.parts.status.as_u16();
        let _ = fwd.body.collect().await;
        Ok(status)
    }

    /// The sum of the samples of counter `name` (`_total` included) with `labels`.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn empty() -> Source {
    Source::Test(Box::pin(Empty::<Bytes>::new().map_err(|e| match e {})))
}

/// A request body that sends `chunk`, then fails as a client's broken upload does.
fn broken_upload(chunk: &'static [u8]) -> Source {
    let frames: Vec<Result<http_body::Frame<Bytes>, ReplayError>> = vec![
        Ok(http_body::Frame::data(Bytes::from_static(chunk))),
        Err("the client went away mid-upload".into()),
    ];
    Source::Test(Box::pin(StreamBody::new(futures_util::stream::iter(
        frames,
    ))))
}

const NO_EJECTION: &str = "{failureAccrual: {kind: none}}";
const RETRY_READS: &str =
    "{responseClassifier: retryableRead5XX, retries: {backoff: {kind: constant, delay: 1ms}}}";

/// The status of a response, or the kind of a proxy error.
fn outcome(r: Result<Forwarded, ProxyError>) -> Result<u16, ErrorKind> {
    r.map(|f| f.parts.status.as_u16()).map_err(|e| e.kind())
}

#[tokio::test]
async fn a_refused_connection_is_requeued_to_another_endpoint() {
    let (a, b) = (App::refusing(), App::ok());
    let t = Test::new(&[(A, a), (B, b.clone())], NO_EJECTION, "{}").await;
    // A is picked about half the time (unmeasured, it costs what B does): in 30 requests,
    // never is a one-in-a-billion chance.
    for _ in 0..30 {
        // Any method: the request never left.
        assert_eq!(outcome(t.send(Method::POST, empty()).await), Ok(200));
    }
    assert_eq!(b.requests(), 30, "every request reached B");
    assert!(
        t.counter("weft_requeues", &[]) >= 1.0,
        "requeues are counted"
    );
    assert_eq!(
        t.counter("weft_retries", &[]),
        0.0,
        "a requeue is not a retry"
    );
}

#[tokio::test]
async fn a_retryable_5xx_is_retried_within_the_budget_and_then_passed_on() {
    // The first response of each pair is a 503: a GET is retried and gets the 200.
    let a = App::serving(|n, _| Reply::Status(if n % 2 == 1 { 503 } else { 200 }));
    let t = Test::new(&[(A, a.clone())], NO_EJECTION, RETRY_READS).await;
    assert_eq!(outcome(t.send(Method::GET, empty()).await), Ok(200));
    assert_eq!(t.counter("weft_retries", &[]), 1.0);
    // A POST is not retried by retryableRead5XX: the 503 is the answer.
    assert_eq!(outcome(t.send(Method::POST, empty()).await), Ok(503));
    assert_eq!(t.counter("weft_retries", &[]), 1.0);

    // With an empty budget, the 503 goes downstream and the refusal is counted.
    let a = App::serving(|_, _| Reply::Status(503));
    let no_budget = "{responseClassifier: retryableRead5XX, retries: {budget: {percentCanRetry: 0.0, minRetriesPerSec: 0}}}";
    let t = Test::new(&[(A, a.clone())], NO_EJECTION, no_budget).await;
    assert_eq!(outcome(t.send(Method::GET, empty()).await), Ok(503));
    assert_eq!(a.requests(), 1);
    assert_eq!(
        t.counter("weft_budget_exhausted", &[("kind", "retry")]),
        1.0
    );
}

#[tokio::test]
async fn every_endpoint_ejected_is_still_tried_in_panic_mode() {
    let a = App::refusing();
    let client =
        "{failureAccrual: {kind: consecutiveFailures, failures: 1, backoff: {min: 60s, max: 60s}}}";
    let t = Test::new(&[(A, a)], client, "{}").await;
    let first = t.send(Method::GET, empty()).await.err().expect("refused");
    assert_eq!(first.kind(), ErrorKind::ConnectionRefused);
    assert!(first.blames_endpoint());
    // Ejected now, and the only one: it is tried anyway, not failed fast.
    let second = t.send(Method::GET, empty()).await.err().expect("refused");
    assert_eq!(second.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(t.counter("weft_panic_picks", &[]), 1.0);
}

#[tokio::test]
async fn a_stale_pooled_connection_loses_nothing_an_idempotent_request_can_redo() {
    // The app answers the first request on each connection and closes the connection on
    // the second, without an answer: the keep-alive race, on every reuse.
    let a = App::serving(|_, on_conn| match on_conn {
        1 => Reply::Status(200),
        _ => Reply::Close,
    });
    let client =
        "{failureAccrual: {kind: consecutiveFailures, failures: 1, backoff: {min: 60s, max: 60s}}}";
    let t = Test::new(&[(A, a.clone())], client, "{}").await;
    for _ in 0..5 {
        assert_eq!(t.get().await, Ok(200));
    }
    assert_eq!(
        t.counter("weft_requeues", &[]),
        4.0,
        "each reuse failed and went again on a fresh connection"
    );
    assert_eq!(a.connections(), 5);
    assert_eq!(
        t.counter("weft_ejections", &[]),
        0.0,
        "not the endpoint's failure"
    );
    assert_eq!(t.counter("weft_retries", &[]), 0.0, "no retry budget spent");

    // A POST that a stale connection may have written is not sent twice, and does not eject.
    let post = t.send(Method::POST, empty()).await.err().expect("lost");
    assert_eq!(post.kind(), ErrorKind::UpstreamReset);
    assert_eq!(post.retry(), Retry::Stale { written: true });
    assert_eq!(t.counter("weft_ejections", &[]), 0.0);
    assert_eq!(t.get().await, Ok(200), "the endpoint is still in use");
}

#[tokio::test]
async fn a_body_the_client_breaks_is_its_own_fault_and_never_ejects_the_endpoint() {
    let a = App::ok();
    let client =
        "{failureAccrual: {kind: consecutiveFailures, failures: 1, backoff: {min: 60s, max: 60s}}}";
    let t = Test::new(&[(A, a.clone())], client, RETRY_READS).await;
    for _ in 0..3 {
        let err = t
            .send(Method::PUT, broken_upload(b"part of it"))
            .await
            .err()
            .expect("the client's body broke");
        assert_eq!(err.kind(), ErrorKind::BadRequestBody);
        assert_eq!(err.kind().status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.fault(), Fault::Downstream);
        assert!(!err.blames_endpoint());
    }
    assert_eq!(t.counter("weft_ejections", &[]), 0.0);
    assert_eq!(
        t.counter("weft_retries", &[]),
        0.0,
        "a broken body is not sent again"
    );
    assert_eq!(t.get().await, Ok(200), "the endpoint is still in use");
}

#[tokio::test]
async fn an_endpoint_that_speaks_only_http1_gets_http2_requests_as_http1() {
    // The in-memory apps speak HTTP/1.1 only: an HTTP/2 request's preface is refused.
    let a = App::ok();
    let t = Test::new(&[(A, a.clone())], NO_EJECTION, "{}").await;
    let send = || async {
        let r = t.send_as(Method::GET, Version::HTTP_2, empty()).await;
        outcome(r)
    };
    assert_eq!(send().await, Ok(200), "the first one included");
    assert_eq!(send().await, Ok(200));
    assert_eq!(
        t.counter("weft_requeues", &[]),
        1.0,
        "learned once, on the first request"
    );
}
