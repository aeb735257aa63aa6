//! An upstream that can be stopped and started again on the same port, and whose failures are
//! written byte by byte: HTTP/1.1 is answered on the raw socket (so "headers, then close" and
//! "half the body, then a TCP reset" are exactly that), HTTP/2 with prior knowledge through
//! hyper (where a failed body becomes `RST_STREAM`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::BoxError;

/// Length of the body of a whole response (`ScriptedUpstream::body`).
pub const SCRIPTED_BODY_LEN: usize = 32 * 1024;
/// How long a truncating upstream waits between the first half of the body and the reset, so
/// the headers and that half reach the peer (and go on downstream) before the failure.
pub const TRUNCATE_PAUSE: Duration = Duration::from_millis(300);
/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bound on an HTTP/1 request head this server accepts.
const MAX_HEAD: usize = 64 * 1024;

/// What a [`ScriptedUpstream`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// 200 with the whole body ([`ScriptedUpstream::body`]).
    Ok,
    /// The 1st, 3rd, 5th... request of the server's life gets 500 (a short body), the others
    /// 200 with the whole body: half of all requests fail.
    FailEveryOther,
    /// Response headers "200 OK" announcing the whole body's length, then nothing: HTTP/1
    /// closes the connection (FIN), HTTP/2 resets the stream.
    EmptyOk,
    /// Response headers announcing the whole body's length and its first half, flushed; after
    /// [`TRUNCATE_PAUSE`], HTTP/1 resets the TCP connection (RST), HTTP/2 resets the stream.
    HalfThenReset,
}

/// A real upstream on `127.0.0.1`, speaking HTTP/1.1 and HTTP/2 with prior knowledge, that
/// answers by a [`Script`] and can be stopped (gracefully) and started again on the same port,
/// like an instance going through a restart.
///
/// Every response carries `x-upstream: <name>`. A whole body is [`SCRIPTED_BODY_LEN`] bytes
/// naming the upstream ([`ScriptedUpstream::body`]). Dropping it stops it at once.
#[derive(Debug)]
pub struct ScriptedUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    script: Mutex<Script>,
    body: Bytes,
    requests: AtomicUsize,
    connections: AtomicUsize,
}

#[derive(Debug)]
struct Running {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// One HTTP/1 request as far as this server cares.
struct Head {
    close: bool,
}

impl ScriptedUpstream {
    /// Binds `127.0.0.1:0` and serves `script`. Must be called within a tokio runtime.
    pub async fn start(name: &str, script: Script) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind scripted upstream");
        let addr = listener.local_addr().expect("scripted upstream addr");
        let line = format!("hello from {name}\n");
        let body: Vec<u8> = line.bytes().cycle().take(SCRIPTED_BODY_LEN).collect();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            script: Mutex::new(script),
            body: Bytes::from(body),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let up = ScriptedUpstream {
            addr,
            shared,
            running: Mutex::new(None),
        };
        up.serve(listener);
        up
    }

    /// The upstream's name, as sent in `x-upstream`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address (`127.0.0.1:PORT`), the same across restarts.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An `fs` namer line for this upstream: `127.0.0.1 PORT\n`.
    pub fn fs_line(&self) -> String {
        format!("{} {}\n", self.addr.ip(), self.addr.port())
    }

    /// The whole body of a 200 response.
    pub fn body(&self) -> &Bytes {
        &self.shared.body
    }

    /// Requests received so far, over every run, whatever the answer.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far, over every run.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Answers by `script` from now on.
    pub fn set_script(&self, script: Script) {
        *self
            .shared
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = script;
    }

    /// Whether it is serving now.
    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// Stops like a server on SIGTERM: closes the listener (new connections are refused),
    /// lets requests in progress finish, closes idle connections, and after `grace` drops
    /// whatever is left. Returns once nothing of this run is left.
    pub async fn stop(&self, grace: Duration) {
        let Some(running) = self.lock().take() else {
            return;
        };
        let _ = running.stop.send(true);
        let mut task = running.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Starts serving again on the same port after [`ScriptedUpstream::stop`]. Panics if the
    /// port cannot be bound again within 5 s (another process took it).
    pub async fn restart(&self) {
        assert!(!self.is_running(), "{} is already running", self.name());
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    panic!("cannot bind {} again: {e}", self.addr)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, self.shared.clone(), stop_rx));
        *self.lock() = Some(Running { task, stop });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        if let Some(running) = self.lock().take() {
            running.task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let conn_stop = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve_conn(stream, shared.clone(), conn_stop.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    // Connections finish their current exchange and close; the caller bounds the wait.
    while conns.join_next().await.is_some() {}
}

async fn serve_conn(stream: TcpStream, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; H2_PREFACE.len()];
    // Peek until the preface is decided: h2 prior knowledge, or anything else (HTTP/1).
    let deadline = Instant::now() + Duration::from_secs(10);
    let h2 = loop {
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(n) if n >= H2_PREFACE.len() || first[..n] != H2_PREFACE[..n] => {
                break first[..n] == H2_PREFACE[..n];
            }
            Ok(_) if Instant::now() >= deadline => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    };
    if h2 {
        serve_h2(stream, shared, stop).await;
    } else {
        serve_h1(stream, shared, stop).await;
    }
}

// === HTTP/1.1 on the raw socket ===

async fn serve_h1(mut stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut buf = Vec::new();
    loop {
        let head = tokio::select! {
            head = read_request(&mut stream, &mut buf) => head,
            // Idle between requests while stopping: close, as a draining server does.
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(head) = head else { return };
        let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let script = *shared.script.lock().unwrap_or_else(PoisonError::into_inner);
        let keep_open = match script {
            Script::Ok => write_whole(&mut stream, &shared, 200, &shared.body).await,
            Script::FailEveryOther if n % 2 == 1 => {
                write_whole(&mut stream, &shared, 500, b"failure on cue\n").await
            }
            Script::FailEveryOther => write_whole(&mut stream, &shared, 200, &shared.body).await,
            Script::EmptyOk => {
                let _ = stream
                    .write_all(&h1_head(&shared, 200, shared.body.len()))
                    .await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
                false
            }
            Script::HalfThenReset => {
                let _ = stream
                    .write_all(&h1_head(&shared, 200, shared.body.len()))
                    .await;
                let half = &shared.body[..shared.body.len() / 2];
                let _ = stream.write_all(half).await;
                let _ = stream.flush().await;
                tokio::time::sleep(TRUNCATE_PAUSE).await;
                // SO_LINGER 0: closing sends RST instead of FIN.
                let _ = stream.set_zero_linger();
                false
            }
        };
        if !keep_open || head.close || *stop.borrow() {
            return;
        }
    }
}

/// Writes a whole response; true if the connection may carry another request.
async fn write_whole(stream: &mut TcpStream, shared: &Shared, status: u16, body: &[u8]) -> bool {
    let mut out = h1_head(shared, status, body.len());
    out.extend_from_slice(body);
    stream.write_all(&out).await.is_ok() && stream.flush().await.is_ok()
}

fn h1_head(shared: &Shared, status: u16, len: usize) -> Vec<u8> {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {len}\r\n\
         x-upstream: {}\r\n\r\n",
        shared.name
    )
    .into_bytes()
}

/// Reads one request head and its `content-length` body (chunked bodies are not supported:
/// tests send small bodies with a length). `None` on EOF, an error, or a head too large.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Head> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD || read_more(stream, buf).await? == 0 {
            return None;
        }
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut len = 0usize;
    let mut close = false;
    for line in text.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            len = v.parse().ok()?;
        } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
            close = true;
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            // Not supported here; close after the response rather than misread the stream.
            close = true;
        }
    }
    while buf.len() < end + len {
        if read_more(stream, buf).await? == 0 {
            return None;
        }
    }
    buf.drain(..end + len);
    Some(Head { close })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.ok()?;
    buf.extend_from_slice(&chunk[..n]);
    Some(n)
}

// === HTTP/2 through hyper ===

async fn serve_h2(stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let svc = service_fn(move |req| respond_h2(req, shared.clone()));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    // GOAWAY; streams in progress finish.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

async fn respond_h2(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<ScriptBody>, Infallible> {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = req.into_body().collect().await;
    let script = *shared.script.lock().unwrap_or_else(PoisonError::into_inner);
    let whole = shared.body.clone();
    let (status, frames, fail_after): (u16, Vec<Bytes>, Option<Duration>) = match script {
        Script::Ok => (200, vec![whole.clone()], None),
        Script::FailEveryOther if n % 2 == 1 => {
            (500, vec![Bytes::from_static(b"failure on cue\n")], None)
        }
        Script::FailEveryOther => (200, vec![whole.clone()], None),
        Script::EmptyOk => (200, Vec::new(), Some(Duration::ZERO)),
        Script::HalfThenReset => (
            200,
            vec![whole.slice(..whole.len() / 2)],
            Some(TRUNCATE_PAUSE),
        ),
    };
    let exact = match (status, fail_after) {
        (_, Some(_)) => whole.len() as u64,
        _ => frames.iter().map(|f| f.len() as u64).sum(),
    };
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for f in frames {
            if tx.send(Ok(Frame::data(f))).await.is_err() {
                return;
            }
        }
        if let Some(pause) = fail_after {
            tokio::time::sleep(pause).await;
            let _ = tx.send(Err("reset on cue".into())).await;
        }
    });
    let rsp = Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .header("x-upstream", shared.name.as_str())
        .body(ScriptBody { rx, exact })
        .expect("scripted response");
    Ok(rsp)
}

/// A response body fed through a channel, announcing an exact length.
struct ScriptBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    exact: u64,
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    #[tokio::test]
    async fn scripted_upstream_answers_and_fails_on_cue_over_both_protocols() {
        let up = ScriptedUpstream::start("s", Script::Ok).await;
        for client in [Client::http1(up.addr()), Client::http2(up.addr())] {
            let r = client.get("s", "/").await.expect("request");
            assert_eq!((r.status.as_u16(), r.upstream()), (200, Some("s")));
            assert_eq!(&r.body, up.body());
        }
        up.set_script(Script::FailEveryOther);
        let c = Client::http1(up.addr());
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(c.get("s", "/").await.expect("request").status.as_u16());
        }
        assert_eq!(got, [500, 200, 500, 200], "requests 3..6 of this server");
        for script in [Script::EmptyOk, Script::HalfThenReset] {
            up.set_script(script);
            assert!(Client::http1(up.addr()).get("s", "/").await.is_err());
            assert!(Client::http2(up.addr()).get("s", "/").await.is_err());
        }
    }

    #[tokio::test]
    async fn scripted_upstream_restarts_on_the_same_port() {
        let up = ScriptedUpstream::start("r", Script::Ok).await;
        let addr = up.addr();
        up.stop(Duration::from_secs(1)).await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
        up.restart().await;
        let r = Client::http1(addr).get("r", "/").await.expect("request");
        assert_eq!(r.status, 200);
        assert_eq!(up.requests(), 1);
    }
}
