//! Rendering: the admin addresses, the per-service table and the per-replica table, aligned
//! like `kubectl`. Pure: returns strings.

use super::layout::Layout;
use super::load::LoadCounts;
use super::stats::{Report, Row};

/// Spaces between columns.
const GAP: usize = 3;

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

fn cells(s: &[&str]) -> Vec<String> {
    s.iter().map(|c| (*c).to_owned()).collect()
}

fn dash() -> String {
    "-".to_owned()
}

/// `0.9876` -> `98.76%`.
pub(crate) fn percent(ratio: f64) -> String {
    format!("{:.2}%", ratio * 100.0)
}

/// Seconds as milliseconds with precision that fits the magnitude (`0.42ms`, `3.1ms`,
/// `61ms`, `1.20s`).
pub(crate) fn latency(secs: f64) -> String {
    let ms = secs * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2}ms")
    } else if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{secs:.2}s")
    }
}

/// Left-aligned columns, each as wide as its widest cell plus [`GAP`].
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] + GAP - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
    fn formats_numbers() {
        assert_eq!(percent(0.98765), "98.77%");
        assert_eq!(latency(0.00042), "0.42ms");
        assert_eq!(latency(0.0031), "3.1ms");
        assert_eq!(latency(0.061), "61ms");
        assert_eq!(latency(1.2), "1.20s");
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
