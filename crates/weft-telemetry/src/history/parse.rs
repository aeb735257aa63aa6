//! Reads the request metrics back from the text prometheus-client writes for the history
//! registry (only `weft_responses_total` and `weft_response_latency_seconds`), into
//! cumulative per-route counts. Reading the text keeps the request path untouched: nothing
//! is recorded twice.

use std::collections::HashMap;

use crate::LATENCY_BUCKETS;

/// Which series: one route of one service of one router.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RouteKey {
    pub(crate) router: String,
    pub(crate) service: String,
    pub(crate) route: String,
}

/// Cumulative counts of one series since the proxy started.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Counts {
    /// Exchanges finished (`weft_responses_total`).
    pub(crate) total: u64,
    /// Of those, classified `success`.
    pub(crate) success: u64,
    /// Latency samples at or under each bound of [`LATENCY_BUCKETS`], then `+Inf`.
    pub(crate) buckets: Vec<u64>,
    /// Finished exchanges by proxy error reason (non-empty `error` label).
    pub(crate) errors: Vec<(String, u64)>,
}

impl Counts {
    /// Adds `other` into `self` (summing routes into a service).
    pub(crate) fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.success += other.success;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        for (reason, n) in &other.errors {
            add_error(&mut self.errors, reason, *n);
        }
    }

    /// Latency samples (exchanges that sent a response head).
    pub(crate) fn latency_count(&self) -> u64 {
        self.buckets.last().copied().unwrap_or(0)
    }

    /// Latency samples at or under bucket bound `index` of [`LATENCY_BUCKETS`].
    pub(crate) fn within(&self, index: usize) -> u64 {
        self.buckets.get(index).copied().unwrap_or(0)
    }

    /// `self - earlier`, saturating (a counter never goes down within one process).
    pub(crate) fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            total: self.total.saturating_sub(earlier.total),
            success: self.success.saturating_sub(earlier.success),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(earlier.within(i)))
                .collect(),
            errors: Vec::new(),
        }
    }

    /// The latency quantile `q` (0..=1) in seconds, interpolated inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without samples.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.latency_count();
        if count == 0 {
            return None;
        }
        let rank = q * count as f64;
        let mut below = 0.0;
        let mut lower = 0.0;
        for (i, upper) in LATENCY_BUCKETS.iter().enumerate() {
            let n = self.within(i) as f64;
            if n >= rank {
                let inside = n - below;
                let frac = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return Some(lower + (upper - lower) * frac);
            }
            below = n;
            lower = *upper;
        }
        LATENCY_BUCKETS.last().copied()
    }
}

fn add_error(errors: &mut Vec<(String, u64)>, reason: &str, n: u64) {
    match errors.iter_mut().find(|(r, _)| r == reason) {
        Some((_, m)) => *m += n,
        None => errors.push((reason.to_string(), n)),
    }
}

/// Parses the history registry's text. Lines it does not understand are skipped.
pub(crate) fn parse(text: &str) -> HashMap<RouteKey, Counts> {
    let mut out: HashMap<RouteKey, Counts> = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = split(line) else {
            continue;
        };
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(router), Some(service), Some(route)) =
            (get("router"), get("service"), get("route"))
        else {
            continue;
        };
        let key = RouteKey {
            router: router.to_string(),
            service: service.to_string(),
            route: route.to_string(),
        };
        let n = value as u64;
        match name {
            "weft_responses_total" => {
                let c = out.entry(key).or_default();
                c.total += n;
                if get("classification") == Some("success") {
                    c.success += n;
                }
                if let Some(reason) = get("error").filter(|e| !e.is_empty()) {
                    add_error(&mut c.errors, reason, n);
                }
            }
            "weft_response_latency_seconds_bucket" => {
                let c = out.entry(key).or_default();
                if c.buckets.is_empty() {
                    c.buckets = vec![0; LATENCY_BUCKETS.len() + 1];
                }
                let le = get("le").unwrap_or("+Inf");
                let index = LATENCY_BUCKETS
                    .iter()
                    .position(|b| le.parse::<f64>().ok() == Some(*b))
                    .unwrap_or(LATENCY_BUCKETS.len());
                c.buckets[index] = n;
            }
            _ => {}
        }
    }
    out
}

/// Label names and values of one sample.
type Labels = Vec<(String, String)>;

/// Splits `name{k="v",...} value` into its parts, unescaping label values (`\\`, `\"`, `\n`).
pub(super) fn split(line: &str) -> Option<(&str, Labels, f64)> {
    let (name, mut rest) = line.split_once('{')?;
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            let value = after.split_whitespace().next()?.parse().ok()?;
            return Some((name, labels, value));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_responses_and_buckets_with_escaped_labels() {
        let text = concat!(
            "# TYPE weft_responses_total counter\n",
            "weft_responses_total{router=\"r\",service=\"/svc/a\\\"<b>\\\\\",route=\"[default]\",status_code=\"200\",classification=\"success\",error=\"\",fault=\"\"} 7\n",
            "weft_responses_total{router=\"r\",service=\"/svc/a\\\"<b>\\\\\",route=\"[default]\",status_code=\"502\",classification=\"failure\",error=\"connection-refused\",fault=\"upstream\"} 3\n",
            "weft_response_latency_seconds_bucket{router=\"r\",service=\"/svc/a\\\"<b>\\\\\",route=\"[default]\",le=\"0.001\"} 4\n",
            "weft_response_latency_seconds_bucket{router=\"r\",service=\"/svc/a\\\"<b>\\\\\",route=\"[default]\",le=\"+Inf\"} 10\n",
            "garbage{ 1\n",
            "weft_responses_total{router=\"r\"\n",
        );
        let parsed = parse(text);
        assert_eq!(parsed.len(), 1);
        let (key, c) = parsed.iter().next().unwrap();
        assert_eq!(key.service, "/svc/a\"<b>\\");
        assert_eq!((c.total, c.success), (10, 7));
        assert_eq!(c.errors, vec![("connection-refused".to_string(), 3)]);
        assert_eq!(c.within(4), 4);
        assert_eq!(c.latency_count(), 10);
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let mut c = Counts {
            buckets: vec![0; LATENCY_BUCKETS.len() + 1],
            ..Counts::default()
        };
        // 10 samples, all in (0.001, 0.0015].
        for b in c.buckets.iter_mut().skip(5) {
            *b = 10;
        }
        let p50 = c.quantile(0.5).unwrap();
        assert!((p50 - 0.00125).abs() < 1e-9, "{p50}");
        assert_eq!(Counts::default().quantile(0.5), None);
    }
}
