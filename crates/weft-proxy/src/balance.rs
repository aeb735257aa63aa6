//! Load balancing for one bound client: power of two choices (P2C) over peak-EWMA load
//! (Finagle's `P2CPeakEwma`; tower's `load::PeakEwma` measures each endpoint).
//!
//! tower's `balance::p2c::Balance` needs `&mut self` and therefore a `Buffer` task in front of
//! it, which funnels every request of a client through one task and channel. Here each request
//! picks on its own task: the endpoint set is an immutable snapshot swapped on discovery
//! updates, and each endpoint's peak-EWMA estimate sits behind its own short lock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::load::peak_ewma::{Cost, PeakEwma};
use tower::load::{CompleteOnResponse, Load};
use tower::retry::budget::TpsBudget;
use tower::Service;
use weft_config::{ClientConfig, FailureAccrualConfig};
use weft_naming::AddrSet;
use weft_telemetry::ClientMetrics;

use crate::accrual::{Accrual, Transition};
use crate::client::{ClientError, ClientParams, Connector};
use crate::replay::ReplayBody;
use crate::tls::MeshTls;
use crate::upstream::Upstream;

/// Load assumed for an endpoint with no measurement yet: optimistic, so new endpoints get
/// tried (Finagle uses the same idea).
const DEFAULT_RTT: Duration = Duration::from_millis(1);

/// One endpoint of a client: its address, discovery weight, client and load estimate.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    weight: f64,
    service: Mutex<PeakEwma<Upstream, CompleteOnResponse>>,
    requests: Counter,
    accrual: Accrual,
}

impl Endpoint {
    fn load(&self) -> Cost {
        self.service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .load()
    }

    /// Sends `req`; the load estimate counts it as pending until the response head arrives.
    pub(crate) fn call(
        &self,
        req: Request<ReplayBody>,
    ) -> impl std::future::Future<Output = Result<Response<Incoming>, ClientError>> + Send + 'static
    {
        self.requests.inc();
        self.service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call(req)
    }
}

/// The current endpoints, replaced as a whole when discovery changes.
struct EndpointSet {
    addrs: AddrSet,
    endpoints: Vec<Arc<Endpoint>>,
    /// Cumulative weights for a weighted draw; `None` when every weight is equal.
    cumulative: Option<Vec<f64>>,
}

/// The outcome of a pick.
pub(crate) enum Pick {
    /// Send to this endpoint.
    Endpoint(Arc<Endpoint>),
    /// Discovery knows no endpoints.
    Empty,
    /// Every endpoint is ejected by failure accrual; the earliest may be probed at `next`.
    AllEjected {
        /// When the first ejection's backoff ends.
        next: Option<Instant>,
    },
}

/// P2C over peak-EWMA for one bound name (its `client`), skipping endpoints that failure
/// accrual ejected.
pub(crate) struct Balancer {
    set: RwLock<Arc<EndpointSet>>,
    params: ClientParams,
    decay: Duration,
    accrual: FailureAccrualConfig,
    requeue_budget: TpsBudget,
    metrics: ClientMetrics,
    /// Woken when discovery changes, so requests waiting in failfast look again.
    changed: Notify,
    /// The endpoints are peer weft proxies: HTTP/1 requests go to them over HTTP/2.
    meshed: bool,
    /// Mesh TLS towards the endpoints, when configured.
    tls: Option<MeshTls>,
}

// === impl Balancer ===

impl Balancer {
    pub(crate) fn new(
        params: ClientParams,
        config: &ClientConfig,
        metrics: ClientMetrics,
        meshed: bool,
        tls: Option<MeshTls>,
    ) -> Balancer {
        let budget = &config.requeue_budget;
        metrics.set_endpoints(0);
        Balancer {
            set: RwLock::new(Arc::new(EndpointSet {
                addrs: Arc::from(Vec::new()),
                endpoints: Vec::new(),
                cumulative: None,
            })),
            params,
            decay: config.load_balancer.decay,
            accrual: config.failure_accrual.clone(),
            requeue_budget: TpsBudget::new(
                budget.ttl,
                budget.min_retries_per_sec,
                budget.percent_can_retry as f32,
            ),
            metrics,
            changed: Notify::new(),
            meshed,
            tls,
        }
    }

    /// Applies a discovery update if `addrs` differs from the current set. Endpoints that stay
    /// keep their connections and load estimates; those that left are dropped (their requests
    /// in flight finish on the connections they hold).
    pub(crate) fn update(&self, addrs: &AddrSet) {
        {
            let current = self.set.read().unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&current.addrs, addrs) || current.addrs[..] == addrs[..] {
                return;
            }
        }
        let mut guard = self.set.write().unwrap_or_else(PoisonError::into_inner);
        let old = guard.clone();
        let endpoints: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|a| {
                old.endpoints
                    .iter()
                    .find(|e| e.addr == a.addr && e.weight == a.weight)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(self.endpoint(a.addr, a.weight)))
            })
            .collect();
        for gone in old
            .endpoints
            .iter()
            .filter(|e| !addrs.iter().any(|a| a.addr == e.addr))
        {
            self.metrics.remove_endpoint(&gone.addr.to_string());
        }
        self.metrics.set_endpoints(endpoints.len());
        let cumulative = weights(&endpoints);
        let ejected = endpoints.iter().filter(|e| e.accrual.is_ejected()).count();
        self.metrics.set_ejected(ejected);
        *guard = Arc::new(EndpointSet {
            addrs: addrs.clone(),
            endpoints,
            cumulative,
        });
        drop(guard);
        self.changed.notify_waiters();
    }

    /// Mesh TLS towards the endpoints, if configured (for opaque TCP to peers).
    pub(crate) fn tls(&self) -> Option<&MeshTls> {
        self.tls.as_ref()
    }

    /// True when the endpoints are peer weft proxies (proxy-to-proxy HTTP/2).
    pub(crate) fn is_meshed(&self) -> bool {
        self.meshed
    }

    /// How many endpoints discovery gives this client now.
    pub(crate) fn len(&self) -> usize {
        self.snapshot().endpoints.len()
    }

    /// The budget for requeues of requests that never reached an endpoint.
    pub(crate) fn requeue_budget(&self) -> &TpsBudget {
        &self.requeue_budget
    }

    /// Waits until discovery changes.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Records the result of a request to `endpoint` for failure accrual.
    pub(crate) fn record(&self, endpoint: &Endpoint, success: bool) {
        let Some(transition) = endpoint.accrual.record(success, Instant::now()) else {
            return;
        };
        match transition {
            Transition::Ejected => {
                tracing::info!(endpoint = %endpoint.addr, "failure accrual: endpoint ejected");
                self.metrics.ejected();
            }
            Transition::Revived => {
                tracing::info!(endpoint = %endpoint.addr, "failure accrual: endpoint revived");
                self.metrics.revived();
            }
        }
        let set = self.snapshot();
        let ejected = set
            .endpoints
            .iter()
            .filter(|e| e.accrual.is_ejected())
            .count();
        self.metrics.set_ejected(ejected);
    }

    fn snapshot(&self) -> Arc<EndpointSet> {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Picks an endpoint: two candidates drawn at random in proportion to their weights, the
    /// one with the lower peak-EWMA load wins. Ejected endpoints, and (while others are
    /// available) those in `avoid`, are skipped.
    pub(crate) fn pick(&self, avoid: &[SocketAddr]) -> Pick {
        let set = self.snapshot();
        let now = Instant::now();
        let n = set.endpoints.len();
        if n == 0 {
            return Pick::Empty;
        }
        let usable = |i: usize| set.endpoints[i].accrual.is_available(now);
        let preferred = |i: usize| usable(i) && !avoid.contains(&set.endpoints[i].addr);
        let a = draw(n, set.cumulative.as_deref());
        let mut b = draw(n, set.cumulative.as_deref());
        if n > 1 && a == b {
            // A second distinct candidate, so P2C always compares two.
            b = (a + 1 + fastrand::usize(..n - 1)) % n;
        }
        let chosen = match (preferred(a), preferred(b)) {
            (true, true) if a != b => Some(better(&set.endpoints, a, b)),
            (true, _) => Some(a),
            (false, true) => Some(b),
            // Neither candidate will do: scan for one that does, then for any usable one.
            (false, false) => {
                let start = fastrand::usize(..n);
                let order = (0..n).map(|i| (start + i) % n);
                order
                    .clone()
                    .find(|i| preferred(*i))
                    .or_else(|| order.clone().find(|i| usable(*i)))
            }
        };
        match chosen {
            Some(i) => {
                let endpoint = set.endpoints[i].clone();
                endpoint.accrual.on_pick(now);
                Pick::Endpoint(endpoint)
            }
            None => Pick::AllEjected {
                next: set
                    .endpoints
                    .iter()
                    .filter_map(|e| e.accrual.ejected_until())
                    .min(),
            },
        }
    }

    fn endpoint(&self, addr: SocketAddr, weight: f64) -> Endpoint {
        let decay_ns = self.decay.as_nanos() as f64;
        Endpoint {
            addr,
            weight,
            service: Mutex::new(PeakEwma::new(
                Upstream::new(
                    Connector::new(addr, self.params.connect_timeout, self.tls.clone()),
                    self.params.pool_idle_timeout,
                ),
                DEFAULT_RTT,
                decay_ns,
                CompleteOnResponse::default(),
            )),
            requests: self.metrics.endpoint_requests(&addr.to_string()),
            accrual: Accrual::new(self.accrual.clone()),
        }
    }
}

/// The better of two endpoints: the lower peak-EWMA load. Failing endpoints are left to
/// failure accrual (which ejects them) and to the per-request `avoid` list (which keeps a
/// retry or requeue off the endpoint that just failed); penalising any recent failure here
/// would starve an endpoint after one transient error.
fn better(endpoints: &[Arc<Endpoint>], a: usize, b: usize) -> usize {
    if endpoints[b].load() < endpoints[a].load() {
        b
    } else {
        a
    }
}

/// Cumulative weights for a weighted draw, or `None` if all weights are equal.
fn weights(endpoints: &[Arc<Endpoint>]) -> Option<Vec<f64>> {
    let first = endpoints.first()?.weight;
    if endpoints.iter().all(|e| e.weight == first) {
        return None;
    }
    let mut total = 0.0;
    Some(
        endpoints
            .iter()
            .map(|e| {
                total += e.weight.max(0.0);
                total
            })
            .collect(),
    )
}

/// Draws an index in `0..n`, uniformly or by cumulative weight.
fn draw(n: usize, cumulative: Option<&[f64]>) -> usize {
    match cumulative {
        Some(c) if c.last().is_some_and(|t| *t > 0.0) => {
            let x = fastrand::f64() * c[c.len() - 1];
            c.partition_point(|w| *w <= x).min(n - 1)
        }
        _ => fastrand::usize(..n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_draw_follows_weights() {
        let cumulative = [1.0, 10.0]; // weights 1 and 9
        let hits = (0..10_000)
            .filter(|_| draw(2, Some(&cumulative)) == 1)
            .count();
        assert!((8_500..9_500).contains(&hits), "{hits}");
    }

    #[test]
    fn uniform_draw_covers_all() {
        let mut seen = [false; 3];
        for _ in 0..1_000 {
            seen[draw(3, None)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
