//! Per-request observation beyond metrics and tap: the trace span of this hop and the access
//! log line, both finished when the response stream ends. Built only when tracing records
//! this request or the router has an access log, so it costs nothing otherwise.

use std::net::SocketAddr;
use std::time::SystemTime;

use http::{Method, Request, Version};
use tokio::time::Instant;
use weft_telemetry::access_log::{AccessLog, Entry};
use weft_telemetry::trace::{ActiveSpan, Tracer};

/// The span and access-log context of one request.
pub(crate) struct Observed {
    span: Option<ActiveSpan>,
    log: Option<(AccessLog, LogInfo)>,
    service: String,
    route: String,
}

struct LogInfo {
    time: SystemTime,
    started: Instant,
    peer: SocketAddr,
    method: Method,
    authority: String,
    path: String,
    version: Version,
}

impl Observed {
    /// Starts observing `req`; `None` when neither a span nor a log line will be written.
    pub(crate) fn start<B>(
        tracer: &Tracer,
        log: Option<&AccessLog>,
        router: &str,
        peer: SocketAddr,
        req: &Request<B>,
        authority: &str,
    ) -> Option<Observed> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let span = tracer.start(
            req.headers(),
            router,
            req.method().as_str(),
            path,
            authority,
        );
        if span.is_none() && log.is_none() {
            return None;
        }
        let log = log.map(|l| {
            let info = LogInfo {
                time: SystemTime::now(),
                started: Instant::now(),
                peer,
                method: req.method().clone(),
                authority: authority.to_string(),
                path: path.to_string(),
                version: req.version(),
            };
            (l.clone(), info)
        });
        Some(Observed {
            span,
            log,
            service: String::new(),
            route: String::new(),
        })
    }

    /// Names the logical service and route once the request is identified.
    pub(crate) fn identified(&mut self, service: &str, route: &str) {
        self.service = service.to_string();
        self.route = route.to_string();
    }

    /// Writes our span's trace context into the upstream request's headers.
    pub(crate) fn inject(&self, headers: &mut http::HeaderMap) {
        if let Some(span) = &self.span {
            span.inject(headers);
        }
    }

    /// Ends the span and writes the log line: `status` sent downstream, `endpoint` the last
    /// upstream, `error` the proxy error reason, `response_bytes` the body bytes sent.
    pub(crate) fn finish(
        self,
        status: u16,
        endpoint: Option<SocketAddr>,
        error: Option<&str>,
        response_bytes: u64,
    ) {
        if let Some(span) = self.span {
            span.finish(status, endpoint, error, &self.service, &self.route);
        }
        if let Some((log, info)) = self.log {
            log.record(Entry {
                time: info.time,
                peer: info.peer,
                method: info.method,
                authority: info.authority,
                path: info.path,
                version: info.version,
                status,
                request_bytes: None,
                response_bytes,
                duration: info.started.elapsed(),
                service: self.service,
                route: self.route,
                error: error.map(str::to_string),
                upstream: endpoint,
            });
        }
    }
}
