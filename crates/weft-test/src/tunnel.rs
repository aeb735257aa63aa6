//! CONNECT tunnels (RFC 9110 section 9.3.6) over raw sockets: an application that accepts
//! them and echoes, and a client that opens one through a proxy.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What [`connect_echo`] puts before every piece of data it echoes.
pub const ECHO_PREFIX: &[u8] = b"tunnel:";

/// A server on an ephemeral loopback port that answers a `CONNECT` request with `200` and
/// then echoes every read back prefixed with [`ECHO_PREFIX`]; anything else gets `400`.
/// Runs until the runtime shuts down; returns its address.
pub async fn connect_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                if !head.starts_with(b"CONNECT ") {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                if s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.is_err() {
                    return;
                }
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0
                        || s.write_all(&[ECHO_PREFIX, &buf[..n]].concat())
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Connects to the proxy at `proxy` and sends `CONNECT <target> HTTP/1.1` with `Host: host`
/// (what the proxy routes by); returns the connection and the response head (lowercased,
/// through its blank line), or `None` as the head if the proxy closed the connection first.
pub async fn open(proxy: SocketAddr, target: &str, host: &str) -> (TcpStream, Option<String>) {
    let mut s = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write CONNECT");
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut s))
        .await
        .expect("a response head within 10s")
        .map(|h| String::from_utf8_lossy(&h).to_ascii_lowercase());
    (s, head)
}

/// Sends `msg` through a tunnel to [`connect_echo`] and asserts it comes back (prefixed with
/// [`ECHO_PREFIX`]) within 10 s.
pub async fn assert_echo(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.expect("write through the tunnel");
    let mut back = vec![0u8; ECHO_PREFIX.len() + msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
        .await
        .expect("echo within 10s")
        .expect("read echo: the tunnel is open");
    assert_eq!(back, [ECHO_PREFIX, msg].concat());
}

/// Reads an HTTP/1 head byte by byte (so nothing after it is consumed), through its blank
/// line; `None` if the connection ends first.
async fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    Some(head)
}
