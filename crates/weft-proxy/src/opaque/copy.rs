//! The byte copier of opaque streams (TCP, WebSocket, CONNECT): both directions at once,
//! half-close propagated, an idle timeout over both, and the bytes counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Copy buffer per direction.
const BUFFER: usize = 16 * 1024;

/// Copies both ways until both directions ended. EOF on one side shuts down writing on the
/// other (half-close); no byte in either direction for `idle` ends both.
pub(crate) async fn copy_both_ways<A, B>(a: A, b: B, idle: Duration, counters: [Counter; 2])
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let [up, down] = counters;
    let a_to_b = pump(ar, bw, start, last.clone(), idle, up);
    let b_to_a = pump(br, aw, start, last, idle, down);
    tokio::join!(a_to_b, b_to_a);
}

async fn pump<R, W>(
    mut r: R,
    mut w: W,
    start: Instant,
    last: Arc<AtomicU64>,
    idle: Duration,
    bytes: Counter,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match tokio::time::timeout(idle, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                // Idle in this direction; the connection is idle only if the other one is too.
                let quiet = start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    tracing::debug!(?idle, "tcp connection idle: closing");
                    let _ = w.shutdown().await;
                    return;
                }
                continue;
            }
        };
        last.store(
            u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
        bytes.inc_by(n as u64);
    }
    let _ = w.flush().await;
    // Half-close: the peer learns this side is done sending, and may still answer.
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn half_close_lets_the_other_side_answer() {
        let (mut client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, mut server) = tokio::io::duplex(1024);
        let copier = tokio::spawn(copy_both_ways(
            proxy_down,
            proxy_up,
            Duration::from_secs(10),
            [Counter::default(), Counter::default()],
        ));
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping", "server saw EOF after the data");
        server.write_all(b"pong").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
        copier.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_is_closed() {
        let (_client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, mut server) = tokio::io::duplex(1024);
        let copier = tokio::spawn(copy_both_ways(
            proxy_down,
            proxy_up,
            Duration::from_secs(5),
            [Counter::default(), Counter::default()],
        ));
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        copier.await.unwrap();
    }
}
