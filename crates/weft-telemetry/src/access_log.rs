//! A router's access log: one line per request, JSON or the Common Log Format, appended to a
//! file or written to standard output, off the request path.
//!
//! [`AccessLog::record`] puts the entry on a bounded queue ([`QUEUE_CAPACITY`]) with
//! `try_send` and returns; a writer task formats whatever the queue holds into one buffer and
//! writes it with a single `write_all`, so a slow disk costs queue space, never request
//! latency. When the queue is full the entry is dropped and counted in
//! `weft_access_log_dropped_total{router}`. See `docs/observability.md` for the formats.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use weft_config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};

use crate::Metrics;

/// Entries waiting to be written before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;
/// The most entries formatted into one write.
const MAX_BATCH: usize = 512;

/// The access log of one router. Cheap to clone; the writer task ends when every clone is
/// gone (after writing what was queued).
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Entry>,
    dropped: Counter,
}

/// One finished request, as the access log records it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When the request was received (wall clock).
    pub time: SystemTime,
    /// The downstream peer (the client's address).
    pub peer: SocketAddr,
    /// The request method.
    pub method: http::Method,
    /// The request authority (`:authority` or `Host`); empty when the request had none.
    pub authority: String,
    /// The request target as received: path and query.
    pub path: String,
    /// The downstream HTTP version.
    pub version: http::Version,
    /// The response status sent downstream.
    pub status: u16,
    /// Request body bytes received, when known.
    pub request_bytes: Option<u64>,
    /// Response body bytes sent downstream.
    pub response_bytes: u64,
    /// From receiving the request to the end of the response body.
    pub duration: Duration,
    /// The logical service name (`/svc/books`); empty when the request was not identified.
    pub service: String,
    /// The service profile route name (`[default]` when none matched); may be empty.
    pub route: String,
    /// The proxy error reason (`l5d-proxy-error`) when the proxy failed the request.
    pub error: Option<String>,
    /// The upstream endpoint of the (last) attempt, when one was chosen.
    pub upstream: Option<SocketAddr>,
}

// === impl AccessLog ===

impl AccessLog {
    /// Opens the log of `router` (the file is created if missing and appended to) and spawns
    /// its writer task on the current tokio runtime, so it must be called from within one.
    /// The dropped-lines counter is registered in `metrics`.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn new(cfg: &AccessLogConfig, router: &str, metrics: &Metrics) -> io::Result<AccessLog> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = match &cfg.path {
            AccessLogTarget::Stdout => Box::new(tokio::io::stdout()),
            AccessLogTarget::File(path) => {
                // A blocking open, once, when the router is built; never on the request path.
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Box::new(tokio::fs::File::from_std(file))
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer = Writer {
            format: cfg.format,
            router: Arc::from(router),
            out,
        };
        tokio::spawn(writer.run(rx));
        Ok(AccessLog {
            tx,
            dropped: metrics.exporters().access_log_dropped(router),
        })
    }

    /// Queues one line; returns at once. If the queue is full the line is dropped and
    /// counted in `weft_access_log_dropped_total`.
    pub fn record(&self, entry: Entry) {
        if self.tx.try_send(entry).is_err() {
            self.dropped.inc();
        }
    }
}

struct Writer {
    format: AccessLogFormat,
    router: Arc<str>,
    out: Box<dyn AsyncWrite + Send + Unpin>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut buf = String::with_capacity(64 * 1024);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            for e in batch.drain(..) {
                match self.format {
                    AccessLogFormat::Json => json_line(&e, &self.router, &mut buf),
                    AccessLogFormat::Common => common_line(&e, &mut buf),
                }
            }
            let written = async {
                self.out.write_all(buf.as_bytes()).await?;
                self.out.flush().await
            };
            if let Err(error) = written.await {
                tracing::warn!(router = %self.router, %error, "cannot write the access log");
            }
            buf.clear();
        }
    }
}

/// One JSON object and a newline; every field always present (`null` when unknown).
fn json_line(e: &Entry, router: &str, out: &mut String) {
    let v = serde_json::json!({
        "time": rfc3339(e.time),
        "router": router,
        "peer": e.peer.to_string(),
        "method": e.method.as_str(),
        "authority": e.authority,
        "path": e.path,
        "version": version(e.version),
        "status": e.status,
        "request_bytes": e.request_bytes,
        "response_bytes": e.response_bytes,
        "duration_ms": e.duration.as_secs_f64() * 1000.0,
        "service": e.service,
        "route": e.route,
        "upstream": e.upstream.map(|u| u.to_string()),
        "error": e.error,
    });
    out.push_str(&v.to_string());
    out.push('\n');
}

/// NCSA Common Log Format: `host ident authuser [date] "request" status bytes`, with `-`
/// for the unknown ident and user and for zero bytes, the date in UTC.
fn common_line(e: &Entry, out: &mut String) {
    let (y, mo, d, h, mi, s, _) = civil(e.time);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[usize::from(mo - 1)];
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{} - - [{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000] \"{} {} {}\" {} ",
        e.peer.ip(),
        e.method,
        escape_clf(&e.path),
        version(e.version),
        e.status,
    );
    if e.response_bytes == 0 {
        out.push('-');
    } else {
        let _ = write!(out, "{}", e.response_bytes);
    }
    out.push('\n');
}

/// Keeps a request line on one line and its quotes balanced.
fn escape_clf(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => "\\\"".to_owned(),
            c if c.is_control() => format!("\\x{:02x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `2026-11-22T14:02:32.123Z`.
fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// UTC calendar fields of `t`: year, month (1-12), day, hour, minute, second, millisecond.
/// Days to date after Howard Hinnant's `civil_from_days`.
fn civil(t: SystemTime) -> (i64, u8, u8, u8, u8, u8, u16) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Every field below is range-bounded by the arithmetic above.
    (
        year,
        month as u8,
        day as u8,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
        since.subsec_millis() as u16,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            // 2000-10-10T13:55:36.250Z
            time: UNIX_EPOCH + Duration::from_millis(971_186_136_250),
            peer: "127.0.0.1:48314".parse().unwrap(),
            method: http::Method::GET,
            authority: "books".to_owned(),
            path: path.to_owned(),
            version: http::Version::HTTP_11,
            status: 200,
            request_bytes: Some(0),
            response_bytes: 2326,
            duration: Duration::from_micros(1500),
            service: "/svc/books".to_owned(),
            route: "[default]".to_owned(),
            error: None,
            upstream: Some("10.0.0.7:8080".parse().unwrap()),
        }
    }

    fn cfg(path: &std::path::Path, format: AccessLogFormat) -> AccessLogConfig {
        AccessLogConfig {
            path: AccessLogTarget::File(path.to_owned()),
            format,
        }
    }

    async fn read_lines(path: &std::path::Path, n: usize) -> Vec<String> {
        for _ in 0..500 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} lines in {}", path.display());
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(971_186_136_250)),
            "2000-10-10T13:55:36.250Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_709_164_800)),
            "2024-02-29T00:00:00.000Z"
        );
    }

    #[tokio::test]
    async fn writes_json_lines_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let metrics = Metrics::new("0");
        let log = AccessLog::new(&cfg(&path, AccessLogFormat::Json), "outbound", &metrics).unwrap();
        log.record(entry("/books?id=1"));
        let mut failed = entry("/x");
        failed.status = 502;
        failed.error = Some("connection-refused".to_owned());
        failed.request_bytes = None;
        failed.upstream = None;
        failed.version = http::Version::HTTP_2;
        log.record(failed);
        let lines = read_lines(&path, 2).await;
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            first,
            serde_json::json!({
                "time": "2000-10-10T13:55:36.250Z", "router": "outbound",
                "peer": "127.0.0.1:48314", "method": "GET", "authority": "books",
                "path": "/books?id=1", "version": "HTTP/1.1", "status": 200,
                "request_bytes": 0, "response_bytes": 2326, "duration_ms": 1.5,
                "service": "/svc/books", "route": "[default]", "upstream": "10.0.0.7:8080",
                "error": null,
            })
        );
        let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["error"], "connection-refused");
        assert_eq!(second["status"], 502);
        assert_eq!(second["version"], "HTTP/2.0");
        assert!(second["upstream"].is_null() && second["request_bytes"].is_null());
    }

    #[tokio::test]
    async fn writes_common_log_format_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "earlier line\n").unwrap();
        let metrics = Metrics::new("0");
        let log = AccessLog::new(&cfg(&path, AccessLogFormat::Common), "in", &metrics).unwrap();
        log.record(entry("/apache_pb.gif"));
        let mut empty = entry("/say \"hi\"");
        empty.response_bytes = 0;
        empty.method = http::Method::HEAD;
        log.record(empty);
        let lines = read_lines(&path, 3).await;
        assert_eq!(lines[0], "earlier line");
        assert_eq!(
            lines[1],
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /apache_pb.gif HTTP/1.1" 200 2326"#
        );
        assert_eq!(
            lines[2],
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "HEAD /say \"hi\" HTTP/1.1" 200 -"#
        );
    }

    #[test]
    fn unopenable_file_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("access.log");
        let metrics = Metrics::new("0");
        assert!(AccessLog::new(&cfg(&path, AccessLogFormat::Json), "r", &metrics).is_err());
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        // A current-thread runtime that is never driven: the writer task cannot run, so
        // the queue fills and stays full.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let metrics = Metrics::new("0");
        let log = AccessLog::new(&cfg(&path, AccessLogFormat::Json), "outbound", &metrics).unwrap();
        for _ in 0..QUEUE_CAPACITY + 10 {
            log.record(entry("/"));
        }
        assert!(metrics
            .encode()
            .contains(r#"weft_access_log_dropped_total{router="outbound"} 10"#));
    }
}
