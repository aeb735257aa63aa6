//! A live tap on weft's admin server (`GET /tap`), read in a background task, and the events
//! it collected grouped by request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// An open tap: the admin server streams JSON lines (`req`, `rsp` and `end` events) that a
/// background task collects. Dropping it closes the connection, which closes the tap.
#[derive(Debug)]
pub struct TapStream {
    events: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

/// The events of one tapped request, matched by their `id`.
#[derive(Clone, Debug)]
pub struct TappedExchange {
    /// The `req` event (method, authority, path, service, route, ...).
    pub req: Value,
    /// The `rsp` event, once the response head went out.
    pub rsp: Option<Value>,
    /// The `end` event, once the exchange ended.
    pub end: Option<Value>,
}

// === impl TapStream ===

impl TapStream {
    /// Opens `GET /tap?<query>` (e.g. `router=outbound`; empty for every request) on the
    /// admin server at `admin` and returns once its response head arrived: weft registers
    /// the tap before it answers, so every request identified from then on is seen.
    /// Panics if the tap cannot be opened or does not answer 200 within 10 s.
    pub async fn open(admin: SocketAddr, query: &str) -> TapStream {
        let opened = async {
            let tcp = TcpStream::connect(admin).await.expect("connect to admin");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("HTTP/1 handshake with admin");
            tokio::spawn(conn);
            let req = Request::get(format!("/tap?{query}"))
                .header(http::header::HOST, admin.to_string())
                .body(Empty::<Bytes>::new())
                .expect("a valid request");
            let rsp = sender.send_request(req).await.expect("GET /tap");
            assert_eq!(rsp.status(), 200, "GET /tap?{query}");
            // The sender must outlive the response: dropping it would close the connection.
            (sender, rsp.into_body())
        };
        let (sender, mut body) = tokio::time::timeout(Duration::from_secs(10), opened)
            .await
            .expect("the tap opens within 10s");
        let events = Arc::new(Mutex::new(Vec::new()));
        let into = events.clone();
        let task = tokio::spawn(async move {
            let _sender = sender;
            let mut pending = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    // A line that is not JSON is kept, so the test that reads it fails.
                    let event = serde_json::from_slice(&line).unwrap_or_else(|_| {
                        serde_json::json!({
                            "type": "unparsed",
                            "line": String::from_utf8_lossy(&line),
                        })
                    });
                    into.lock().expect("tap events lock").push(event);
                }
            }
        });
        TapStream { events, task }
    }

    /// Every event collected so far, in order of arrival.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("tap events lock").clone()
    }

    /// The events of the requests whose `req` event has `service` (e.g. `/svc/books`), in
    /// order of their ids.
    pub fn exchanges(&self, service: &str) -> Vec<TappedExchange> {
        let events = self.events();
        let of = |kind: &str, id: &Value| {
            events
                .iter()
                .find(|e| e["type"] == kind && &e["id"] == id)
                .cloned()
        };
        events
            .iter()
            .filter(|e| e["type"] == "req" && e["service"] == service)
            .map(|req| TappedExchange {
                rsp: of("rsp", &req["id"]),
                end: of("end", &req["id"]),
                req: req.clone(),
            })
            .collect()
    }

    /// Polls (every 20 ms, `within` at most) until exactly one request to `service` was
    /// tapped and its `end` event arrived; returns it. Panics with every event collected
    /// if that does not happen.
    pub async fn ended(&self, service: &str, within: Duration) -> TappedExchange {
        let deadline = Instant::now() + within;
        loop {
            let found = self.exchanges(service);
            if let [one] = found.as_slice() {
                if one.end.is_some() {
                    return one.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no single ended exchange for {service} tapped within {within:?}: {:#?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TapStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
