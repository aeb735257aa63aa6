//! Namer health metrics (`weft_namer_*`), refreshed from the namers' own status records on
//! every scrape, so they can never disagree with `/namers.json`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One namer's health at one moment, as the proxy reads it from the namer.
#[derive(Clone, Debug, PartialEq)]
pub struct NamerSample {
    /// The namer's prefix, e.g. `/#/consul` (the `namer` label).
    pub prefix: String,
    /// The namer kind, e.g. `consul` (the `kind` label).
    pub kind: &'static str,
    /// `pending`, `ok`, `stale` or `error`.
    pub state: &'static str,
    /// Good answers from the backend so far.
    pub updates: u64,
    /// Failed exchanges with the backend so far.
    pub errors: u64,
    /// Names watched now.
    pub watched: u64,
    /// Unix seconds of the last good answer.
    pub last_ok_unix: Option<f64>,
    /// Unix seconds of the first failure of the current failing run.
    pub failing_since_unix: Option<f64>,
}

/// Produces the current samples; set once by the proxy.
pub type NamerSource = Box<dyn Fn() -> Vec<NamerSample> + Send + Sync>;

const STATES: [&str; 4] = ["pending", "ok", "stale", "error"];

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NamerLabels {
    namer: String,
    kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    namer: String,
    kind: &'static str,
    state: &'static str,
}

pub(crate) struct NamerMetrics {
    source: Mutex<Option<NamerSource>>,
    state: Family<StateLabels, Gauge>,
    updates: Family<NamerLabels, Counter>,
    errors: Family<NamerLabels, Counter>,
    watched: Family<NamerLabels, Gauge>,
    last_ok: Family<NamerLabels, Gauge>,
    since_last_ok: Family<NamerLabels, Gauge<f64, AtomicU64>>,
    failing_since: Family<NamerLabels, Gauge>,
}

impl NamerMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Arc<NamerMetrics> {
        let m = NamerMetrics {
            source: Mutex::new(None),
            state: Family::default(),
            updates: Family::default(),
            errors: Family::default(),
            watched: Family::default(),
            last_ok: Family::default(),
            since_last_ok: Family::default(),
            failing_since: Family::default(),
        };
        registry.register(
            "namer_state",
            "Health of each namer's discovery backend: 1 for the current state (pending, ok, stale = failing but routing on the last good endpoints, error = failing with nothing to fall back on), 0 for the others",
            m.state.clone(),
        );
        registry.register(
            "namer_updates",
            "Good answers a namer received from its backend",
            m.updates.clone(),
        );
        registry.register(
            "namer_errors",
            "Failed exchanges of a namer with its backend (unreachable, bad status, malformed or oversized answer, timeout)",
            m.errors.clone(),
        );
        registry.register(
            "namer_watched_names",
            "Names a namer is watching now",
            m.watched.clone(),
        );
        registry.register(
            "namer_last_update_timestamp_seconds",
            "Unix time of a namer's last good answer from its backend",
            m.last_ok.clone(),
        );
        registry.register(
            "namer_seconds_since_last_update",
            "Seconds since a namer's last good answer from its backend (for the control plane's interpreter: 0 while a stream to control is open, then growing while the proxy routes on the last state it received)",
            m.since_last_ok.clone(),
        );
        registry.register(
            "namer_failing_since_timestamp_seconds",
            "Unix time of the first failure of a namer's current failing run (absent when its backend answers)",
            m.failing_since.clone(),
        );
        Arc::new(m)
    }

    pub(crate) fn set_source(&self, source: NamerSource) {
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// Copies the current samples into the families (before each scrape).
    pub(crate) fn refresh(&self) {
        let source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        let Some(source) = source.as_ref() else {
            return;
        };
        for s in source() {
            let labels = NamerLabels {
                namer: s.prefix.clone(),
                kind: s.kind,
            };
            for state in STATES {
                let l = StateLabels {
                    namer: s.prefix.clone(),
                    kind: s.kind,
                    state,
                };
                self.state
                    .get_or_create(&l)
                    .set(i64::from(state == s.state));
            }
            advance(&self.updates.get_or_create(&labels), s.updates);
            advance(&self.errors.get_or_create(&labels), s.errors);
            self.watched
                .get_or_create(&labels)
                .set(i64::try_from(s.watched).unwrap_or(i64::MAX));
            if let Some(t) = s.last_ok_unix {
                self.last_ok.get_or_create(&labels).set(t as i64);
                self.since_last_ok
                    .get_or_create(&labels)
                    .set((now_unix() - t).max(0.0));
            }
            match s.failing_since_unix {
                Some(t) => {
                    self.failing_since.get_or_create(&labels).set(t as i64);
                }
                None => {
                    self.failing_since.remove(&labels);
                }
            }
        }
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Moves a counter up to `total` (counters only go up).
fn advance(c: &Counter, total: u64) {
    let seen = c.get();
    if total > seen {
        c.inc_by(total - seen);
    }
}
