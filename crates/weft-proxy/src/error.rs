//! Proxy errors: every failure knows who is at fault and whether a retry is safe, and those
//! facts pick the status code, the `l5d-proxy-error` reason and the metrics `error` label
//! (DESIGN.md "Errors"; the split follows pingora's `ErrorSource`/`RetryType`).

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// Who caused a failure. Decides the `fault` metrics label, whether the failure counts
/// against the service's success rate, and whether failure accrual and the balancer's cost
/// see it: a client's mistake never counts against an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The downstream client: a request the proxy cannot route, a broken request body, a
    /// client that went away.
    Downstream,
    /// The upstream endpoint: refused, reset, timed out, spoke bad HTTP.
    Upstream,
    /// The proxy itself or its configuration: naming, no endpoints, a protocol the endpoint
    /// does not speak.
    Proxy,
}

impl Fault {
    /// The `fault` metrics label value.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Downstream => "downstream",
            Fault::Upstream => "upstream",
            Fault::Proxy => "proxy",
        }
    }
}

/// Whether a failed request may be sent again, and how (after pingora's `RetryType`). The
/// dispatcher acts on it in one place (`Dispatch::next` in `dispatch/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// No connection could be made (refused, timed out, TLS failed), or a new one closed
    /// before the request was written: the request provably never reached the application
    /// and any method may be sent again, preferably to another endpoint.
    Unsent,
    /// The connection went away under the request without the application answering: a
    /// reused connection failed before any byte of the response (the keep-alive race, where
    /// the application closed an idle connection as the request went out), or HTTP/2 refused
    /// the stream (`REFUSED_STREAM`, or a `GOAWAY` that came before it). Not the endpoint's
    /// failure. The request goes again on a fresh connection: any method when it was never
    /// `written`, only an idempotent one (RFC 9110 section 9.2.2) when it may have been, as
    /// browsers and Go's HTTP client do (RFC 9112 section 9.3.1).
    Stale {
        /// The request may have been written to the connection.
        written: bool,
    },
    /// The request may have been processed: sent again only as the route's response
    /// classifier allows for its method, within the retry budget.
    Classified,
    /// Must not be sent again: the client's own fault, a configuration problem, or the
    /// request's time is up.
    Never,
}

impl Retry {
    /// True when the request provably never reached the application (the response says so
    /// with `l5d-retryable: true`).
    pub fn never_reached_app(self) -> bool {
        matches!(self, Retry::Unsent | Retry::Stale { written: false })
    }
}

/// The kinds of failure the proxy reports. Each has a fixed, short reason used as the
/// `l5d-proxy-error` header value and the `error` metrics label, so label cardinality stays
/// bounded (`docs/debugging-502s.md` lists them all with their cure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No logical name could be derived from the request (e.g. no Host header). 400.
    Unidentified,
    /// The request has passed through more proxies than the router allows: a routing loop.
    /// 400.
    LoopDetected,
    /// An `l5d-dtab` or `l5d-ctx-dtab` header did not parse. 400.
    BadDtabHeader,
    /// The client broke its request body: it went away mid-upload, sent a malformed chunk, or
    /// sent more or less than its `Content-Length`. 400 (if the client is still there); the
    /// upstream exchange is cancelled and the endpoint is not blamed.
    BadRequestBody,
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
    /// Every endpoint stayed ejected by failure accrual for the failfast timeout. 503. No
    /// longer produced by the proxy: with every endpoint ejected it picks among them anyway
    /// (panic mode); the reason stays reserved for dashboards and alerts that name it.
    FailFast,
    /// The endpoint refused the TCP connection. 502, safe to retry.
    ConnectionRefused,
    /// The TCP connection could not be made for another reason, or closed before the request
    /// was written. 502, safe to retry.
    ConnectFailed,
    /// The TCP connection was not established within the connect timeout. 504, safe to retry.
    ConnectTimeout,
    /// The TLS handshake with the endpoint failed: its certificate was refused (untrusted,
    /// expired, not valid for the server name or identity), it refused ours, or it does not
    /// speak what was asked of it over ALPN. 502, safe to retry: the request never left.
    UpstreamTls,
    /// The upstream closed or reset the connection before the response head. 502.
    UpstreamReset,
    /// The upstream sent something that is not valid HTTP, or does not speak the protocol
    /// the request needs (gRPC to an HTTP/1.1-only endpoint). 502.
    UpstreamProtocol,
    /// The request did not complete within its total or per-attempt timeout. 504.
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
            ErrorKind::BadRequestBody => "bad-request-body",
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
            ErrorKind::Unidentified
            | ErrorKind::LoopDetected
            | ErrorKind::BadDtabHeader
            | ErrorKind::BadRequestBody => StatusCode::BAD_REQUEST,
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

    /// Who is at fault, unless the error says otherwise ([`ProxyError::with_fault`]).
    fn fault(self) -> Fault {
        match self {
            ErrorKind::Unidentified
            | ErrorKind::LoopDetected
            | ErrorKind::BadDtabHeader
            | ErrorKind::BadRequestBody
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

    /// Whether the request may be sent again, unless the error says otherwise
    /// ([`ProxyError::with_retry`]).
    fn retry(self) -> Retry {
        match self {
            ErrorKind::ConnectionRefused
            | ErrorKind::ConnectFailed
            | ErrorKind::ConnectTimeout
            | ErrorKind::UpstreamTls
            | ErrorKind::BindingTimeout
            | ErrorKind::NoEndpoints
            | ErrorKind::FailFast => Retry::Unsent,
            ErrorKind::UpstreamReset | ErrorKind::UpstreamProtocol => Retry::Classified,
            ErrorKind::Unidentified
            | ErrorKind::LoopDetected
            | ErrorKind::BadDtabHeader
            | ErrorKind::BadRequestBody
            | ErrorKind::Unauthorized
            | ErrorKind::HeaderTimeout
            | ErrorKind::NoSuchService
            | ErrorKind::BindingFailed
            | ErrorKind::RequestTimeout => Retry::Never,
        }
    }
}

/// A failure on the request path: what happened (the kind), who is at fault, whether a retry
/// is safe, and a short detail for the body and the log.
#[derive(Debug)]
pub struct ProxyError {
    kind: ErrorKind,
    fault: Fault,
    retry: Retry,
    detail: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

// === impl ProxyError ===

impl ProxyError {
    /// Creates an error of `kind` with a one-line `detail` (shown in the response body; must
    /// not contain whole dtabs or discovery state). Fault and retry safety are the kind's
    /// usual ones.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> ProxyError {
        ProxyError {
            kind,
            fault: kind.fault(),
            retry: kind.retry(),
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

    /// Overrides whether the request may be sent again (e.g. [`Retry::Stale`] for a reused
    /// connection that failed before the response).
    pub fn with_retry(mut self, retry: Retry) -> ProxyError {
        self.retry = retry;
        self
    }

    /// Overrides who is at fault.
    pub fn with_fault(mut self, fault: Fault) -> ProxyError {
        self.fault = fault;
        self
    }

    /// The kind, which decides status and reason.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Whether and how the request may be sent again.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// True when the failure is the endpoint's own, so failure accrual counts it and the
    /// balancer's cost sees it: the upstream is at fault, and not merely through a stale
    /// pooled connection.
    pub fn blames_endpoint(&self) -> bool {
        self.fault == Fault::Upstream && !matches!(self.retry, Retry::Stale { .. })
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
        if self.retry.never_reached_app() {
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
        let err = ProxyError::new(
            ErrorKind::UpstreamTls,
            "endpoint 127.0.0.1:443: TLS with x: why",
        );
        let rsp: Response<Bytes> = err.to_response();
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(rsp.headers()["l5d-proxy-error"], "upstream-tls");
        assert_eq!(rsp.headers()["l5d-retryable"], "true");
        assert_eq!(err.fault(), Fault::Upstream);
        assert!(err.blames_endpoint());
    }

    #[test]
    fn upstream_reset_is_not_marked_retryable() {
        let rsp: Response<Bytes> = ProxyError::new(ErrorKind::UpstreamReset, "x").to_response();
        assert!(rsp.headers().get("l5d-retryable").is_none());
    }

    #[test]
    fn a_broken_request_body_is_the_clients_fault_and_never_blames_the_endpoint() {
        let err = ProxyError::new(ErrorKind::BadRequestBody, "aborted");
        assert_eq!(err.kind().status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            (err.fault(), err.retry()),
            (Fault::Downstream, Retry::Never)
        );
        assert!(!err.blames_endpoint());
    }

    #[test]
    fn a_stale_connection_does_not_blame_the_endpoint() {
        let err = ProxyError::new(ErrorKind::UpstreamReset, "x")
            .with_retry(Retry::Stale { written: true });
        assert_eq!(err.fault(), Fault::Upstream);
        assert!(!err.blames_endpoint());
    }
}
