//! End to end: failures weft reports itself, with `l5d-proxy-error`.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_upstream_port_gives_502_connection_refused() {
    let disco = Disco::new();
    disco.write("books", &format!("127.0.0.1 {}\n", closed_port()));
    let weft = start_fs_weft(&disco).await;

    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("request");
    assert_proxy_error(&r, 502, "connection-refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_gives_502_no_such_service() {
    let books = Upstream::ok("books").await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http1("outbound");

    let r = client.get("nosuchservice", "/").await.expect("request");
    assert_proxy_error(&r, 502, "no-such-service");
    assert!(
        !r.text().contains("/#/fs"),
        "error bodies must not echo dtabs: {:?}",
        r.text()
    );
    // The router still serves known services afterwards.
    let r = client.get("books", "/").await.expect("request");
    assert_eq!(r.upstream(), Some("books"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_endpoint_file_gives_503_no_endpoints() {
    let disco = Disco::new();
    disco.write("books", "");
    let weft = start_fs_weft(&disco).await;

    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("request");
    assert_proxy_error(&r, 503, "no-endpoints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_before_response_gives_502_upstream_reset() {
    let books = Upstream::start("books", Behaviour::new().reset()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;

    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("request");
    assert_proxy_error(&r, 502, "upstream-reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_is_not_reported_complete() {
    let books = Upstream::start("books", Behaviour::new().truncate()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;

    for client in [weft.http1("outbound"), weft.http2("outbound")] {
        match client.get("books", "/").await {
            // The failure reached the client: the message did not complete.
            Err(_) => {}
            // weft may also fail the exchange before forwarding the headers.
            Ok(r) if r.proxy_error().is_some() => {}
            Ok(r) => panic!(
                "a body the upstream cut short arrived as complete: {} {:?} {:?}",
                r.status,
                r.headers,
                r.text()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_past_total_timeout_gives_504_request_timeout() {
    let books = Upstream::start(
        "books",
        Behaviour::new().delay(std::time::Duration::from_secs(3)),
    )
    .await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let config = config(
        &disco,
        &[router(
            "outbound",
            "/svc => /#/fs;",
            &["service: {totalTimeout: 300ms}"],
        )],
    );
    let weft = Weft::start(bin(), &config).await;

    let start = tokio::time::Instant::now();
    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("request");
    assert_proxy_error(&r, 504, "request-timeout");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "timeout took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_idle_connections_does_not_fail_requests() {
    let books = Upstream::start(
        "books",
        Behaviour::new().idle_close(std::time::Duration::from_millis(100)),
    )
    .await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http1("outbound");

    for i in 0..5 {
        let r = client.get("books", "/").await.expect("request");
        assert_eq!(
            r.status,
            200,
            "request {i} after the upstream closed an idle connection: {:?} {}",
            r.proxy_error(),
            r.text()
        );
        // Part of the scenario, not a readiness wait: let the upstream's idle close fire.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        books.connections() >= 2,
        "the upstream never closed a connection"
    );
}
