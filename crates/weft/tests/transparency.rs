//! End to end: an application behind weft sees what it would see without it. Header names
//! keep their spelling over one HTTP/1.1 hop and across the proxy-to-proxy HTTP/2 hop, in
//! both directions of the one hop; and weft adds no `Via` unless asked, so an nginx with its
//! default `gzip_proxied off` compresses through weft as it does without it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_test::Nginx;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_keep_their_spelling_over_one_hop_both_ways() {
    let (app, mut heads) = recording_app().await;
    let disco = Disco::new();
    disco.write("books", &format!("127.0.0.1 {}\n", app.port()));
    let weft = start_fs_weft(&disco).await;
    let rsp = get_mixed_case(weft.router("outbound")).await;
    assert!(rsp.starts_with("HTTP/1.1 200"), "{rsp}");
    assert!(
        rsp.contains("\r\nX-Resp-Token: r\r\n"),
        "response spelling lost: {rsp}"
    );
    let head = heads.recv().await.expect("the app got the request");
    assert_spelled_as_sent(&head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_keep_their_spelling_across_the_proxy_to_proxy_hop() {
    let (app, mut heads) = recording_app().await;
    // app <- inbound (plain HTTP, fixed port on a loopback address of its own, as the `port`
    // transformer needs) <- outbound (HTTP/1 requests to the peer go over HTTP/2).
    let ip = private_loopback();
    let inbound_port = 4143;
    let inbound_cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: inbound\n    servers: [{{ip: {ip}, port: {inbound_port}}}]\n    dtab: |\n      /svc => /$/inet/127.0.0.1/{};\n",
        app.port()
    );
    let inbound = Weft::start(bin(), &inbound_cfg).await;
    let disco = Disco::new();
    disco.write("books", &format!("{ip} 1\n"));
    let outbound_cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}', transformers: [{{kind: port, port: {inbound_port}}}]}}\n\
         routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    dtab: |\n      /svc => /#/fs;\n",
        disco.path().display()
    );
    let outbound = Weft::start(bin(), &outbound_cfg).await;
    for _ in 0..2 {
        let rsp = get_mixed_case(outbound.router("outbound")).await;
        assert!(rsp.starts_with("HTTP/1.1 200"), "{rsp}");
        let head = heads.recv().await.expect("the app got the request");
        assert_spelled_as_sent(&head);
        for ours in ["l5d-orig-proto", "l5d-orig-header-case", "l5d-hop-count"] {
            assert!(
                !head.to_ascii_lowercase().contains(ours),
                "{ours} reached the app: {head}"
            );
        }
    }
    // The requests did cross over HTTP/2, where names are lowercase.
    let text = get_metrics(inbound.admin()).await;
    assert!(
        metrics::sum(&text, "weft_responses_total", &[("status_code", "200")]) >= 2.0,
        "{text}"
    );
}

/// `Content-Encoding` of the response to a gzip-accepting GET of the page through `addr`.
async fn encoding_through(addr: SocketAddr) -> Option<String> {
    let req = b"GET /page.txt HTTP/1.1\r\nHost: books\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n";
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req).await.expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert_eq!(
        weft_test::raw::status(&got),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    weft_test::raw::header(&got, "content-encoding")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_compresses_through_weft_as_it_does_without_it() {
    // A compressible page, served with nginx's default gzip settings for text: `gzip on`,
    // and `gzip_proxied off` (responses to requests that carry `Via` are not compressed).
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::write(root.path().join("page.txt"), "compress me ".repeat(2000)).expect("page");
    let nginx = Nginx::start(&format!(
        "root {}; default_type text/plain; gzip on; gzip_types text/plain;",
        root.path().display()
    ))
    .await;
    assert_eq!(
        encoding_through(nginx.addr()).await.as_deref(),
        Some("gzip"),
        "directly"
    );
    let disco = Disco::new();
    disco.write("books", &nginx.fs_line());
    let weft = start_fs_weft(&disco).await;
    assert_eq!(
        encoding_through(weft.router("outbound")).await.as_deref(),
        Some("gzip"),
        "through weft with its defaults"
    );
    // The control: with `via: request` nginx sees a proxy and, by its default, does not
    // compress. (What weft's old default did to every request.)
    let cfg = config(
        &disco,
        &[router("outbound", "/svc => /#/fs;", &["via: request"])],
    );
    let with_via = Weft::start(bin(), &cfg).await;
    assert_eq!(
        encoding_through(with_via.router("outbound")).await,
        None,
        "nginx compresses nothing for requests with Via"
    );
}
