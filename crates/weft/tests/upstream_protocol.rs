//! End to end: weft chooses the HTTP version it speaks to the application (issue 13,
//! "Upstream protocol"; `client.protocol: auto | http1 | http2`). In `auto`, an HTTP/2
//! client reaches an application that speaks HTTP/1.1 only, whichever way that application
//! refuses the HTTP/2 preface: silently (hyper's HTTP/1 server) or with `HTTP/1.1 400`
//! (nginx). gRPC cannot be carried over HTTP/1.1 and fails as the configuration's fault.

mod support;

use std::process::Command;

use http::Version;
use support::*;
use weft_test::{Http1App, Nginx, APP_VERSION_HEADER};

/// weft whose `books` is the endpoint on `fs_line`, with `extra` router keys.
async fn weft_to(fs_line: &str, extra: &[&str]) -> (Weft, Disco) {
    let disco = Disco::new();
    disco.write("books", fs_line);
    let weft = Weft::start(
        bin(),
        &config(&disco, &[router("outbound", "/svc => /#/fs;", extra)]),
    )
    .await;
    (weft, disco)
}

/// Runs `curl --http2-prior-knowledge http://books/` through weft's `outbound` router;
/// returns `<status> <http version>` and the body. (One URL per run: curl 7.88 fails the
/// second request it multiplexes on a prior-knowledge connection, with any server.)
fn curl_h2(router: std::net::SocketAddr) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--http2-prior-knowledge"])
        .args(["-w", "\\n%{http_code} %{http_version}"])
        .arg("--connect-to")
        .arg(format!("books:80:{}:{}", router.ip(), router.port()))
        .arg("http://books/")
        .output()
        .expect("run curl (is it installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl failed ({:?}): {stdout} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = stdout.rsplit_once('\n').unwrap_or_default();
    (status.to_owned(), body.to_owned())
}

/// An HTTP/2 gRPC-looking request (`content-type: application/grpc`) to `books`.
async fn grpc_call(weft: &Weft) -> TestResponse {
    let req = Client::request("books", "/books.Shelf/Get")
        .method("POST")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(TestBody::from_bytes(&b"\0\0\0\0\0"[..]))
        .expect("a valid request");
    weft.http2("outbound").send(req).await.expect("gRPC call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_reach_an_app_that_refuses_the_preface_silently() {
    let app = Http1App::start("books").await;
    let (weft, _disco) = weft_to(&app.fs_line(), &[]).await;
    let client = weft.http2("outbound");
    for i in 0..2 {
        let r = client.get("books", "/").await.expect("h2 request");
        assert_eq!(
            (r.status.as_u16(), r.version),
            (200, Version::HTTP_2),
            "request {i}: {:?} {}",
            r.headers,
            r.text()
        );
        assert_eq!(
            r.header(APP_VERSION_HEADER),
            Some("HTTP/1.1"),
            "request {i}"
        );
        assert_eq!(r.text(), "hello from books over HTTP/1.1\n");
    }
    assert_eq!(app.requests(), 2, "each request reached the app once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http2_reaches_an_nginx_that_answers_the_preface_with_400() {
    let nginx =
        Nginx::start(r#"default_type text/plain; return 200 "nginx saw $server_protocol\n";"#)
            .await;
    let (weft, _disco) = weft_to(&nginx.fs_line(), &[]).await;
    // The first request finds out that nginx speaks HTTP/1.1 only; the second knows it.
    for i in 0..2 {
        let (status, body) = curl_h2(weft.router("outbound"));
        assert_eq!(status, "200 2", "request {i}: {body}");
        assert_eq!(body, "nginx saw HTTP/1.1\n", "request {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_to_an_http1_only_app_is_a_502_blamed_on_the_proxy() {
    let app = Http1App::start("books").await;
    let (weft, _disco) = weft_to(&app.fs_line(), &[]).await;
    // The first call finds out that the app speaks HTTP/1.1 only; the second knows it.
    for i in 0..2 {
        let r = grpc_call(&weft).await;
        assert_proxy_error(&r, 502, "upstream-protocol");
        assert!(
            r.text().contains("gRPC needs HTTP/2"),
            "call {i}: {}",
            r.text()
        );
    }
    assert_eq!(
        app.requests(),
        0,
        "no gRPC call reached the app as HTTP/1.1"
    );

    let text = get_metrics(weft.admin()).await;
    let samples = metrics::matching(
        &text,
        "weft_responses_total",
        &[("error", "upstream-protocol")],
    );
    assert_eq!(
        samples.iter().map(|s| s.value).sum::<f64>(),
        2.0,
        "{samples:?}"
    );
    assert!(
        samples.iter().all(|s| s.label("fault") == Some("proxy")),
        "a protocol the endpoint cannot speak is the configuration's fault: {samples:?}"
    );
    assert_eq!(metrics::sum(&text, "weft_ejections_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_http1_sends_http2_requests_as_http1() {
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let (weft, _disco) = weft_to(&books.fs_line(), &["client: {protocol: http1}"]).await;
    let r = weft
        .http2("outbound")
        .get("books", "/")
        .await
        .expect("h2 request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().version, "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_http2_sends_http1_requests_as_http2() {
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let (weft, _disco) = weft_to(&books.fs_line(), &["client: {protocol: http2}"]).await;
    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("h1 request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().version, "HTTP/2.0");
}
