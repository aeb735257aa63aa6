//! Identifiers: turn a request into a logical name such as `/svc/books` (naming.md
//! "Identifiers", after Linkerd 1's `io.l5d.header.token`, `methodAndHost`, `path`, `header`
//! and `static`).

use http::header::{HeaderName, HOST};
use http::uri::PathAndQuery;
use http::{Request, Version};
use weft_config::IdentifierConfig;
use weft_naming::Path;

use crate::error::{ErrorKind, ProxyError};

/// Header set by ingress controllers that names the destination; it wins over Host.
// Header names as constants: a `&str` key is parsed and validated on every lookup.
const DST_OVERRIDE: HeaderName = HeaderName::from_static("l5d-dst-override");

/// The identification of one request.
#[derive(Debug)]
pub(crate) struct Identified {
    /// The logical name, starting with the router's `dstPrefix`.
    pub(crate) name: Path,
    /// For the `path` identifier with `consume: true`: the request target to forward instead.
    pub(crate) rewritten: Option<PathAndQuery>,
}

/// Identifies `req` under `dst_prefix`. Errors: `Unidentified` (400) when the request lacks
/// what the identifier needs.
pub(crate) fn identify<B>(
    config: &IdentifierConfig,
    dst_prefix: &Path,
    req: &Request<B>,
) -> Result<Identified, ProxyError> {
    let plain = |name: Path| Identified {
        name,
        rewritten: None,
    };
    match config {
        IdentifierConfig::HeaderToken { header } => {
            let value = destination(req, header.as_str())?;
            Ok(plain(under(dst_prefix, [value])))
        }
        IdentifierConfig::MethodAndHost => {
            let host = destination(req, "host")?;
            let host = if host.iter().any(u8::is_ascii_uppercase) {
                std::borrow::Cow::Owned(host.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(host)
            };
            let version = match req.version() {
                Version::HTTP_10 => "1.0",
                Version::HTTP_2 => "2",
                _ => "1.1",
            };
            let labels: [&[u8]; 3] = [version.as_bytes(), req.method().as_str().as_bytes(), &host];
            Ok(plain(under(dst_prefix, labels)))
        }
        IdentifierConfig::Path { segments, consume } => {
            identify_path(req, dst_prefix, *segments, *consume)
        }
        IdentifierConfig::Header { header } => {
            let value = req
                .headers()
                .get(header)
                .ok_or_else(|| unidentified(format!("missing {header} header")))?;
            let text = value
                .to_str()
                .map_err(|_| unidentified(format!("{header} header is not text")))?;
            let path = Path::read(text)
                .map_err(|e| unidentified(format!("{header} header is not a path: {e}")))?;
            Ok(plain(dst_prefix.concat(&path)))
        }
        IdentifierConfig::Static { path } => Ok(plain(dst_prefix.concat(path))),
    }
}

/// The value a `header.token` identifier names the request by (its Host, or the configured
/// header; `l5d-dst-override` wins), without building the name: the name is a function of
/// it, so the router finds the request's service by it. `None` for other identifiers.
pub(crate) fn token<'a, B>(
    config: &IdentifierConfig,
    req: &'a Request<B>,
) -> Option<Result<&'a [u8], ProxyError>> {
    match config {
        IdentifierConfig::HeaderToken { header } => Some(destination(req, header.as_str())),
        _ => None,
    }
}

/// `prefix` followed by `labels`, built in one go (no intermediate path): the name of a
/// `header.token` identification of `[token]`.
pub(crate) fn under<'a>(prefix: &'a Path, labels: impl IntoIterator<Item = &'a [u8]>) -> Path {
    Path::from_labels(prefix.labels().chain(labels))
}

fn unidentified(detail: String) -> ProxyError {
    ProxyError::new(ErrorKind::Unidentified, detail)
}

/// The destination authority: `l5d-dst-override`, else the named header; for `host`, the
/// `:authority` (HTTP/2, or an absolute-form HTTP/1 target) when there is no Host header.
fn destination<'a, B>(req: &'a Request<B>, header: &str) -> Result<&'a [u8], ProxyError> {
    let headers = req.headers();
    if let Some(v) = headers.get(DST_OVERRIDE).filter(|v| !v.is_empty()) {
        return Ok(v.as_bytes());
    }
    let is_host = header.eq_ignore_ascii_case("host");
    let value = if is_host {
        headers.get(HOST)
    } else {
        headers.get(header)
    };
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        return Ok(v.as_bytes());
    }
    if is_host {
        if let Some(authority) = req.uri().authority() {
            return Ok(authority.as_str().as_bytes());
        }
    }
    Err(unidentified(format!("no {header} header")))
}

fn identify_path<B>(
    req: &Request<B>,
    dst_prefix: &Path,
    segments: usize,
    consume: bool,
) -> Result<Identified, ProxyError> {
    let path = req.uri().path();
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() < segments {
        return Err(unidentified(format!(
            "path has fewer than {segments} segments"
        )));
    }
    let name = dst_prefix.concat(&Path::from_labels(parts[..segments].iter()));
    let rewritten = if consume {
        let rest = parts[segments..].join("/");
        let trailing = if path.ends_with('/') && !rest.is_empty() {
            "/"
        } else {
            ""
        };
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let target = format!("/{rest}{trailing}{query}");
        Some(
            PathAndQuery::try_from(target)
                .map_err(|e| unidentified(format!("cannot rewrite path: {e}")))?,
        )
    } else {
        None
    };
    Ok(Identified { name, rewritten })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Path {
        Path::read("/svc").expect("valid path")
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("valid request")
    }

    fn host_token() -> IdentifierConfig {
        IdentifierConfig::HeaderToken {
            header: http::header::HOST,
        }
    }

    #[test]
    fn header_token_uses_host_with_port_as_one_label() {
        let id = identify(&host_token(), &svc(), &req("/x", &[("host", "books:8080")])).unwrap();
        assert_eq!(id.name.to_string(), "/svc/books:8080");
    }

    #[test]
    fn dst_override_wins_over_host() {
        let r = req("/", &[("host", "a"), ("l5d-dst-override", "b")]);
        assert_eq!(
            identify(&host_token(), &svc(), &r)
                .unwrap()
                .name
                .to_string(),
            "/svc/b"
        );
    }

    #[test]
    fn missing_host_is_unidentified() {
        let err = identify(&host_token(), &svc(), &req("/", &[])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unidentified);
    }

    #[test]
    fn method_and_host_lowercases_host() {
        let r = req("/", &[("host", "Books")]);
        let id = identify(&IdentifierConfig::MethodAndHost, &svc(), &r).unwrap();
        assert_eq!(id.name.to_string(), "/svc/1.1/GET/books");
    }

    #[test]
    fn path_identifier_consumes_segments() {
        let cfg = IdentifierConfig::Path {
            segments: 1,
            consume: true,
        };
        let id = identify(&cfg, &svc(), &req("/books/42/?q=1", &[])).unwrap();
        assert_eq!(id.name.to_string(), "/svc/books");
        assert_eq!(id.rewritten.unwrap().as_str(), "/42/?q=1");
        let short = identify(&cfg, &svc(), &req("/", &[])).unwrap_err();
        assert_eq!(short.kind(), ErrorKind::Unidentified);
    }

    #[test]
    fn header_identifier_parses_a_path() {
        let cfg = IdentifierConfig::Header {
            header: http::HeaderName::from_static("l5d-name"),
        };
        let id = identify(&cfg, &svc(), &req("/", &[("l5d-name", "/books/v2")])).unwrap();
        assert_eq!(id.name.to_string(), "/svc/books/v2");
        let bad = identify(&cfg, &svc(), &req("/", &[("l5d-name", "no-slash")])).unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::Unidentified);
    }
}
