//! End to end: HTTP/2 with prior knowledge through weft.

mod support;

use http::{HeaderMap, HeaderValue, Version};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_end_to_end_preserves_bodies_and_trailers_both_ways() {
    let books = Upstream::start(
        "books",
        Behaviour::new()
            .echo()
            .trailer("grpc-status", "0")
            .trailer("x-resp-trailer", "r1"),
    )
    .await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;

    let mut trailers = HeaderMap::new();
    trailers.insert("x-req-trailer", HeaderValue::from_static("q1"));
    let req = Client::request("books", "/books.Shelf/Get")
        .method("POST")
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(TestBody::with_trailers("request payload", trailers))
        .unwrap();
    let r = weft.http2("outbound").send(req).await.expect("h2 request");

    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.version, Version::HTTP_2);
    let echo = r.echo();
    assert_eq!(echo.upstream, "books");
    assert_eq!(
        echo.version, "HTTP/2.0",
        "weft should speak h2 to the upstream"
    );
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.path, "/books.Shelf/Get");
    assert_eq!(echo.body, "request payload");
    assert_eq!(
        echo.trailer("x-req-trailer").as_deref(),
        Some("q1"),
        "request trailers lost"
    );
    assert_eq!(
        r.trailer("grpc-status"),
        Some("0"),
        "response trailers lost"
    );
    assert_eq!(r.trailer("x-resp-trailer"), Some("r1"));
    assert_eq!(echo.header("via"), None, "weft adds no Via by default");
    assert_eq!(r.header_all("via"), None, "weft adds no Via by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_multiplex_on_one_connection() {
    let books = Upstream::start(
        "books",
        Behaviour::new().delay(std::time::Duration::from_millis(200)),
    )
    .await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http2("outbound");

    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = client.clone();
        tasks.spawn(async move { client.get("books", "/").await });
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap().expect("h2 request");
        assert_eq!((r.status.as_u16(), r.upstream()), (200, Some("books")));
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(3),
        "20 concurrent 200ms requests took {:?}: not multiplexed",
        start.elapsed()
    );
}
