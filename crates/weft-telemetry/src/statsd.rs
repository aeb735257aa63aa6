//! statsd export of the metrics: every `interval` the registry's Prometheus text is read back
//! and sent over UDP as statsd lines (`name:value|type`), for sites that run statsd
//! collectors.
//!
//! - Counters (`_total`) are sent as the increase since the previous flush (`|c`); a counter
//!   that went down (a series was removed and recreated) sends its whole value; no change
//!   sends nothing.
//! - Gauges are sent as their value (`|g`); a negative value is sent as `0|g` then `-x|g`,
//!   because a leading sign means "change by" in statsd.
//! - Histograms become timers (`|ms`) from the increase of their buckets since the previous
//!   flush: up to [`MAX_TIMER_SAMPLES`] values spread evenly over the new observations'
//!   distribution (interpolated inside each bucket), with a sample rate (`|@r`) so the
//!   collector's count equals the number of new observations. Percentiles are thus exact to
//!   the bucket resolution; `_seconds` histograms are sent in milliseconds.
//!
//! Names are `prefix.router.service.metric` followed by the other label values, each label
//! value sanitized (`/`, `.`, and anything but letters, digits, `_`, `-` become `_`); labels
//! that a metric lacks are left out. Lines are packed into datagrams of at most
//! [`MAX_DATAGRAM`] bytes (an Ethernet MTU less IP and UDP headers, as statsd advises).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use weft_config::StatsdConfig;

use crate::Metrics;

/// The largest datagram sent, in bytes.
pub const MAX_DATAGRAM: usize = 1432;
/// The most timer values sent per histogram series and flush.
pub const MAX_TIMER_SAMPLES: u64 = 64;

/// Spawns the statsd task on the current tokio runtime: it flushes every `cfg.interval`
/// (the first time one interval after the start) until the handle is aborted. Send errors
/// (no route, an unresolvable host) are logged at debug and the next flush tries again.
pub fn spawn(metrics: Metrics, cfg: &StatsdConfig) -> JoinHandle<()> {
    let address = cfg.address.clone();
    let period = cfg.interval;
    let mut flusher = Flusher::new(&cfg.prefix);
    tokio::spawn(async move {
        let mut ticks = interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut socket: Option<UdpSocket> = None;
        loop {
            ticks.tick().await;
            let datagrams = flusher.flush(&metrics.encode());
            if let Err(error) = send(&mut socket, &address, &datagrams).await {
                tracing::debug!(%address, %error, "statsd send failed");
            }
        }
    })
}

async fn send(
    socket: &mut Option<UdpSocket>,
    address: &str,
    datagrams: &[Vec<u8>],
) -> std::io::Result<()> {
    if datagrams.is_empty() {
        return Ok(());
    }
    let target = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the address resolved to nothing"))?;
    let family_matches = socket
        .as_ref()
        .and_then(|s| s.local_addr().ok())
        .is_some_and(|l| l.is_ipv4() == target.is_ipv4());
    if !family_matches {
        let local: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        *socket = Some(UdpSocket::bind(local).await?);
    }
    // Just set above when missing.
    let Some(s) = socket.as_ref() else {
        return Ok(());
    };
    for d in datagrams {
        s.send_to(d, target).await?;
    }
    Ok(())
}

/// Turns successive metrics snapshots into statsd datagrams; keeps the previous counter
/// values and histogram buckets to send increases. Pure: no I/O.
pub(crate) struct Flusher {
    prefix: String,
    counters: HashMap<String, f64>,
    buckets: HashMap<String, Vec<(f64, f64)>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One parsed sample line: metric name, labels in order, value.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

// === impl Flusher ===

impl Flusher {
    pub(crate) fn new(prefix: &str) -> Flusher {
        Flusher {
            prefix: prefix.to_owned(),
            counters: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    /// The datagrams for one snapshot of the Prometheus text.
    pub(crate) fn flush(&mut self, text: &str) -> Vec<Vec<u8>> {
        pack(&self.lines(text))
    }

    /// The statsd lines for one snapshot of the Prometheus text.
    pub(crate) fn lines(&mut self, text: &str) -> Vec<String> {
        let mut kinds = HashMap::new();
        let mut out = Vec::new();
        // Histogram series of this snapshot: name -> cumulative (le, count) in text order.
        let mut hist: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    let kind = match kind {
                        "counter" => Kind::Counter,
                        "histogram" => Kind::Histogram,
                        _ => Kind::Gauge,
                    };
                    kinds.insert(name.to_owned(), kind);
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some(s) = parse_sample(line) else {
                continue;
            };
            match kinds.get(s.name) {
                Some(Kind::Counter) => {
                    let name = self.name(s.name, &s.labels);
                    let prev = self.counters.insert(name.clone(), s.value).unwrap_or(0.0);
                    let delta = if s.value >= prev {
                        s.value - prev
                    } else {
                        s.value
                    };
                    if delta > 0.0 {
                        out.push(format!("{name}:{}|c", num(delta)));
                    }
                }
                Some(Kind::Gauge) => {
                    let name = self.name(s.name, &s.labels);
                    if s.value < 0.0 {
                        out.push(format!("{name}:0|g"));
                    }
                    out.push(format!("{name}:{}|g", num(s.value)));
                }
                // `_bucket`, `_sum`, `_count` samples; the histogram's own name never is one.
                Some(Kind::Histogram) => {}
                None => {
                    let Some(base) = s.name.strip_suffix("_bucket") else {
                        continue; // `_sum` and `_count`: the buckets say it all.
                    };
                    if kinds.get(base) != Some(&Kind::Histogram) {
                        continue;
                    }
                    let mut labels = s.labels;
                    let Some(i) = labels.iter().position(|(k, _)| *k == "le") else {
                        continue;
                    };
                    let le = labels.remove(i).1;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        let Ok(le) = le.parse() else { continue };
                        le
                    };
                    let name = self.name(base, &labels);
                    match hist.last_mut() {
                        Some((n, b)) if *n == name => b.push((le, s.value)),
                        _ => hist.push((name, vec![(le, s.value)])),
                    }
                }
            }
        }
        for (name, now) in hist {
            let prev = self.buckets.insert(name.clone(), now.clone());
            timer_lines(&name, &now, prev.as_deref(), &mut out);
        }
        out
    }

    /// `prefix.router.service.metric.other.label.values`.
    fn name(&self, metric: &str, labels: &[(&str, String)]) -> String {
        let mut out = self.prefix.clone();
        let mut push = |part: &str| {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&sanitize(part));
        };
        for key in ["router", "service"] {
            if let Some((_, v)) = labels.iter().find(|(k, _)| *k == key) {
                push(v);
            }
        }
        let mut metric = metric.strip_prefix("weft_").unwrap_or(metric);
        metric = metric.strip_suffix("_total").unwrap_or(metric);
        metric = metric.strip_suffix("_seconds").unwrap_or(metric);
        push(metric);
        for (k, v) in labels {
            if *k != "router" && *k != "service" && !v.is_empty() {
                push(v);
            }
        }
        out
    }
}

/// Timer values for the observations a histogram gained since `prev` (cumulative buckets,
/// `(le, count)`, in increasing `le`). Values are in milliseconds when `name` came from a
/// `_seconds` histogram (they all do today).
fn timer_lines(name: &str, now: &[(f64, f64)], prev: Option<&[(f64, f64)]>, out: &mut Vec<String>) {
    let before = |i: usize| prev.and_then(|p| p.get(i)).map_or(0.0, |b| b.1);
    let total_now = now.last().map_or(0.0, |b| b.1);
    let mut total_new = total_now - prev.and_then(|p| p.last()).map_or(0.0, |b| b.1);
    // A reset histogram (a recreated series) counts from zero.
    let reset = total_new < 0.0;
    if reset {
        total_new = total_now;
    }
    let new_at = |i: usize| now[i].1 - if reset { 0.0 } else { before(i) };
    // Float counts of whole observations; rounding only guards against representation.
    let total = total_new.round() as u64;
    if total == 0 {
        return;
    }
    let n = total.min(MAX_TIMER_SAMPLES);
    let rate = if n < total {
        format!("|@{}", num(n as f64 / total as f64))
    } else {
        String::new()
    };
    let mut bucket = 0;
    for k in 0..n {
        // The rank of the k-th of n evenly spread picks among `total` observations.
        let rank = (k as f64 + 0.5) * total as f64 / n as f64;
        while bucket + 1 < now.len() && new_at(bucket) < rank {
            bucket += 1;
        }
        let lower_count = if bucket == 0 { 0.0 } else { new_at(bucket - 1) };
        let lower = if bucket == 0 { 0.0 } else { now[bucket - 1].0 };
        let upper = now[bucket].0;
        let in_bucket = new_at(bucket) - lower_count;
        let value = if upper.is_infinite() {
            lower
        } else if in_bucket > 0.0 {
            lower + (upper - lower) * ((rank - lower_count) / in_bucket).clamp(0.0, 1.0)
        } else {
            upper
        };
        out.push(format!("{name}:{}|ms{rate}", num(value * 1000.0)));
    }
}

/// `name{k="v",...} value [timestamp]` or `name value`.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start_matches(',');
            if let Some(after) = r.strip_prefix('}') {
                break after;
            }
            let (key, after) = r.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((key, value));
            r = &after[end + 1..];
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    value.is_finite().then_some(Sample {
        name,
        labels,
        value,
    })
}

/// A label value as one statsd name segment.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Integers without a fraction; others with up to 6 decimals, trailing zeros trimmed.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let mut s = format!("{v:.6}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// Lines joined by `\n` into datagrams of at most [`MAX_DATAGRAM`] bytes; a longer line
/// goes alone.
fn pack(lines: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in lines {
        if !cur.is_empty() && cur.len() + 1 + line.len() > MAX_DATAGRAM {
            out.push(std::mem::take(&mut cur).into_bytes());
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        let _ = write!(cur, "{line}");
    }
    if !cur.is_empty() {
        out.push(cur.into_bytes());
    }
    out
}

#[cfg(test)]
mod tests;
