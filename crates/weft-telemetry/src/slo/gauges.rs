//! The `weft_slo_*` gauges, set from the objectives' status on every scrape.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{SloStatus, WINDOWS};

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SloLabels {
    router: String,
    service: String,
    objective: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BurnLabels {
    router: String,
    service: String,
    objective: String,
    window: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn burn_labels(l: &SloLabels, window: &str) -> BurnLabels {
    BurnLabels {
        router: l.router.clone(),
        service: l.service.clone(),
        objective: l.objective.clone(),
        window: window.to_string(),
    }
}

/// The `weft_slo_*` gauges.
pub(crate) struct SloGauges {
    target: Family<SloLabels, FloatGauge>,
    attainment: Family<SloLabels, FloatGauge>,
    budget_left: Family<SloLabels, FloatGauge>,
    burn_rate: Family<BurnLabels, FloatGauge>,
    /// The objectives with series now.
    shown: Mutex<HashSet<SloLabels>>,
}

impl SloGauges {
    pub(crate) fn register(registry: &mut Registry) -> SloGauges {
        let g = SloGauges {
            target: Family::default(),
            attainment: Family::default(),
            budget_left: Family::default(),
            burn_rate: Family::default(),
            shown: Mutex::default(),
        };
        registry.register(
            "slo_target_ratio",
            "Target of a service-level objective, as a fraction (0.999 for 99.9%)",
            g.target.clone(),
        );
        registry.register(
            "slo_attainment_ratio",
            "Good fraction of a service's requests for an objective since the proxy started (absent before the first request)",
            g.attainment.clone(),
        );
        registry.register(
            "slo_error_budget_remaining_ratio",
            "Fraction of an objective's error budget left since the proxy started; negative once overspent",
            g.budget_left.clone(),
        );
        registry.register(
            "slo_burn_rate",
            "Burn rate of an objective's error budget over a window (5m, 30m, 1h, 6h): bad fraction divided by the budget; 1 spends the budget in exactly the objective's window",
            g.burn_rate.clone(),
        );
        g
    }

    /// Sets every gauge from `statuses`, then drops the series of objectives no longer in
    /// force. Series are overwritten, never cleared first, so a concurrent scrape never sees
    /// a gap.
    pub(crate) fn refresh(&self, statuses: &[SloStatus]) {
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        let mut now = HashSet::new();
        for s in statuses {
            let labels = SloLabels {
                router: s.router.clone(),
                service: s.service.clone(),
                objective: s.objective.clone(),
            };
            self.target.get_or_create(&labels).set(s.config.target());
            if let Some(a) = s.attainment {
                self.attainment.get_or_create(&labels).set(a);
            } else {
                self.attainment.remove(&labels);
            }
            self.budget_left.get_or_create(&labels).set(s.budget_left);
            for (window, burn) in &s.burn_rates {
                self.burn_rate
                    .get_or_create(&burn_labels(&labels, window))
                    .set(*burn);
            }
            now.insert(labels);
        }
        for gone in shown.difference(&now) {
            self.target.remove(gone);
            self.attainment.remove(gone);
            self.budget_left.remove(gone);
            for (window, _) in WINDOWS {
                self.burn_rate.remove(&burn_labels(gone, window));
            }
        }
        *shown = now;
    }
}
