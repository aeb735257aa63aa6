//! Proxy errors: every failure knows who is at fault and whether a retry is safe, and those
//! facts pick the status code, the `l5d-proxy-error` reason and the metrics `error` label
//! (DESIGN.md "Errors"; the split follows pingora's `ErrorSource`/`RetryType`).

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// Who caused a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The downstream client sent something the proxy cannot route.
    Downstream,
    /// The upstream endpoint failed (refused, reset, timed out, spoke bad HTTP).
    Upstream,
    /// The proxy itself (naming, no endpoints, shutting down).
    Proxy,
}

/// The kinds of failure the proxy reports. Each has a fixed, short reason used as the
/// `l5d-proxy-error` header value and the `error` metrics label, so label cardinality stays
/// bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No logical name could be derived from the request (e.g. no Host header). 400.
    Unidentified,
    /// The `Via` header shows more hops than the router allows: a routing loop. 400.
    LoopDetected,
    /// An `l5d-dtab` or `l5d-ctx-dtab` header did not parse. 400.
    BadDtabHeader,
    /// The client's identity (or its lack of one) is not authorized on this router. 403.
    Unauthorized,
    /// The name bound to Neg: no such service. 502.
    NoSuchService,
    /// The binding failed (Fail, a delegation loop, a namer error). 502.
    BindingFailed,
    /// A namer was still loading when the binding timeout expired. 503.
    BindingTimeout,
    /// The name is bound but has no endpoints. 503.
    NoEndpoints,
    /// Every endpoint stayed ejected by failure accrual for the failfast timeout. 503.
    FailFast,
    /// The endpoint refused the TCP connection. 502, safe to retry.
    ConnectionRefused,
    /// The TCP connection could not be made for another reason. 502, safe to retry.
    ConnectFailed,
    /// The TCP connection was not established within the connect timeout. 504, safe to retry.
    ConnectTimeout,
    /// The TLS handshake with the endpoint failed: its certificate was refused (untrusted,
    /// expired, not valid for the server name or identity), it refused ours, or it does not
    /// speak what was asked of it over ALPN. 502, safe to retry: the request never left.
    UpstreamTls,
    /// The upstream closed or reset the connection before the response head. 502.
    UpstreamReset,
    /// The upstream sent something that is not valid HTTP. 502.
    UpstreamProtocol,
    /// The request did not complete within its total timeout. 504.
    RequestTimeout,
    /// An HTTP/1.1 request head was not complete `headerReadTimeout` after its first byte; the
    /// connection closes after the response. 408 (RFC 9110 section 15.5.9).
    HeaderTimeout,
}

// === impl ErrorKind ===

impl ErrorKind {
    /// The short reason: the `l5d-proxy-error` value and the `error` metrics label.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Unidentified => "unidentified",
            ErrorKind::LoopDetected => "loop-detected",
            ErrorKind::BadDtabHeader => "bad-dtab-header",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NoSuchService => "no-such-service",
            ErrorKind::BindingFailed => "binding-failed",
            ErrorKind::BindingTimeout => "binding-timeout",
            ErrorKind::NoEndpoints => "no-endpoints",
            ErrorKind::FailFast => "failfast",
            ErrorKind::ConnectionRefused => "connection-refused",
            ErrorKind::ConnectFailed => "connect-failed",
            ErrorKind::ConnectTimeout => "connect-timeout",
            ErrorKind::UpstreamTls => "upstream-tls",
            ErrorKind::UpstreamReset => "upstream-reset",
            ErrorKind::UpstreamProtocol => "upstream-protocol",
            ErrorKind::RequestTimeout => "request-timeout",
            ErrorKind::HeaderTimeout => "header-timeout",
        }
    }

    /// The HTTP status of the proxy-generated response (DESIGN.md error table).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Unidentified | ErrorKind::LoopDetected | ErrorKind::BadDtabHeader => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::Unauthorized => StatusCode::FORBIDDEN,
            ErrorKind::HeaderTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::NoSuchService
            | ErrorKind::BindingFailed
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectFailed
            | ErrorKind::UpstreamTls
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ErrorKind::BindingTimeout | ErrorKind::NoEndpoints | ErrorKind::FailFast => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::ConnectTimeout | ErrorKind::RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Who is at fault.
    pub fn fault(self) -> Fault {
        match self {
            ErrorKind::Unidentified
            | ErrorKind::LoopDetected
            | ErrorKind::BadDtabHeader
            | ErrorKind::Unauthorized
            | ErrorKind::HeaderTimeout => Fault::Downstream,
            ErrorKind::ConnectionRefused
            | ErrorKind::ConnectFailed
            | ErrorKind::ConnectTimeout
            | ErrorKind::UpstreamTls
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol
            | ErrorKind::RequestTimeout => Fault::Upstream,
            ErrorKind::NoSuchService
            | ErrorKind::BindingFailed
            | ErrorKind::BindingTimeout
            | ErrorKind::NoEndpoints
            | ErrorKind::FailFast => Fault::Proxy,
        }
    }

    /// True when the request provably never reached the application, so any method may be
    /// sent again (reported downstream as `l5d-retryable: true`).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectFailed
                | ErrorKind::ConnectTimeout
                | ErrorKind::UpstreamTls
                | ErrorKind::BindingTimeout
                | ErrorKind::NoEndpoints
                | ErrorKind::FailFast
        )
    }
}

/// A failure on the request path: a kind plus a short detail for the body and the log.
#[derive(Debug)]
pub struct ProxyError {
    kind: ErrorKind,
    detail: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

// === impl ProxyError ===

impl ProxyError {
    /// Creates an error of `kind` with a one-line `detail` (shown in the response body; must
    /// not contain whole dtabs or discovery state).
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> ProxyError {
        ProxyError {
            kind,
            detail: detail.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause, reachable through `source()`.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ProxyError {
        self.source = Some(source.into());
        self
    }

    /// The kind, which decides status, reason and retry safety.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Builds the proxy-generated response: the kind's status, `l5d-proxy-error: <reason>`,
    /// `l5d-retryable: true` when the request never reached the app, and a short text body.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let body = format!("{}: {}\n", self.kind.reason(), self.detail);
        let mut rsp = Response::new(B::from(Bytes::from(body)));
        *rsp.status_mut() = self.kind.status();
        let headers = rsp.headers_mut();
        headers.insert(
            "l5d-proxy-error",
            HeaderValue::from_static(self.kind.reason()),
        );
        if self.kind.is_retryable() {
            headers.insert("l5d-retryable", HeaderValue::from_static("true"));
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        rsp
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.reason(), self.detail)
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_carries_reason_status_and_retryable() {
        let err = ProxyError::new(ErrorKind::ConnectionRefused, "127.0.0.1:1");
        let rsp: Response<Bytes> = err.to_response();
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(rsp.headers()["l5d-proxy-error"], "connection-refused");
        assert_eq!(rsp.headers()["l5d-retryable"], "true");
        assert_eq!(rsp.body(), "connection-refused: 127.0.0.1:1\n");
    }

    #[test]
    fn upstream_tls_is_a_retryable_502() {
        let rsp: Response<Bytes> = ProxyError::new(
            ErrorKind::UpstreamTls,
            "endpoint 127.0.0.1:443: TLS with x: why",
        )
        .to_response();
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(rsp.headers()["l5d-proxy-error"], "upstream-tls");
        assert_eq!(rsp.headers()["l5d-retryable"], "true");
        assert_eq!(ErrorKind::UpstreamTls.fault(), Fault::Upstream);
    }

    #[test]
    fn upstream_reset_is_not_marked_retryable() {
        let rsp: Response<Bytes> = ProxyError::new(ErrorKind::UpstreamReset, "x").to_response();
        assert!(rsp.headers().get("l5d-retryable").is_none());
    }
}
