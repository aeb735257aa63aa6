//! Shared helpers for weft's end-to-end tests (each test file includes this module).

// Each test file uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub(crate) mod control;
pub(crate) mod grpc;
pub(crate) mod namers;
pub(crate) mod pki;
pub(crate) mod traffic;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
pub(crate) use weft_test::{
    closed_port, get_metrics, metrics, raw, Behaviour, Client, Disco, Echo, TestBody, TestResponse,
    Upstream, Weft,
};

/// The weft binary under test: `$WEFT_TEST_BIN` if set (to test a binary built elsewhere),
/// else the one cargo built for these tests.
pub(crate) fn bin() -> String {
    std::env::var("WEFT_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_weft").to_owned())
}

/// A config with the admin server, one `fs` namer on `disco` at `/#/fs`, and the given
/// routers (YAML list items, see [`router`]). Every port is 0.
pub(crate) fn config(disco: &Disco, routers: &[String]) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}'}}\n\
         routers:\n{}",
        disco.path().display(),
        routers.concat()
    )
}

/// One router list item: `label`, one server on 127.0.0.1:0, `dtab`, and `extra` YAML keys
/// (each line at the router's key indentation, e.g. `identifier: {kind: methodAndHost}`).
pub(crate) fn router(label: &str, dtab: &str, extra: &[&str]) -> String {
    let mut s = format!("  - label: {label}\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n");
    for e in extra {
        s.push_str(&format!("    {e}\n"));
    }
    s.push_str("    dtab: |\n");
    for line in dtab.lines() {
        s.push_str(&format!("      {}\n", line.trim()));
    }
    s
}

/// The usual single-router config: router `outbound` with `dtab` over the `fs` namer.
pub(crate) fn outbound_config(disco: &Disco, dtab: &str) -> String {
    config(disco, &[router("outbound", dtab, &[])])
}

/// Starts weft with router `outbound` and dtab `/svc => /#/fs;`.
pub(crate) async fn start_fs_weft(disco: &Disco) -> Weft {
    Weft::start(bin(), &outbound_config(disco, "/svc => /#/fs;")).await
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `within`; `None` after.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts a proxy-generated error: status, `l5d-proxy-error`, and a short text body.
pub(crate) fn assert_proxy_error(r: &TestResponse, status: u16, reason: &str) {
    assert_eq!(
        (r.status.as_u16(), r.proxy_error()),
        (status, Some(reason)),
        "expected {status} with l5d-proxy-error: {reason}; got {} {:?} body {:?}",
        r.status,
        r.headers,
        r.text()
    );
    assert!(
        r.upstream().is_none(),
        "a proxy error must not come from an upstream"
    );
    assert!(!r.body.is_empty(), "proxy errors carry a short text body");
}

/// A TCP server on an ephemeral loopback port that runs `handle` on each connection in a
/// task of its own; returns its address.
pub(crate) async fn serve_each<F, Fut>(handle: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(handle(s));
        }
    });
    addr
}

/// A TCP server that reads until EOF, then answers `echo:<what it read>` and closes: it
/// proves a half-close went through the proxy.
pub(crate) async fn echo_after_eof() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    serve_each(|mut s| async move {
        let mut got = Vec::new();
        if s.read_to_end(&mut got).await.is_ok() {
            let _ = s.write_all(&[b"echo:".as_slice(), &got].concat()).await;
            let _ = s.shutdown().await;
        }
    })
    .await
}

/// Reads an HTTP/1 head from `s` byte by byte (so nothing after it is consumed), through its
/// blank line; `None` if the connection ends first.
pub(crate) async fn read_head(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    Some(head)
}

/// A loopback address of its own (Linux routes all of 127/8 to lo), so a fixed inbound port
/// (which the `port` transformer needs) cannot collide with other tests.
pub(crate) fn private_loopback() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(
        127,
        fastrand::u8(100..200),
        fastrand::u8(1..255),
        fastrand::u8(1..255),
    ))
}

/// A minimal WebSocket-ish server: answers an Upgrade with 101, then echoes bytes prefixed
/// with `ws:`.
pub(crate) async fn upgrade_echo() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    serve_each(|mut s| async move {
        let Some(head) = read_head(&mut s).await else {
            return;
        };
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if !text.contains("upgrade: websocket") {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await;
        let mut buf = [0u8; 256];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0
                || s.write_all(&[b"ws:".as_slice(), &buf[..n]].concat())
                    .await
                    .is_err()
            {
                break;
            }
        }
    })
    .await
}

/// Connects to a proxy at `addr` and upgrades to WebSocket for the host `chat`; returns the
/// connection and the response head, lowercased. Asserts the switch (101).
pub(crate) async fn websocket_upgrade(
    addr: std::net::SocketAddr,
) -> (tokio::net::TcpStream, String) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .expect("write");
    let head = read_head(&mut s).await.expect("read head");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    (s, head)
}

/// Sends `msg` over an upgraded connection to [`upgrade_echo`] and asserts it comes back
/// (prefixed `ws:`) within 10 s.
pub(crate) async fn assert_ws_echo(s: &mut tokio::net::TcpStream, msg: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(msg).await.expect("write frame");
    let mut back = vec![0u8; msg.len() + 3];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
        .await
        .expect("echo within 10s")
        .expect("read echo: the tunnel is open");
    assert_eq!(back, [b"ws:".as_slice(), msg].concat());
}

/// Failed requests of [`get_loop`], described.
pub(crate) type Failures = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Sends `GET books /` in a loop until `stop`, returning how many got 200 and recording
/// every other outcome in `failures`. `fresh`: every request on a new connection (a refused
/// connection shows up there).
pub(crate) fn get_loop(
    make: impl Fn() -> Client + Send + 'static,
    fresh: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    failures: Failures,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut ok = 0;
        let mut client = make();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if fresh {
                client = make();
            }
            match client.get("books", "/").await {
                Ok(r) if r.status == 200 => ok += 1,
                Ok(r) => {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{} {:?}", r.status, r.proxy_error()))
                }
                Err(e) => failures.lock().unwrap().push(e.to_string()),
            }
        }
        ok
    })
}

/// Stops the `get_loop`s (and the like) behind `stop` and returns how many requests they
/// served and the failures recorded.
pub(crate) async fn stop_loads(
    stop: &std::sync::atomic::AtomicBool,
    loads: impl IntoIterator<Item = tokio::task::JoinHandle<usize>>,
    failures: &Failures,
) -> (usize, Vec<String>) {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut served = 0;
    for l in loads {
        served += l.await.expect("load task");
    }
    let failures = failures.lock().expect("failures").clone();
    (served, failures)
}

/// An HTTP/1.1 application that records each request head as the bytes it received, and
/// answers with a mixed-case response header.
pub(crate) async fn recording_app() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = serve_each(move |mut s| {
        let tx = tx.clone();
        async move {
            while let Some(head) = read_head(&mut s).await {
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let rsp = "HTTP/1.1 200 OK\r\nX-Resp-Token: r\r\ncontent-type: text/plain\r\nContent-Length: 2\r\n\r\nok";
                if tokio::io::AsyncWriteExt::write_all(&mut s, rsp.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, rx)
}

/// A GET for `books` with mixed-case and lowercase headers, as a case-sensitive client
/// sends it; returns the response head as received.
pub(crate) async fn get_mixed_case(proxy: std::net::SocketAddr) -> String {
    let req = b"GET /spelled HTTP/1.1\r\nHost: books\r\nX-Blah-Token: abc\r\nx-lower: 1\r\nX-Blah-Token: def\r\n\r\n";
    let got = raw::exchange(proxy, req, Duration::from_secs(10)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Asserts that `head` (as the app received it) has the client's spellings.
pub(crate) fn assert_spelled_as_sent(head: &str) {
    assert!(head.contains("\r\nHost: books\r\n"), "{head}");
    assert!(head.contains("\r\nX-Blah-Token: abc\r\n"), "{head}");
    assert!(head.contains("\r\nX-Blah-Token: def\r\n"), "{head}");
    assert!(head.contains("\r\nx-lower: 1\r\n"), "{head}");
}

/// A port nothing listens on right now (for a child process to bind).
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Percent-encodes everything but unreserved characters (for query strings).
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// This machine's first IPv4 address that is not loopback (`ip -4 -o addr show scope
/// global`), to reach a server as another host would.
pub(crate) fn non_loopback_ip() -> std::net::IpAddr {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .expect("this test needs a non-loopback IPv4 address")
}
