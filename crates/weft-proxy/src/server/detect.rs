//! Protocol detection on an accepted connection: TLS ClientHello, HTTP/2 preface, HTTP/1
//! request line, or otherwise opaque TCP. The bytes read to decide are replayed to whoever
//! serves the connection ([`Rewind`]).
//!
//! Detection waits a bounded time (1s by default): clients of HTTP and TLS speak first, within
//! one round trip; a client that stays silent longer is waiting for a server-speaks-first
//! protocol (MySQL, SMTP), which is then proxied as TCP after that delay. Ports declared
//! `opaquePorts` skip detection, and with it the delay.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Enough bytes to tell every protocol apart: the HTTP/2 preface is the longest signature.
const PEEK_BYTES: usize = 24;
/// The longest HTTP method we wait for before giving up on HTTP/1 (RFC 9110 has no limit;
/// registered methods are at most 17 characters, `VERSION-CONTROL`).
const MAX_METHOD: usize = 20;

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detected {
    /// An HTTP/1.x request line.
    Http1,
    /// The HTTP/2 connection preface (prior knowledge).
    Http2,
    /// A TLS ClientHello.
    Tls,
    /// Anything else, or silence: opaque TCP.
    Tcp,
}

/// Reads from `io` until the protocol is known, at most `timeout`. Returns the verdict,
/// whether the timeout expired, and `io` with the bytes read put back in front.
pub(crate) async fn detect<I>(
    mut io: I,
    timeout: Duration,
) -> io::Result<(Detected, bool, Rewind<I>)>
where
    I: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(PEEK_BYTES);
    let deadline = tokio::time::Instant::now() + timeout;
    let verdict = loop {
        if let Some(v) = classify(&buf) {
            break (v, false);
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
            Err(_) => break (classify_partial(&buf), true),
            Ok(Ok(0)) => break (classify_partial(&buf), false),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    };
    Ok((verdict.0, verdict.1, Rewind::new(buf, io)))
}

/// A verdict from the bytes so far, or `None` if more are needed.
pub(crate) fn classify(buf: &[u8]) -> Option<Detected> {
    let first = *buf.first()?;
    if first == 0x16 {
        // TLS record type 22 (handshake); a ClientHello follows.
        return Some(Detected::Tls);
    }
    if H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
        return (buf.len() >= H2_PREFACE.len()).then_some(Detected::Http2);
    }
    // HTTP/1: a method token (RFC 9110 section 9: a token; in practice upper-case letters
    // and '-') followed by a space. A token ended by a line break is a broken request line:
    // HTTP too, so the client gets a 400 rather than a silently closed connection.
    for (i, b) in buf.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'-' if i < MAX_METHOD => continue,
            b' ' | b'\r' | b'\n' if i > 0 => return Some(Detected::Http1),
            _ => return Some(Detected::Tcp),
        }
    }
    // Only method characters so far, at most MAX_METHOD of them: the byte after them decides
    // (a longer token is TCP, in the loop above), whichever read it arrives in.
    None
}

/// The verdict when no more bytes will come in time.
pub(crate) fn classify_partial(buf: &[u8]) -> Detected {
    classify(buf).unwrap_or(Detected::Tcp)
}

/// An I/O object with some already-read bytes put back in front.
#[derive(Debug)]
pub(crate) struct Rewind<I> {
    prefix: BytesMut,
    inner: I,
}

impl<I> Rewind<I> {
    /// Wraps `inner`, replaying `prefix` first.
    pub(crate) fn new(prefix: BytesMut, inner: I) -> Rewind<I> {
        Rewind { prefix, inner }
    }

    /// Wraps `inner` with nothing to replay.
    pub(crate) fn plain(inner: I) -> Rewind<I> {
        Rewind::new(BytesMut::new(), inner)
    }
}

/// The largest TLS record a ClientHello may come in (RFC 8446 section 5.1: 2^14 bytes plus
/// the 5-byte header).
const MAX_TLS_RECORD: usize = (1 << 14) + 5;

impl<I: AsyncRead + Unpin> Rewind<I> {
    /// Reads (into the replay buffer) until it holds the whole first TLS record, at most
    /// `timeout`; returns that record. Errors on timeout, EOF, or an oversized record.
    pub(crate) async fn read_tls_record(&mut self, timeout: Duration) -> io::Result<&[u8]> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.prefix.len() >= 5 {
                let len = 5 + usize::from(u16::from_be_bytes([self.prefix[3], self.prefix[4]]));
                if len > MAX_TLS_RECORD {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "tls record too large",
                    ));
                }
                if self.prefix.len() >= len {
                    return Ok(&self.prefix[..len]);
                }
            }
            match tokio::time::timeout_at(deadline, self.inner.read_buf(&mut self.prefix)).await {
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete ClientHello",
                    ))
                }
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

forward_async_write!(Rewind, inner);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn classifies_signatures() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http1));
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Some(Detected::Http1));
        assert_eq!(classify(H2_PREFACE), Some(Detected::Http2));
        assert_eq!(
            classify(b"PRI * HTTP/2"),
            None,
            "wait for the whole preface"
        );
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Some(Detected::Tls));
        assert_eq!(classify(b"\x00\x01binary"), Some(Detected::Tcp));
        assert_eq!(
            classify(b"get / "),
            Some(Detected::Tcp),
            "methods are upper case"
        );
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify_partial(b"GE"), Detected::Tcp);
    }

    /// Found by the `detect` fuzz target: 20 method letters without the space after them
    /// were TCP, with it HTTP/1, so the verdict depended on where a read ended.
    #[test]
    fn longest_method_split_before_its_space_is_still_http1() {
        let line = b"ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n";
        assert_eq!(
            classify(&line[..MAX_METHOD]),
            None,
            "wait for the next byte"
        );
        assert_eq!(classify(&line[..MAX_METHOD + 1]), Some(Detected::Http1));
        assert_eq!(classify(b"ABCDEFGHIJKLMNOPQRSTU"), Some(Detected::Tcp));
        assert_eq!(classify_partial(&line[..MAX_METHOD]), Detected::Tcp);
    }

    #[tokio::test]
    async fn replays_the_peeked_bytes() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let (detected, timed_out, mut io) = detect(server, Duration::from_secs(1)).await.unwrap();
        assert_eq!((detected, timed_out), (Detected::Http1, false));
        let mut all = vec![0u8; 18];
        io.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_is_tcp_after_the_timeout() {
        let (_client, server) = tokio::io::duplex(64);
        let (detected, timed_out, _) = detect(server, Duration::from_secs(1)).await.unwrap();
        assert_eq!((detected, timed_out), (Detected::Tcp, true));
    }
}
