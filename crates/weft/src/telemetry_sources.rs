//! What the proxy's telemetry reads from its config and namers: the service objectives (for
//! the history and `weft_slo_*`) and the namers' health (`weft_namer_*`). Set at start and
//! again on each reload.

use weft_config::Config;

/// Every router's service objectives, with the router's label.
pub(crate) fn objectives(config: &Config) -> Vec<(String, weft_config::Objective)> {
    config
        .routers
        .iter()
        .flat_map(|r| {
            r.service
                .objectives
                .iter()
                .map(|o| (r.label.clone(), o.clone()))
        })
        .collect()
}

/// Reads the namers' health records for the `weft_namer_*` metrics on each scrape.
pub(crate) fn namer_source(
    namers: Vec<(weft_naming::Path, weft_naming::NamerStatus)>,
) -> weft_telemetry::NamerSource {
    Box::new(move || {
        namers
            .iter()
            .map(|(prefix, status)| {
                let s = status.snapshot();
                weft_telemetry::NamerSample {
                    prefix: prefix.to_string(),
                    kind: s.kind,
                    state: match s.state {
                        weft_naming::NamerState::Pending => "pending",
                        weft_naming::NamerState::Ok => "ok",
                        weft_naming::NamerState::Stale => "stale",
                        weft_naming::NamerState::Error => "error",
                    },
                    updates: s.updates,
                    errors: s.errors,
                    watched: s.watched,
                    last_ok_unix: s.last_ok,
                    failing_since_unix: s.failing_since,
                }
            })
            .collect()
    })
}
