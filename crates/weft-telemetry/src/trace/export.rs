//! One export task per exporter: a bounded queue in front, batches out over HTTP.
//!
//! The request path only ever calls [`Queue::push`], a `try_send`: when the queue is full
//! the span is dropped and counted. The task takes what the queue holds (up to
//! [`MAX_BATCH`]) and POSTs it; while a POST is in flight new spans pile up into the next
//! batch, so batches grow with load without a timer. A failed POST drops its batch (counted
//! with `reason="export_failed"`); there is no retry, so a dead collector costs one request
//! per batch and nothing else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::{otlp, zipkin, SpanData};
use crate::Metrics;

/// Spans waiting per exporter before new ones are dropped.
pub(crate) const QUEUE_CAPACITY: usize = 2048;
/// The most spans in one export request.
pub(crate) const MAX_BATCH: usize = 512;
/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// OTLP/HTTP, binary protobuf (`application/x-protobuf`).
    Otlp,
    /// Zipkin v2 JSON (`POST /api/v2/spans`).
    Zipkin,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Otlp => "otlp",
            Kind::Zipkin => "zipkin",
        }
    }
}

/// The sending end of one exporter's queue.
pub(crate) struct Queue {
    tx: mpsc::Sender<Arc<SpanData>>,
    dropped_full: Counter,
}

impl Queue {
    /// Queues a span, or drops and counts it if the queue is full. Never waits.
    pub(crate) fn push(&self, span: Arc<SpanData>) {
        if self.tx.try_send(span).is_err() {
            self.dropped_full.inc();
        }
    }
}

/// Spawns the export task of one exporter on the current runtime.
pub(crate) fn spawn(
    kind: Kind,
    endpoint: http::Uri,
    service_name: Arc<str>,
    metrics: &Metrics,
) -> Queue {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let counters = metrics.exporters().span_counters(kind.label());
    let queue = Queue {
        tx,
        dropped_full: counters.dropped_full,
    };
    let exporter = Exporter {
        kind,
        endpoint,
        service_name,
        exported: counters.exported,
        dropped_failed: counters.dropped_failed,
    };
    tokio::spawn(exporter.run(rx));
    queue
}

struct Exporter {
    kind: Kind,
    endpoint: http::Uri,
    service_name: Arc<str>,
    exported: Counter,
    dropped_failed: Counter,
}

impl Exporter {
    async fn run(self, mut rx: mpsc::Receiver<Arc<SpanData>>) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // Ends when every sender (the tracer and its active spans) is gone.
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let n = batch.len() as u64;
            let (body, content_type) = match self.kind {
                Kind::Otlp => (
                    otlp::encode(&batch, &self.service_name),
                    "application/x-protobuf",
                ),
                Kind::Zipkin => (
                    zipkin::encode(&batch, &self.service_name),
                    "application/json",
                ),
            };
            batch.clear();
            match self.post(&client, body, content_type).await {
                Ok(()) => {
                    self.exported.inc_by(n);
                }
                Err(reason) => {
                    self.dropped_failed.inc_by(n);
                    tracing::debug!(
                        exporter = self.kind.label(),
                        endpoint = %self.endpoint,
                        spans = n,
                        %reason,
                        "span export failed"
                    );
                }
            }
        }
    }

    async fn post(
        &self,
        client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> Result<(), String> {
        let req = http::Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let rsp = client.request(req).await.map_err(|e| e.to_string())?;
            let status = rsp.status();
            // Read the body so the connection can be reused.
            let _ = rsp.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("collector answered {status}"))
            }
        };
        match tokio::time::timeout(EXPORT_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}")),
        }
    }
}
