//! gRPC over mutual TLS, end to end with tonic on both sides: a tonic client -> outbound weft
//! (plaintext HTTP/2) -> mesh TLS -> inbound weft (`requireTls`, only `web` authorized) -> a
//! tonic gRPC server (h2c). No protoc: the messages are `prost::Message` structs, the client
//! is `tonic::client::Grpc` with explicit paths, the server a hand-written service around
//! `tonic::server::Grpc`.

mod support;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use http::Uri;
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::pki::{handshakes, Mesh, WEB};
use support::*;
use tokio::net::TcpListener;
use tonic::metadata::MetadataMap;
use tonic::server::{StreamingService, UnaryService};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

const GET: &str = "/weft.test.Books/Get";
const CHAT: &str = "/weft.test.Books/Chat";
/// The title the server answers NOT_FOUND for.
const MISSING: &str = "missing";

#[derive(Clone, PartialEq, prost::Message)]
struct BookRequest {
    #[prost(string, tag = "1")]
    title: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Book {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(uint32, tag = "2")]
    seq: u32,
    #[prost(bytes = "vec", tag = "3")]
    body: Vec<u8>,
}

/// The app: `Get` (unary) and `Chat` (bidirectional: one reply per message) over h2c.
/// Counts the calls that reached it.
struct App {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let calls = counter.clone();
                let svc = hyper::service::service_fn(move |req| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    route(req)
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc),
                );
            }
        });
        App {
            addr,
            calls,
            _task: task,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

async fn route(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    Ok(match req.uri().path() {
        GET => {
            tonic::server::Grpc::new(ProstCodec::default())
                .unary(GetBook, req)
                .await
        }
        CHAT => {
            tonic::server::Grpc::new(ProstCodec::default())
                .streaming(Chat, req)
                .await
        }
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// `Get`: the book, with response metadata echoing the request's `x-tag`; NOT_FOUND with
/// metadata `x-missing` for [`MISSING`].
struct GetBook;

impl UnaryService<BookRequest> for GetBook {
    type Response = Book;
    type Future = Ready<Result<Response<Book>, Status>>;

    fn call(&mut self, req: Request<BookRequest>) -> Self::Future {
        let tag = req.metadata().get("x-tag").cloned();
        let title = req.into_inner().title;
        if title == MISSING {
            let mut md = MetadataMap::new();
            md.insert("x-missing", title.parse().expect("ascii"));
            return ready(Err(Status::with_metadata(
                Code::NotFound,
                format!("no book called {title:?}"),
                md,
            )));
        }
        let mut resp = Response::new(Book {
            title: title.clone(),
            seq: 1,
            body: format!("the text of {title}").into_bytes(),
        });
        resp.metadata_mut()
            .insert("x-served-by", "books-app".parse().expect("ascii"));
        if let Some(tag) = tag {
            resp.metadata_mut().insert("x-tag-echo", tag);
        }
        ready(Ok(resp))
    }
}

/// `Chat`: answers each message with its title prefixed by `re: `, its sequence number and
/// its body reversed.
struct Chat;

type BookStream = Pin<Box<dyn Stream<Item = Result<Book, Status>> + Send>>;

impl StreamingService<Book> for Chat {
    type Response = Book;
    type ResponseStream = BookStream;
    type Future = Ready<Result<Response<BookStream>, Status>>;

    fn call(&mut self, req: Request<Streaming<Book>>) -> Self::Future {
        let replies = req.into_inner().map(|m| m.map(reply));
        ready(Ok(Response::new(Box::pin(replies))))
    }
}

fn reply(b: Book) -> Book {
    Book {
        title: format!("re: {}", b.title),
        seq: b.seq,
        body: b.body.into_iter().rev().collect(),
    }
}

type GrpcClient = tonic::client::Grpc<legacy::Client<weft_test::FixedConnector, tonic::body::Body>>;

/// A tonic client for `http://books` over HTTP/2 (prior knowledge) to `addr`, whatever the
/// `:authority` (what weft routes by).
async fn client(addr: SocketAddr) -> GrpcClient {
    let http = legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(weft_test::FixedConnector::new(addr));
    let mut grpc = tonic::client::Grpc::with_origin(http, Uri::from_static("http://books"));
    grpc.ready().await.expect("client ready");
    grpc
}

async fn get(grpc: &mut GrpcClient, title: &str) -> Result<Response<Book>, Status> {
    let mut req = Request::new(BookRequest {
        title: title.into(),
    });
    req.metadata_mut()
        .insert("x-tag", "t-42".parse().expect("ascii"));
    req.set_timeout(Duration::from_secs(10));
    grpc.ready().await.expect("client ready");
    grpc.unary(req, PathAndQuery::from_static(GET), ProstCodec::default())
        .await
}

async fn mesh() -> (Mesh, App) {
    let app = App::start().await;
    (Mesh::start(app.addr.port(), WEB, "").await, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_grpc_over_mutual_tls_keeps_metadata_and_status_ok() {
    let (m, app) = mesh().await;
    let mut grpc = client(m.outbound.router("outbound")).await;
    let resp = get(&mut grpc, "dune").await.unwrap_or_else(|s| {
        panic!(
            "unary call failed: {s:?}\n--- inbound ---\n{}",
            m.inbound.stderr()
        )
    });
    let md = resp.metadata().clone();
    assert_eq!(
        resp.into_inner(),
        Book {
            title: "dune".into(),
            seq: 1,
            body: b"the text of dune".to_vec()
        }
    );
    let value = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(value("x-served-by").as_deref(), Some("books-app"), "{md:?}");
    assert_eq!(value("x-tag-echo").as_deref(), Some("t-42"), "{md:?}");
    // tonic merges the trailers into the response metadata.
    assert_eq!(value("grpc-status").as_deref(), Some("0"), "{md:?}");
    assert_eq!(app.calls(), 1);

    // The inbound proxy terminated mesh TLS and saw the client's identity: the router only
    // authorizes `web`, so the call could not have passed as anyone else.
    let text = get_metrics(m.inbound.admin()).await;
    assert!(handshakes(&text, "ok") >= 1.0, "{text}");
    assert_eq!(handshakes(&text, "error"), 0.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_grpc_stream_over_mutual_tls_carries_many_messages_both_ways() {
    const ROUNDS: u32 = 300;
    let (m, _app) = mesh().await;
    let mut grpc = client(m.outbound.router("outbound")).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Book>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let first = Book {
        title: "m0".into(),
        seq: 0,
        body: vec![7; 10],
    };
    tx.send(first.clone())
        .await
        .expect("queue the first message");
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        grpc.streaming(
            Request::new(outgoing),
            PathAndQuery::from_static(CHAT),
            ProstCodec::<Book, Book>::default(),
        ),
    )
    .await
    .expect("the stream opened within 10s")
    .unwrap_or_else(|s| panic!("open stream: {s:?}\n{}", m.inbound.stderr()));
    let mut incoming = resp.into_inner();

    // Ping-pong: each message waits for the reply to the previous one, so both directions
    // are open at once; bodies from 1 byte to 48 KiB exercise HTTP/2 flow control.
    let mut sent = first;
    for seq in 1..=ROUNDS {
        let got = tokio::time::timeout(Duration::from_secs(10), incoming.message())
            .await
            .unwrap_or_else(|_| panic!("no reply to message {} within 10s", sent.seq))
            .unwrap_or_else(|s| panic!("stream failed at {}: {s:?}", sent.seq))
            .unwrap_or_else(|| panic!("stream ended early at {}", sent.seq));
        assert_eq!(got, reply(sent.clone()));
        if seq == ROUNDS {
            break;
        }
        let len = [1, 300, 5_000, 49_152][seq as usize % 4];
        sent = Book {
            title: format!("m{seq}"),
            seq,
            body: (0..len).map(|i| (i % 251) as u8).collect(),
        };
        tx.send(sent.clone()).await.expect("queue a message");
    }
    // The client ends its side; the server ends the stream with status OK.
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(10), incoming.message())
        .await
        .expect("the stream ended within 10s");
    assert!(matches!(end, Ok(None)), "{end:?}");
    let trailers = incoming
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0"),
        "{trailers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_error_status_passes_through_mutual_tls_unchanged() {
    let (m, app) = mesh().await;
    let mut grpc = client(m.outbound.router("outbound")).await;
    let status = get(&mut grpc, MISSING)
        .await
        .expect_err("the server answers NOT_FOUND");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "no book called \"missing\"");
    assert_eq!(
        status
            .metadata()
            .get("x-missing")
            .and_then(|v| v.to_str().ok()),
        Some(MISSING),
        "{status:?}"
    );
    assert!(
        status.metadata().get("l5d-proxy-error").is_none(),
        "the status is the server's, not the proxy's: {status:?}"
    );
    assert_eq!(app.calls(), 1);
    // The same connection still serves a good call afterwards.
    get(&mut grpc, "dune")
        .await
        .expect("a good call after an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_grpc_to_the_inbound_proxy_is_refused() {
    let (m, app) = mesh().await;
    let mut grpc = client(m.inbound.router("inbound")).await;
    let status = get(&mut grpc, "dune")
        .await
        .expect_err("requireTls refuses plaintext");
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(
        status
            .metadata()
            .get("l5d-proxy-error")
            .and_then(|v| v.to_str().ok()),
        Some("unauthorized"),
        "{status:?}"
    );
    assert_eq!(app.calls(), 0, "a refused call must not reach the app");
    let text = get_metrics(m.inbound.admin()).await;
    assert_eq!(handshakes(&text, "ok"), 0.0, "{text}");
}
