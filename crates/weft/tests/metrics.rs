//! End to end: the Prometheus metrics on the admin server.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::metrics::sum;
use support::*;
use tokio::io::AsyncWriteExt;

/// A weft with one good service (`books`) and one whose endpoint refuses connections
/// (`broken`), after `n` requests to `books` and one to `broken`.
async fn weft_after_traffic(n: usize) -> (Weft, Upstream, Disco) {
    let books = Upstream::ok("books").await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    disco.write("broken", &format!("127.0.0.1 {}\n", closed_port()));
    // An objective, so the `weft_slo_*` series are in the page promtool checks.
    let objectives = [
        "service:",
        "  objectives: [{kind: successRate, target: 99.9%}, {kind: latency, threshold: 1s, target: 99%}]",
    ];
    let config = config(&disco, &[router("outbound", "/svc => /#/fs;", &objectives)]);
    let weft = Weft::start(bin(), &config).await;
    let client = weft.http1("outbound");
    for _ in 0..n {
        let r = client.get("books", "/").await.expect("request");
        assert_eq!(r.status, 200);
    }
    let r = client.get("broken", "/").await.expect("request");
    assert_eq!(r.status, 502);
    (weft, books, disco)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_counters_count_successes_and_errors() {
    const N: usize = 7;
    let (weft, _books, _disco) = weft_after_traffic(N).await;
    let admin = weft.admin();

    let ok = [("router", "outbound"), ("service", "/svc/books")];
    let ok_resp = [
        ("router", "outbound"),
        ("service", "/svc/books"),
        ("status_code", "200"),
        ("classification", "success"),
    ];
    let err_resp = [
        ("router", "outbound"),
        ("status_code", "502"),
        ("error", "connection-refused"),
    ];
    // Metrics may be recorded just after the response went out: poll briefly.
    let text = eventually(Duration::from_secs(2), || async move {
        let text = get_metrics(admin).await;
        (sum(&text, "weft_requests_total", &ok) == N as f64
            && sum(&text, "weft_responses_total", &ok_resp) == N as f64
            && sum(&text, "weft_responses_total", &err_resp) >= 1.0)
            .then_some(text)
    })
    .await;
    let text = match text {
        Some(t) => t,
        None => {
            let t = get_metrics(admin).await;
            panic!(
                "after {N} requests to books and 1 refused: requests_total={} \
                 responses_total(200,success)={} responses_total(connection-refused)={}\n{}",
                sum(&t, "weft_requests_total", &ok),
                sum(&t, "weft_responses_total", &ok_resp),
                sum(&t, "weft_responses_total", &err_resp),
                weft_lines(&t)
            )
        }
    };
    assert_eq!(
        sum(
            &text,
            "weft_responses_total",
            &[("service", "/svc/books"), ("classification", "failure")]
        ),
        0.0
    );
    assert_eq!(
        sum(
            &text,
            "weft_responses_total",
            &[
                ("error", "connection-refused"),
                ("classification", "failure")
            ]
        ),
        1.0,
        "{}",
        weft_lines(&text)
    );
    assert_eq!(
        sum(&text, "weft_response_latency_seconds_count", &ok),
        N as f64,
        "latency histogram count\n{}",
        weft_lines(&text)
    );
    assert!(sum(&text, "weft_connections_total", &[("router", "outbound")]) >= 1.0);
    let broken = [("service", "/svc/broken"), ("objective", "success-rate")];
    assert_eq!(sum(&text, "weft_slo_attainment_ratio", &broken), 0.0);
    assert_eq!(
        sum(
            &text,
            "weft_slo_burn_rate",
            &[broken[0], broken[1], ("window", "5m")]
        ),
        1000.0
    );
    assert!(
        !support::metrics::matching(&text, "weft_build_info", &[]).is_empty(),
        "no weft_build_info"
    );
    assert!(
        sum(
            &text,
            "weft_endpoint_requests_total",
            &[("router", "outbound")]
        ) >= N as f64,
        "{}",
        weft_lines(&text)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_metrics_after_traffic() {
    let (weft, _books, _disco) = weft_after_traffic(5).await;
    let text = get_metrics(weft.admin()).await;

    let child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run `promtool` ({e}): install it (Debian: `apt-get install prometheus`, \
             which ships /usr/bin/promtool); this test does not skip"
        ),
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- metrics ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The weft_* lines of a metrics text, for failure messages.
fn weft_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("weft_"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A free TCP port on 127.0.0.1 for a program that cannot be told to use port 0 and report
/// it back (Prometheus' own web listener).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_weft_and_queries_a_value_back() {
    const N: usize = 5;
    let (weft, _books, _disco) = weft_after_traffic(N).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: weft\n    static_configs: [{{targets: ['{}']}}]\n",
            weft.admin()
        ),
    )
    .expect("write prometheus.yml");
    let web = format!("127.0.0.1:{}", free_port());
    let mut prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus (Debian package `prometheus`) must be installed: apt-get install prometheus");
    let query = "sum(weft_requests_total{service=\"/svc/books\"})";
    let client = Client::http1(web.parse().expect("addr"));
    let value = eventually(Duration::from_secs(60), || {
        let client = client.clone();
        let web = web.clone();
        async move {
            let path = format!("/api/v1/query?query={}", urlencode(query));
            let r = client.get(&web, &path).await.ok()?;
            let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            let v = body["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()?;
            Some(v)
        }
    })
    .await;
    let _ = prometheus.kill().await;
    assert_eq!(
        value,
        Some(N as f64),
        "Prometheus scraped weft and returned the request count"
    );
}
