//! Telling an HTTP/1.1-only server from an HTTP/2 one on a new HTTP/2 connection without
//! TLS (over TLS, ALPN says it). Every HTTP/2 server's first bytes are a SETTINGS frame (its
//! connection preface, RFC 9113 section 3.4); an HTTP/1.1 server answers the client's
//! preface with an HTTP/1 error response (nginx and Node `HTTP/1.1 400`, Python `HTTP/1.0
//! 505`) or closes the connection without a byte (hyper). So a connection that failed before
//! a SETTINGS frame arrived was not an HTTP/2 one.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Nothing received yet.
const NOTHING: u8 = 0;
/// The first bytes were an HTTP/2 frame header of type SETTINGS.
const HTTP2: u8 = 1;
/// The first bytes were something else (an HTTP/1 response).
const OTHER: u8 = 2;

/// The HTTP/2 frame type of SETTINGS (RFC 9113 section 6.5).
const SETTINGS: u8 = 0x4;

/// What a connection's first bytes said; shared with the pool, which asks when a request on
/// the connection fails.
#[derive(Debug)]
pub(crate) struct Preface(AtomicU8);

impl Default for Preface {
    fn default() -> Preface {
        Preface(AtomicU8::new(NOTHING))
    }
}

impl Preface {
    /// True once the server has sent an HTTP/2 SETTINGS frame first.
    pub(crate) fn spoke_http2(&self) -> bool {
        self.0.load(Ordering::Relaxed) == HTTP2
    }
}

/// A connection's I/O that looks at the first bytes it reads.
#[derive(Debug)]
pub(crate) struct Sniffed<I> {
    io: I,
    preface: Arc<Preface>,
    looked: bool,
}

impl<I> Sniffed<I> {
    /// `io`, reporting its first bytes to `preface`.
    pub(crate) fn new(io: I, preface: Arc<Preface>) -> Sniffed<I> {
        Sniffed {
            io,
            preface,
            looked: false,
        }
    }
}

/// The verdict on a connection's first bytes: an HTTP/2 frame header says SETTINGS in its
/// fourth byte; an HTTP/1 response starts with `H`.
fn first_bytes(bytes: &[u8]) -> u8 {
    match bytes {
        [b'H', ..] => OTHER,
        [_, _, _, kind, ..] if *kind == SETTINGS => HTTP2,
        [_, _, _, _, ..] => OTHER,
        // Fewer than four bytes in the first read: too rare to wait for, and not `H`.
        _ => HTTP2,
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Sniffed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if !this.looked && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.looked = true;
            let verdict = first_bytes(&buf.filled()[before..]);
            this.preface.0.store(verdict, Ordering::Relaxed);
        }
        polled
    }
}

forward_async_write!(Sniffed, io);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_first_is_http2_and_an_http1_response_is_not() {
        // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
        assert_eq!(first_bytes(&[0, 0, 0, 4, 0, 0, 0, 0, 0]), HTTP2);
        assert_eq!(first_bytes(b"HTTP/1.1 400 Bad Request\r\n"), OTHER);
        assert_eq!(first_bytes(b"HTTP/1.0 505 Invalid HTTP version"), OTHER);
        assert_eq!(first_bytes(b"\x15\x03\x03\x00\x02"), OTHER, "a TLS alert");
    }

    #[tokio::test]
    async fn the_first_read_decides_and_nothing_means_not_http2() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut server, client) = tokio::io::duplex(64);
        let preface = Arc::new(Preface::default());
        let mut io = Sniffed::new(client, preface.clone());
        assert!(!preface.spoke_http2(), "nothing received yet");
        server
            .write_all(b"HTTP/1.1 400 Bad Request\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0 && !preface.spoke_http2());
    }
}
