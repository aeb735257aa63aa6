//! The Prometheus/OpenMetrics text reader of the CLI (`weft stat`, `top`, `routes`, `check`,
//! `demo`), which reads `/metrics` pages of other processes: any text. Every non-comment
//! line is a sample or a counted bad line; the traffic and quantile math on what was read
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_telemetry::scrape::{Page, Traffic};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let page = Page::parse(text);
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(page.samples.len() + page.bad_lines, lines);
    assert_eq!(page.first_bad.is_some(), page.bad_lines > 0);
    let _ = (page.version(), page.problem(), page.has_weft_metrics());
    let mut traffic = Traffic::default();
    page.samples.iter().for_each(|s| traffic.record(s));
    let earlier = traffic.clone();
    traffic.add(&earlier);
    let delta = traffic.since(&earlier);
    for q in [0.0, 0.5, 0.99, 1.0] {
        let _ = (traffic.latency(q), delta.latency(q));
    }
    let _ = delta.success_rate();
});
