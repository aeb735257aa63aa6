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

/// What REDbot (PyPI `redbot`, the HTTP linter by Mark Nottingham) says about `url`: the
/// response header names it saw and its notes, minus the ones that depend on the moment
/// (the clock, how long ago the file changed).
async fn redbot(url: &str) -> (Vec<String>, Vec<String>) {
    let out = tokio::process::Command::new("redbot")
        .args(["-o", "text", url])
        .output()
        .await
        .expect("run redbot (python3 -m pip install redbot)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("* "),
        "redbot {url}: {text}"
    );
    let mut lines = text.lines();
    let mut names: Vec<String> = lines
        .by_ref()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
        // Hop-by-hop: each connection has its own (RFC 9110 section 7.6.1).
        .filter(|n| !n.eq_ignore_ascii_case("connection") && !n.eq_ignore_ascii_case("keep-alive"))
        .collect();
    names.sort();
    let notes = lines
        .filter(|l| l.trim_start().starts_with("* ") && l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .filter(|n| !n.contains("clock") && !n.contains(" ago") && !n.contains("last changed"))
        .collect();
    (names, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redbot_finds_nothing_that_weft_added_or_broke() {
    // A static file from nginx: conditional requests, ranges, compression, caching headers.
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::write(root.path().join("page.txt"), "lint me ".repeat(4000)).expect("page");
    let nginx = Nginx::start(&format!(
        "root {}; default_type text/plain; gzip on; gzip_types text/plain; gzip_vary on; etag on;",
        root.path().display()
    ))
    .await;
    // REDbot's Host is 127.0.0.1:<weft port>: the name /svc/127.0.0.1.
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n{}",
        router(
            "outbound",
            &format!("/svc => /$/inet/127.0.0.1/{};", nginx.addr().port()),
            &[]
        )
    );
    let weft = Weft::start(bin(), &config).await;
    let (direct_names, direct) = redbot(&format!("http://{}/page.txt", nginx.addr())).await;
    let (proxied_names, proxied) =
        redbot(&format!("http://{}/page.txt", weft.router("outbound"))).await;
    assert_eq!(proxied_names, direct_names, "response headers differ");
    assert_eq!(proxied, direct, "REDbot's notes differ");
    // The comparison has teeth: these are checks REDbot ran on both.
    for expected in ["If-None-Match", "ranged request", "Content-Length", "gzip"] {
        assert!(
            direct.iter().any(|n| n.contains(expected)),
            "REDbot did not check {expected}: {direct:#?}"
        );
    }
}
