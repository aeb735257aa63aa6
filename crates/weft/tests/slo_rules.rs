//! `weft dashboards` end to end: its rules pass `promtool check rules`, and a real
//! Prometheus that loads them while scraping a real weft records the error ratios and
//! raises the burn-rate alert for the failing service only; every Grafana panel's query
//! runs there.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;

/// Runs an instant query; `None` until Prometheus answers with a result.
async fn query(client: &Client, web: &str, q: &str) -> Option<serde_json::Value> {
    let path = format!("/api/v1/query?query={}", urlencode(q));
    let r = client.get(web, &path).await.ok()?;
    let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    (body["status"] == "success").then(|| body["data"]["result"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_pass_promtool_and_a_real_prometheus_alerts_on_the_failing_service() {
    let books = Upstream::ok("books").await;
    let pay = Upstream::start("pay", Behaviour::new().status(500)).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    disco.write("pay", &pay.fs_line());
    let objectives = [
        "service:",
        "  objectives:",
        "    - {kind: successRate, target: 99.9%, window: 30d}",
        "    - {kind: latency, threshold: 300ms, target: 99%}",
    ];
    let config = config(&disco, &[router("outbound", "/svc => /#/fs;", &objectives)]);
    let weft = Weft::start(bin(), &config).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let out = tokio::process::Command::new(bin())
        .arg("dashboards")
        .arg("-c")
        .arg(weft.config_path())
        .arg("--out")
        .arg(dir.path())
        .output()
        .await
        .expect("weft dashboards");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = dir.path().join("weft-rules.yml");
    let check = tokio::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .await
        .expect("promtool (Debian package `prometheus`) must be installed");
    assert!(
        check.status.success(),
        "promtool check rules: {}{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(&rules).unwrap_or_default()
    );
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("weft-dashboard.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");

    // Traffic while Prometheus scrapes: books succeeds, pay always fails.
    let client = weft.http1("outbound");
    let traffic = tokio::spawn(async move {
        loop {
            let _ = client.get("books", "/").await;
            let _ = client.get("pay", "/").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: weft\n    static_configs: [{{targets: ['{}']}}]\n",
            rules.display(),
            weft.admin()
        ),
    )
    .expect("write prometheus.yml");
    let web = format!("127.0.0.1:{}", free_port());
    let mut prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus (Debian package `prometheus`) must be installed");
    let prom = Client::http1(web.parse().expect("addr"));

    let ratio = |service: &'static str| {
        let (prom, web) = (prom.clone(), web.clone());
        async move {
            let q = format!(
                "weft_slo:error_ratio:rate5m{{service=\"{service}\", objective=\"success-rate\"}}"
            );
            let r = query(&prom, &web, &q).await?;
            r[0]["value"][1].as_str()?.parse::<f64>().ok()
        }
    };
    let pay_ratio = eventually(Duration::from_secs(90), || async {
        ratio("/svc/pay").await.filter(|r| *r == 1.0)
    })
    .await;
    assert_eq!(pay_ratio, Some(1.0), "pay's 5m error ratio is recorded");
    assert_eq!(ratio("/svc/books").await, Some(0.0), "books fails nothing");
    let alerts = eventually(Duration::from_secs(60), || async {
        let r = query(
            &prom,
            &web,
            "ALERTS{alertname=\"WeftErrorBudgetBurn\", severity=\"page\"}",
        )
        .await?;
        (!r.as_array()?.is_empty()).then_some(r)
    })
    .await
    .expect("the page alert is pending or firing");
    for a in alerts.as_array().expect("list") {
        assert_eq!(a["metric"]["service"], "/svc/pay", "{alerts:#}");
        assert_eq!(a["metric"]["objective"], "success-rate", "{alerts:#}");
    }
    // Every panel's query is valid PromQL and runs.
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let q = expr.replace("$router", ".*").replace("$service", ".*");
            assert!(
                query(&prom, &web, &q).await.is_some(),
                "panel query fails: {q}"
            );
        }
    }
    traffic.abort();
    let _ = prometheus.kill().await;
}

#[tokio::test]
async fn a_bad_objective_is_refused_with_its_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weft.yaml");
    std::fs::write(
        &config,
        "routers:\n  - label: r\n    servers: [{port: 4140}]\n    service:\n      objectives: [{kind: latency, target: 99}]\n",
    )
    .expect("write config");
    let out = tokio::process::Command::new(bin())
        .arg("dashboards")
        .arg("-c")
        .arg(&config)
        .arg("--out")
        .arg(dir.path())
        .output()
        .await
        .expect("weft dashboards");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "weft.yaml:5:44: routers[0].service.objectives[0].target: invalid percentage"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("weft-rules.yml").exists());
}
