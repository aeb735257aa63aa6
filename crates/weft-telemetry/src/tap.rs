//! Tap: live request/response/end events for requests matching a filter, streamed to
//! whoever asked (the admin server's `/tap`, rendered by `weft tap`). Modelled on Linkerd's
//! tap. With no tap open, the request path pays one atomic load.
//!
//! The proxy asks [`Tap::matching`] once per identified request and reports the response
//! head and the end of the exchange through the returned [`Tapped`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Events buffered per tap before new ones are dropped (a slow reader must not slow requests).
const TAP_BUFFER: usize = 1024;

/// The registry of open taps, shared by every router of a process.
#[derive(Debug, Default)]
pub struct Tap {
    active: AtomicUsize,
    taps: Mutex<Vec<Arc<Subscriber>>>,
    next_request: AtomicU64,
}

/// Which requests a tap wants; every given field must match.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TapFilter {
    /// Router label, e.g. `outbound`.
    pub router: Option<String>,
    /// Logical name, e.g. `/svc/books` (exact).
    pub service: Option<String>,
    /// Route name of a service profile (or `[default]`).
    pub route: Option<String>,
    /// Request authority (Host or `:authority`), exact.
    pub authority: Option<String>,
    /// Request method, e.g. `GET`.
    pub method: Option<String>,
    /// Request path prefix, e.g. `/api`.
    pub path_prefix: Option<String>,
    /// Response status: only `rsp` and `end` events of responses with this status are sent.
    pub status: Option<u16>,
}

/// One tap event, serialized as one JSON object per line.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TapEvent {
    /// A request arrived and was identified.
    Req {
        /// Request id, unique in this process.
        id: u64,
        /// Router label.
        router: String,
        /// Downstream peer address.
        src: String,
        /// Whether the downstream connection used TLS.
        tls: bool,
        /// Method.
        method: String,
        /// Authority (Host or `:authority`).
        authority: String,
        /// Path and query.
        path: String,
        /// Logical name.
        service: String,
        /// Route name.
        route: String,
    },
    /// The response head went downstream.
    Rsp {
        /// Request id.
        id: u64,
        /// Router label.
        router: String,
        /// Endpoint the response came from (`ip:port`), empty for proxy errors.
        dst: String,
        /// Status code.
        status: u16,
        /// Microseconds from request to response head.
        latency_us: u64,
        /// The proxy error reason, when the proxy made the response.
        proxy_error: Option<String>,
    },
    /// The response stream ended.
    End {
        /// Request id.
        id: u64,
        /// Router label.
        router: String,
        /// Microseconds from response head to end of stream.
        duration_us: u64,
        /// Response body bytes sent downstream.
        response_bytes: u64,
        /// `grpc-status` of the trailers, if any.
        grpc_status: Option<u32>,
        /// Why the stream failed, if it did (e.g. `upstream-reset`).
        error: Option<String>,
    },
}

/// The receiving side of one tap.
#[derive(Debug)]
pub struct TapSubscription {
    /// Events, in order per request.
    pub events: mpsc::Receiver<TapEvent>,
    subscriber: Arc<Subscriber>,
    tap: Arc<Tap>,
}

#[derive(Debug)]
struct Subscriber {
    filter: TapFilter,
    tx: mpsc::Sender<TapEvent>,
    limiter: Mutex<Limiter>,
    dropped: AtomicU64,
}

/// A token bucket of requests per second.
#[derive(Debug)]
struct Limiter {
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

/// The taps that matched one request, carried along until its end.
#[derive(Debug, Clone)]
pub struct Tapped {
    id: u64,
    router: String,
    subscribers: Vec<Arc<Subscriber>>,
    started: Instant,
}

/// What a tap filter is matched against: one identified request.
#[derive(Debug)]
pub struct TapRequest<'a> {
    /// Router label.
    pub router: &'a str,
    /// Downstream peer address.
    pub src: SocketAddr,
    /// Whether the downstream connection used mesh TLS.
    pub tls: bool,
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Authority (Host or `:authority`).
    pub authority: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Logical name, e.g. `/svc/books`.
    pub service: &'a str,
    /// Route name (or `[default]`).
    pub route: &'a str,
}

// === impl Tap ===

impl Tap {
    /// Opens a tap for requests matching `filter`, at most `max_rps` requests per second
    /// (further matching requests are skipped and counted). The tap closes when the
    /// subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, filter: TapFilter, max_rps: u32) -> TapSubscription {
        let (tx, events) = mpsc::channel(TAP_BUFFER);
        let per_sec = f64::from(max_rps.max(1));
        let subscriber = Arc::new(Subscriber {
            filter,
            tx,
            limiter: Mutex::new(Limiter {
                per_sec,
                tokens: per_sec,
                at: Instant::now(),
            }),
            dropped: AtomicU64::new(0),
        });
        self.lock().push(subscriber.clone());
        self.active.fetch_add(1, Ordering::Release);
        TapSubscription {
            events,
            subscriber,
            tap: self.clone(),
        }
    }

    /// True while any tap is open. This one atomic load is all the request path pays for
    /// tap when none is open (benchmarked in `benches/request_path.rs`, `tap_closed`).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// The taps interested in a request, or `None`; sends their `req` event.
    pub fn matching(&self, req: &TapRequest<'_>) -> Option<Tapped> {
        if !self.is_active() {
            return None;
        }
        let subscribers: Vec<Arc<Subscriber>> = self
            .lock()
            .iter()
            .filter(|s| s.filter.matches(req) && s.admit())
            .cloned()
            .collect();
        if subscribers.is_empty() {
            return None;
        }
        let tapped = Tapped {
            id: self.next_request.fetch_add(1, Ordering::Relaxed) + 1,
            router: req.router.to_string(),
            subscribers,
            started: Instant::now(),
        };
        tapped.send(
            None,
            TapEvent::Req {
                id: tapped.id,
                router: tapped.router.clone(),
                src: req.src.to_string(),
                tls: req.tls,
                method: req.method.to_string(),
                authority: req.authority.to_string(),
                path: req.path.to_string(),
                service: req.service.to_string(),
                route: req.route.to_string(),
            },
        );
        Some(tapped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Subscriber>>> {
        self.taps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TapSubscription {
    fn drop(&mut self) {
        let mut taps = self.tap.lock();
        let before = taps.len();
        taps.retain(|s| !Arc::ptr_eq(s, &self.subscriber));
        if taps.len() < before {
            self.tap.active.fetch_sub(1, Ordering::Release);
        }
    }
}

impl TapSubscription {
    /// Requests skipped by the rate limit or a full buffer so far.
    pub fn dropped(&self) -> u64 {
        self.subscriber.dropped.load(Ordering::Relaxed)
    }
}

// === impl TapFilter ===

impl TapFilter {
    fn matches(&self, req: &TapRequest<'_>) -> bool {
        fn eq(want: &Option<String>, got: &str) -> bool {
            want.as_deref().is_none_or(|w| w == got)
        }
        eq(&self.router, req.router)
            && eq(&self.service, req.service)
            && eq(&self.route, req.route)
            && eq(&self.authority, req.authority)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(req.method))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| req.path.starts_with(p))
    }
}

// === impl Subscriber ===

impl Subscriber {
    /// Takes a token for one more request, or counts it as dropped.
    fn admit(&self) -> bool {
        let mut l = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(l.at).as_secs_f64() * l.per_sec;
        l.tokens = (l.tokens + refill).min(l.per_sec);
        l.at = now;
        if l.tokens >= 1.0 {
            l.tokens -= 1.0;
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

// === impl Tapped ===

impl Tapped {
    /// Sends the response-head event: `dst` the endpoint (`None` for a response the proxy
    /// made), `proxy_error` its reason.
    pub fn response(&self, dst: Option<SocketAddr>, status: u16, proxy_error: Option<&str>) {
        self.send(
            Some(status),
            TapEvent::Rsp {
                id: self.id,
                router: self.router.clone(),
                dst: dst.map(|d| d.to_string()).unwrap_or_default(),
                status,
                latency_us: micros(self.started.elapsed()),
                proxy_error: proxy_error.map(str::to_string),
            },
        );
    }

    /// Sends the end-of-stream event; `head_at` is when the response head went out,
    /// `response_bytes` the body bytes sent, `error` why the exchange failed or was cut short.
    pub fn end(
        &self,
        status: u16,
        head_at: Instant,
        response_bytes: u64,
        grpc_status: Option<u32>,
        error: Option<&str>,
    ) {
        self.send(
            Some(status),
            TapEvent::End {
                id: self.id,
                router: self.router.clone(),
                duration_us: micros(head_at.elapsed()),
                response_bytes,
                grpc_status,
                error: error.map(str::to_string),
            },
        );
    }

    fn send(&self, status: Option<u16>, event: TapEvent) {
        for s in &self.subscribers {
            if let (Some(want), Some(got)) = (s.filter.status, status) {
                if want != got {
                    continue;
                }
            }
            if s.tx.try_send(event.clone()).is_err() {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(method: &'a str, path: &'a str) -> TapRequest<'a> {
        TapRequest {
            router: "outbound",
            src: "127.0.0.1:1".parse().unwrap(),
            tls: false,
            method,
            authority: "books",
            path,
            service: "/svc/books",
            route: "[default]",
        }
    }

    #[tokio::test]
    async fn no_tap_means_no_events_and_filter_selects() {
        let tap = Arc::new(Tap::default());
        assert!(tap.matching(&req("GET", "/a")).is_none());
        let filter = TapFilter {
            method: Some("get".into()),
            path_prefix: Some("/api".into()),
            ..TapFilter::default()
        };
        let mut sub = tap.subscribe(filter, 100);
        assert!(tap.matching(&req("GET", "/other")).is_none());
        assert!(tap.matching(&req("POST", "/api/x")).is_none());
        let t = tap.matching(&req("GET", "/api/x")).expect("matches");
        t.response(None, 200, None);
        assert!(matches!(
            sub.events.recv().await,
            Some(TapEvent::Req { .. })
        ));
        assert!(matches!(
            sub.events.recv().await,
            Some(TapEvent::Rsp { status: 200, .. })
        ));
        drop(sub);
        assert!(
            tap.matching(&req("GET", "/api/x")).is_none(),
            "closed tap sees nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_skips_and_counts() {
        let tap = Arc::new(Tap::default());
        let sub = tap.subscribe(TapFilter::default(), 2);
        let admitted = (0..5)
            .filter(|_| tap.matching(&req("GET", "/")).is_some())
            .count();
        assert_eq!(admitted, 2);
        assert_eq!(sub.dropped(), 3);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(tap.matching(&req("GET", "/")).is_some(), "tokens refill");
    }
}
