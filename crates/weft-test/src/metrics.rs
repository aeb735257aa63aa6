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

/// One sample line of the text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (for histograms, including `_bucket`/`_sum`/`_count`).
    pub name: String,
    /// Labels in order of appearance, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A label's value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every sample line (comments and blank lines skipped; unparsable lines ignored).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
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
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &r[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    let (_, q) = chars.next()?;
                    if q != '"' {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                o => val.push(o),
                            },
                            o => val.push(o),
                        }
                    }
                    labels.push((std::mem::take(&mut key), val));
                }
                o => key.push(o),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
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
