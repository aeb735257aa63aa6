//! Service-level objectives: attainment, error budget and burn rates of every service with an
//! objective, from the in-process history; and the `weft_slo_*` gauges, refreshed on every
//! scrape so they agree with `/objectives.json`.
//!
//! The method is the Google SRE workbook's ("Alerting on SLOs", multi-window, multi-burn-rate
//! alerts): the burn rate over a window is the bad fraction of requests in it divided by the
//! error budget `1 - target`; a budget lasting exactly the objective's window burns at 1.
//! `docs/objectives.md` explains it.

use std::time::Duration;

use serde::Serialize;
use weft_config::{Objective, ObjectiveKind};

use crate::history::{Counts, History};
use crate::LATENCY_BUCKETS;

mod gauges;

pub(crate) use gauges::SloGauges;

/// The burn-rate windows computed in process, with their labels.
pub const WINDOWS: [(&str, Duration); 4] = [
    ("5m", Duration::from_secs(300)),
    ("30m", Duration::from_secs(1800)),
    ("1h", Duration::from_secs(3600)),
    ("6h", Duration::from_secs(6 * 3600)),
];

/// The page alerts of the SRE workbook: (long window, short window, share of the budget
/// spent in the long window). For a 30-day objective the factors are 14.4 and 6.
pub const PAGE_ALERTS: [(&str, &str, f64); 2] = [("1h", "5m", 0.02), ("6h", "30m", 0.05)];

/// How an objective stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Budget left and no page alert would fire.
    Ok,
    /// Budget left, but a page alert would fire: at this rate it runs out early.
    Burning,
    /// No budget left: attainment is below the target.
    Exhausted,
}

/// One objective of one service (`GET /objectives.json`, `weft slo`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SloStatus {
    /// The router label.
    pub router: String,
    /// The logical name.
    pub service: String,
    /// The objective's name (`success-rate`, `latency-300ms`).
    pub objective: String,
    /// The objective as configured.
    pub config: Objective,
    /// For latency objectives, the histogram bound actually counted, seconds (the threshold
    /// rounded down to a bucket bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_threshold: Option<f64>,
    /// Requests counted since start (the window's data the proxy holds).
    pub requests: u64,
    /// Of those, the bad ones.
    pub bad: u64,
    /// Good fraction since start (at most the objective's window); `None` without requests.
    pub attainment: Option<f64>,
    /// Fraction of the error budget left: `1 - (bad fraction / budget)`; 1 without requests,
    /// negative once overspent.
    pub budget_left: f64,
    /// Burn rate per window label (`5m`, `30m`, `1h`, `6h`): bad fraction over the window
    /// divided by the budget; 0 without requests in it.
    pub burn_rates: Vec<(String, f64)>,
    /// The verdict.
    pub verdict: Verdict,
}

// === impl History ===

impl History {
    /// The status of every objective of every service it applies to, sorted by router,
    /// service and objective. `[unidentified]` requests have no objective.
    pub fn slo(&self) -> Vec<SloStatus> {
        let objectives = self.objectives();
        if objectives.is_empty() {
            return Vec::new();
        }
        let now = self.now().tick;
        let bases: Vec<_> = WINDOWS
            .iter()
            .map(|(label, w)| (*label, self.baseline(now.at, *w)))
            .collect();
        let mut out = Vec::new();
        let mut keys: Vec<_> = now.services.keys().collect();
        keys.sort();
        for key in keys {
            let (router, service) = key;
            let Ok(path) = weft_naming::Path::read(service) else {
                continue;
            };
            let counts = &now.services[key];
            for (r, objective) in objectives.iter().filter(|(r, _)| r == router) {
                if !objective.applies_to(&path) || r != router {
                    continue;
                }
                let burn_rates = bases
                    .iter()
                    .map(|(label, base)| {
                        let earlier = base.services.get(key).cloned().unwrap_or_default();
                        let (good, total) = good_total(objective, &counts.since(&earlier));
                        let burn = if total == 0 {
                            0.0
                        } else {
                            (total - good) as f64 / total as f64 / objective.budget()
                        };
                        (label.to_string(), burn)
                    })
                    .collect();
                out.push(status(router, service, objective, counts, burn_rates));
            }
        }
        out
    }
}

fn status(
    router: &str,
    service: &str,
    objective: &Objective,
    counts: &Counts,
    burn_rates: Vec<(String, f64)>,
) -> SloStatus {
    let (good, total) = good_total(objective, counts);
    let bad = total - good;
    let attainment = (total > 0).then(|| good as f64 / total as f64);
    let budget_left = attainment.map_or(1.0, |a| 1.0 - (1.0 - a) / objective.budget());
    let burn = |w: &str| {
        burn_rates
            .iter()
            .find(|(l, _)| l == w)
            .map_or(0.0, |(_, b)| *b)
    };
    let firing = PAGE_ALERTS.iter().any(|(long, short, spent)| {
        let factor = burn_factor(objective.window, long, *spent);
        burn(long) > factor && burn(short) > factor
    });
    let verdict = if budget_left <= 0.0 {
        Verdict::Exhausted
    } else if firing {
        Verdict::Burning
    } else {
        Verdict::Ok
    };
    SloStatus {
        router: router.to_string(),
        service: service.to_string(),
        objective: objective.name(),
        config: objective.clone(),
        effective_threshold: bucket_index(objective).map(|i| LATENCY_BUCKETS[i]),
        requests: total,
        bad,
        attainment,
        budget_left,
        burn_rates,
        verdict,
    }
}

/// The burn rate that spends `spent` of the budget of an objective over `window` in the
/// alert window labelled `long` (`1h`, `6h`, `3d`): `spent * window / long`, e.g. 14.4 for
/// 2% in 1h of 30 days.
pub fn burn_factor(window: Duration, long: &str, spent: f64) -> f64 {
    let long = WINDOWS
        .iter()
        .find(|(l, _)| *l == long)
        .map_or(Duration::from_secs(3 * 86400), |(_, d)| *d);
    spent * window.as_secs_f64() / long.as_secs_f64()
}

/// The index of the largest latency bucket bound at or under a latency objective's
/// threshold (`None` for success-rate objectives, or below the first bound).
pub(crate) fn bucket_index(objective: &Objective) -> Option<usize> {
    let ObjectiveKind::Latency { threshold } = objective.kind else {
        return None;
    };
    let t = threshold.as_secs_f64();
    LATENCY_BUCKETS.iter().rposition(|b| *b <= t + 1e-12)
}

/// The largest latency bucket bound at or under a latency objective's threshold, seconds,
/// as a Prometheus `le` label value; `None` for success-rate objectives.
pub fn bucket_bound(objective: &Objective) -> Option<f64> {
    bucket_index(objective).map(|i| LATENCY_BUCKETS[i])
}

/// (good, total) requests of `counts` for `objective`.
fn good_total(objective: &Objective, counts: &Counts) -> (u64, u64) {
    match objective.kind {
        ObjectiveKind::SuccessRate => (counts.success, counts.total),
        ObjectiveKind::Latency { .. } => {
            let good = bucket_index(objective).map_or(0, |i| counts.within(i));
            (good, counts.latency_count())
        }
    }
}
