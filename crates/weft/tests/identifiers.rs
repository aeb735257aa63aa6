//! End to end: the identifier kinds that turn a request into a logical name.

mod support;

use http::Method;
use support::*;

struct Setup {
    weft: Weft,
    _disco: Disco,
    _ups: Vec<Upstream>,
}

/// One weft with a router per identifier kind, over echoing upstreams `books` and `writer`.
async fn setup() -> Setup {
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let writer = Upstream::start("writer", Behaviour::new().echo()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    disco.write("writer", &writer.fs_line());
    let routers = [
        router(
            "mh",
            "/svc/1.1/GET => /#/fs;\n/svc/1.1/POST/books => /#/fs/writer;",
            &["identifier: {kind: methodAndHost}"],
        ),
        router(
            "path",
            "/svc => /#/fs;",
            &["identifier: {kind: path, segments: 1, consume: true}"],
        ),
        router(
            "hdr",
            "/svc => /#/fs;",
            &["identifier: {kind: header, header: l5d-name}"],
        ),
        router(
            "static",
            "/svc => /#/fs;",
            &["identifier: {kind: static, path: /books}"],
        ),
    ];
    let weft = Weft::start(bin(), &config(&disco, &routers)).await;
    Setup {
        weft,
        _disco: disco,
        _ups: vec![books, writer],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_and_host_identifier_routes_by_method_and_lowercased_host() {
    let s = setup().await;
    let client = s.weft.http1("mh");
    let r = client.get("Books", "/x").await.expect("request");
    assert_eq!(r.status, 200, "{:?} {}", r.proxy_error(), r.text());
    assert_eq!(r.echo().upstream, "books");

    let req = Client::request("books", "/x")
        .method(Method::POST)
        .body(TestBody::from_bytes("new book"))
        .unwrap();
    let r = client.send(req).await.expect("request");
    assert_eq!(r.status, 200, "{:?} {}", r.proxy_error(), r.text());
    assert_eq!(r.echo().upstream, "writer");
    assert_eq!(r.echo().body, "new book");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_identifier_routes_by_first_segment_and_consumes_it() {
    let s = setup().await;
    let r = s
        .weft
        .http1("path")
        .get("anything", "/books/shelf/1?x=y")
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{:?} {}", r.proxy_error(), r.text());
    let echo = r.echo();
    assert_eq!(echo.upstream, "books");
    assert_eq!(
        echo.path, "/shelf/1?x=y",
        "consume: true strips the first segment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_identifier_without_a_segment_is_unidentified() {
    let s = setup().await;
    let r = s
        .weft
        .http1("path")
        .get("anything", "/")
        .await
        .expect("request");
    assert_proxy_error(&r, 400, "unidentified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_identifier_routes_by_l5d_name() {
    let s = setup().await;
    let client = s.weft.http1("hdr");
    let r = client
        .get_with("anything", "/", &[("l5d-name", "/writer")])
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{:?} {}", r.proxy_error(), r.text());
    assert_eq!(r.echo().upstream, "writer");

    let r = client.get("books", "/").await.expect("request");
    assert_proxy_error(&r, 400, "unidentified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_identifier_routes_everything_to_one_name() {
    let s = setup().await;
    let client = s.weft.http1("static");
    for host in ["writer", "whatever"] {
        let r = client.get(host, "/").await.expect("request");
        assert_eq!(r.status, 200, "{:?} {}", r.proxy_error(), r.text());
        assert_eq!(r.echo().upstream, "books");
    }
}
