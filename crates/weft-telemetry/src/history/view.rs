//! What the dashboard's overview and service pages show, computed from the history: one row
//! per router and per service, with rates over the last minute and a 15-minute sparkline.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{Counts, History, Tick};

/// Rates and quantiles cover this much of the recent past (or the time since start).
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// `GET /overview.json`: every router and service.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// When these values were read, Unix seconds.
    pub at: f64,
    /// Seconds the rates cover: the last minute, or less just after start.
    pub rate_window_secs: f64,
    /// One row per router, its services summed.
    pub routers: Vec<ServiceRow>,
    /// One row per service of each router, sorted by router and name.
    pub services: Vec<ServiceRow>,
    /// Exchanges that ended with a proxy error since start, by `l5d-proxy-error` reason
    /// (and `cancelled`), most frequent first.
    pub errors: Vec<(String, u64)>,
}

/// One router, service or route.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    /// The router label.
    pub router: String,
    /// The logical name (`""` on a router's row).
    pub service: String,
    /// Exchanges finished since start (`weft_responses_total` summed).
    pub requests: u64,
    /// Exchanges finished per second over the rate window.
    pub rps: f64,
    /// Fraction classified `success` over the rate window (since start when the window saw
    /// nothing); `None` with no exchanges at all.
    pub success_rate: Option<f64>,
    /// Latency quantiles over the rate window in seconds (since start when the window saw
    /// nothing), interpolated inside histogram buckets like `histogram_quantile`.
    pub p50: Option<f64>,
    /// See `p50`.
    pub p95: Option<f64>,
    /// See `p50`.
    pub p99: Option<f64>,
    /// The last 15 minutes, one point per sample step.
    pub sparkline: Vec<SparkPoint>,
    /// Proxy errors since start by reason.
    pub errors: Vec<(String, u64)>,
}

/// A route of a service: see [`ServiceRow`] (no sparkline: routes are read only now).
pub type RouteRow = ServiceRow;

/// One sparkline point: the rates between two samples.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SparkPoint {
    /// The end of the step, Unix seconds.
    pub t: f64,
    /// Exchanges per second over the step.
    pub rps: f64,
    /// Fraction of successes over the step (`None` without exchanges).
    pub success_rate: Option<f64>,
}

// === impl History ===

impl History {
    /// Every router and service as the overview page shows them.
    pub fn overview(&self) -> Overview {
        let now = self.now().tick;
        let mut fine = self.fine();
        let base = fine
            .iter()
            .rev()
            .find(|t| now.at.duration_since(t.at) >= RATE_WINDOW)
            .cloned()
            .unwrap_or_else(|| self.start());
        let window = now.at.duration_since(base.at).as_secs_f64().max(1e-3);
        let start = self.start();
        if fine
            .first()
            .is_none_or(|f| f.at.duration_since(start.at) < super::FINE_SPAN)
        {
            fine.insert(0, start);
        }
        fine.push(now.clone());
        let keys: BTreeMap<_, _> = now.services.iter().collect();
        let mut routers: BTreeMap<String, (Counts, Counts, Vec<Counts>)> = BTreeMap::new();
        let mut services = Vec::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for ((router, service), counts) in keys {
            let key = (router.clone(), service.clone());
            let earlier = base.services.get(&key).cloned().unwrap_or_default();
            let series: Vec<Counts> = fine
                .iter()
                .map(|t| t.services.get(&key).cloned().unwrap_or_default())
                .collect();
            let r = routers.entry(router.clone()).or_default();
            r.0.add(counts);
            r.1.add(&earlier);
            if r.2.is_empty() {
                r.2 = vec![Counts::default(); series.len()];
            }
            for (a, b) in r.2.iter_mut().zip(&series) {
                a.add(b);
            }
            for (reason, n) in &counts.errors {
                *errors.entry(reason.clone()).or_default() += n;
            }
            // A service with no finished exchange yet (the `[unidentified]` series exist
            // from start) has nothing to show; its router still gets a row.
            if counts.total > 0 || counts.latency_count() > 0 {
                services.push(row(
                    router, service, counts, &earlier, window, &fine, &series,
                ));
            }
        }
        let routers = routers
            .iter()
            .map(|(router, (c, e, s))| row(router, "", c, e, window, &fine, s))
            .collect();
        let mut errors: Vec<(String, u64)> = errors.into_iter().collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Overview {
            at: now.unix,
            rate_window_secs: window,
            routers,
            services,
            errors,
        }
    }

    /// The routes of one service of one router, read now (rates since start), or `None`
    /// when the router has no such service.
    pub fn routes(&self, router: &str, service: &str) -> Option<Vec<RouteRow>> {
        let now = self.now();
        let start = self.start();
        let secs = now.tick.at.duration_since(start.at).as_secs_f64().max(1e-3);
        let mut rows: Vec<RouteRow> = now
            .routes
            .iter()
            .filter(|(k, _)| k.router == router && k.service == service)
            .map(|(k, c)| {
                let mut r = row(router, service, c, &Counts::default(), secs, &[], &[]);
                r.service = k.route.clone();
                r
            })
            .collect();
        rows.sort_by(|a, b| a.service.cmp(&b.service));
        (!rows.is_empty()).then_some(rows)
    }
}

fn row(
    router: &str,
    service: &str,
    now: &Counts,
    earlier: &Counts,
    window: f64,
    ticks: &[Tick],
    series: &[Counts],
) -> ServiceRow {
    let mut recent = now.since(earlier);
    if recent.total == 0 && recent.latency_count() == 0 {
        recent = now.clone();
    }
    let sparkline = ticks
        .windows(2)
        .zip(series.windows(2))
        .map(|(t, c)| {
            let d = c[1].since(&c[0]);
            let secs = t[1].at.duration_since(t[0].at).as_secs_f64().max(1e-3);
            SparkPoint {
                t: t[1].unix,
                rps: d.total as f64 / secs,
                success_rate: rate(d.success, d.total),
            }
        })
        .collect();
    let mut errors = now.errors.clone();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ServiceRow {
        router: router.to_string(),
        service: service.to_string(),
        requests: now.total,
        rps: now.since(earlier).total as f64 / window,
        success_rate: rate(recent.success, recent.total),
        p50: recent.quantile(0.5),
        p95: recent.quantile(0.95),
        p99: recent.quantile(0.99),
        sparkline,
        errors,
    }
}

fn rate(good: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| good as f64 / total as f64)
}
