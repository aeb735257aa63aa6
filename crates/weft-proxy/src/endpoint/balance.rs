//! Load balancing for one bound client: power of two choices (P2C) over peak-EWMA load
//! (Finagle's `P2CPeakEwma`; the load estimate is in `load.rs`).
//!
//! tower's `balance::p2c::Balance` needs `&mut self` and therefore a `Buffer` task in front of
//! it, which funnels every request of a client through one task and channel. Here each request
//! picks on its own task: the endpoint set is an immutable snapshot swapped on discovery
//! updates, and each endpoint's peak-EWMA estimate sits behind its own short lock.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::budget::TpsBudget;
use weft_config::{ClientConfig, FailureAccrualConfig, UpstreamProtocol};
use weft_naming::{AddrSet, Address};
use weft_telemetry::ClientMetrics;

use super::accrual::{Accrual, Transition};
#[cfg(test)]
use super::load::InFlight;
use super::load::{Load, NOISE_BAND, NOMINAL_RTT_NS};
use super::pool::Pool;
use super::state::{ClientState, EndpointState};
use super::{Connector, Endpoint};
use crate::error::{ErrorKind, ProxyError};
use crate::tls::{ClientIo, ClientTls};
use weft_tls::Alpn;

/// At most this many endpoints are read to estimate the peers' average latency.
const PEERS_SAMPLE: usize = 16;

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
}

/// P2C over peak-EWMA for one bound name (its `client`), skipping endpoints that failure
/// accrual ejected.
pub(crate) struct Balancer {
    set: RwLock<Arc<EndpointSet>>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    accrual: FailureAccrualConfig,
    requeue_budget: TpsBudget,
    metrics: ClientMetrics,
    decay: Duration,
    /// The endpoints are peer weft proxies: HTTP/1 requests go to them over HTTP/2.
    meshed: bool,
    /// TLS towards the endpoints, when configured.
    tls: Option<ClientTls>,
    protocol: UpstreamProtocol,
    /// Every address this process listens on: endpoints there are this proxy itself.
    own: Arc<[SocketAddr]>,
    /// Unit tests: endpoints are in-memory servers.
    #[cfg(test)]
    dial: Option<super::memory::Dial>,
}

// === impl Balancer ===

impl Balancer {
    /// A client with no endpoints yet, under `config`; `meshed` when its endpoints are peer
    /// proxies, `tls` to originate towards them, `own` the addresses of this proxy's
    /// listeners.
    pub(crate) fn new(
        config: &ClientConfig,
        metrics: ClientMetrics,
        meshed: bool,
        tls: Option<ClientTls>,
        own: Arc<[SocketAddr]>,
    ) -> Balancer {
        let budget = &config.requeue_budget;
        metrics.set_endpoints(0);
        Balancer {
            set: RwLock::new(Arc::new(EndpointSet {
                addrs: Arc::from(Vec::new()),
                endpoints: Vec::new(),
                cumulative: None,
            })),
            connect_timeout: config.connect_timeout,
            pool_idle_timeout: config.pool_idle_timeout,
            accrual: config.failure_accrual.clone(),
            requeue_budget: TpsBudget::new(
                budget.ttl,
                budget.min_retries_per_sec,
                budget.percent_can_retry as f32,
            ),
            metrics,
            decay: config.load_balancer.decay,
            meshed,
            tls,
            protocol: config.protocol,
            own,
            #[cfg(test)]
            dial: None,
        }
    }

    /// The same client with in-memory endpoints served by `dial` (unit tests).
    #[cfg(test)]
    pub(crate) fn with_dial(mut self, dial: super::memory::Dial) -> Balancer {
        self.dial = Some(dial);
        self
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
                    .find(|e| e.addr == a.addr && e.weight == a.weight && e.same_authority(a))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(self.endpoint(a)))
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
    }

    /// True when the endpoints are peer weft proxies (proxy-to-proxy HTTP/2).
    pub(crate) fn is_meshed(&self) -> bool {
        self.meshed
    }

    /// The HTTP version requests go upstream with (`client.protocol`).
    pub(crate) fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    /// How many endpoints discovery gives this client now.
    pub(crate) fn len(&self) -> usize {
        self.snapshot().endpoints.len()
    }

    /// The budget for requeues of requests that never reached an endpoint.
    pub(crate) fn requeue_budget(&self) -> &TpsBudget {
        &self.requeue_budget
    }

    /// Picks an endpoint (avoiding those in `avoid` while others are available). The one way
    /// every protocol picks, so one state has one reason.
    ///
    /// # Errors
    /// `no-endpoints` (503) when discovery knows none. While every endpoint is ejected by
    /// failure accrual the pick ignores ejection (panic mode, see [`Balancer::pick`]) rather
    /// than failing.
    pub(crate) fn pick_endpoint(&self, avoid: &[SocketAddr]) -> Result<Arc<Endpoint>, ProxyError> {
        match self.pick(avoid) {
            Pick::Endpoint(e) => Ok(e),
            Pick::Empty => Err(ProxyError::new(
                ErrorKind::NoEndpoints,
                "no endpoints in discovery",
            )),
        }
    }

    /// Opens a connection of its own to `endpoint` (opaque TCP, upgrades), offering `alpn`
    /// to servers outside the mesh: the same connect path, and so the same TLS, as requests.
    /// A failure that is the endpoint's own counts for failure accrual.
    ///
    /// # Errors
    /// As `Connector::connect`.
    pub(crate) async fn connect(
        &self,
        endpoint: &Arc<Endpoint>,
        alpn: Alpn,
    ) -> Result<ClientIo, ProxyError> {
        let connected = endpoint.pool.open(alpn).await;
        if let Err(err) = &connected {
            if endpoint.blame(err) {
                self.record(endpoint, false);
            }
        }
        connected
    }

    /// Records the result of an exchange with `endpoint` for failure accrual (only results
    /// that are the endpoint's own: see `ProxyError::blames_endpoint`).
    pub(crate) fn record(&self, endpoint: &Arc<Endpoint>, success: bool) {
        let Some(transition) = endpoint.accrual.record(success, Instant::now) else {
            return;
        };
        match transition {
            Transition::Ejected => {
                tracing::info!(endpoint = %endpoint.addr, "failure accrual: endpoint ejected");
                self.metrics.ejected();
                endpoint.ejected();
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

    /// The state of every endpoint now, for people (the dashboard).
    pub(crate) fn state(&self) -> ClientState {
        let now = Instant::now();
        let mut endpoints: Vec<EndpointState> = self
            .snapshot()
            .endpoints
            .iter()
            .map(|e| e.state(now))
            .collect();
        endpoints.sort_by_key(|e| e.addr);
        ClientState {
            tls: self.tls.as_ref().map(ClientTls::describe),
            endpoints,
        }
    }

    fn snapshot(&self) -> Arc<EndpointSet> {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Picks an endpoint: two candidates drawn at random in proportion to their weights, the
    /// one with the lower peak-EWMA cost wins (either, when the costs are within the noise
    /// band; the loser's estimate relaxes towards the winner's: `load.rs`). Ejected endpoints
    /// are skipped, and (while others are available) draining ones and those in `avoid`.
    /// When every endpoint is ejected, one is picked at random regardless (panic mode).
    pub(crate) fn pick(&self, avoid: &[SocketAddr]) -> Pick {
        let set = self.snapshot();
        let now = Instant::now();
        let peers = || peers_average(&set.endpoints, now);
        // `a` was drawn at random, so keeping it when the costs are equal is a random choice.
        let better = |a: usize, b: usize| {
            let (ea, eb) = (&set.endpoints[a], &set.endpoints[b]);
            let (ca, cb) = (ea.load.cost(now, peers), eb.load.cost(now, peers));
            if (ca - cb).abs() <= NOISE_BAND * ca.max(cb) {
                return a;
            }
            let (winner, loser) = if cb < ca { (b, a) } else { (a, b) };
            set.endpoints[loser]
                .load
                .lost_to(&set.endpoints[winner].load, now);
            winner
        };
        let n = set.endpoints.len();
        if n == 0 {
            return Pick::Empty;
        }
        let usable = |i: usize| set.endpoints[i].accrual.is_available(now);
        // A draining endpoint is picked only when no other will do.
        let preferred = |i: usize| {
            let e = &set.endpoints[i];
            usable(i) && !e.is_draining() && !avoid.contains(&e.addr)
        };
        let a = draw(n, set.cumulative.as_deref());
        let mut b = draw(n, set.cumulative.as_deref());
        if n > 1 && a == b {
            // A second distinct candidate, so P2C always compares two.
            b = (a + 1 + fastrand::usize(..n - 1)) % n;
        }
        let chosen = match (preferred(a), preferred(b)) {
            (true, true) if a != b => Some(better(a, b)),
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
            None => {
                // Panic mode (Envoy's panic threshold, here at 0%): every endpoint is ejected
                // or carrying its probe, so accrual no longer tells them apart. Failing every
                // request would make a whole-service blip (a rolling restart, a shared
                // dependency's hiccup) an outage: spread the load over all of them instead.
                let start = fastrand::usize(..n);
                let i = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|i| !avoid.contains(&set.endpoints[*i].addr))
                    .unwrap_or(start);
                self.metrics.panic_pick();
                Pick::Endpoint(set.endpoints[i].clone())
            }
        }
    }

    fn endpoint(&self, a: &Address) -> Endpoint {
        let (addr, weight) = (a.addr, a.weight);
        let connector = Connector::new(addr, self.connect_timeout, self.tls.clone());
        #[cfg(test)]
        let connector = match &self.dial {
            Some(dial) => Connector::memory(addr, dial.clone()),
            None => connector,
        };
        Endpoint {
            addr,
            weight,
            is_proxy: self.meshed || self.own.contains(&addr),
            pool: Pool::new(connector, self.pool_idle_timeout),
            load: Load::new(self.decay),
            accrual: Accrual::new(self.accrual.clone()),
            requests: self.metrics.endpoint_requests(&addr.to_string()),
            http1_only: super::Mark::default(),
            authority: super::authority_of(a),
            reconnecting: AtomicBool::new(false),
        }
    }
}

/// The mean of the recent latency estimates of up to [`PEERS_SAMPLE`] endpoints (from a
/// random start), nominal when none has one: what an endpoint without a recent estimate of
/// its own costs. Computed only when a candidate needs it, and bounded for large clients.
fn peers_average(endpoints: &[Arc<Endpoint>], now: Instant) -> f64 {
    let n = endpoints.len();
    let start = if n > PEERS_SAMPLE {
        fastrand::usize(..n)
    } else {
        0
    };
    let (sum, count) = (0..n.min(PEERS_SAMPLE))
        .filter_map(|i| endpoints[(start + i) % n].load.estimate(now))
        .fold((0.0, 0u32), |(sum, count), ns| (sum + ns, count + 1));
    if count == 0 {
        NOMINAL_RTT_NS
    } else {
        sum / f64::from(count)
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
    use std::time::Duration;

    /// A balancer over `n` endpoints with `decay`, nothing measured.
    fn balancer(n: usize, decay: Duration) -> (Balancer, Vec<Arc<Endpoint>>) {
        let mut config = ClientConfig::default();
        config.load_balancer.decay = decay;
        let metrics = weft_telemetry::Metrics::new("test")
            .router("r")
            .client("/#/test");
        let b = Balancer::new(&config, metrics, false, None, Vec::new().into());
        let addrs: AddrSet = (0..n)
            .map(|i| weft_naming::Address::new(SocketAddr::from(([10, 0, 0, i as u8], 80))))
            .collect::<Vec<_>>()
            .into();
        b.update(&addrs);
        let endpoints = b.snapshot().endpoints.clone();
        (b, endpoints)
    }

    fn index(endpoints: &[Arc<Endpoint>], picked: &Endpoint) -> usize {
        endpoints
            .iter()
            .position(|e| e.addr == picked.addr)
            .expect("one of them")
    }

    /// Runs `requests` requests, `concurrency` at a time, against endpoints whose latency is
    /// `latency(i)` plus noise, on tokio's paused clock; returns how many each got.
    async fn simulate(
        b: &Balancer,
        endpoints: &[Arc<Endpoint>],
        requests: usize,
        concurrency: usize,
        latency: impl Fn(usize) -> Duration,
    ) -> Vec<usize> {
        let mut got = vec![0; endpoints.len()];
        let mut in_flight: Vec<(Instant, usize, Instant, InFlight<'_>)> = Vec::new();
        for _ in 0..requests {
            if in_flight.len() == concurrency {
                // The earliest request finishes: its latency is measured.
                let first = (0..in_flight.len())
                    .min_by_key(|i| in_flight[*i].0)
                    .expect("some in flight");
                let (done, i, sent, guard) = in_flight.swap_remove(first);
                tokio::time::advance(done.saturating_duration_since(Instant::now())).await;
                drop(guard);
                endpoints[i].load.observe(done - sent, Instant::now());
            }
            let Pick::Endpoint(e) = b.pick(&[]) else {
                panic!("an endpoint");
            };
            let i = index(endpoints, &e);
            got[i] += 1;
            let now = Instant::now();
            // Noise, as real latency has: up to 20% jitter, and one response in a hundred
            // ten times slower (a scheduler hiccup).
            let base = latency(i);
            let took = if fastrand::u32(..100) == 0 {
                base * 10
            } else {
                base.mul_f64(1.0 + fastrand::f64() * 0.2)
            };
            in_flight.push((now + took, i, now, endpoints[i].load.start()));
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn two_identical_endpoints_share_sequential_requests() {
        // Many runs (seeded: the same every time): the share of each run must hold, not just
        // the average of them.
        for seed in 0..100 {
            fastrand::seed(seed);
            let (b, endpoints) = balancer(2, Duration::from_secs(10));
            let got = simulate(&b, &endpoints, 200, 1, |_| Duration::from_micros(200)).await;
            assert!(got.iter().all(|n| *n >= 70), "each at least 35%: {got:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slower_endpoint_gets_little_of_concurrent_load() {
        fastrand::seed(7);
        let (b, endpoints) = balancer(3, Duration::from_secs(10));
        let got = simulate(&b, &endpoints, 2000, 8, |i| {
            Duration::from_micros(500)
                + if i == 2 {
                    Duration::from_millis(20)
                } else {
                    Duration::ZERO
                }
        })
        .await;
        assert!(
            got[2] < 200,
            "the 20ms-slower endpoint got under 10%: {got:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovered_endpoint_wins_traffic_back_within_decay() {
        fastrand::seed(7);
        let decay = Duration::from_secs(2);
        let (b, endpoints) = balancer(2, decay);
        let slow = Duration::from_millis(30);
        let fast = Duration::from_millis(1);
        // Endpoint 1 is slow for a while: it gets little.
        let before = simulate(
            &b,
            &endpoints,
            2000,
            4,
            |i| if i == 1 { slow } else { fast },
        )
        .await;
        assert!(before[1] < 200, "{before:?}");
        // It recovers: it is soon tried again, and being fast now it keeps its share.
        let start = Instant::now();
        let mut after = vec![0; 2];
        while Instant::now() < start + 2 * decay {
            let got = simulate(&b, &endpoints, 100, 4, |_| fast).await;
            after[0] += got[0];
            after[1] += got[1];
        }
        let share = after[1] as f64 / (after[0] + after[1]) as f64;
        assert!(
            share > 0.25,
            "recovered endpoint's share in 2 x decay: {after:?}"
        );
    }

    #[tokio::test]
    async fn a_draining_endpoint_is_picked_only_when_no_other_will_do() {
        let (b, endpoints) = balancer(3, Duration::from_secs(10));
        endpoints[0].pool.mark_draining();
        for _ in 0..200 {
            let Pick::Endpoint(e) = b.pick(&[]) else {
                panic!("an endpoint");
            };
            assert_ne!(e.addr, endpoints[0].addr, "the draining one is avoided");
        }
        let refused = ProxyError::new(ErrorKind::ConnectionRefused, "refused");
        assert!(!endpoints[0].blame(&refused), "a drain is not a failure");
        assert!(endpoints[1].blame(&refused));
        // Every endpoint draining: they are still picked.
        endpoints[1].pool.mark_draining();
        endpoints[2].pool.mark_draining();
        assert!(matches!(b.pick(&[]), Pick::Endpoint(_)));
    }

    #[tokio::test]
    async fn every_endpoint_ejected_is_panic_mode_not_failure() {
        let (b, endpoints) = balancer(2, Duration::from_secs(10));
        for e in &endpoints {
            for _ in 0..5 {
                b.record(e, false);
            }
            assert!(e.accrual.is_ejected());
        }
        let Pick::Endpoint(e) = b.pick(&[endpoints[0].addr]) else {
            panic!("an endpoint");
        };
        assert_eq!(
            e.addr, endpoints[1].addr,
            "avoids what it was asked to avoid"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_ejected_for_refused_connects_is_probed_as_soon_as_it_listens() {
        use std::sync::atomic::Ordering;
        // Endpoint 10.0.0.0 refuses connections until `listening`; 10.0.0.1 always accepts.
        let listening = Arc::new(AtomicBool::new(false));
        let dial = {
            let listening = listening.clone();
            super::super::memory::Dial(Arc::new(move |addr: SocketAddr| {
                let refused = addr.ip() == std::net::Ipv4Addr::new(10, 0, 0, 0)
                    && !listening.load(Ordering::Relaxed);
                (!refused).then(|| tokio::io::duplex(64).0)
            }))
        };
        let metrics = weft_telemetry::Metrics::new("test")
            .router("r")
            .client("/#/test");
        let b = Balancer::new(
            &ClientConfig::default(),
            metrics,
            false,
            None,
            Vec::new().into(),
        )
        .with_dial(dial);
        let addrs: AddrSet = (0..2)
            .map(|i| weft_naming::Address::new(SocketAddr::from(([10, 0, 0, i], 80))))
            .collect::<Vec<_>>()
            .into();
        b.update(&addrs);
        let endpoints = b.snapshot().endpoints.clone();
        let (restarting, answering) = (&endpoints[0], &endpoints[1]);

        // Five refused connects eject the first (default policy: backoff 2.5 s to 5 s); five
        // failed responses eject the second, which accepts connections all along.
        for _ in 0..5 {
            assert!(b.connect(restarting, Alpn::None).await.is_err());
            b.record(answering, false);
        }
        assert!(restarting.accrual.is_ejected() && answering.accrual.is_ejected());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !restarting.accrual.is_available(Instant::now()),
            "still refusing: it stays out"
        );

        // It listens again: within a few probe intervals it may carry the probe, long
        // before its backoff (at least 2.5 s) would have ended.
        listening.store(true, Ordering::Relaxed);
        tokio::time::sleep(3 * super::super::pool::PROBE_EVERY).await;
        assert!(restarting.accrual.is_available(Instant::now()));
        assert!(
            restarting.accrual.is_ejected(),
            "not revived yet: one request probes it"
        );
        assert!(
            !answering.accrual.is_available(Instant::now()),
            "an endpoint ejected for its answers waits out its backoff"
        );
        let Pick::Endpoint(probe) = b.pick(&[]) else {
            panic!("an endpoint");
        };
        assert_eq!(probe.addr, restarting.addr, "the only available endpoint");
        b.record(&probe, true);
        assert!(!restarting.accrual.is_ejected(), "the probe revived it");
    }

    #[tokio::test(start_paused = true)]
    async fn state_shows_load_and_ejection_times() {
        let (b, endpoints) = balancer(2, Duration::from_secs(10));
        endpoints[0]
            .load
            .observe(Duration::from_millis(3), Instant::now());
        let _in_flight = endpoints[0].load.start();
        for _ in 0..5 {
            b.record(&endpoints[1], false);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let state = b.state();
        assert_eq!(state.tls, None);
        let [alive, ejected] = &state.endpoints[..] else {
            panic!("two endpoints: {state:?}");
        };
        assert_eq!((alive.accrual, alive.pending), ("alive", 1));
        assert!((alive.latency_ewma_secs.unwrap() - 0.003).abs() < 1e-9);
        assert_eq!(ejected.accrual, "ejected");
        assert_eq!(ejected.ejected_for_secs, Some(1.0));
        assert!(ejected.next_probe_in_secs.unwrap() > 0.0);
        assert_eq!(ejected.latency_ewma_secs, None);
    }

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
