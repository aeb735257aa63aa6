//! From two scrapes of every sidecar to per-service and per-replica numbers: success rate,
//! requests per second, p50 and p99, all over the window between the scrapes. Pure.

use tokio::time::Instant;

use super::layout::{Layout, Service};
use super::load::LoadCounts;
use weft_telemetry::scrape::{Sample, Traffic};

/// Every sidecar's `/metrics` at one moment, in [`Layout::instances`] order.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    /// Parsed samples, or why the scrape failed.
    pub(crate) scrapes: Vec<Result<Vec<Sample>, String>>,
}

/// A service's inbound counters at one sidecar (or summed over several).
pub(crate) type Inbound = Traffic;

/// Reads `service`'s series of the `inbound` router. The inbound router is where a request
/// for the app arrives, so it sees each request to the service exactly once.
pub(crate) fn inbound(samples: &[Sample], service: Service) -> Inbound {
    let svc = format!("/svc/{}", service.name());
    let want = [("router", "inbound"), ("service", svc.as_str())];
    let mut inbound = Inbound::default();
    for s in samples.iter().filter(|s| s.matches(&want)) {
        inbound.record(s);
    }
    inbound
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) requests: f64,
    pub(crate) rps: f64,
    /// Success ratio 0..=1, `None` without traffic.
    pub(crate) success: Option<f64>,
    /// Latency quantiles in seconds.
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
}

impl Row {
    fn new(name: &str, d: &Inbound, secs: f64) -> Row {
        Row {
            name: name.to_owned(),
            requests: d.total,
            rps: if secs > 0.0 { d.total / secs } else { 0.0 },
            success: d.success_rate(),
            p50: d.latency(0.5),
            p99: d.latency(0.99),
        }
    }
}

/// A rates replica's line: its numbers and its share of the service's requests.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ReplicaRow {
    pub(crate) row: Row,
    pub(crate) delay: String,
    /// Fraction 0..=1 of all rates requests, `None` without traffic.
    pub(crate) share: Option<f64>,
}

/// The numbers of one window.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Report {
    pub(crate) secs: f64,
    pub(crate) services: Vec<Row>,
    pub(crate) replicas: Vec<ReplicaRow>,
    /// Scrapes that failed, as `instance: why`.
    pub(crate) errors: Vec<String>,
}

/// Computes the window from `prev` to `cur`.
pub(crate) fn report(layout: &Layout, prev: &Snapshot, cur: &Snapshot) -> Report {
    let secs = cur.at.saturating_duration_since(prev.at).as_secs_f64();
    let mut errors = Vec::new();
    let deltas: Vec<Option<Inbound>> = layout
        .instances
        .iter()
        .zip(prev.scrapes.iter().zip(&cur.scrapes))
        .map(|(inst, pair)| match pair {
            (Ok(p), Ok(c)) => Some(inbound(c, inst.service).since(&inbound(p, inst.service))),
            (_, Err(e)) | (Err(e), _) => {
                errors.push(format!("{}: {e}", inst.name));
                None
            }
        })
        .collect();
    let services = Service::ALL
        .iter()
        .map(|&s| {
            let mut sum = Inbound::default();
            for (inst, d) in layout.instances.iter().zip(&deltas) {
                if let (true, Some(d)) = (inst.service == s, d) {
                    sum.add(d);
                }
            }
            Row::new(s.name(), &sum, secs)
        })
        .collect();
    let rates_total: f64 = layout
        .instances
        .iter()
        .zip(&deltas)
        .filter(|(i, _)| i.service == Service::Rates)
        .filter_map(|(_, d)| d.as_ref().map(|d| d.total))
        .sum();
    let replicas = layout
        .instances
        .iter()
        .zip(&deltas)
        .filter(|(i, _)| i.service == Service::Rates)
        .map(|(inst, d)| {
            let d = d.clone().unwrap_or_default();
            ReplicaRow {
                share: (rates_total > 0.0).then(|| d.total / rates_total),
                row: Row::new(&inst.name, &d, secs),
                delay: inst.delay_label(),
            }
        })
        .collect();
    Report {
        secs,
        services,
        replicas,
        errors,
    }
}

/// Lowest success rate at which the demo counts as working.
pub(crate) const MIN_SUCCESS: f64 = 0.95;

/// Whether the mesh carried the load: the load generator and every service saw traffic
/// with at least [`MIN_SUCCESS`], and every sidecar answered the last scrape. `Ok` holds a
/// one-line summary, `Err` what was wrong.
pub(crate) fn verdict(r: &Report, load: &LoadCounts) -> Result<String, String> {
    let mut problems = Vec::new();
    match load.success_rate() {
        None => problems.push("the load generator got no answers".to_owned()),
        Some(rate) if rate < MIN_SUCCESS => problems.push(format!(
            "the load generator saw {:.2}% success ({} failed)",
            rate * 100.0,
            load.failed
        )),
        Some(_) => {}
    }
    for row in &r.services {
        match row.success {
            None => problems.push(format!("{} received no requests", row.name)),
            Some(rate) if rate < MIN_SUCCESS => problems.push(format!(
                "{} answered {:.2}% successfully",
                row.name,
                rate * 100.0
            )),
            Some(_) => {}
        }
    }
    problems.extend(r.errors.iter().map(|e| format!("scrape failed: {e}")));
    if problems.is_empty() {
        Ok(format!(
            "mesh OK: {} requests through web -> converter -> rates in {:.1}s, {:.2}% success",
            load.ok + load.failed,
            r.secs,
            load.success_rate().unwrap_or(0.0) * 100.0
        ))
    } else {
        Err(format!("mesh FAILED: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_telemetry::scrape::parse;

    fn rates_text(ok: u32, failed: u32, fast: u32, slow: u32) -> String {
        let all = fast + slow;
        format!(
            r#"# TYPE weft_responses counter
weft_responses_total{{router="inbound",service="/svc/rates",status_code="200",classification="success",error=""}} {ok}
weft_responses_total{{router="inbound",service="/svc/rates",status_code="502",classification="failure",error="connection-refused"}} {failed}
weft_responses_total{{router="outbound",service="/svc/rates",status_code="200",classification="success",error=""}} 999
weft_response_latency_seconds_bucket{{router="inbound",service="/svc/rates",le="0.005"}} {fast}
weft_response_latency_seconds_bucket{{router="inbound",service="/svc/rates",le="0.1"}} {all}
weft_response_latency_seconds_bucket{{router="inbound",service="/svc/rates",le="+Inf"}} {all}
# EOF
"#
        )
    }

    #[test]
    fn reads_only_the_inbound_router() {
        let i = inbound(&parse(&rates_text(8, 2, 10, 0)), Service::Rates);
        assert_eq!((i.total, i.success), (10.0, 8.0));
        assert_eq!(i.buckets.len(), 3);
        assert!(i.buckets[2].0.is_infinite());
        assert_eq!(
            inbound(&parse(&rates_text(8, 2, 10, 0)), Service::Web),
            Inbound::default()
        );
    }

    #[test]
    fn report_sums_replicas_and_computes_shares() {
        let layout = Layout::new("127.0.10".parse().unwrap(), 60);
        let t0 = Instant::now();
        let empty = || Ok(parse(&rates_text(0, 0, 0, 0)));
        let prev = Snapshot {
            at: t0,
            scrapes: (0..5).map(|_| empty()).collect(),
        };
        let cur = Snapshot {
            at: t0 + std::time::Duration::from_secs(2),
            scrapes: vec![
                Err("connection refused".into()), // web
                Ok(Vec::new()),                   // converter: no traffic
                Ok(parse(&rates_text(20, 0, 20, 0))),
                Ok(parse(&rates_text(16, 0, 16, 0))),
                Ok(parse(&rates_text(4, 0, 0, 4))),
            ],
        };
        let r = report(&layout, &prev, &cur);
        assert_eq!(r.errors, ["web: connection refused"]);
        let rates = &r.services[2];
        assert_eq!((rates.requests, rates.rps), (40.0, 20.0));
        assert_eq!(rates.success, Some(1.0));
        assert_eq!(r.services[1].success, None);
        let shares: Vec<f64> = r.replicas.iter().map(|x| x.share.unwrap()).collect();
        assert_eq!(shares, [0.5, 0.4, 0.1]);
        assert_eq!(r.replicas[2].delay, "60ms");
        // Slow replica: every answer in (5ms, 100ms].
        assert!(r.replicas[2].row.p50.unwrap() > 0.005);
        // web could not be scraped and converter saw nothing: not a working mesh.
        let load = LoadCounts {
            ok: 40,
            ..LoadCounts::default()
        };
        let v = verdict(&r, &load).unwrap_err();
        assert!(v.contains("converter received no requests"), "{v}");
        assert!(v.contains("scrape failed: web"), "{v}");
    }

    #[test]
    fn verdict_needs_success_everywhere() {
        let row = |name: &str, success| Row {
            name: name.to_owned(),
            requests: 10.0,
            rps: 5.0,
            success,
            p50: None,
            p99: None,
        };
        let mut r = Report {
            secs: 2.0,
            services: vec![row("web", Some(1.0)), row("rates", Some(0.96))],
            replicas: Vec::new(),
            errors: Vec::new(),
        };
        let load = LoadCounts {
            ok: 96,
            failed: 4,
            ..LoadCounts::default()
        };
        assert!(verdict(&r, &load).is_ok());
        r.services[1].success = Some(0.9);
        assert!(verdict(&r, &load)
            .unwrap_err()
            .contains("rates answered 90.00%"));
        r.services[1].success = Some(1.0);
        let bad = LoadCounts {
            ok: 9,
            failed: 1,
            ..LoadCounts::default()
        };
        assert!(verdict(&r, &bad).is_err());
    }
}
