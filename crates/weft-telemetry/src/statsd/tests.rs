use std::time::Duration;

use super::*;
use crate::Classification;

const TEXT: &str = r#"# HELP weft_requests_total Requests received.
# TYPE weft_requests_total counter
weft_requests_total{router="outbound",service="/svc/books.v1",route="[default]"} 5
# TYPE weft_open_connections gauge
weft_open_connections{router="outbound"} 3
# TYPE weft_temperature gauge
weft_temperature -2.5
# TYPE weft_response_latency_seconds histogram
weft_response_latency_seconds_bucket{router="outbound",service="/svc/a",route="r",le="0.001"} 2
weft_response_latency_seconds_bucket{router="outbound",service="/svc/a",route="r",le="0.002"} 4
weft_response_latency_seconds_bucket{router="outbound",service="/svc/a",route="r",le="+Inf"} 4
weft_response_latency_seconds_sum{router="outbound",service="/svc/a",route="r"} 0.005
weft_response_latency_seconds_count{router="outbound",service="/svc/a",route="r"} 4
"#;

#[test]
fn first_flush_sends_counters_gauges_and_timers() {
    let mut f = Flusher::new("weft");
    assert_eq!(
        f.lines(TEXT),
        [
            "weft.outbound._svc_books_v1.requests._default_:5|c",
            "weft.outbound.open_connections:3|g",
            "weft.temperature:0|g",
            "weft.temperature:-2.5|g",
            // Two observations in (0, 1ms], two in (1ms, 2ms]: spread evenly.
            "weft.outbound._svc_a.response_latency.r:0.25|ms",
            "weft.outbound._svc_a.response_latency.r:0.75|ms",
            "weft.outbound._svc_a.response_latency.r:1.25|ms",
            "weft.outbound._svc_a.response_latency.r:1.75|ms",
        ]
    );
}

#[test]
fn later_flushes_send_increases_only() {
    let mut f = Flusher::new("p");
    f.lines(TEXT);
    let next = TEXT
        .replace("} 5\n", "} 8\n")
        .replace("le=\"0.002\"} 4", "le=\"0.002\"} 5")
        .replace("le=\"+Inf\"} 4", "le=\"+Inf\"} 5");
    assert_eq!(
        f.lines(&next),
        [
            "p.outbound._svc_books_v1.requests._default_:3|c",
            "p.outbound.open_connections:3|g",
            "p.temperature:0|g",
            "p.temperature:-2.5|g",
            "p.outbound._svc_a.response_latency.r:1.5|ms",
        ]
    );
    // Nothing new: no counter or timer lines, gauges only.
    assert_eq!(f.lines(&next).len(), 3);
    // A counter that went down was recreated: its whole value is new.
    let reset = next.replace("} 8\n", "} 2\n");
    assert!(f
        .lines(&reset)
        .contains(&"p.outbound._svc_books_v1.requests._default_:2|c".to_owned()));
}

#[test]
fn many_observations_send_a_bounded_sample_with_a_rate() {
    let text = "# TYPE x_seconds histogram\n\
        x_seconds_bucket{le=\"0.01\"} 640\n\
        x_seconds_bucket{le=\"+Inf\"} 1280\n";
    let lines = Flusher::new("weft").lines(text);
    assert_eq!(lines.len() as u64, MAX_TIMER_SAMPLES);
    assert!(lines.iter().all(|l| l.ends_with("|ms|@0.05")), "{lines:?}");
    // Half land in (0, 10ms], half in the open-ended bucket, reported at its lower bound.
    assert_eq!(lines.iter().filter(|l| l.contains(":10|ms")).count(), 32);
}

#[test]
fn parses_escaped_label_values() {
    let s = parse_sample(r#"m{a="x\"y\\z",b="q"} 1.5 1700000000"#).unwrap();
    assert_eq!(s.name, "m");
    assert_eq!(
        s.labels,
        [("a", "x\"y\\z".to_owned()), ("b", "q".to_owned())]
    );
    assert_eq!(s.value, 1.5);
    assert!(parse_sample("garbage").is_none());
    assert!(parse_sample(r#"m{a="unterminated} 1"#).is_none());
}

#[test]
fn packs_lines_into_bounded_datagrams() {
    let lines: Vec<String> = (0..200)
        .map(|i| format!("weft.some.metric.{i:03}:1|c"))
        .collect();
    let datagrams = pack(&lines);
    assert!(datagrams.len() > 1);
    assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));
    let back: Vec<String> = datagrams
        .iter()
        .flat_map(|d| {
            String::from_utf8(d.clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(back, lines);
}

#[tokio::test]
async fn sends_real_datagrams_every_interval() {
    let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let metrics = Metrics::new("1.0.0");
    let svc = metrics
        .router("outbound")
        .service("/svc/books", "[default]");
    svc.request();
    svc.request();
    svc.latency(0.0004);
    svc.response(200, Classification::success, "", "");
    let cfg = StatsdConfig {
        address: collector.local_addr().unwrap().to_string(),
        prefix: "weft".to_owned(),
        interval: Duration::from_millis(50),
    };
    let task = spawn(metrics.clone(), &cfg);
    let mut lines = Vec::new();
    let mut buf = [0u8; 65536];
    while !lines
        .iter()
        .any(|l: &String| l.starts_with("weft.build_info"))
    {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), collector.recv_from(&mut buf))
            .await
            .expect("a datagram within 5s")
            .unwrap();
        assert!(n <= MAX_DATAGRAM);
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    task.abort();
    for want in [
        "weft.outbound._svc_books.requests._default_:2|c",
        "weft.outbound._svc_books.responses._default_.200.success:1|c",
        "weft.build_info.1_0_0:1|g",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want} not in {lines:#?}");
    }
    // One observation at 0.4ms, in the (0.25ms, 0.5ms] bucket: its midpoint.
    assert!(
        lines
            .iter()
            .any(|l| l == "weft.outbound._svc_books.response_latency._default_:0.375|ms"),
        "{lines:#?}"
    );
}
