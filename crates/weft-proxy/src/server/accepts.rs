//! The once-per-upgrade accept events, for measuring the gap in accepted connections while a
//! successor takes a listener over (`bench/upgrade`, docs/benchmarks.md): when a listener
//! stops accepting, and the first connection a successor accepts once its predecessor has
//! stopped. Both are logged at INFO with the wall-clock time in microseconds (`unix_us`), so
//! the two processes' logs can be compared.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Logs the next connection accepted on any listener of the proxy once armed
/// ([`AcceptMark::arm`]); one relaxed atomic load per accept otherwise.
#[derive(Clone, Debug, Default)]
pub struct AcceptMark(Arc<AtomicBool>);

// === impl AcceptMark ===

impl AcceptMark {
    /// The predecessor of an upgrade said it stopped accepting: the next connection accepted
    /// is logged (`first connection accepted since the predecessor stopped accepting`).
    pub fn arm(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// A connection from `peer` was accepted on `listener` of `router`.
    pub(crate) fn accepted(&self, router: &str, listener: SocketAddr, peer: SocketAddr) {
        if self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::Relaxed) {
            tracing::info!(
                router,
                %listener,
                %peer,
                unix_us = unix_us(),
                "upgrade: first connection accepted since the predecessor stopped accepting"
            );
        }
    }
}

/// `listener` of `router` stopped accepting (its queue taken, `queued` connections).
pub(crate) fn stopped(router: &str, listener: SocketAddr, queued: usize) {
    tracing::info!(
        router,
        %listener,
        queued,
        unix_us = unix_us(),
        "stopped accepting"
    );
}

/// Microseconds since the Unix epoch by the wall clock (0 if the clock is before it).
fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}
