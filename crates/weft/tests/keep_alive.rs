//! End to end: the timeouts of a client's HTTP/1.1 connection outside its requests
//! (`keepAliveTimeout`, `headerReadTimeout`), over raw sockets so the test sees exactly what
//! weft sends and when it closes.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const GET_BOOKS: &[u8] = b"GET /x HTTP/1.1\r\nHost: books\r\n\r\n";

/// weft with router `outbound` (`/svc => /#/fs;`) and these connection timeouts.
async fn weft_with(disco: &Disco, keep_alive: &str, header_read: &str) -> Weft {
    let extra = [
        format!("keepAliveTimeout: {keep_alive}"),
        format!("headerReadTimeout: {header_read}"),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let config = config(disco, &[router("outbound", "/svc => /#/fs;", &extra)]);
    Weft::start(bin(), &config).await
}

/// What a test keeps alive: the upstream, its discovery directory and weft.
type Setup = (Upstream, Disco, Weft);

/// An upstream `books` (answering at once), weft in front of it with these timeouts, and a
/// raw connection to weft's `outbound` router.
async fn books_and_connection(keep_alive: &str, header_read: &str) -> (Setup, TcpStream) {
    let books = Upstream::ok("books").await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = weft_with(&disco, keep_alive, header_read).await;
    let s = TcpStream::connect(weft.router("outbound"))
        .await
        .expect("connect");
    ((books, disco, weft), s)
}

/// Waits for the server to close an idle `s`: asserts it sent nothing first (an idle close
/// is quiet) and returns how long that took.
async fn idle_until_closed(s: &mut TcpStream) -> Duration {
    let idle_from = Instant::now();
    let (sent, closed_at) = read_until_closed(s, Duration::from_secs(20)).await;
    assert!(sent.is_empty(), "an idle close sends nothing: {sent:?}");
    closed_at - idle_from
}

/// Reads from `s` until `done` holds for what arrived (10 s at most; closing first fails).
async fn read_until(s: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a response within 10s")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Reads one complete response (head plus `content-length` body) from `s`.
async fn read_response(s: &mut TcpStream) -> Vec<u8> {
    read_until(s, raw::response_complete).await
}

/// Waits for the server to close `s`: returns what it sent before, and when it closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Instant::now()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_closes_cleanly_only_after_keep_alive_timeout() {
    // The header read timeout is much shorter: idling between requests must not trip it.
    let ((books, _disco, weft), mut s) = books_and_connection("1500ms", "200ms").await;
    s.write_all(GET_BOOKS).await.expect("write");
    assert_eq!(raw::status(&read_response(&mut s).await), Some(200));
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(GET_BOOKS).await.expect("write after idling");
    assert_eq!(
        raw::status(&read_response(&mut s).await),
        Some(200),
        "idle for less than keepAliveTimeout (and more than headerReadTimeout): still usable"
    );
    let idle = idle_until_closed(&mut s).await;
    assert!(
        idle >= Duration::from_millis(1400),
        "closed after {idle:?} idle, before keepAliveTimeout (1500ms)"
    );
    assert_eq!(books.requests(), 2);
    let text = get_metrics(weft.admin()).await;
    let closed = |timeout| {
        let labels = [("router", "outbound"), ("timeout", timeout)];
        metrics::sum(&text, "weft_http1_connection_timeouts_total", &labels)
    };
    assert_eq!(closed("keep-alive"), 1.0, "{text}");
    assert_eq!(closed("header-read"), 0.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_timeout_holds_when_shorter_than_header_read_timeout() {
    let (_setup, mut s) = books_and_connection("1s", "10s").await;
    // A head in two parts: the connection's timer is armed for the (later) head deadline.
    s.write_all(b"GET /x HTTP/1.1\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"Host: books\r\n\r\n").await.expect("write");
    assert_eq!(raw::status(&read_response(&mut s).await), Some(200));
    let idle = idle_until_closed(&mut s).await;
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "closed after {idle:?} idle; keepAliveTimeout is 1s (headerReadTimeout 10s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_trickling_past_header_read_timeout_gets_408() {
    let ((books, _disco, weft), mut s) = books_and_connection("1h", "500ms").await;
    let started = Instant::now();
    // A slowloris client: part of a head, then a header line every 200 ms, never the end.
    s.write_all(b"GET /x HTTP/1.1\r\nHost: books\r\n")
        .await
        .expect("write");
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    let (sent, closed_at) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(
        raw::status(&sent),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    assert_eq!(
        raw::header(&sent, "l5d-proxy-error").as_deref(),
        Some("header-timeout")
    );
    assert_eq!(raw::header(&sent, "connection").as_deref(), Some("close"));
    assert!(
        closed_at - started >= Duration::from_millis(450),
        "closed {:?} after the head started, before headerReadTimeout (500ms)",
        closed_at - started
    );
    assert_eq!(books.requests(), 0, "an incomplete head is never forwarded");
    let text = get_metrics(weft.admin()).await;
    let labels = [("router", "outbound"), ("timeout", "header-read")];
    assert_eq!(
        metrics::sum(&text, "weft_http1_connection_timeouts_total", &labels),
        1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_responses_and_slow_request_bodies_outlast_both_timeouts() {
    let books = Upstream::start(
        "books",
        Behaviour::new()
            .echo()
            .delay(Duration::from_millis(600))
            .slow_body(3, Duration::from_millis(300)),
    )
    .await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = weft_with(&disco, "300ms", "300ms").await;
    let mut s = TcpStream::connect(weft.router("outbound"))
        .await
        .expect("connect");
    // The head arrives at once; the body trickles for longer than either timeout.
    s.write_all(b"POST /x HTTP/1.1\r\nHost: books\r\ncontent-length: 6\r\n\r\n")
        .await
        .expect("write head");
    for part in [b"ab", b"cd", b"ef"] {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.write_all(part).await.expect("write body");
    }
    // The response takes 600 ms to start and 600 ms more to finish.
    let rsp = read_chunked(&mut s).await;
    assert!(rsp.starts_with("HTTP/1.1 200"), "{rsp}");
    assert!(
        rsp.contains("abcdef"),
        "the whole request body arrived: {rsp}"
    );
    s.write_all(GET_BOOKS).await.expect("write again");
    assert!(
        read_chunked(&mut s).await.starts_with("HTTP/1.1 200"),
        "the connection stayed usable"
    );
}

/// Reads one chunked response from `s`, through its last chunk.
async fn read_chunked(s: &mut TcpStream) -> String {
    let got = read_until(s, |got| got.ends_with(b"0\r\n\r\n")).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_idle_past_keep_alive_timeout_stays_open() {
    let app = upgrade_echo().await;
    let disco = Disco::new();
    disco.write("chat", &format!("{} {}\n", app.ip(), app.port()));
    let weft = weft_with(&disco, "300ms", "300ms").await;
    let (mut s, _) = websocket_upgrade(weft.router("outbound")).await;
    // Quiet for longer than both HTTP timeouts: a tunnel is governed by tcpIdleTimeout only.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_ws_echo(&mut s, b"hello").await;
}
