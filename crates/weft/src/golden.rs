//! The golden metrics of a window over a fleet: for each row key (a router, a service, a
//! route), responses, requests per second, success rate and latency quantiles, summed over
//! every proxy read. Shared by `weft stat`, `weft routes` and `weft top`. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fleet::ProxyWindow;
use crate::table;
use weft_telemetry::scrape::{Sample, Traffic};

/// One row's numbers over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Golden {
    /// Responses sent in the window.
    pub(crate) requests: f64,
    /// Responses per second: each proxy's count over its own window, summed.
    pub(crate) rps: f64,
    /// Success ratio 0..=1; `None` (JSON `null`) without responses.
    pub(crate) success: Option<f64>,
    /// Latency quantiles in seconds, Prometheus `histogram_quantile` style.
    pub(crate) latency_p50_seconds: Option<f64>,
    pub(crate) latency_p95_seconds: Option<f64>,
    pub(crate) latency_p99_seconds: Option<f64>,
}

impl Golden {
    /// The numbers of `t`, rounded to what is meaningful (rates to 1/1000 per second,
    /// latencies to the microsecond) so the JSON does not show float noise.
    fn new(t: &Traffic, rps: f64) -> Golden {
        let round = |x: f64, unit: f64| (x / unit).round() * unit;
        let lat = |q| t.latency(q).map(|s| round(s, 1e-6));
        Golden {
            requests: t.total,
            rps: round(rps, 1e-3),
            success: t.success_rate().map(|r| round(r, 1e-6)),
            latency_p50_seconds: lat(0.5),
            latency_p95_seconds: lat(0.95),
            latency_p99_seconds: lat(0.99),
        }
    }

    /// Adds this row's numbers to the JSON object `row` (which holds its key).
    pub(crate) fn add_to_json(&self, row: &mut serde_json::Value) {
        if let (Some(obj), Ok(serde_json::Value::Object(g))) =
            (row.as_object_mut(), serde_json::to_value(self))
        {
            obj.extend(g);
        }
    }

    /// The text cells SUCCESS RPS LATENCY_P50 LATENCY_P95 LATENCY_P99.
    pub(crate) fn cells(&self) -> Vec<String> {
        let lat = |q: Option<f64>| q.map_or_else(table::dash, table::latency);
        vec![
            self.success.map_or_else(table::dash, table::percent),
            table::rate(self.rps),
            lat(self.latency_p50_seconds),
            lat(self.latency_p95_seconds),
            lat(self.latency_p99_seconds),
        ]
    }
}

/// Groups every sample of every proxy by `key` (samples it maps to `None` are left out)
/// and computes each group's numbers over the window. A key seen only in some series with
/// no traffic (a router with connections but no requests yet) gets a row of zeros.
pub(crate) fn aggregate<K, F>(proxies: &[ProxyWindow], key: F) -> BTreeMap<K, Golden>
where
    K: Ord + Clone,
    F: Fn(&Sample) -> Option<K>,
{
    let mut sums: BTreeMap<K, (Traffic, f64)> = BTreeMap::new();
    for p in proxies {
        let prev = group(&p.prev, &key);
        for (k, cur) in group(&p.cur, &key) {
            let delta = match prev.get(&k) {
                Some(before) => cur.since(before),
                // New since the first scrape: everything it counts happened in the window
                // (or the proxy restarted, which comes to the same).
                None => cur,
            };
            let (sum, rps) = sums.entry(k).or_default();
            if p.secs > 0.0 {
                *rps += delta.total / p.secs;
            }
            sum.add(&delta);
        }
    }
    sums.into_iter()
        .map(|(k, (t, rps))| (k, Golden::new(&t, rps)))
        .collect()
}

/// The sum over every proxy's last scrape of the gauge `name`, by `key`.
pub(crate) fn gauge<K, F>(proxies: &[ProxyWindow], name: &str, key: F) -> BTreeMap<K, f64>
where
    K: Ord,
    F: Fn(&Sample) -> Option<K>,
{
    let mut out = BTreeMap::new();
    for s in proxies.iter().flat_map(|p| &p.cur) {
        if s.name == name {
            if let Some(k) = key(s) {
                *out.entry(k).or_default() += s.value;
            }
        }
    }
    out
}

fn group<K, F>(samples: &[Sample], key: &F) -> BTreeMap<K, Traffic>
where
    K: Ord,
    F: Fn(&Sample) -> Option<K>,
{
    let mut out: BTreeMap<K, Traffic> = BTreeMap::new();
    for s in samples {
        if let Some(k) = key(s) {
            out.entry(k).or_default().record(s);
        }
    }
    out
}

/// The value of label `name` as an owned string.
pub(crate) fn label(s: &Sample, name: &str) -> Option<String> {
    s.label(name).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_telemetry::scrape::parse;

    /// A page with `ok`/`failed` responses of `/svc/books` on `outbound`, `fast` of them
    /// within 1ms and the rest within 10ms, plus a quiet `inbound` router.
    fn page(ok: u32, failed: u32, fast: u32) -> Vec<Sample> {
        let all = ok + failed;
        parse(&format!(
            r#"weft_responses_total{{router="outbound",service="/svc/books",route="[default]",status_code="200",classification="success",error=""}} {ok}
weft_responses_total{{router="outbound",service="/svc/books",route="[default]",status_code="502",classification="failure",error="connection-refused"}} {failed}
weft_response_latency_seconds_bucket{{le="0.001",router="outbound",service="/svc/books",route="[default]"}} {fast}
weft_response_latency_seconds_bucket{{le="0.01",router="outbound",service="/svc/books",route="[default]"}} {all}
weft_response_latency_seconds_bucket{{le="+Inf",router="outbound",service="/svc/books",route="[default]"}} {all}
weft_open_connections{{router="outbound"}} 3
weft_open_connections{{router="inbound"}} 1
weft_build_info{{version="0.1.0"}} 1
"#
        ))
    }

    fn window(admin: &str, secs: f64, prev: Vec<Sample>, cur: Vec<Sample>) -> ProxyWindow {
        ProxyWindow {
            admin: admin.to_owned(),
            secs,
            prev,
            cur,
        }
    }

    #[test]
    fn rates_over_a_fleet_sum_per_proxy_rates() {
        let proxies = [
            // 20 responses in 2s, all fast and successful.
            window("a", 2.0, page(10, 0, 10), page(30, 0, 30)),
            // 20 responses in 4s, 5 failed, all slow.
            window("b", 4.0, page(0, 0, 0), page(15, 5, 0)),
        ];
        let rows = aggregate(&proxies, |s| label(s, "router"));
        let keys: Vec<&String> = rows.keys().collect();
        assert_eq!(keys, ["inbound", "outbound"]);
        assert_eq!(rows["inbound"], Golden::default());
        let out = &rows["outbound"];
        assert_eq!(out.requests, 40.0);
        assert_eq!(out.rps, 10.0 + 5.0);
        assert_eq!(out.success, Some(35.0 / 40.0));
        // 20 of 40 within 1ms: the median is the first bucket's bound.
        assert_eq!(out.latency_p50_seconds, Some(0.001));
        // p95: rank 38 of 40, in (1ms, 10ms], 18 of its 20: 1ms + 9ms * 18/20.
        assert!((out.latency_p95_seconds.unwrap() - 0.0091).abs() < 1e-12);
        assert_eq!(out.cells(), ["87.50%", "15.0", "1.0ms", "9.1ms", "9.8ms"]);
    }

    #[test]
    fn restart_and_new_series_count_from_zero() {
        // The proxy restarted between the scrapes: its counters went down.
        let restarted = [window("a", 2.0, page(100, 0, 100), page(4, 0, 4))];
        let rows = aggregate(&restarted, |s| label(s, "service"));
        assert_eq!(rows["/svc/books"].requests, 4.0);
        assert_eq!(rows["/svc/books"].rps, 2.0);
        // The service appeared during the window.
        let fresh = [window("a", 2.0, Vec::new(), page(6, 0, 6))];
        let rows = aggregate(&fresh, |s| label(s, "service"));
        assert_eq!(rows["/svc/books"].requests, 6.0);
        // No time passed: no rate rather than a division by zero.
        let instant = [window("a", 0.0, page(0, 0, 0), page(6, 0, 6))];
        assert_eq!(
            aggregate(&instant, |s| label(s, "service"))["/svc/books"].rps,
            0.0
        );
    }

    #[test]
    fn gauges_sum_the_last_scrape() {
        let proxies = [
            window("a", 2.0, page(0, 0, 0), page(0, 0, 0)),
            window("b", 2.0, Vec::new(), page(0, 0, 0)),
        ];
        let open = gauge(&proxies, "weft_open_connections", |s| label(s, "router"));
        assert_eq!(open["outbound"], 6.0);
        assert_eq!(open["inbound"], 2.0);
        assert_eq!(Golden::default().cells(), ["-", "0.0", "-", "-", "-"]);
    }
}
