//! Raw-socket HTTP/1 exchanges, for malformed input no client library would send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to `addr`, writes `request` while reading concurrently, and returns what the
/// server sent until it closed the connection, a complete response (head plus
/// `content-length` body) arrived, or `timeout` passed. Write errors are ignored (a server
/// may answer and close before reading everything).
pub async fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.expect("raw connect");
    let (mut rd, mut wr) = stream.into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the write half open (no FIN) until the reader is done.
        wr
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if response_complete(&got) {
                break;
            }
        }
    })
    .await;
    writer.abort();
    got
}

/// The status code of the first response in `bytes`, if its status line parsed.
pub fn status(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// The value of a header in the first response head in `bytes` (case-insensitive name).
pub fn header(bytes: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Whether `got` holds a complete response: a head and the `content-length` bytes of body
/// it announces (false without `content-length`).
pub fn response_complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    match header(got, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => got.len() >= end + 4 + len,
        None => false,
    }
}
