//! Rendering: the admin addresses, the per-service table and the per-replica table, aligned
//! like `kubectl`. Pure: returns strings.

use super::layout::Layout;
use super::load::LoadCounts;
use super::stats::{Report, Row};
use crate::table::{align, cells, dash, latency, percent};

/// Where everything listens: one row per instance.
pub(crate) fn addresses(layout: &Layout) -> String {
    let mut rows = vec![cells(&["INSTANCE", "APP", "OUTBOUND", "INBOUND", "ADMIN"])];
    for i in &layout.instances {
        rows.push(vec![
            i.name.clone(),
            i.app().to_string(),
            i.outbound().to_string(),
            i.inbound().to_string(),
            format!("http://{}", i.admin()),
        ]);
    }
    align(&rows)
}

/// The service and replica tables of one window, with the load generator's counts.
pub(crate) fn report(r: &Report, load: &LoadCounts) -> String {
    let mut rows = vec![cells(&[
        "SERVICE", "SUCCESS", "RPS", "P50", "P99", "REQUESTS",
    ])];
    rows.extend(r.services.iter().map(row_cells));
    let mut out = align(&rows);
    out.push('\n');

    let mut rows = vec![cells(&[
        "REPLICA", "DELAY", "SHARE", "SUCCESS", "RPS", "P50", "P99", "REQUESTS",
    ])];
    for rep in &r.replicas {
        let mut c = row_cells(&rep.row);
        c.insert(1, rep.delay.clone());
        c.insert(2, rep.share.map_or_else(dash, percent));
        rows.push(c);
    }
    out.push_str(&align(&rows));
    out.push('\n');

    let rate = load.success_rate().map_or_else(dash, percent);
    out.push_str(&format!(
        "load: {} ok, {} failed ({rate} success), {} skipped at the concurrency limit\n",
        load.ok, load.failed, load.skipped
    ));
    if let Some(e) = &load.last_error {
        out.push_str(&format!("last load error: {e}\n"));
    }
    for e in &r.errors {
        out.push_str(&format!("scrape failed: {e}\n"));
    }
    out
}

fn row_cells(r: &Row) -> Vec<String> {
    vec![
        r.name.clone(),
        r.success.map_or_else(dash, percent),
        format!("{:.1}", r.rps),
        r.p50.map_or_else(dash, latency),
        r.p99.map_or_else(dash, latency),
        format!("{:.0}", r.requests),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::stats::ReplicaRow;

    fn row(name: &str, success: Option<f64>) -> Row {
        Row {
            name: name.to_owned(),
            requests: 40.0,
            rps: 20.0,
            success,
            p50: Some(0.0031),
            p99: Some(0.0625),
        }
    }

    #[test]
    fn columns_line_up() {
        let rep = Report {
            secs: 2.0,
            services: vec![row("web", Some(1.0)), row("converter", None)],
            replicas: vec![ReplicaRow {
                row: row("rates-3", Some(1.0)),
                delay: "60ms".into(),
                share: Some(0.1),
            }],
            errors: vec!["web: refused".into()],
        };
        let text = report(&rep, &LoadCounts::default());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "SERVICE     SUCCESS   RPS    P50     P99    REQUESTS"
        );
        assert_eq!(lines[1], "web         100.00%   20.0   3.1ms   62ms   40");
        assert_eq!(lines[2], "converter   -         20.0   3.1ms   62ms   40");
        assert!(lines[4].starts_with("REPLICA   DELAY   SHARE    SUCCESS"));
        assert!(lines[5].starts_with("rates-3   60ms    10.00%   100.00%"));
        assert!(text.contains("scrape failed: web: refused"));
    }
}
