//! Peak-EWMA load (Finagle's `PeakEwma`, as in linkerd2-proxy): each endpoint's cost is an
//! exponentially weighted moving average of its response latency that jumps at once to any
//! higher sample (the peak) and returns towards lower ones with the time constant `decay`,
//! multiplied by the requests in flight plus one. P2C compares two endpoints' costs.
//!
//! Three choices differ from a textbook peak EWMA, each because of a way it failed users:
//! - **Latency is measured from the moment the request is handed to a ready connection to
//!   its response head.** Connection setup (TCP, TLS) is not the endpoint's latency: counted,
//!   the first request to each endpoint made it look slow for minutes.
//! - **An endpoint without a measurement costs the average of its peers** (the mean of the
//!   other endpoints' recent estimates): not zero, which would send it every request until
//!   measured, and not a penalty, which would starve it.
//! - **A measurement older than `decay` no longer counts**, and the endpoint costs its peers'
//!   average again: an endpoint that was slow and recovered gets a request within `decay`
//!   and, if fast now, its share back (a textbook estimate only decays towards zero, which
//!   takes `decay · ln(slow / fast)`, minutes for a 100× slower endpoint).
//! - **Costs within [`NOISE_BAND`] of each other are equal**, and P2C then takes either:
//!   latency jitter is not load.
//! - **An endpoint that loses a comparison believes its estimate a little less**: the estimate
//!   moves [`LOSS_RELAX`] of the way towards the winner's. A loser gets no new samples, so
//!   without this one slow response (a scheduler hiccup) kept an endpoint out until its
//!   estimate went stale, and of two identical endpoints one got nearly all requests. A
//!   really slow endpoint still loses: it is relaxed back into contention only every dozen
//!   or so comparisons, takes one request, and its next sample is slow again.
//! - **Every sample weighs at least [`MIN_SAMPLE_WEIGHT`].** Weighted by time alone, a sample
//!   200 µs after the last one moves the estimate by 0.002% when `decay` is 10 s: after a
//!   peak, the estimate stays there for seconds, and of two identical endpoints the one whose
//!   highest sample was lower got nearly every request. With the floor, the estimate follows
//!   the last few dozen samples at high request rates, and `decay` bounds its memory at low
//!   ones.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The least weight a new sample has in the average (see the module documentation).
const MIN_SAMPLE_WEIGHT: f64 = 0.05;
/// Costs that differ by less than this fraction of the larger are equal.
pub(crate) const NOISE_BAND: f64 = 0.2;
/// How far a losing endpoint's estimate moves towards the winner's, per comparison lost.
const LOSS_RELAX: f64 = 0.3;

/// The latency assumed when nothing recent was measured in a client: only the in-flight
/// counts tell endpoints apart then.
pub(crate) const NOMINAL_RTT_NS: f64 = 1_000_000.0;

/// One endpoint's load.
#[derive(Debug)]
pub(crate) struct Load {
    estimate: Mutex<Option<Ewma>>,
    pending: AtomicU32,
    decay_ns: f64,
}

/// A latency estimate in nanoseconds and when it was last updated.
#[derive(Clone, Copy, Debug)]
struct Ewma {
    ns: f64,
    at: Instant,
}

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(&'a AtomicU32);

// === impl Load ===

impl Load {
    /// An endpoint's load with time constant `decay`: nothing measured, nothing in flight.
    pub(crate) fn new(decay: Duration) -> Load {
        Load {
            estimate: Mutex::new(None),
            pending: AtomicU32::new(0),
            decay_ns: (decay.as_nanos() as f64).max(1.0),
        }
    }

    /// Counts a request in flight until the returned guard drops (at its response head or
    /// failure).
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.pending)
    }

    /// The cost P2C compares: the latency estimate (`peers()`, the average of the other
    /// endpoints, when there is no recent one) times the requests in flight plus one.
    pub(crate) fn cost(&self, now: Instant, peers: impl FnOnce() -> f64) -> f64 {
        let ns = self.estimate(now).unwrap_or_else(peers);
        let pending = f64::from(self.pending.load(Ordering::Relaxed));
        ns * (pending + 1.0)
    }

    /// Requests in flight now.
    pub(crate) fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }

    /// The latency estimate in nanoseconds, if one is recent (updated within `decay`).
    pub(crate) fn estimate(&self, now: Instant) -> Option<f64> {
        lock(&self.estimate)
            .filter(|e| e.fresh(now, self.decay_ns))
            .map(|e| e.ns)
    }

    /// This endpoint lost a comparison to `winner`: a recent estimate above the winner's
    /// moves [`LOSS_RELAX`] of the way towards it (when it was updated stays the same, so it
    /// still goes stale on time).
    pub(crate) fn lost_to(&self, winner: &Load, now: Instant) {
        let Some(theirs) = winner.estimate(now) else {
            return;
        };
        let mut estimate = lock(&self.estimate);
        if let Some(e) = estimate.as_mut().filter(|e| e.fresh(now, self.decay_ns)) {
            if e.ns > theirs {
                e.ns = theirs + (e.ns - theirs) * (1.0 - LOSS_RELAX);
            }
        }
    }

    /// A response head arrived `rtt` after the request went out on a ready connection.
    pub(crate) fn observe(&self, rtt: Duration, now: Instant) {
        let ns = rtt.as_nanos() as f64;
        let decay = self.decay_ns;
        let mut estimate = lock(&self.estimate);
        *estimate = Some(match *estimate {
            // Peak: a slower sample is believed at once.
            Some(e) if e.fresh(now, decay) && ns < e.ns => e.average(ns, now, decay),
            _ => Ewma { ns, at: now },
        });
    }

    /// The endpoint failed after `elapsed`: a recent estimate rises to that if it was lower,
    /// so a fast failure never makes an endpoint look faster than it was (an endpoint without
    /// one stays unmeasured; failure accrual, not the cost, deals with failing endpoints).
    pub(crate) fn failed(&self, elapsed: Duration, now: Instant) {
        let ns = elapsed.as_nanos() as f64;
        let mut estimate = lock(&self.estimate);
        if let Some(e) = estimate.as_mut().filter(|e| e.fresh(now, self.decay_ns)) {
            if ns > e.ns {
                *e = Ewma { ns, at: now };
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Ewma ===

impl Ewma {
    /// Still counts: updated within the last `decay_ns`.
    fn fresh(&self, now: Instant, decay_ns: f64) -> bool {
        (now.saturating_duration_since(self.at).as_nanos() as f64) < decay_ns
    }

    /// Moves towards `ns`: the longer since the last update, the more the new sample weighs
    /// (weight of the old estimate `e^(-elapsed/decay)`, at most `1 - MIN_SAMPLE_WEIGHT`).
    fn average(self, ns: f64, now: Instant, decay_ns: f64) -> Ewma {
        let elapsed = now.saturating_duration_since(self.at).as_nanos() as f64;
        let w = (-elapsed / decay_ns).exp().min(1.0 - MIN_SAMPLE_WEIGHT);
        Ewma {
            ns: self.ns * w + ns * (1.0 - w),
            at: now,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const DECAY: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn without_a_recent_estimate_the_peers_average_counts_with_in_flight_requests() {
        let a = Load::new(DECAY);
        let now = Instant::now();
        assert_eq!(a.cost(now, || 2e6), 2e6, "unmeasured: what the peers cost");
        let _busy = a.start();
        assert_eq!(a.cost(now, || 2e6), 4e6, "in-flight requests count");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slower_sample_is_a_peak_and_faster_ones_pull_it_down() {
        let a = Load::new(DECAY);
        let t0 = Instant::now();
        a.observe(MS, t0);
        a.observe(10 * MS, t0 + MS);
        assert_eq!(
            a.estimate(t0 + MS),
            Some(10_000_000.0),
            "peak believed at once"
        );
        let later = t0 + Duration::from_secs(5);
        a.observe(MS, later);
        let e = a.estimate(later).unwrap();
        assert!(e < 10_000_000.0 && e > 1_000_000.0, "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_measurement_stops_counting_after_decay() {
        let slow = Load::new(DECAY);
        let t0 = Instant::now();
        slow.observe(20 * MS, t0);
        assert_eq!(slow.cost(t0, || 0.1e6), 20e6);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(slow.estimate(later), None);
        assert_eq!(slow.cost(later, || 0.1e6), 0.1e6, "worth one more try");
    }

    #[tokio::test(start_paused = true)]
    async fn a_loser_relaxes_towards_the_winner_but_stays_stale_on_time() {
        let (a, b) = (Load::new(DECAY), Load::new(DECAY));
        let t0 = Instant::now();
        a.observe(10 * MS, t0);
        b.observe(MS, t0);
        a.lost_to(&b, t0);
        assert_eq!(a.estimate(t0), Some(7_300_000.0), "30% of the way to 1ms");
        b.lost_to(&a, t0);
        assert_eq!(
            b.estimate(t0),
            Some(1_000_000.0),
            "a cheaper loser is left alone"
        );
        let later = t0 + Duration::from_secs(11);
        b.observe(MS, later);
        a.lost_to(&b, later);
        assert_eq!(a.estimate(later), None, "relaxing does not refresh it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_failure_never_lowers_the_estimate() {
        let a = Load::new(DECAY);
        let t0 = Instant::now();
        a.failed(Duration::from_micros(10), t0);
        assert_eq!(a.estimate(t0), None, "no estimate invented from a failure");
        a.observe(5 * MS, t0);
        a.failed(Duration::from_micros(10), t0);
        assert_eq!(a.estimate(t0), Some(5_000_000.0));
        a.failed(50 * MS, t0);
        assert_eq!(a.estimate(t0), Some(50_000_000.0));
    }
}
