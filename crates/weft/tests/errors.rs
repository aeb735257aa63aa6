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
