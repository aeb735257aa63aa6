//! End to end: malformed or hostile requests, and the headers weft adds and removes.

mod support;

use std::time::Duration;

use support::*;

/// weft in front of one echoing upstream `books` (and `authors`).
async fn echo_setup() -> (Weft, Upstream, Upstream, Disco) {
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let authors = Upstream::start("authors", Behaviour::new().echo()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    disco.write("authors", &authors.fs_line());
    let weft = start_fs_weft(&disco).await;
    (weft, books, authors, disco)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_line_gets_400_and_weft_survives() {
    let (weft, books, _a, _d) = echo_setup().await;
    let addr = weft.router("outbound");
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /\x01 HTTP/1.1\r\nHost: books\r\n\r\n",
        b"GET / HTTP/9.9.9\r\nHost: books\r\n\r\n",
    ] {
        let got = raw::exchange(addr, garbage, Duration::from_secs(5)).await;
        assert_eq!(
            raw::status(&got),
            Some(400),
            "for {:?} got {:?}",
            String::from_utf8_lossy(garbage),
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(books.requests(), 0);
    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("weft survived");
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_get_431() {
    let (weft, books, _a, _d) = echo_setup().await;
    let big = "x".repeat(70 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: books\r\nx-big: {big}\r\n\r\n");
    let got = raw::exchange(
        weft.router("outbound"),
        req.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        raw::status(&got),
        Some(431),
        "got {:?}",
        String::from_utf8_lossy(&got[..got.len().min(300)])
    );
    assert_eq!(books.requests(), 0);

    // Just under the limit (many headers, ~60 KiB in all) still passes.
    let mut req = String::from("GET / HTTP/1.1\r\nHost: books\r\n");
    for i in 0..60 {
        req.push_str(&format!("x-h{i}: {}\r\n", "y".repeat(1000)));
    }
    req.push_str("\r\n");
    let got = raw::exchange(
        weft.router("outbound"),
        req.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        raw::status(&got),
        Some(200),
        "a 60 KiB header block was refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_l5d_dtab_header_gets_400_bad_dtab_header() {
    let (weft, books, _a, _d) = echo_setup().await;
    let client = weft.http1("outbound");
    for bad in [
        "/svc/books => ",
        "not a dtab",
        "/svc/books => /#/fs/x & & /y",
    ] {
        let r = client
            .get_with("books", "/", &[("l5d-dtab", bad)])
            .await
            .expect("request");
        assert_proxy_error(&r, 400, "bad-dtab-header");
    }
    assert_eq!(books.requests(), 0);
}

/// A Via value with `n` hops.
fn via_hops(n: usize) -> String {
    (0..n)
        .map(|i| format!("1.1 proxy{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_chain_of_17_hops_is_a_loop_400() {
    let (weft, books, _a, _d) = echo_setup().await;
    let client = weft.http1("outbound");
    let r = client
        .get_with("books", "/", &[("via", &via_hops(17))])
        .await
        .expect("request");
    assert_proxy_error(&r, 400, "loop-detected");
    assert_eq!(books.requests(), 0);

    // Split over two header lines, the hops still add up.
    let r = client
        .get_with(
            "books",
            "/",
            &[("via", &via_hops(9)), ("via", &via_hops(8))],
        )
        .await
        .expect("request");
    assert_proxy_error(&r, 400, "loop-detected");

    // 16 hops is the most that passes.
    let r = client
        .get_with("books", "/", &[("via", &via_hops(16))])
        .await
        .expect("request");
    assert_eq!(
        r.status,
        200,
        "16 hops must pass: {:?} {}",
        r.proxy_error(),
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_weft_adds_no_via_either_way_and_keeps_the_clients() {
    let (weft, _b, _a, _d) = echo_setup().await;
    let r = weft
        .http1("outbound")
        .get_with("books", "/", &[("via", "1.0 fred")])
        .await
        .expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echo().header("via").as_deref(),
        Some("1.0 fred"),
        "the upstream sees the request as the client sent it"
    );
    assert_eq!(
        r.header_all("via"),
        None,
        "the client sees the app's response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_both_appends_towards_upstream_and_downstream() {
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let cfg = config(
        &disco,
        &[router("outbound", "/svc => /#/fs;", &["via: both"])],
    );
    let weft = Weft::start(bin(), &cfg).await;
    let r = weft
        .http1("outbound")
        .get_with("books", "/", &[("via", "1.0 fred")])
        .await
        .expect("request");
    assert_eq!(r.status, 200);
    let up_via = r.echo().header("via").unwrap_or_default();
    assert!(
        up_via.contains("1.0 fred") && up_via.trim_end().ends_with("1.1 weft"),
        "upstream saw Via {up_via:?}; expected `1.0 fred, 1.1 weft`"
    );
    let down_via = r.header_all("via").unwrap_or_default();
    assert!(
        down_via.contains("1.1 weft"),
        "response Via {down_via:?} lacks `1.1 weft`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let (weft, _b, _a, _d) = echo_setup().await;
    let r = weft
        .http1("outbound")
        .get_with(
            "books",
            "/",
            &[
                ("connection", "keep-alive, x-custom-hop"),
                ("x-custom-hop", "secret"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("te", "gzip"),
                ("x-end-to-end", "kept"),
            ],
        )
        .await
        .expect("request");
    assert_eq!(r.status, 200);
    let echo = r.echo();
    for h in [
        "x-custom-hop",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            !echo.has_header(h),
            "hop-by-hop {h} was forwarded: {:?}",
            echo.headers
        );
    }
    if let Some(te) = echo.header("te") {
        assert_eq!(te, "trailers", "TE other than `trailers` was forwarded");
    }
    if let Some(c) = echo.header("connection") {
        assert!(
            !c.contains("x-custom-hop"),
            "Connection forwarded as-is: {c:?}"
        );
    }
    assert_eq!(echo.header("x-end-to-end").as_deref(), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_not_forwarded() {
    let books = Upstream::start(
        "books",
        Behaviour::new()
            .header("connection", "x-resp-hop")
            .header("x-resp-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("x-resp-end", "kept"),
    )
    .await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;
    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("request");
    assert_eq!(r.status, 200);
    for h in ["x-resp-hop", "keep-alive", "proxy-connection"] {
        assert!(
            r.header(h).is_none(),
            "hop-by-hop {h} reached the client: {:?}",
            r.headers
        );
    }
    assert_eq!(r.header("x-resp-end"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l5d_dst_override_wins_over_host() {
    let (weft, books, _a, _d) = echo_setup().await;
    let r = weft
        .http1("outbound")
        .get_with("books", "/", &[("l5d-dst-override", "authors")])
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{:?} {}", r.proxy_error(), r.text());
    assert_eq!(r.echo().upstream, "authors");
    assert_eq!(books.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_stays_in_the_service_label() {
    let disco = Disco::new();
    let books = Upstream::ok("books").await;
    let books8080 = Upstream::ok("books:8080").await;
    disco.write("books", &books.fs_line());
    disco.write("books:8080", &books8080.fs_line());
    let weft = start_fs_weft(&disco).await;
    let r = weft
        .http1("outbound")
        .get("books:8080", "/")
        .await
        .expect("request");
    assert_eq!(
        r.upstream(),
        Some("books:8080"),
        "{:?} {}",
        r.proxy_error(),
        r.text()
    );
}
