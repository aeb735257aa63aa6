//! Entry points for the fuzz targets in `fuzz/` (see `docs/fuzzing.md`): not part of
//! weft-proxy's API (hidden from its docs), only a way to feed untrusted bytes to the
//! crate-private code that reads them first: protocol detection, the ClientHello inspector
//! and the per-request dtab headers.

use http::{HeaderMap, HeaderValue, Uri, Version};
use weft_config::ViaPolicy;
use weft_naming::Dtab;

use crate::headers::{local_dtab, rewrite_request, Carried};
use crate::server::detect::{classify, classify_partial, Detected};
use crate::tls::hello::{inspect_client_hello, Hello};

/// Protocol detection over the first bytes of a connection: the verdict with these bytes
/// and more to come (`None`: wait for more), and the verdict if no more come. Verdicts are
/// `"http1"`, `"http2"`, `"tls"` or `"tcp"`.
pub fn detect_protocol(bytes: &[u8]) -> (Option<&'static str>, &'static str) {
    let name = |d: Detected| match d {
        Detected::Http1 => "http1",
        Detected::Http2 => "http2",
        Detected::Tls => "tls",
        Detected::Tcp => "tcp",
    };
    (classify(bytes).map(name), name(classify_partial(bytes)))
}

/// What the ClientHello inspector makes of a connection's first TLS record (`record`, at
/// most 2^14 + 5 bytes as the server reads it): `Ok(Some(sni))` for a ClientHello (its SNI,
/// if any), `Ok(None)` for the start of one that goes on in later records.
///
/// # Errors
/// Not a ClientHello: the rustls error as text.
pub fn inspect_hello(record: &[u8]) -> Result<Option<Option<String>>, String> {
    match inspect_client_hello(record) {
        Hello::Sni(sni) => Ok(Some(sni)),
        Hello::Incomplete => Ok(None),
        Hello::Invalid(e) => Err(e.to_string()),
    }
}

/// The router's handling of a request's dtab headers (`l5d-dtab`, `l5d-ctx-dtab`) for a
/// request to `http://svc/` carrying `headers`: the local dtab it routes with, and the
/// headers sent upstream (where that dtab travels on as `l5d-ctx-dtab`).
///
/// # Errors
/// A dtab header that is not text or does not parse (the 400 a client gets), as a message.
pub fn request_dtab(headers: HeaderMap) -> Result<(Dtab, HeaderMap), String> {
    let carried = Carried::scan(&headers);
    let local = local_dtab(&headers, carried).map_err(|e| e.to_string())?;
    let mut headers = headers;
    headers.insert(http::header::HOST, HeaderValue::from_static("svc"));
    let (_, upstream) = rewrite_request(
        Uri::from_static("http://svc/"),
        headers,
        Version::HTTP_11,
        &local,
        None,
        carried,
        ViaPolicy::default(),
    )
    .map_err(|e| e.to_string())?;
    Ok((local, upstream))
}
