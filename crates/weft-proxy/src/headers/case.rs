//! Header names keep their spelling across the proxy-to-proxy HTTP/2 hop.
//!
//! On one HTTP/1.1 hop hyper keeps the spelling itself (`preserve_header_case` on the server
//! and the client: the server records it in the request's extensions, the client writes it).
//! HTTP/2 has only lowercase names (RFC 9113 section 8.2.1), so an HTTP/1.1 request that
//! crosses to a peer proxy over HTTP/2 would reach its application lowercased, which
//! case-sensitive applications do not forgive (linkerd/linkerd2 issues 2878 and 3964).
//!
//! So the outbound proxy sends the spellings along in `l5d-orig-header-case` (the names
//! whose spelling is not all lowercase, in the order the client sent them), and the inbound
//! proxy turns that back into hyper's record before its HTTP/1.1 client writes the request.
//! hyper keeps that record private, so both ends go through hyper's own parser: the outbound
//! reads the head bytes the client sent ([`RawHead`], kept by the server's connection I/O
//! only on routers that can reach peer proxies), and the inbound has hyper parse a head made
//! of the spellings once per distinct value, then reuses the result ([`CaseMaps`]).

use std::convert::Infallible;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::{Extensions, HeaderName, HeaderValue, Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::cache::Cache;

/// The request header that carries header spellings across the proxy-to-proxy hop.
pub(crate) const ORIG_HEADER_CASE: HeaderName = HeaderName::from_static("l5d-orig-header-case");

/// The most header names read from a head (hyper's own limit is 100).
const MAX_HEADERS: usize = 128;
/// Distinct spelling sets remembered by an inbound router.
const MAX_CASE_MAPS: usize = 256;

/// The bytes of an HTTP/1.1 request head as the client sent them (perhaps followed by some
/// of its body), in the request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct RawHead(pub(crate) Bytes);

/// The `l5d-orig-header-case` value a request arrived with from a peer proxy, in its
/// extensions, so that a proxy in the middle of a chain (a gateway) sends it on to the next
/// peer: such a request has no [`RawHead`] to read the spellings from.
#[derive(Clone, Debug)]
pub(crate) struct Spelled(pub(crate) HeaderValue);

/// The `l5d-orig-header-case` value to send on with `ext`'s request: from the head its client
/// sent, or as it came from a previous peer proxy.
pub(crate) fn spellings_of(ext: &Extensions) -> Option<HeaderValue> {
    match ext.get::<RawHead>() {
        Some(raw) => spellings(raw),
        None => ext.get::<Spelled>().map(|s| s.0.clone()),
    }
}

/// The `l5d-orig-header-case` value for a request whose head was `raw`: the spelling of
/// every header whose name is not all lowercase, each occurrence in order (all occurrences
/// of such a name, so the inbound can match them by position). `None` when every name is
/// lowercase or the head does not parse.
pub(crate) fn spellings(raw: &RawHead) -> Option<HeaderValue> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(&raw.0), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let names: Vec<&str> = req.headers.iter().map(|h| h.name).collect();
    let mixed = |name: &str| name.bytes().any(|b| b.is_ascii_uppercase());
    if !names.iter().any(|n| mixed(n)) {
        return None;
    }
    let mut out = String::new();
    for name in &names {
        let spelled_here = names
            .iter()
            .any(|other| mixed(other) && other.eq_ignore_ascii_case(name));
        if spelled_here {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(name);
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// An inbound router's record of the spelling sets it has seen, as hyper's request
/// extensions.
#[derive(Debug)]
pub(crate) struct CaseMaps {
    cache: Cache<HeaderValue, Extensions>,
    /// Makes one at a time: a burst of new spellings queues instead of parsing in parallel.
    making: tokio::sync::Mutex<()>,
}

impl CaseMaps {
    pub(crate) fn new() -> CaseMaps {
        CaseMaps {
            cache: Cache::new(MAX_CASE_MAPS),
            making: tokio::sync::Mutex::new(()),
        }
    }

    /// Extensions that make hyper's HTTP/1.1 client write header names as `spellings` (an
    /// `l5d-orig-header-case` value) says; `None` if it is not a list of header names.
    pub(crate) async fn extensions(&self, spellings: &HeaderValue) -> Option<Extensions> {
        if let Some(found) = self.cache.get(spellings) {
            return Some(found);
        }
        let _one = self.making.lock().await;
        let made = parse(spellings.as_bytes()).await?;
        Some(self.cache.get_or_insert_with(spellings, || made))
    }
}

/// Has hyper's HTTP/1.1 server parse a request head whose header names are `spellings`
/// (comma-separated), and returns the extensions it recorded for that request.
async fn parse(spellings: &[u8]) -> Option<Extensions> {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for name in spellings.split(|b| *b == b',') {
        let name = name.trim_ascii();
        // Only a header name (an RFC 9110 token) may go into the head.
        HeaderName::from_bytes(name).ok()?;
        head.extend_from_slice(name);
        head.extend_from_slice(b": x\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let (mut client, server) = tokio::io::duplex(head.len() + 1024);
    client.write_all(&head).await.ok()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let svc = service_fn(move |req: Request<Incoming>| {
        let taken = tx.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(tx) = taken {
            let _ = tx.send(req.extensions().clone());
        }
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(server), svc);
    tokio::select! {
        biased;
        made = rx => made.ok(),
        _ = conn => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(head: &str) -> RawHead {
        RawHead(Bytes::copy_from_slice(head.as_bytes()))
    }

    #[test]
    fn spellings_list_every_occurrence_of_names_that_are_not_lowercase() {
        let head = "POST /x HTTP/1.1\r\nHost: a\r\nx-lower: 1\r\nX-Blah-Token: t\r\nx-blah-token: u\r\n\r\nbody";
        let v = spellings(&raw(head)).expect("mixed case");
        assert_eq!(v, "Host,X-Blah-Token,x-blah-token");
        assert_eq!(
            spellings(&raw("GET / HTTP/1.1\r\nhost: a\r\n\r\n")),
            None,
            "all lowercase: nothing to carry"
        );
        assert_eq!(
            spellings(&raw("GET / HTTP/1.1\r\nHost: a\r\n")),
            None,
            "incomplete"
        );
    }

    #[tokio::test]
    async fn hyper_writes_the_carried_spelling_and_bad_values_are_refused() {
        let maps = CaseMaps::new();
        let ext = maps
            .extensions(&HeaderValue::from_static("X-Blah-Token, Content-Type"))
            .await
            .expect("parsed");
        // Have hyper's HTTP/1.1 client write a request with these extensions.
        let (client, mut server) = tokio::io::duplex(4096);
        let (mut tx, conn) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(client))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut req = Request::new(Empty::<Bytes>::new());
        req.headers_mut()
            .insert("x-blah-token", HeaderValue::from_static("t"));
        req.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/plain"));
        req.headers_mut()
            .insert("host", HeaderValue::from_static("books"));
        *req.extensions_mut() = ext;
        tokio::spawn(async move { tx.send_request(req).await });
        let mut buf = vec![0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut server, &mut buf)
            .await
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.contains("\r\nX-Blah-Token: t\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Type: text/plain\r\n"), "{text}");
        assert!(text.contains("\r\nhost: books\r\n"), "not carried: {text}");

        assert!(maps
            .extensions(&HeaderValue::from_static("X-Ok, Bad Name"))
            .await
            .is_none());
    }
}
