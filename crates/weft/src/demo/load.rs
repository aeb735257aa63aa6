//! The load generator: `GET /convert` on web's sidecar inbound at a steady rate, with bounded
//! concurrency, counting what the client saw.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::http::{self, Client};

/// Per-request deadline: longer than any healthy path through the mesh.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The requests sent in turn (deterministic, so runs are comparable).
const REQUESTS: &[&str] = &[
    "/convert?from=EUR&to=USD&amount=100",
    "/convert?from=USD&to=JPY&amount=25",
    "/convert?from=GBP&to=CHF&amount=10",
    "/convert?from=CHF&to=EUR&amount=42",
];

/// What the load generator saw so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LoadCounts {
    /// Requests answered with 2xx.
    pub(crate) ok: u64,
    /// Requests answered otherwise, or not at all.
    pub(crate) failed: u64,
    /// Ticks skipped because `concurrency` requests were already in flight.
    pub(crate) skipped: u64,
    /// The most recent failure, for display.
    pub(crate) last_error: Option<String>,
}

impl LoadCounts {
    /// ok / (ok + failed), `None` before the first answer.
    pub(crate) fn success_rate(&self) -> Option<f64> {
        let total = self.ok + self.failed;
        (total > 0).then(|| self.ok as f64 / total as f64)
    }
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A running load generator; [`Load::stop`] ends it.
pub(crate) struct Load {
    counters: Arc<Counters>,
    in_flight: Arc<Semaphore>,
    concurrency: u32,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Load {
    /// Starts sending `rps` requests per second to `target` with `Host: host`, at most
    /// `concurrency` at a time.
    pub(crate) fn start(
        client: Client,
        target: SocketAddr,
        host: &'static str,
        rps: f64,
        concurrency: u32,
    ) -> Load {
        let counters = Arc::new(Counters::default());
        let in_flight = Arc::new(Semaphore::new(concurrency as usize));
        let stop = CancellationToken::new();
        let period = Duration::from_secs_f64(1.0 / rps);
        let task = tokio::spawn(drive(
            client,
            target,
            host,
            period,
            counters.clone(),
            in_flight.clone(),
            stop.clone(),
        ));
        Load {
            counters,
            in_flight,
            concurrency,
            stop,
            task,
        }
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> LoadCounts {
        let c = &self.counters;
        LoadCounts {
            ok: c.ok.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            last_error: c.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Stops sending and waits up to `grace` for requests in flight; returns the final counts.
    pub(crate) async fn stop(mut self, grace: Duration) -> LoadCounts {
        self.stop.cancel();
        let _ = (&mut self.task).await;
        // All permits back means no request is in flight.
        let _ = tokio::time::timeout(grace, self.in_flight.acquire_many(self.concurrency)).await;
        self.counts()
    }
}

async fn drive(
    client: Client,
    target: SocketAddr,
    host: &'static str,
    period: Duration,
    counters: Arc<Counters>,
    in_flight: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    // A stalled demo should not fire a burst to catch up: the rate stays steady.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    for path in REQUESTS.iter().cycle() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            counters.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (client, counters) = (client.clone(), counters.clone());
        tokio::spawn(async move {
            let result = http::get(&client, target, host, path, REQUEST_TIMEOUT).await;
            let error = match result {
                Ok(r) if r.status.is_success() => None,
                Ok(r) => Some(format!("{} {}", r.status, r.text())),
                Err(e) => Some(format!("{e:#}")),
            };
            match error {
                None => counters.ok.fetch_add(1, Ordering::Relaxed),
                Some(e) => {
                    if let Ok(mut last) = counters.last_error.lock() {
                        *last = Some(e);
                    }
                    counters.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
            drop(permit);
        });
    }
}
