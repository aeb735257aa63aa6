//! Servers: accept loops that speak HTTP/1.1 and HTTP/2 (prior knowledge) on one listener,
//! detected per connection, and drain gracefully on shutdown: HTTP/1 connections close after
//! their current response, HTTP/2 connections get GOAWAY, requests in flight finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::router::Router;

/// hyper refuses read buffers smaller than this (it must hold a typical request head).
const MIN_HEADER_BUFFER: usize = 8192;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `listener` for `router` until `shutdown` fires, then drains its connections for at
/// most `grace`. Returns true if every connection finished within the grace period.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    shutdown: CancellationToken,
    grace: Duration,
) -> bool {
    let builder = http_builder(router.config().max_header_bytes);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small interactive messages: send them without Nagle delays.
                    let _ = stream.set_nodelay(true);
                    let router = router.clone();
                    let guard = router.metrics().connection_opened();
                    let svc = service_fn(move |req| {
                        let router = router.clone();
                        async move { Ok::<_, Infallible>(router.handle(req, peer).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(error) = conn.await {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                        drop(guard);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = shutdown.cancelled() => break,
        }
    }
    // Stop accepting before draining, so new connections are refused, not left waiting.
    drop(listener);
    tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok()
}

fn http_builder(max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(max_header_bytes.max(MIN_HEADER_BUFFER));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    builder
}
