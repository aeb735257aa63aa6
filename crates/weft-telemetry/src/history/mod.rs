//! The in-process history behind the dashboard and the objectives: cumulative request counts
//! per service, sampled from the existing metrics every [`FINE_STEP`] and kept for 15 minutes
//! (sparklines), and every [`COARSE_STEP`] for 6 hours for the services with an objective
//! (burn rates).
//!
//! Sampling reads the response and latency families back from their Prometheus text, so the
//! request path records nothing more and pays nothing when no one looks. The current values
//! are read afresh on every query, so pages and `/metrics` agree exactly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::time::Instant;
use weft_config::Objective;

mod clients;
mod parse;
mod view;

pub use clients::{ClientRow, EndpointRow};
pub(crate) use parse::{Counts, RouteKey};
pub use view::{Overview, RouteRow, ServiceRow, SparkPoint};

/// How often the history is sampled: 10 seconds.
pub const FINE_STEP: Duration = Duration::from_secs(10);
/// How long the fine history reaches back: 15 minutes.
pub const FINE_SPAN: Duration = Duration::from_secs(15 * 60);
/// The step of the long history used for burn rates: 1 minute.
pub const COARSE_STEP: Duration = Duration::from_secs(60);
/// How long the long history reaches back: 6 hours, the longest in-process burn-rate window.
pub const COARSE_SPAN: Duration = Duration::from_secs(6 * 3600);

/// A service of a router: (router label, logical name).
pub(crate) type ServiceKey = (String, String);

/// Request history of every service. Cheap to clone.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

struct Inner {
    /// The response and latency families only (shared with the main registry).
    registry: Registry,
    started: Instant,
    started_unix: f64,
    ring: Mutex<Ring>,
    objectives: Mutex<Vec<(String, Objective)>>,
}

#[derive(Default)]
struct Ring {
    fine: VecDeque<Tick>,
    coarse: VecDeque<Tick>,
}

/// Cumulative counts of every service at one moment.
#[derive(Clone)]
pub(crate) struct Tick {
    pub(crate) at: Instant,
    pub(crate) unix: f64,
    pub(crate) services: HashMap<ServiceKey, Counts>,
}

/// The current counts of every route, and of every service (routes summed).
pub(crate) struct Now {
    pub(crate) tick: Tick,
    pub(crate) routes: HashMap<RouteKey, Counts>,
}

// === impl History ===

impl History {
    /// A history over `registry`, which holds the families to sample.
    pub(crate) fn new(registry: Registry) -> History {
        History {
            inner: Arc::new(Inner {
                registry,
                started: Instant::now(),
                started_unix: crate::unix_now() as f64,
                ring: Mutex::default(),
                objectives: Mutex::default(),
            }),
        }
    }

    /// Replaces the objectives in force: (router label, objective) pairs from each router's
    /// `service.objectives`; at start and after every reload.
    pub fn set_objectives(&self, objectives: Vec<(String, Objective)>) {
        *lock(&self.inner.objectives) = objectives;
    }

    /// The objectives in force, with their routers.
    pub(crate) fn objectives(&self) -> Vec<(String, Objective)> {
        lock(&self.inner.objectives).clone()
    }

    /// Samples every [`FINE_STEP`] on the current tokio runtime until the last handle to
    /// this history is dropped.
    pub fn spawn(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(FINE_STEP);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                History { inner }.sample();
            }
        });
    }

    /// Takes one sample into the rings, dropping samples older than their span.
    pub(crate) fn sample(&self) {
        let now = self.now().tick;
        let mut ring = lock(&self.inner.ring);
        let due = ring
            .coarse
            .back()
            .is_none_or(|last| now.at.duration_since(last.at) + FINE_STEP / 2 >= COARSE_STEP);
        if due {
            // Only services with an objective need the long history (burn rates).
            let objectives = self.objectives();
            let mut coarse = now.clone();
            coarse.services.retain(|(router, service), _| {
                let Ok(path) = weft_naming::Path::read(service) else {
                    return false;
                };
                objectives
                    .iter()
                    .any(|(r, o)| r == router && o.applies_to(&path))
            });
            ring.coarse.push_back(coarse);
        }
        ring.fine.push_back(now);
        prune(&mut ring.fine, FINE_SPAN);
        prune(&mut ring.coarse, COARSE_SPAN);
    }

    /// The counts right now, read from the metrics.
    pub(crate) fn now(&self) -> Now {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        let routes = parse::parse(&text);
        let mut services: HashMap<ServiceKey, Counts> = HashMap::new();
        for (k, c) in &routes {
            services
                .entry((k.router.clone(), k.service.clone()))
                .or_default()
                .add(c);
        }
        Now {
            tick: Tick {
                at: Instant::now(),
                unix: crate::unix_now_f64(),
                services,
            },
            routes,
        }
    }

    /// The process start as a tick with no counts: the baseline when history is short.
    pub(crate) fn start(&self) -> Tick {
        Tick {
            at: self.inner.started,
            unix: self.inner.started_unix,
            services: HashMap::new(),
        }
    }

    /// The fine ring, oldest first.
    pub(crate) fn fine(&self) -> Vec<Tick> {
        lock(&self.inner.ring).fine.iter().cloned().collect()
    }

    /// The latest tick of the coarse ring taken at least `window` before `now`, or the
    /// process start when the history is shorter than `window`.
    pub(crate) fn baseline(&self, now: Instant, window: Duration) -> Tick {
        let ring = lock(&self.inner.ring);
        ring.coarse
            .iter()
            .rev()
            .find(|t| now.duration_since(t.at) >= window)
            .cloned()
            .unwrap_or_else(|| self.start())
    }
}

fn prune(ticks: &mut VecDeque<Tick>, span: Duration) {
    let Some(last) = ticks.back().map(|t| t.at) else {
        return;
    };
    // Keep one tick at or beyond the span, as the baseline of its longest window.
    while ticks.len() > 1 && last.duration_since(ticks[1].at) >= span {
        ticks.pop_front();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
