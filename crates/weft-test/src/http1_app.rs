//! An application that speaks HTTP/1.1 only (hyper's `http1` server), and can close idle
//! keep-alive connections the way Node's `server.keepAliveTimeout` and Go's
//! `http.Server.IdleTimeout` do: a deadline per connection, set when a response ends and
//! cleared when the next request starts being read. The deadline is exact: a request that
//! arrives after it, even by a microsecond, finds the connection closing and stays unread in
//! the socket (the close then resets the connection). That is the keep-alive race a client's
//! pool must survive (RFC 9112 section 9.3.1), which a timer with millisecond ticks would
//! rarely let happen.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Response header naming the HTTP version the application saw (`HTTP/1.1`).
pub const APP_VERSION_HEADER: &str = "x-app-version";

/// An HTTP/1.1-only application on `127.0.0.1:0`, spawned on the current tokio runtime.
///
/// Every request gets `200`, `x-upstream: <name>`, [`APP_VERSION_HEADER`] and the body
/// `hello from <name> over HTTP/1.1\n`. On the HTTP/2 preface it closes the connection
/// without a byte, as hyper's HTTP/1 server does. It stops when dropped.
#[derive(Debug)]
pub struct Http1App {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    idle_timeout: Option<Duration>,
    requests: AtomicUsize,
    connections: AtomicUsize,
    idle_closes: AtomicUsize,
    unread_closes: AtomicUsize,
}

/// When a connection last read request bytes and last wrote response bytes, and whether it
/// reached its idle deadline.
#[derive(Debug, Default)]
struct Clock {
    last_read: Option<Instant>,
    last_write: Option<Instant>,
    expired: bool,
}

/// A connection's socket, stamping its reads and writes on the connection's [`Clock`]; past
/// the idle deadline it reads nothing more (hyper sees the end of the connection).
struct Watched {
    io: TcpStream,
    clock: Arc<Mutex<Clock>>,
    idle_timeout: Option<Duration>,
}

// === impl Http1App ===

impl Http1App {
    /// Starts an application that keeps keep-alive connections open until the client
    /// closes them.
    pub async fn start(name: &str) -> Http1App {
        Http1App::spawn(name, None).await
    }

    /// Starts an application that closes a keep-alive connection `idle` after its last
    /// response was written, unless the next request has started being read by then (bytes
    /// of a request that wait unread in the socket do not count, as in Node and Go).
    pub async fn with_idle_timeout(name: &str, idle: Duration) -> Http1App {
        Http1App::spawn(name, Some(idle)).await
    }

    async fn spawn(name: &str, idle_timeout: Option<Duration>) -> Http1App {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("app local addr");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            idle_timeout,
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            idle_closes: AtomicUsize::new(0),
            unread_closes: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Http1App { addr, shared, task }
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An `fs` namer line for this application: `127.0.0.1 PORT\n`.
    pub fn fs_line(&self) -> String {
        format!("{} {}\n", self.addr.ip(), self.addr.port())
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections closed by the idle timer.
    pub fn idle_closes(&self) -> usize {
        self.shared.idle_closes.load(Ordering::SeqCst)
    }

    /// Connections the idle timer closed while a request's bytes waited unread in the
    /// socket: each is a request lost in the keep-alive race (the client sees a reset).
    pub fn unread_closes(&self) -> usize {
        self.shared.unread_closes.load(Ordering::SeqCst)
    }
}

impl Drop for Http1App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                conns.spawn(serve(stream, shared.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, to look (without reading) for a waiting request when the
    // idle timer closes the connection. The socket closes when both are dropped.
    let Ok((stream, peek)) = split_handle(stream) else {
        return;
    };
    let clock = Arc::new(Mutex::new(Clock::default()));
    let io = Watched {
        io: stream,
        clock: clock.clone(),
        idle_timeout: shared.idle_timeout,
    };
    let svc = {
        let shared = shared.clone();
        service_fn(move |req| answer(req, shared.clone()))
    };
    let conn = pin!(http1::Builder::new().serve_connection(TokioIo::new(io), svc));
    let Some(idle) = shared.idle_timeout else {
        let _ = conn.await;
        return;
    };
    let timed_out = closed_idle(conn, &clock, idle).await;
    if timed_out || lock(&clock).expired {
        shared.idle_closes.fetch_add(1, Ordering::SeqCst);
        let mut byte = [0u8; 1];
        if matches!(peek.peek(&mut byte), Ok(n) if n > 0) {
            shared.unread_closes.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Returning drops the connection and `peek`: with a request unread, the kernel resets.
}

/// Drives `conn` until it ends (false) or its idle timer fires (true). A request that comes
/// after the deadline but before the timer's tick is refused by [`Watched`].
async fn closed_idle<F: Future>(
    mut conn: Pin<&mut F>,
    clock: &Mutex<Clock>,
    idle: Duration,
) -> bool {
    let mut timer = pin!(tokio::time::sleep(idle));
    poll_fn(|cx| loop {
        let deadline = idle_deadline(clock, idle);
        if let Some(deadline) = deadline {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
        }
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        // The connection may have just ended a response (or started reading a request).
        if idle_deadline(clock, idle) == deadline {
            return Poll::Pending;
        }
    })
    .await
}

/// When the connection closes if nothing is read before: `idle` after the last response
/// bytes were written, if no request bytes were read since.
fn idle_deadline(clock: &Mutex<Clock>, idle: Duration) -> Option<Instant> {
    lock(clock).idle_deadline(idle)
}

fn lock(clock: &Mutex<Clock>) -> std::sync::MutexGuard<'_, Clock> {
    clock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The stream, and a second (blocking-free) handle on the same socket for peeking.
fn split_handle(stream: TcpStream) -> io::Result<(TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let peek = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, peek))
}

async fn answer(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let version = format!("{:?}", req.version());
    let body = format!("hello from {} over {version}\n", shared.name);
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    let h = rsp.headers_mut();
    h.insert(
        "x-upstream",
        http::HeaderValue::from_str(&shared.name).expect("app names are header values"),
    );
    h.insert(
        APP_VERSION_HEADER,
        http::HeaderValue::from_str(&version).expect("a version is a header value"),
    );
    Ok(rsp)
}

// === impl Clock ===

impl Clock {
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        let wrote = self.last_write?;
        match self.last_read {
            Some(read) if read > wrote => None,
            _ => Some(wrote + idle),
        }
    }
}

// === impl Watched ===

impl Watched {
    /// True (and remembered) once the connection is idle past its deadline.
    fn expired(&self) -> bool {
        let Some(idle) = self.idle_timeout else {
            return false;
        };
        let mut clock = lock(&self.clock);
        if !clock.expired {
            clock.expired = clock
                .idle_deadline(idle)
                .is_some_and(|deadline| Instant::now() >= deadline);
        }
        clock.expired
    }

    fn stamp(&self, read: bool) {
        let mut clock = lock(&self.clock);
        let now = Some(Instant::now());
        if read {
            clock.last_read = now;
        } else {
            clock.last_write = now;
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired() {
            // Closed at the deadline: whatever came since stays unread.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.stamp(true);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.stamp(false);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.stamp(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn answers_http1_and_closes_silently_on_the_http2_preface() {
        let app = Http1App::start("books").await;
        let r = Client::http1(app.addr())
            .get("books", "/")
            .await
            .expect("GET");
        assert_eq!(r.header(APP_VERSION_HEADER), Some("HTTP/1.1"));
        assert_eq!(r.text(), "hello from books over HTTP/1.1\n");
        assert!(Client::http2(app.addr()).get("books", "/").await.is_err());
        let mut s = TcpStream::connect(app.addr()).await.expect("connect");
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write preface");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        assert_eq!(app.requests(), 1);
    }

    #[tokio::test]
    async fn closes_a_connection_idle_past_its_deadline() {
        let app = Http1App::with_idle_timeout("books", Duration::from_millis(100)).await;
        let mut s = TcpStream::connect(app.addr()).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nhost: books\r\n\r\n")
            .await
            .expect("write");
        let mut all = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
        assert!(read.is_ok(), "the idle connection was not closed");
        assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
        assert_eq!((app.idle_closes(), app.unread_closes()), (1, 0));
    }
}
