//! Reading weft's Prometheus text metrics.

use std::net::SocketAddr;

use crate::Client;

/// `GET http://<admin>/metrics`; panics unless it answers 200.
pub async fn get_metrics(admin: SocketAddr) -> String {
    let r = Client::http1(admin)
        .get(&admin.to_string(), "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
    r.text()
}

/// One sample line of the text format (the proxy's own reader, `weft_telemetry::scrape`).
pub use weft_telemetry::scrape::Sample;

/// Parses every sample line (comments, blank lines and unparsable lines skipped).
pub fn samples(text: &str) -> Vec<Sample> {
    weft_telemetry::scrape::parse(text)
}

/// The sum of all samples called `name` whose labels include every pair in `labels`
/// (other labels may have any value); 0 when none match.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(text, name, labels).iter().map(|s| s.value).sum()
}

/// All samples called `name` whose labels include every pair in `labels`.
pub fn matching(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == name && s.matches(labels))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_sums() {
        let text = "# HELP x y\n# TYPE weft_requests_total counter\n\
            weft_requests_total{router=\"out\",service=\"/svc/a\\\"b\"} 3\n\
            weft_requests_total{router=\"out\",service=\"/svc/c\"} 4 1700000000\n\
            weft_up 1\n";
        assert_eq!(sum(text, "weft_requests_total", &[("router", "out")]), 7.0);
        assert_eq!(
            sum(text, "weft_requests_total", &[("service", "/svc/a\"b")]),
            3.0
        );
        assert_eq!(sum(text, "weft_up", &[]), 1.0);
        assert_eq!(sum(text, "weft_nope", &[]), 0.0);
    }
}
