//! A fact about an endpoint that holds for a while: it speaks HTTP/1.1 only, it is draining.
//! Reading it is one relaxed atomic load while it is not set, so the balancer may ask on
//! every pick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A flag that clears itself at a deadline.
#[derive(Debug, Default)]
pub(crate) struct Mark {
    set: AtomicBool,
    until: Mutex<Option<Instant>>,
}

// === impl Mark ===

impl Mark {
    /// True while set and before its deadline.
    pub(crate) fn is_set(&self) -> bool {
        if !self.set.load(Ordering::Relaxed) {
            return false;
        }
        let until = *self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if until.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        self.set.store(false, Ordering::Relaxed);
        false
    }

    /// Sets the mark (again) for `period` from now; returns whether it was unset before.
    pub(crate) fn set_for(&self, period: Duration) -> bool {
        *self.until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + period);
        !self.set.swap(true, Ordering::Relaxed)
    }

    /// Clears the mark now; returns whether it was set.
    pub(crate) fn clear(&self) -> bool {
        self.set.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_mark_expires_or_clears() {
        let m = Mark::default();
        assert!(!m.is_set());
        assert!(m.set_for(Duration::from_secs(1)));
        assert!(!m.set_for(Duration::from_secs(1)), "already set");
        assert!(m.is_set());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(!m.is_set(), "expired");
        m.set_for(Duration::from_secs(1));
        assert!(m.clear());
        assert!(!m.is_set());
    }
}
