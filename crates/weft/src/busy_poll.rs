//! Busy polling (`weft proxy --busy-poll <µs>`): after the runtime wakes up, keep polling for
//! I/O (epoll with a zero timeout) for a while instead of going back to sleep.
//!
//! Why: on a virtual machine, a vCPU that went idle takes tens of microseconds to run again
//! when a packet arrives (the hypervisor has to schedule it). A proxy sleeps twice per
//! request at low load, once waiting for the request and once for the upstream's response,
//! and pays that delay each time. Spinning through the second wait trades CPU for latency,
//! the same trade as haproxy's `busy-polling` (which spins all the time) and Linux's
//! `SO_BUSY_POLL`. The measurements are in docs/benchmarks.md. Off by default: a sidecar's
//! CPU usually matters more than 50 µs.
//!
//! How: the runtime's `on_thread_unpark` hook (called each time the thread really slept and
//! woke up) notifies a spinner task, which then yields for the window. A task that yields
//! keeps the runtime polling its driver without blocking (tokio's `park_yield`), so events
//! are picked up as soon as they arrive. The window restarts at each real wake-up, not at
//! each event; under load the runtime seldom sleeps, so the spinner seldom runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A busy-poll window, installed on a runtime builder and run as one task on that runtime.
#[derive(Debug)]
pub(crate) struct BusyPoll {
    window: Duration,
    woke: Arc<Notify>,
}

impl BusyPoll {
    /// Spins for `window_us` microseconds after each wake-up of `builder`'s runtime; `None`
    /// when `window_us` is 0 (off).
    pub(crate) fn install(
        builder: &mut tokio::runtime::Builder,
        window_us: u32,
    ) -> Option<BusyPoll> {
        if window_us == 0 {
            return None;
        }
        let woke = Arc::new(Notify::new());
        let hook = woke.clone();
        builder.on_thread_unpark(move || hook.notify_one());
        Some(BusyPoll {
            window: Duration::from_micros(u64::from(window_us)),
            woke,
        })
    }

    /// The spinner: runs until the runtime stops. Spawn it once, on the runtime it was
    /// installed on.
    pub(crate) async fn run(self) {
        loop {
            self.woke.notified().await;
            let until = Instant::now() + self.window;
            while Instant::now() < until {
                tokio::task::yield_now().await;
            }
        }
    }
}
