//! Validation of `service.objectives`.

use std::collections::HashMap;
use std::time::Duration;

use super::{invalid, not_for_kind, Result};
use crate::locate::KeyPath;
use crate::raw::{ObjectiveKindName, RawObjective};
use crate::{Objective, ObjectiveKind};

/// The longest latency threshold: the highest finite bucket of the latency histogram.
const MAX_THRESHOLD: Duration = Duration::from_secs(60);

pub(super) fn objectives(raw: Option<Vec<RawObjective>>, p: &KeyPath) -> Result<Vec<Objective>> {
    let mut out: Vec<Objective> = Vec::new();
    let mut seen = HashMap::new();
    for (i, raw) in raw.unwrap_or_default().into_iter().enumerate() {
        let op = p.index(i);
        let objective = objective(raw, &op)?;
        let key = (objective.name(), objective.prefix.clone());
        if let Some(first) = seen.insert(key, i) {
            return invalid(
                &op.key("kind"),
                format!(
                    "duplicate objective {} for the same prefix: already objectives[{first}]",
                    objective.name()
                ),
            );
        }
        out.push(objective);
    }
    Ok(out)
}

fn objective(raw: RawObjective, p: &KeyPath) -> Result<Objective> {
    let kind = match raw.kind {
        None => {
            return invalid(
                &p.key("kind"),
                "missing `kind`: expected `successRate` or `latency`",
            )
        }
        Some(ObjectiveKindName::SuccessRate) => {
            if raw.threshold.is_some() {
                return not_for_kind(&p.key("threshold"), "successRate");
            }
            ObjectiveKind::SuccessRate
        }
        Some(ObjectiveKindName::Latency) => {
            let Some(threshold) = raw.threshold else {
                return invalid(
                    &p.key("threshold"),
                    "missing `threshold`: the latency a good request stays within, like 300ms",
                );
            };
            let threshold = threshold.0;
            if threshold.is_zero() || threshold > MAX_THRESHOLD {
                return invalid(
                    &p.key("threshold"),
                    "threshold out of range: expected more than 0 and at most 60s",
                );
            }
            ObjectiveKind::Latency { threshold }
        }
    };
    let Some(target) = raw.target else {
        return invalid(
            &p.key("target"),
            "missing `target`: the percentage of good requests, like 99.9%",
        );
    };
    if !(target.0 > 0.0 && target.0 < 100.0) {
        return invalid(
            &p.key("target"),
            format!(
                "target {}% out of range: expected more than 0% and less than 100% (100% leaves no error budget)",
                target.0
            ),
        );
    }
    let window = raw.window.map_or(Objective::DEFAULT_WINDOW, |d| d.0);
    if window < Duration::from_secs(60) {
        return invalid(&p.key("window"), "window too short: expected at least 1m");
    }
    Ok(Objective {
        kind,
        target_percent: target.0,
        window,
        prefix: raw.prefix.map(|p| p.0),
    })
}
