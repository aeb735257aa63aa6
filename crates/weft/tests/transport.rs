//! Transport: opaque TCP (with half-close), protocol detection of a server-speaks-first
//! protocol, WebSocket through two proxies, and HTTP/1 between proxies over one HTTP/2
//! connection.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server that speaks first: it sends a banner on accept, then echoes lines.
async fn banner_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"220 banner\r\n").await;
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Starts an inbound weft on `ip:4143` that sends every name to `app`.
async fn inbound(ip: IpAddr, app: SocketAddr) -> Weft {
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: inbound\n    servers: [{{ip: {ip}, port: 4143}}]\n    dtab: |\n      /svc => /$/inet/{}/{};\n",
        app.ip(),
        app.port()
    );
    Weft::start(bin(), &config).await
}

/// Starts an outbound weft whose fs namer maps every address to port 4143 (the peer's inbound).
async fn outbound(disco: &Disco) -> Weft {
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}', transformers: [{{kind: port, port: 4143}}]}}\n\
         routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    dtab: |\n      /svc => /#/fs;\n",
        disco.path().display()
    );
    Weft::start(bin(), &config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_router_proxies_bytes_and_propagates_half_close() {
    let echo = echo_after_eof().await;
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: db\n    protocol: tcp\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    dtab: |\n      /tcp => /$/inet/127.0.0.1/{};\n",
        echo.port()
    );
    let weft = Weft::start(bin(), &config).await;
    let mut s = TcpStream::connect(weft.router("db"))
        .await
        .expect("connect");
    s.write_all(b"\x00\x01binary payload").await.expect("write");
    // Half-close: the echo server answers only after it saw our EOF through the proxy.
    s.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("answer within 10s")
        .expect("read");
    assert_eq!(got, b"echo:\x00\x01binary payload");
    let text = get_metrics(weft.admin()).await;
    assert!(
        metrics::sum(
            &text,
            "weft_tcp_bytes_total",
            &[("router", "db"), ("direction", "to_upstream")]
        ) >= 16.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_of_a_server_speaks_first_protocol_is_proxied_as_tcp() {
    let server = banner_server().await;
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         routers:\n  - label: mixed\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    detectTimeout: 200ms\n    dtab: |\n      /tcp => /$/inet/127.0.0.1/{};\n",
        server.port()
    );
    let weft = Weft::start(bin(), &config).await;
    let mut s = TcpStream::connect(weft.router("mixed"))
        .await
        .expect("connect");
    let mut banner = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut banner))
        .await
        .expect("banner within 10s")
        .expect("read");
    assert_eq!(&banner, b"220 banner\r\n");
    s.write_all(b"ping").await.expect("write");
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await.expect("read echo");
    assert_eq!(&back, b"ping");
    let text = get_metrics(weft.admin()).await;
    assert_eq!(
        metrics::sum(
            &text,
            "weft_protocol_detections_total",
            &[
                ("router", "mixed"),
                ("protocol", "tcp"),
                ("timed_out", "true")
            ]
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_works_through_two_proxies() {
    let app = upgrade_echo().await;
    let ip = private_loopback();
    let _inbound = inbound(ip, app).await;
    let disco = Disco::new();
    disco.write("chat", &format!("{ip} 9999\n"));
    let out = outbound(&disco).await;
    let (mut s, head) = websocket_upgrade(out.router("outbound")).await;
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [b"hello".as_slice(), b"again"] {
        assert_ws_echo(&mut s, msg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_between_proxies_travels_over_one_http2_connection() {
    let app = Upstream::start(
        "app",
        Behaviour::new().echo().delay(Duration::from_millis(200)),
    )
    .await;
    let ip = private_loopback();
    let inbound = inbound(ip, app.addr()).await;
    let disco = Disco::new();
    disco.write("app", &format!("{ip} 9999\n"));
    let out = outbound(&disco).await;
    // Concurrent slow requests: HTTP/1 would need one connection each.
    let client = out.http1("outbound");
    let requests = (0..8).map(|_| {
        let client = client.clone();
        async move { client.get("app", "/x").await.expect("request") }
    });
    let responses = futures_util::future::join_all(requests).await;
    for r in &responses {
        assert_eq!(r.status.as_u16(), 200, "{:?}", r.text());
        let echo = r.echo();
        assert_eq!(echo.version, "HTTP/1.1", "the app gets HTTP/1.1 back");
        assert!(
            !echo.headers.contains_key("l5d-orig-proto"),
            "the mark stays between the proxies"
        );
    }
    let text = get_metrics(inbound.admin()).await;
    assert_eq!(
        metrics::sum(&text, "weft_connections_total", &[("router", "inbound")]),
        1.0,
        "eight concurrent requests shared one proxy-to-proxy connection: {text}"
    );
}
