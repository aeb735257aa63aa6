//! Clients that break their request bodies midway, on cue: an HTTP/1.1 upload abandoned
//! (the socket closed short of its `Content-Length`, as a phone losing signal does), an
//! HTTP/1.1 chunked body with a malformed chunk-size line, and an HTTP/2 upload whose body
//! fails (the client resets the stream). Each starts its upload, sends a first piece of the
//! body, and breaks it only when told to, so a test can first see the request reach the
//! application.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::BoxError;

/// Bytes of body every broken upload sends before it breaks.
pub const SENT_BEFORE_BREAKING: usize = 1000;
/// The `Content-Length` an abandoned HTTP/1.1 upload announces.
pub const ANNOUNCED_LENGTH: usize = 100_000;
/// How long [`MalformedChunked::send_bad_chunk`] and [`H2Upload::fail`] wait for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 `POST` announcing [`ANNOUNCED_LENGTH`] bytes of body, of which only the first
/// [`SENT_BEFORE_BREAKING`] were sent.
#[derive(Debug)]
pub struct AbandonedUpload {
    stream: TcpStream,
}

/// An HTTP/1.1 `POST` with `Transfer-Encoding: chunked` and one valid chunk of
/// [`SENT_BEFORE_BREAKING`] bytes so far.
#[derive(Debug)]
pub struct MalformedChunked {
    stream: TcpStream,
}

/// An HTTP/2 (prior knowledge) `POST` whose body sent [`SENT_BEFORE_BREAKING`] bytes and
/// waits for its cue to fail.
#[derive(Debug)]
pub struct H2Upload {
    cue: oneshot::Sender<()>,
    response: JoinHandle<Result<u16, String>>,
}

/// A request body: one data frame, then an error once the cue fires (or its sender drops).
struct FailOnCue {
    first: Option<Bytes>,
    cue: oneshot::Receiver<()>,
}

// === impl AbandonedUpload ===

impl AbandonedUpload {
    /// Connects to `addr` and sends the request head (`Host: <authority>`, path `/upload`)
    /// and the first [`SENT_BEFORE_BREAKING`] bytes of the body.
    pub async fn start(addr: SocketAddr, authority: &str) -> AbandonedUpload {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {ANNOUNCED_LENGTH}\r\n\r\n"
        );
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&[head.as_bytes(), &[b'u'; SENT_BEFORE_BREAKING]].concat())
            .await
            .expect("write head and first bytes");
        AbandonedUpload { stream }
    }

    /// Closes the connection with the rest of the body never sent.
    pub fn abandon(self) {
        drop(self.stream);
    }
}

// === impl MalformedChunked ===

impl MalformedChunked {
    /// Connects to `addr` and sends the request head (`Host: <authority>`, path `/upload`)
    /// and one valid chunk.
    pub async fn start(addr: SocketAddr, authority: &str) -> MalformedChunked {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: {authority}\r\nTransfer-Encoding: chunked\r\n\r\n\
             {SENT_BEFORE_BREAKING:x}\r\n"
        );
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&[head.as_bytes(), &[b'c'; SENT_BEFORE_BREAKING], b"\r\n"].concat())
            .await
            .expect("write head and first chunk");
        MalformedChunked { stream }
    }

    /// Sends a chunk-size line that is not hexadecimal (`zz`), keeps the connection open, and
    /// returns what the server sends back until it closes the connection or a complete
    /// response arrived (10 s at most).
    pub async fn send_bad_chunk(self) -> Vec<u8> {
        let (mut rd, mut wr) = self.stream.into_split();
        let _ = wr.write_all(b"zz\r\n").await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
            let mut buf = [0u8; 4096];
            while !crate::raw::response_complete(&got) {
                match tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        drop(wr);
        got
    }
}

// === impl H2Upload ===

impl H2Upload {
    /// Connects to `addr` with HTTP/2 prior knowledge and starts `POST http://<authority>/upload`
    /// whose body sends [`SENT_BEFORE_BREAKING`] bytes, then waits for [`H2Upload::fail`].
    pub async fn start(addr: SocketAddr, authority: &str) -> H2Upload {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let (cue_tx, cue) = oneshot::channel();
        let body = FailOnCue {
            first: Some(Bytes::from(vec![b'h'; SENT_BEFORE_BREAKING])),
            cue,
        };
        let req = Request::post(format!("http://{authority}/upload"))
            .body(body)
            .expect("a valid request");
        let response = tokio::spawn(async move {
            let rsp = tx.send_request(req).await.map_err(|e| e.to_string())?;
            let status = rsp.status().as_u16();
            // Read the body too, so the stream ends as the server ends it.
            let _ = rsp.into_body().collect().await;
            Ok(status)
        });
        H2Upload {
            cue: cue_tx,
            response,
        }
    }

    /// Fails the body (hyper resets the stream) and returns the response status, if one
    /// came, or the client's error (10 s at most).
    pub async fn fail(self) -> Result<u16, String> {
        let _ = self.cue.send(());
        match tokio::time::timeout(ANSWER_TIMEOUT, self.response).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(format!("request task failed: {e}")),
            Err(_) => Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
        }
    }
}

// === impl FailOnCue ===

impl Body for FailOnCue {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match Pin::new(&mut self.cue).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Err("the client gave up on its upload".into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
