//! Failure accrual (a circuit breaker per endpoint), after Finagle's `FailureAccrualFactory`:
//! an endpoint that fails too often is ejected from its balancer for a jittered, growing
//! backoff; then exactly one probe request decides (half-open): success revives it, failure
//! ejects it again for longer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use weft_config::{Backoff, FailureAccrualConfig};

/// What a recorded result changed, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The endpoint was ejected (circuit opened).
    Ejected,
    /// The probe succeeded; the endpoint is back (circuit closed).
    Revived,
}

/// One endpoint's accrual state.
#[derive(Debug)]
pub(crate) struct Accrual {
    policy: FailureAccrualConfig,
    state: Mutex<State>,
    /// The phase is `Alive` (set with it, under the lock): a healthy endpoint's pick reads
    /// this and takes no lock and no clock.
    alive: AtomicBool,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    consecutive_failures: u32,
    /// Recent results, newest last (success-rate policy only).
    window: VecDeque<bool>,
    /// Ejections in a row without a revival: drives the growing backoff.
    ejections: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Alive,
    Ejected {
        since: Instant,
        until: Instant,
    },
    /// Half-open: one probe request is in flight.
    Probing,
}

// === impl Accrual ===

impl Accrual {
    pub(crate) fn new(policy: FailureAccrualConfig) -> Accrual {
        Accrual {
            policy,
            state: Mutex::new(State {
                phase: Phase::Alive,
                consecutive_failures: 0,
                window: VecDeque::new(),
                ejections: 0,
            }),
            alive: AtomicBool::new(true),
        }
    }

    /// True when the balancer may pick this endpoint now: alive, or ejected with its backoff
    /// over (it will then carry the probe).
    pub(crate) fn is_available(&self, now: Instant) -> bool {
        if self.alive.load(Ordering::Relaxed) {
            return true;
        }
        match self.lock().phase {
            Phase::Alive => true,
            Phase::Ejected { until, .. } => now >= until,
            Phase::Probing => false,
        }
    }

    /// True while the endpoint is ejected or probing (for the ejected-endpoints gauge).
    pub(crate) fn is_ejected(&self) -> bool {
        !self.alive.load(Ordering::Relaxed)
    }

    /// The endpoint was picked for a request: an ejected endpoint whose backoff is over now
    /// carries the one probe.
    pub(crate) fn on_pick(&self, now: Instant) {
        if self.alive.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.lock();
        if let Phase::Ejected { until, .. } = state.phase {
            if now >= until {
                state.phase = Phase::Probing;
            }
        }
    }

    /// True while the endpoint is ejected and its backoff is not over.
    pub(crate) fn is_backing_off(&self, now: Instant) -> bool {
        if self.alive.load(Ordering::Relaxed) {
            return false;
        }
        matches!(self.lock().phase, Phase::Ejected { until, .. } if now < until)
    }

    /// Ends the backoff of an ejected endpoint now: the next pick carries the probe
    /// (half-open), as if the backoff were over. Returns whether it was backing off. For an
    /// endpoint ejected because connections to it failed, once a connection succeeds
    /// (`Endpoint::ejected`): the backoff was the guess of when it would listen again.
    pub(crate) fn end_backoff(&self, now: Instant) -> bool {
        let mut state = self.lock();
        match state.phase {
            Phase::Ejected { since, until } if now < until => {
                state.phase = Phase::Ejected { since, until: now };
                true
            }
            _ => false,
        }
    }

    /// When the next ejected endpoint's backoff ends, if it is ejected.
    #[cfg(test)]
    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        match self.lock().phase {
            Phase::Ejected { until, .. } => Some(until),
            _ => None,
        }
    }

    /// The state for people (the dashboard): `alive`, `ejected` (since when, and when the
    /// next probe may go) or `probing` (half-open: one probe in flight). An alive endpoint
    /// takes no lock.
    pub(crate) fn view(&self) -> (&'static str, Option<(Instant, Instant)>) {
        if self.alive.load(Ordering::Relaxed) {
            return ("alive", None);
        }
        match self.lock().phase {
            Phase::Alive => ("alive", None),
            Phase::Ejected { since, until } => ("ejected", Some((since, until))),
            Phase::Probing => ("probing", None),
        }
    }

    /// Records one result (`success` by the response classifier); returns what changed.
    /// `now` is asked for only when the result ejects the endpoint (most results do not).
    pub(crate) fn record(
        &self,
        success: bool,
        now: impl FnOnce() -> Instant,
    ) -> Option<Transition> {
        let (threshold_hit, backoff) = {
            let mut state = self.lock();
            if state.phase == Phase::Probing {
                if success {
                    state.phase = Phase::Alive;
                    self.alive.store(true, Ordering::Relaxed);
                    state.ejections = 0;
                    state.consecutive_failures = 0;
                    state.window.clear();
                    return Some(Transition::Revived);
                }
                let backoff = self.backoff(state.ejections)?;
                state.ejections = state.ejections.saturating_add(1);
                let since = now();
                state.phase = Phase::Ejected {
                    since,
                    until: since + backoff,
                };
                return Some(Transition::Ejected);
            }
            if state.phase != Phase::Alive {
                // A late result of a request sent before the ejection: ignore it.
                return None;
            }
            state.consecutive_failures = if success {
                0
            } else {
                state.consecutive_failures + 1
            };
            let hit = match &self.policy {
                FailureAccrualConfig::None => false,
                FailureAccrualConfig::ConsecutiveFailures { failures, .. } => {
                    state.consecutive_failures >= *failures
                }
                FailureAccrualConfig::SuccessRate {
                    success_rate,
                    requests,
                    ..
                } => {
                    let window = *requests as usize;
                    state.window.push_back(success);
                    while state.window.len() > window {
                        state.window.pop_front();
                    }
                    let ok = state.window.iter().filter(|s| **s).count();
                    state.window.len() >= window && (ok as f64) < success_rate * window as f64
                }
            };
            (hit, self.backoff(state.ejections))
        };
        if !threshold_hit {
            return None;
        }
        let backoff = backoff?;
        let mut state = self.lock();
        state.ejections = state.ejections.saturating_add(1);
        let since = now();
        state.phase = Phase::Ejected {
            since,
            until: since + backoff,
        };
        self.alive.store(false, Ordering::Relaxed);
        state.consecutive_failures = 0;
        state.window.clear();
        Some(Transition::Ejected)
    }

    /// The `n`-th ejection's backoff: `min * 2^n` capped at `max`, with "equal jitter" (a
    /// random point in the upper half) so ejected endpoints do not all come back at once.
    fn backoff(&self, n: u32) -> Option<Duration> {
        let Backoff { min, max } = match &self.policy {
            FailureAccrualConfig::None => return None,
            FailureAccrualConfig::ConsecutiveFailures { backoff, .. }
            | FailureAccrualConfig::SuccessRate { backoff, .. } => *backoff,
        };
        let base = min.saturating_mul(1u32 << n.min(16)).min(max);
        let half = base / 2;
        Some(half + half.mul_f64(fastrand::f64()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consecutive(n: u32) -> Accrual {
        Accrual::new(FailureAccrualConfig::ConsecutiveFailures {
            failures: n,
            backoff: Backoff {
                min: Duration::from_secs(5),
                max: Duration::from_secs(300),
            },
        })
    }

    #[test]
    fn ejects_after_consecutive_failures_then_one_probe_revives() {
        let a = consecutive(3);
        let t0 = Instant::now();
        assert_eq!(a.record(false, || t0), None);
        assert_eq!(a.record(true, || t0), None, "a success resets the count");
        assert_eq!(a.record(false, || t0), None);
        assert_eq!(a.record(false, || t0), None);
        assert_eq!(a.record(false, || t0), Some(Transition::Ejected));
        assert!(!a.is_available(t0));
        let later = t0 + Duration::from_secs(6);
        assert!(a.is_available(later), "backoff (2.5s..5s) is over");
        a.on_pick(later);
        assert!(!a.is_available(later), "only one probe at a time");
        assert_eq!(a.record(true, || later), Some(Transition::Revived));
        assert!(a.is_available(later));
    }

    #[test]
    fn failed_probe_ejects_again_for_longer() {
        let a = consecutive(1);
        let t0 = Instant::now();
        assert_eq!(a.record(false, || t0), Some(Transition::Ejected));
        let t1 = t0 + Duration::from_secs(6);
        a.on_pick(t1);
        assert_eq!(a.record(false, || t1), Some(Transition::Ejected));
        let until = a.ejected_until().expect("ejected");
        assert!(
            until >= t1 + Duration::from_secs(5),
            "second backoff is 5s..10s"
        );
    }

    #[test]
    fn an_ended_backoff_lets_the_next_pick_probe() {
        let a = consecutive(1);
        let t0 = Instant::now();
        assert!(!a.end_backoff(t0), "alive: nothing to end");
        assert_eq!(a.record(false, || t0), Some(Transition::Ejected));
        let t1 = t0 + Duration::from_millis(100);
        assert!(a.is_backing_off(t1));
        assert!(!a.is_available(t1));
        assert!(a.end_backoff(t1));
        assert!(!a.is_backing_off(t1));
        assert!(a.is_available(t1), "the next pick probes it");
        a.on_pick(t1);
        assert!(!a.end_backoff(t1), "probing: the probe decides");
        assert_eq!(a.record(true, || t1), Some(Transition::Revived));
    }

    #[test]
    fn success_rate_ejects_when_window_is_full_and_below_rate() {
        let a = Accrual::new(FailureAccrualConfig::SuccessRate {
            success_rate: 0.8,
            requests: 10,
            backoff: Backoff {
                min: Duration::from_secs(1),
                max: Duration::from_secs(10),
            },
        });
        let t = Instant::now();
        for _ in 0..7 {
            assert_eq!(a.record(true, || t), None);
        }
        assert_eq!(a.record(false, || t), None);
        assert_eq!(a.record(false, || t), None);
        assert_eq!(
            a.record(false, || t),
            Some(Transition::Ejected),
            "7/10 < 0.8"
        );
    }

    #[test]
    fn none_policy_never_ejects() {
        let a = Accrual::new(FailureAccrualConfig::None);
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(a.record(false, || t), None);
        }
    }
}
