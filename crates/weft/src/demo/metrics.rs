//! A small, tolerant reader of the Prometheus/OpenMetrics text that `GET /metrics` serves,
//! and the histogram quantile math. Pure: no I/O.

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    /// Full series name, suffix included (`weft_responses_total`).
    pub(crate) name: String,
    /// Labels in the order they appeared.
    pub(crate) labels: Vec<(String, String)>,
    /// The value; `+Inf`/`-Inf`/`NaN` are accepted.
    pub(crate) value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(key, value)` pair of `want` is present.
    pub(crate) fn matches(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Parses an exposition text. Comments, blank lines and any line that does not parse are
/// skipped: a scrape from a newer proxy with unfamiliar syntax still yields what it can.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    // The value is the first field; an optional timestamp (or exemplar) may follow.
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(tail) = s.strip_prefix('}') {
            return Some((labels, tail));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        let quoted = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        s = &quoted[end + 1..];
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Cumulative histogram buckets `(le, count)` sorted by `le`, the last one `+Inf`.
pub(crate) type Buckets = Vec<(f64, f64)>;

/// The `q`-quantile (0..=1) of a cumulative histogram, the way Prometheus'
/// `histogram_quantile` computes it: find the bucket holding the rank and interpolate
/// linearly inside it (the first bucket's lower bound is 0). A rank in the `+Inf` bucket
/// yields the highest finite bound. `None` when the histogram is empty.
pub(crate) fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank && count > below {
            if le.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (le - lower) * (rank - below) / (count - below));
        }
        if le.is_finite() {
            lower = le;
        }
        below = count;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP weft_requests Requests received.
# TYPE weft_requests counter
weft_requests_total{router="inbound",service="/svc/rates"} 42
weft_responses_total{router="inbound",service="/svc/rates",status_code="200",classification="success",error=""} 40
weft_response_latency_seconds_bucket{router="inbound",service="/svc/rates",le="0.005"} 3
weft_response_latency_seconds_bucket{router="inbound",service="/svc/rates",le="+Inf"} 4
weft_build_info{version="0.1.0"} 1
weft_weird{a="x\"y\\z",b="1"} 2.5 1700000000
this is not a sample
weft_bad_value{a="b"} notanumber
weft_unterminated{a="b} 1
# EOF
"#;

    #[test]
    fn parses_samples_and_skips_junk() {
        let s = parse(TEXT);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "weft_requests_total",
                "weft_responses_total",
                "weft_response_latency_seconds_bucket",
                "weft_response_latency_seconds_bucket",
                "weft_build_info",
                "weft_weird",
            ]
        );
        assert_eq!(s[0].value, 42.0);
        assert_eq!(s[1].label("classification"), Some("success"));
        assert_eq!(s[1].label("error"), Some(""));
        assert!(s[1].matches(&[("router", "inbound"), ("service", "/svc/rates")]));
        assert!(!s[1].matches(&[("router", "outbound")]));
        assert_eq!(s[3].label("le"), Some("+Inf"));
        assert_eq!(s[5].label("a"), Some(r#"x"y\z"#));
        assert_eq!(s[5].value, 2.5);
    }

    #[test]
    fn garbage_never_panics() {
        for junk in [
            "é{a=\"é",
            "x{a=\"\\",
            "x{é=\"v\"} 1",
            "x{a} 1",
            "{a=\"b\"} 1",
            "x{a=\"b\"}",
            "x 1 2 3",
            "\u{0}",
        ] {
            let _ = parse(junk);
        }
        assert_eq!(parse("x{é=\"v\"} 1")[0].label("é"), Some("v"));
    }

    #[test]
    fn unlabelled_sample() {
        let s = parse("up 1\n");
        assert_eq!(s.len(), 1);
        assert!(s[0].labels.is_empty());
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        // 10 in (0, 1], 10 in (1, 2]: the median is at the top of the first bucket,
        // p75 halfway through the second.
        let b = vec![(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(quantile(0.5, &b), Some(1.0));
        assert_eq!(quantile(0.75, &b), Some(1.5));
        assert_eq!(quantile(0.25, &b), Some(0.5));
    }

    #[test]
    fn quantile_skips_empty_buckets_and_caps_at_highest_finite_bound() {
        let b = vec![
            (0.001, 0.0),
            (0.005, 0.0),
            (0.01, 4.0),
            (f64::INFINITY, 5.0),
        ];
        // rank 2 of 4 in (0.005, 0.01]
        assert!((quantile(0.4, &b).unwrap() - 0.0075).abs() < 1e-12);
        // p99 falls in +Inf: report the highest finite bound.
        assert_eq!(quantile(0.99, &b), Some(0.01));
    }

    #[test]
    fn quantile_of_empty_histogram_is_none() {
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    }
}
