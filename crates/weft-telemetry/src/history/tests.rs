//! The history and the objectives over a paused tokio clock.

use std::time::Duration;

use weft_config::{Objective, ObjectiveKind};

use crate::slo::Verdict;
use crate::{Classification, Metrics};

fn objective(kind: ObjectiveKind, target_percent: f64) -> Objective {
    Objective {
        kind,
        target_percent,
        window: Duration::from_secs(30 * 86400),
        prefix: None,
    }
}

/// Records `ok` successes and `failed` failures of `service`, each taking `latency` seconds.
fn traffic(m: &Metrics, service: &str, ok: u64, failed: u64, latency: f64) {
    let s = m.router("out").service(service, "[default]");
    for i in 0..ok + failed {
        s.request();
        s.latency(latency);
        if i < ok {
            s.response(200, Classification::success, "", "");
        } else {
            s.response(
                502,
                Classification::failure,
                "connection-refused",
                "upstream",
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn overview_rows_match_the_counters() {
    let m = Metrics::new("test");
    traffic(&m, "/svc/a", 90, 10, 0.002);
    traffic(&m, "/svc/b", 5, 0, 0.0002);
    let _idle = m.router("out").service("[unidentified]", "[default]");
    let h = m.history();
    h.sample();
    tokio::time::advance(Duration::from_secs(10)).await;
    traffic(&m, "/svc/a", 20, 0, 0.002);
    let o = h.overview();
    assert_eq!(o.services.len(), 2);
    let a = &o.services[0];
    assert_eq!((a.service.as_str(), a.requests), ("/svc/a", 120));
    assert_eq!(a.errors, vec![("connection-refused".to_string(), 10)]);
    // The window reaches back to the start: 120 exchanges in 10 seconds, 110 good.
    assert!((a.rps - 12.0).abs() < 1e-9, "{}", a.rps);
    assert!((a.success_rate.unwrap() - 110.0 / 120.0).abs() < 1e-9);
    let p50 = a.p50.unwrap();
    assert!(p50 > 0.0015 && p50 <= 0.002, "{p50}");
    // Start, one sample, now: two sparkline steps.
    assert_eq!(a.sparkline.len(), 2);
    assert!((a.sparkline[1].rps - 2.0).abs() < 1e-9);
    assert_eq!(o.routers.len(), 1);
    assert_eq!(o.routers[0].requests, 125);
    assert_eq!(o.errors, vec![("connection-refused".to_string(), 10)]);
    let routes = h.routes("out", "/svc/a").unwrap();
    assert_eq!(routes[0].service, "[default]");
    assert!(h.routes("out", "/svc/none").is_none());
}

#[tokio::test(start_paused = true)]
async fn five_percent_failures_exhaust_a_99_9_percent_budget() {
    let m = Metrics::new("test");
    let h = m.history();
    h.set_objectives(vec![(
        "out".into(),
        objective(ObjectiveKind::SuccessRate, 99.9),
    )]);
    traffic(&m, "/svc/a", 950, 50, 0.001);
    let s = h.slo();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].verdict, Verdict::Exhausted);
    assert!((s[0].attainment.unwrap() - 0.95).abs() < 1e-9);
    assert!((s[0].budget_left - (1.0 - 50.0)).abs() < 1e-6);
    assert!((s[0].burn_rates[0].1 - 50.0).abs() < 1e-6);
    let text = m.encode();
    assert!(
        text.contains("weft_slo_error_budget_remaining_ratio{router=\"out\",service=\"/svc/a\",objective=\"success-rate\"} -49"),
        "{text}"
    );
    assert!(text.contains("weft_slo_burn_rate{router=\"out\",service=\"/svc/a\",objective=\"success-rate\",window=\"1h\"} 50"));
}

/// Counts `n` successes of `service` at once, as days of earlier traffic would have.
fn earlier_successes(m: &Metrics, service: &str, n: u64) {
    let labels = crate::ResponseLabels {
        router: "out".into(),
        service: service.into(),
        route: "[default]".into(),
        status_code: 200,
        classification: Classification::success,
        error: "",
        fault: "",
    };
    m.inner.responses.get_or_create(&labels).inc_by(n);
}

#[tokio::test(start_paused = true)]
async fn a_recent_burst_is_burning_before_the_budget_is_gone() {
    let m = Metrics::new("test");
    let h = m.history();
    h.set_objectives(vec![(
        "out".into(),
        objective(ObjectiveKind::SuccessRate, 99.9),
    )]);
    earlier_successes(&m, "/svc/a", 2_000_000);
    for _ in 0..30 {
        traffic(&m, "/svc/a", 100, 0, 0.001);
        tokio::time::advance(Duration::from_secs(10)).await;
        h.sample();
    }
    assert_eq!(h.slo()[0].verdict, Verdict::Ok);
    // Then 2% failures for an hour: 20x the 0.1% budget, over the 14.4x of the page alert
    // on both 1h and 5m, while the budget since start is not spent yet.
    for _ in 0..360 {
        traffic(&m, "/svc/a", 98, 2, 0.001);
        tokio::time::advance(Duration::from_secs(10)).await;
        h.sample();
    }
    let s = &h.slo()[0];
    let burn = |w: &str| s.burn_rates.iter().find(|(l, _)| l == w).unwrap().1;
    assert!((burn("5m") - 20.0).abs() < 1e-6, "{:?}", s.burn_rates);
    // The 1h baseline is the coarse sample at or before an hour ago: a clean minute more.
    assert!(
        burn("1h") > 19.0 && burn("1h") <= 20.0,
        "{:?}",
        s.burn_rates
    );
    assert!(s.budget_left > 0.0, "{s:?}");
    assert_eq!(s.verdict, Verdict::Burning, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn latency_objective_counts_requests_within_the_rounded_down_threshold() {
    let m = Metrics::new("test");
    let h = m.history();
    let slow = objective(
        ObjectiveKind::Latency {
            threshold: Duration::from_millis(300),
        },
        90.0,
    );
    assert_eq!(crate::slo::bucket_bound(&slow), Some(0.25));
    h.set_objectives(vec![("out".into(), slow)]);
    traffic(&m, "/svc/a", 8, 0, 0.1);
    traffic(&m, "/svc/a", 2, 0, 0.28);
    let s = &h.slo()[0];
    assert_eq!(s.objective, "latency-300ms");
    assert_eq!((s.requests, s.bad), (10, 2));
    assert_eq!(s.verdict, Verdict::Exhausted);
    assert!(m.encode().contains("objective=\"latency-300ms\""));
    h.set_objectives(Vec::new());
    assert!(h.slo().is_empty());
    assert!(
        !m.encode().contains("weft_slo_target_ratio{"),
        "series of a removed objective go"
    );
}

#[tokio::test(start_paused = true)]
async fn rings_keep_their_span() {
    let m = Metrics::new("test");
    let h = m.history();
    traffic(&m, "/svc/a", 1, 0, 0.001);
    for _ in 0..(7 * 360) {
        tokio::time::advance(Duration::from_secs(10)).await;
        h.sample();
    }
    assert_eq!(h.fine().len(), 91);
    assert_eq!(h.fine()[0].services.len(), 1);
    assert!(
        h.baseline(tokio::time::Instant::now(), Duration::from_secs(60))
            .services
            .is_empty(),
        "no objective, no long history"
    );
    let now = tokio::time::Instant::now();
    let back = now.duration_since(h.baseline(now, Duration::from_secs(6 * 3600)).at);
    assert!(back >= Duration::from_secs(6 * 3600), "{back:?}");
    assert!(back < Duration::from_secs(6 * 3600 + 60), "{back:?}");
}
