//! `service.objectives`: accepted shapes and rejected values with their positions.

use std::time::Duration;

use super::*;
use crate::*;

fn with(objectives: &str) -> String {
    format!("{MINIMAL}    service:\n      objectives:\n{objectives}")
}

#[test]
fn accepts_success_rate_and_latency_objectives() {
    let c = parse(&with(
        "        - {kind: successRate, target: 99.9%, window: 28d}\n        - {kind: latency, threshold: 300ms, target: 99%, prefix: /svc/books}\n",
    ));
    let o = &c.routers[0].service.objectives;
    assert_eq!(o.len(), 2);
    assert_eq!(o[0].kind, ObjectiveKind::SuccessRate);
    assert_eq!(o[0].target(), 0.999);
    assert_eq!(o[0].budget(), 0.001);
    assert_eq!(o[0].window, Duration::from_secs(28 * 86400));
    assert_eq!(o[0].name(), "success-rate");
    assert!(o[0].applies_to(&path("/svc/anything")));
    assert_eq!(
        o[1].kind,
        ObjectiveKind::Latency {
            threshold: Duration::from_millis(300)
        }
    );
    assert_eq!(o[1].name(), "latency-300ms");
    assert_eq!(o[1].window, Objective::DEFAULT_WINDOW);
    assert!(o[1].applies_to(&path("/svc/books/v2")));
    assert!(!o[1].applies_to(&path("/svc/authors")));
    let json = serde_json::to_value(&c.routers[0].service).unwrap();
    assert_eq!(
        json["objectives"][0],
        serde_json::json!({"kind": "successRate", "target": "99.9%", "window": "28days"})
    );
    assert_eq!(json["objectives"][1]["threshold"], "300ms");
}

#[test]
fn no_objectives_by_default() {
    assert!(parse(MINIMAL).routers[0].service.objectives.is_empty());
}

#[test]
fn rejects_bad_objectives_at_their_key() {
    let p = "routers[0].service.objectives[0]";
    let e = err(&with("        - {kind: successRate, target: 0.999}\n"));
    assert_err(
        &e,
        6,
        39,
        Some(&format!("{p}.target")),
        "write it with a % sign",
    );
    let e = err(&with("        - {kind: successRate, target: lots%}\n"));
    assert_err(
        &e,
        6,
        39,
        Some(&format!("{p}.target")),
        "invalid percentage \"lots%\"",
    );
    let e = err(&with("        - {kind: successRate, target: 100%}\n"));
    assert_err(
        &e,
        6,
        39,
        Some(&format!("{p}.target")),
        "100% leaves no error budget",
    );
    let e = err(&with("        - {kind: successRate}\n"));
    assert_err(&e, 6, 11, Some(&format!("{p}.target")), "missing `target`");
    let e = err(&with("        - {kind: latency, target: 99%}\n"));
    assert_err(
        &e,
        6,
        11,
        Some(&format!("{p}.threshold")),
        "missing `threshold`",
    );
    let e = err(&with(
        "        - {kind: latency, threshold: 2m, target: 99%}\n",
    ));
    assert_err(&e, 6, 38, Some(&format!("{p}.threshold")), "at most 60s");
    let e = err(&with(
        "        - {kind: successRate, threshold: 1s, target: 99%}\n",
    ));
    assert_err(
        &e,
        6,
        42,
        Some(&format!("{p}.threshold")),
        "not a setting of kind",
    );
    let e = err(&with("        - {target: 99%}\n"));
    assert_err(&e, 6, 11, Some(&format!("{p}.kind")), "missing `kind`");
    let e = err(&with("        - {kind: uptime, target: 99%}\n"));
    assert_err(
        &e,
        6,
        18,
        Some(&format!("{p}.kind")),
        "unknown variant `uptime`",
    );
    let e = err(&with(
        "        - {kind: successRate, target: 99%, window: 10s}\n",
    ));
    assert_err(&e, 6, 52, Some(&format!("{p}.window")), "at least 1m");
    let e = err(&with(
        "        - {kind: successRate, target: 99%}\n        - {kind: successRate, target: 99.9%}\n",
    ));
    assert_err(
        &e,
        7,
        18,
        Some("routers[0].service.objectives[1].kind"),
        "duplicate objective success-rate",
    );
}
