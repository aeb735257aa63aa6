//! Reading metrics back: a small, tolerant reader of the Prometheus/OpenMetrics text that
//! `GET /metrics` serves (the scraper's side of [`crate::Metrics`]), the histogram quantile
//! math, and [`Traffic`]: the response counters and latency buckets of some series,
//! differenced between two scrapes. Used by the CLI (`weft demo`, `weft stat`, `weft routes`,
//! `weft top`, `weft check`) on pages from other processes, so the input is untrusted: every
//! line that does not parse is skipped, never a panic (fuzzed by `fuzz/fuzz_targets/prom.rs`).
//! Pure: no I/O.

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Full series name, suffix included (`weft_responses_total`).
    pub name: String,
    /// Labels in the order they appeared.
    pub labels: Vec<(String, String)>,
    /// The value; `+Inf`/`-Inf`/`NaN` are accepted.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(key, value)` pair of `want` is present.
    pub fn matches(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Parses an exposition text. Comments, blank lines and any line that does not parse are
/// skipped: a scrape from a newer proxy with unfamiliar syntax still yields what it can.
pub fn parse(text: &str) -> Vec<Sample> {
    Page::parse(text).samples
}

/// A parsed `/metrics` page, with what could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// Every sample that parsed, in page order.
    pub samples: Vec<Sample>,
    /// How many non-comment lines did not parse.
    pub bad_lines: usize,
    /// The first of them (1-based line number, text cut to 80 characters), for a report.
    pub first_bad: Option<(usize, String)>,
}

impl Page {
    /// Parses `text` like [`parse`], counting the lines it skips.
    pub fn parse(text: &str) -> Page {
        let mut page = Page::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Some(s) => page.samples.push(s),
                None => {
                    page.bad_lines += 1;
                    if page.first_bad.is_none() {
                        page.first_bad = Some((i + 1, line.chars().take(80).collect()));
                    }
                }
            }
        }
        page
    }

    /// Whether the page holds any `weft_*` sample: a page without one is not from a weft
    /// proxy, or from a version whose metrics this CLI cannot read.
    pub fn has_weft_metrics(&self) -> bool {
        self.samples.iter().any(|s| s.name.starts_with("weft_"))
    }

    /// The proxy's version from `weft_build_info{version="..."}`.
    pub fn version(&self) -> Option<&str> {
        self.samples
            .iter()
            .find(|s| s.name == "weft_build_info")
            .and_then(|s| s.label("version"))
    }

    /// A one-line description of the lines that did not parse, if any.
    pub fn problem(&self) -> Option<String> {
        let (line, text) = self.first_bad.as_ref()?;
        Some(format!(
            "{} line(s) of /metrics did not parse (first, line {line}: {text:?})",
            self.bad_lines
        ))
    }
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
pub type Buckets = Vec<(f64, f64)>;

/// The `q`-quantile (0..=1) of a cumulative histogram, the way Prometheus'
/// `histogram_quantile` computes it: find the bucket holding the rank and interpolate
/// linearly inside it (the first bucket's lower bound is 0). A rank in the `+Inf` bucket
/// yields the highest finite bound. `None` when the histogram is empty.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
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

/// Response counts and latency buckets of some series (one service, one router, a sum of
/// several), either as scraped or as the difference between two scrapes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traffic {
    /// Responses of any classification (`weft_responses_total`).
    pub total: f64,
    /// Responses classified `success`.
    pub success: f64,
    /// Cumulative latency buckets (`weft_response_latency_seconds_bucket`), sorted by `le`.
    pub buckets: Buckets,
}

impl Traffic {
    /// Adds `s` if it is a response counter or a latency bucket; other samples are ignored.
    /// The caller picks which series belong together (by their labels).
    pub fn record(&mut self, s: &Sample) {
        match s.name.as_str() {
            "weft_responses_total" => {
                self.total += s.value;
                if s.label("classification") == Some("success") {
                    self.success += s.value;
                }
            }
            "weft_response_latency_seconds_bucket" => {
                if let Some(le) = s.label("le").and_then(parse_value) {
                    add_bucket(&mut self.buckets, le, s.value);
                }
            }
            _ => {}
        }
    }

    /// What happened since `earlier`. A counter that went backwards means the proxy
    /// restarted: everything it reports now happened since.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        let reset = self.total < earlier.total
            || self
                .buckets
                .iter()
                .any(|&(le, n)| n < count_at(&earlier.buckets, le));
        if reset {
            return self.clone();
        }
        Traffic {
            total: self.total - earlier.total,
            success: self.success - earlier.success,
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, n - count_at(&earlier.buckets, le)))
                .collect(),
        }
    }

    /// Adds another series' counts (buckets merged by bound).
    pub fn add(&mut self, other: &Traffic) {
        self.total += other.total;
        self.success += other.success;
        for &(le, n) in &other.buckets {
            add_bucket(&mut self.buckets, le, n);
        }
    }

    /// Success ratio 0..=1; `None` without responses.
    pub fn success_rate(&self) -> Option<f64> {
        (self.total > 0.0).then(|| self.success / self.total)
    }

    /// The `q`-quantile of the latency in seconds (see [`quantile`]).
    pub fn latency(&self, q: f64) -> Option<f64> {
        quantile(q, &self.buckets)
    }
}

fn count_at(buckets: &[(f64, f64)], le: f64) -> f64 {
    buckets
        .iter()
        .find(|(b, _)| *b == le)
        .map_or(0.0, |(_, n)| *n)
}

fn add_bucket(buckets: &mut Buckets, le: f64, n: f64) {
    match buckets.binary_search_by(|(b, _)| b.total_cmp(&le)) {
        Ok(i) => buckets[i].1 += n,
        Err(i) => buckets.insert(i, (le, n)),
    }
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

    #[test]
    fn page_counts_bad_lines_and_reads_the_version() {
        let page = Page::parse(TEXT);
        assert_eq!(page.samples.len(), 6);
        assert_eq!(page.bad_lines, 3);
        assert_eq!(page.first_bad, Some((9, "this is not a sample".to_owned())));
        assert_eq!(page.version(), Some("0.1.0"));
        assert!(page.has_weft_metrics());
        assert!(page.problem().unwrap().starts_with("3 line(s)"));
        let html = Page::parse("<html>\n<body>nope</body>\n");
        assert!(!html.has_weft_metrics());
        assert_eq!(html.version(), None);
    }

    fn traffic(ok: f64, failed: f64, fast: f64, all: f64) -> Traffic {
        let text = format!(
            r#"weft_responses_total{{service="a",classification="success"}} {ok}
weft_responses_total{{service="a",classification="failure"}} {failed}
weft_requests_total{{service="a"}} 1000
weft_response_latency_seconds_bucket{{service="a",le="0.005"}} {fast}
weft_response_latency_seconds_bucket{{service="a",le="0.1"}} {all}
weft_response_latency_seconds_bucket{{service="a",le="+Inf"}} {all}
"#
        );
        let mut t = Traffic::default();
        parse(&text).iter().for_each(|s| t.record(s));
        t
    }

    #[test]
    fn traffic_delta_and_reset() {
        let a = traffic(8.0, 2.0, 10.0, 10.0);
        assert_eq!((a.total, a.success), (10.0, 8.0));
        assert_eq!(a.buckets.len(), 3);
        let b = traffic(18.0, 2.0, 15.0, 20.0);
        let d = b.since(&a);
        assert_eq!((d.total, d.success), (10.0, 10.0));
        assert_eq!(
            d.buckets,
            vec![(0.005, 5.0), (0.1, 10.0), (f64::INFINITY, 10.0)]
        );
        assert_eq!(d.success_rate(), Some(1.0));
        // Half the window's answers took up to 5ms, the rest up to 100ms.
        assert_eq!(d.latency(0.5), Some(0.005));
        assert!((d.latency(0.75).unwrap() - 0.0525).abs() < 1e-12);
        // A restarted proxy counts from zero again: take its counters as they are.
        let restarted = traffic(1.0, 0.0, 1.0, 1.0);
        assert_eq!(restarted.since(&b), restarted);
        assert_eq!(Traffic::default().success_rate(), None);
    }

    #[test]
    fn traffic_add_merges_buckets() {
        let mut sum = traffic(1.0, 1.0, 2.0, 2.0);
        sum.add(&traffic(3.0, 0.0, 0.0, 3.0));
        assert_eq!((sum.total, sum.success), (5.0, 4.0));
        assert_eq!(
            sum.buckets,
            vec![(0.005, 2.0), (0.1, 5.0), (f64::INFINITY, 5.0)]
        );
    }
}
