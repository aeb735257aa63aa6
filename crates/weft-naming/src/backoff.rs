//! [`Backoff`]: how long a namer (or the control-plane client) waits before asking a failing
//! backend again.

use std::time::Duration;

/// Exponential backoff with jitter: `min`, doubling up to `max`, each wait drawn from ±25%
/// around the nominal value so that a fleet of proxies that lost the same backend does not
/// come back in step ("thundering herd"; the AWS architecture blog's "Exponential Backoff And
/// Jitter" measures why). [`Backoff::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and doubling up to `max` (both nominal, before jitter).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next wait (jittered), and doubles the nominal wait up to `max`.
    pub fn next_wait(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        nominal.mul_f64(0.75 + fastrand::f64() * 0.5)
    }

    /// Back to `min`, after a good answer.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let waits: Vec<f64> = (0..5).map(|_| b.next_wait().as_secs_f64()).collect();
        for (w, nominal) in waits.iter().zip([1.0, 2.0, 4.0, 4.0, 4.0]) {
            assert!(*w >= nominal * 0.75 && *w <= nominal * 1.25, "{waits:?}");
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(1250));
    }
}
