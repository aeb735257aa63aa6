//! `GET /api/1/dtabs/<ns>?watch=true`: every new version as one line of JSON.

use std::io;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::Response;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::body::{ChannelBody, Rsp};
use crate::store::Versioned;
use crate::Control;

/// Lines a watch may have waiting for a client that does not read (beyond what the socket
/// buffers hold); one more and the watch is dropped and counted.
const WATCH_BUFFER: usize = 16;

/// Starts streaming `ns` as newline-delimited JSON (`application/x-ndjson`, chunked): first
/// the current state, then each new version:
/// `{"namespace":"ns","version":"42","dtab":[{"prefix":..,"dst":..}]}`; an absent namespace
/// is `{"namespace":"ns","version":null,"dtab":null}`. Versions that follow each other
/// faster than one line is sent may be coalesced; the latest is always sent.
pub(crate) fn start(control: &Control, ns: &str, _query: &str) -> Rsp {
    // One slot more than the buffer: room for the error that ends a dropped watch.
    let (tx, rx) = mpsc::channel(WATCH_BUFFER + 1);
    let mut versions = control.store().watch(ns);
    let metrics = control.metrics().clone();
    let ns = ns.to_owned();
    metrics.watches().inc();
    tokio::spawn(async move {
        loop {
            let line = line(&ns, versions.borrow_and_update().as_ref());
            if tx.is_closed() {
                break;
            }
            if tx.capacity() <= 1 {
                tracing::debug!(%ns, "watch client does not read; dropping it");
                // Ends the response abruptly (no final chunk) after what is buffered; never
                // waits for room. The gauge goes down before the drop is counted, so a scrape
                // never shows the drop with the watch still open.
                let _ = tx.try_send(Err(io::Error::other("watch client too slow")));
                metrics.watches().dec();
                metrics.watch_dropped();
                return;
            }
            if tx.try_send(Ok(line)).is_ok() {
                metrics.update_sent();
            }
            tokio::select! {
                changed = versions.changed() => if changed.is_err() { break },
                () = tx.closed() => break,
            }
        }
        metrics.watches().dec();
    });
    let mut rsp = Response::new(ChannelBody::new(rx).boxed());
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    rsp
}

fn line(ns: &str, v: Option<&Versioned>) -> Bytes {
    let value = match v {
        Some(v) => serde_json::json!({
            "namespace": ns,
            "version": v.version,
            "dtab": super::codec::to_json(&v.dtab),
        }),
        None => serde_json::json!({"namespace": ns, "version": null, "dtab": null}),
    };
    let mut s = value.to_string();
    s.push('\n');
    Bytes::from(s)
}
