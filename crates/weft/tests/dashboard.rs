//! The dashboard and the objectives end to end: the built binary with real upstreams and
//! traffic; the JSON the pages read checked against `/metrics`; `weft slo`; and every page
//! driven in headless Chromium by a Python Playwright script (`dashboard/browser.py`).

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::metrics::sum;
use support::*;
use weft_test::Signal;

/// The upstream of `/svc/pay` fails this many of every 100 requests.
const PAY_FAILURES: usize = 5;

/// A proxy with objectives on every service, `/svc/books` healthy, `/svc/pay` failing 5%,
/// and `/svc/split` a 3:1 weighted split between two versions of books.
struct Mesh {
    weft: Weft,
    _upstreams: Vec<Upstream>,
    _disco: Disco,
}

async fn mesh_with_traffic() -> Mesh {
    let books = Upstream::ok("books").await;
    let books_v2 = Upstream::ok("books-v2").await;
    let pay = Upstream::ok("pay").await;
    let disco = Disco::new();
    for u in [&books, &books_v2, &pay] {
        disco.write(u.name(), &u.fs_line());
    }
    let objectives = [
        "service:",
        "  objectives:",
        "    - {kind: successRate, target: 99.9%, window: 28d}",
        "    - {kind: latency, threshold: 300ms, target: 99%, window: 28d}",
    ];
    let dtab = "/svc => /#/fs;\n/svc/split => 3 * /#/fs/books & 1 * /#/fs/books-v2;";
    let config = config(&disco, &[router("outbound", dtab, &objectives)]);
    let weft = Weft::start(bin(), &config).await;
    let client = weft.http1("outbound");
    for _ in 0..20 {
        assert_eq!(client.get("books", "/").await.expect("books").status, 200);
    }
    for _ in 0..(100 - PAY_FAILURES) {
        assert_eq!(client.get("pay", "/").await.expect("pay").status, 200);
    }
    pay.set_behaviour(Behaviour::new().status(500));
    for _ in 0..PAY_FAILURES {
        assert_eq!(client.get("pay", "/").await.expect("pay").status, 500);
    }
    for _ in 0..8 {
        assert_eq!(client.get("split", "/").await.expect("split").status, 200);
    }
    Mesh {
        weft,
        _upstreams: vec![books, books_v2, pay],
        _disco: disco,
    }
}

async fn get_json(weft: &Weft, path: &str) -> serde_json::Value {
    let r = weft
        .admin_client()
        .get(&weft.admin().to_string(), path)
        .await
        .expect("admin");
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_and_objectives_agree_with_metrics() {
    let mesh = mesh_with_traffic().await;
    let weft = &mesh.weft;
    let overview = get_json(weft, "/overview.json").await;
    let metrics = get_metrics(weft.admin()).await;
    for service in ["/svc/books", "/svc/pay", "/svc/split"] {
        let row = overview["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|r| r["service"] == service)
            .unwrap_or_else(|| panic!("no {service} in {overview:#}"));
        let labels = [("router", "outbound"), ("service", service)];
        let total = sum(&metrics, "weft_responses_total", &labels);
        let good = sum(
            &metrics,
            "weft_responses_total",
            &[labels[0], labels[1], ("classification", "success")],
        );
        assert_eq!(row["requests"].as_f64(), Some(total), "{row:#}");
        assert_eq!(row["successRate"].as_f64(), Some(good / total), "{row:#}");
    }
    let slo = get_json(weft, "/objectives.json").await;
    let find = |service: &str, objective: &str| {
        slo.as_array()
            .expect("list")
            .iter()
            .find(|s| s["service"] == service && s["objective"] == objective)
            .cloned()
            .unwrap_or_else(|| panic!("no {service} {objective} in {slo:#}"))
    };
    let pay = find("/svc/pay", "success-rate");
    assert_eq!(pay["verdict"], "exhausted", "{pay:#}");
    assert_eq!(pay["attainment"].as_f64(), Some(0.95));
    assert_eq!(find("/svc/books", "success-rate")["verdict"], "ok");
    let latency = find("/svc/books", "latency-300ms");
    assert_eq!(latency["effectiveThreshold"].as_f64(), Some(0.25));
    assert_eq!(latency["verdict"], "ok");
    // The same numbers as metrics, read on a scrape.
    let metrics = get_metrics(weft.admin()).await;
    let pay_budget = [("service", "/svc/pay"), ("objective", "success-rate")];
    let left = sum(
        &metrics,
        "weft_slo_error_budget_remaining_ratio",
        &pay_budget,
    );
    assert!(
        (left - pay["budgetLeft"].as_f64().unwrap()).abs() < 1e-9,
        "{left}"
    );
    assert_eq!(
        sum(&metrics, "weft_slo_target_ratio", &pay_budget),
        0.999,
        "target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_slo_prints_a_table_and_json() {
    let mesh = mesh_with_traffic().await;
    let admin = mesh.weft.admin().to_string();
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(bin())
            .args(args)
            .output()
            .await
            .expect("run weft slo");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run(vec!["slo".into(), "--admin".into(), admin.clone()]).await;
    assert_eq!(code, Some(0), "{text}");
    let pay = text
        .lines()
        .find(|l| l.contains("/svc/pay") && l.contains("success-rate"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        pay.contains("95.000%") && pay.ends_with("exhausted"),
        "{text}"
    );
    assert!(text.starts_with("ROUTER"), "{text}");
    let (code, json) = run(vec![
        "slo".into(),
        "--admin".into(),
        admin.clone(),
        "-s".into(),
        "/svc/books".into(),
        "-o".into(),
        "json".into(),
    ])
    .await;
    assert_eq!(code, Some(0));
    let list: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{json}");
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["verdict"] == "ok"));
    let (code, _) = run(vec![
        "slo".into(),
        "--admin".into(),
        admin,
        "--fail-unless-ok".into(),
    ])
    .await;
    assert_eq!(code, Some(1), "pay's budget is exhausted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_embedded_with_a_strict_policy_and_the_playground_never_applies() {
    let mesh = mesh_with_traffic().await;
    let weft = &mesh.weft;
    let admin = weft.admin().to_string();
    let client = weft.admin_client();
    let page = client.get(&admin, "/").await.expect("GET /");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/dashboard/app.js"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    for asset in ["app.js", "tree.js", "overview.js", "tap.js", "style.css"] {
        let r = client
            .get(&admin, &format!("/dashboard/{asset}"))
            .await
            .expect("asset");
        assert_eq!(r.status, 200, "{asset}");
    }
    // A dtab that does not parse names its line and column.
    let r = client
        .get(&admin, "/delegator.json?router=outbound&path=/svc/books&base=/svc%20=%3E%20/%23/fs;%0A/x%20=%3E")
        .await
        .expect("delegator");
    assert_eq!(r.status, 400);
    assert!(
        r.text().starts_with("base: line 2, column "),
        "{}",
        r.text()
    );
    // An edited dtab explains the binding under it ...
    let q =
        "/delegator.json?router=outbound&path=/svc/books&base=/svc/books%20=%3E%20/%23/fs/books-v2";
    let tree = get_json(weft, q).await;
    assert_eq!(tree["result"]["id"], "/#/fs/books-v2", "{tree:#}");
    // ... and is not applied.
    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("books");
    assert_eq!(r.upstream(), Some("books"));
    let config = get_json(weft, "/config.json").await;
    let dtab = config["routers"][0]["dtab"].as_str().expect("dtab");
    assert!(!dtab.contains("/svc/books =>"), "{dtab}");
    let r = client
        .get(&admin, "/service.json?router=none&service=/svc/x")
        .await
        .expect("service.json");
    assert_eq!(r.status, 404);
    let service = get_json(weft, "/service.json?router=outbound&service=/svc/books").await;
    assert_eq!(
        service["clients"][0]["client"], "/#/fs/books",
        "{service:#}"
    );
    let books = &service["clients"][0]["endpointRequests"][0];
    assert_eq!(books["share"], 1.0, "{service:#}");
    assert_eq!(books["accrual"], "alive", "{service:#}");
    assert_eq!(books["pending"], 0, "{service:#}");
    assert!(books["latencyEwmaSecs"].as_f64().is_some(), "{service:#}");
    assert!(service["clients"][0]["tls"].is_null());
    // Five failures in a row ejected pay's one endpoint (consecutiveFailures: 5).
    let pay = get_json(weft, "/service.json?router=outbound&service=/svc/pay").await;
    let endpoint = &pay["clients"][0]["endpointRequests"][0];
    assert_eq!(endpoint["accrual"], "ejected", "{pay:#}");
    assert!(endpoint["ejectedForSecs"].as_f64().is_some(), "{pay:#}");
    assert!(endpoint["nextProbeInSecs"].as_f64().is_some(), "{pay:#}");
}

/// Every page in headless Chromium (Debian `chromium`), driven by Python Playwright (PyPI
/// `playwright`, using the system Chromium: no browser download). Screenshots go to
/// `$CARGO_TARGET_TMPDIR/dashboard`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_drives_every_page() {
    let mesh = mesh_with_traffic().await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard/browser.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(mesh.weft.admin().to_string())
        .arg(mesh.weft.router("outbound").to_string())
        .arg(&shots)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), out)
        .await
        .expect("the browser test finishes within 5 minutes")
        .expect("python3 runs (Debian python3; PyPI playwright; Debian chromium)");
    assert!(
        out.status.success(),
        "browser test failed\n--- stdout\n{}\n--- stderr\n{}\n--- weft\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        mesh.weft.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_replaces_the_objectives() {
    let books = Upstream::ok("books").await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let with = |target: &str| {
        let objective = format!("  objectives: [{{kind: successRate, target: {target}}}]");
        config(
            &disco,
            &[router(
                "outbound",
                "/svc => /#/fs;",
                &["service:", &objective],
            )],
        )
    };
    let weft = Weft::start(bin(), &with("99.9%")).await;
    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("books");
    assert_eq!(r.status, 200);
    let slo = get_json(&weft, "/objectives.json").await;
    assert_eq!(slo[0]["config"]["target"], "99.9%", "{slo:#}");
    let path = weft.config_path();
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, with("95%")).expect("write the new config");
    std::fs::rename(&tmp, path).expect("rename it into place");
    weft.signal(Signal::Hup);
    let reloaded = eventually(Duration::from_secs(20), || async {
        let slo = get_json(&weft, "/objectives.json").await;
        (slo[0]["config"]["target"] == "95%").then_some(slo)
    })
    .await;
    assert!(reloaded.is_some(), "{}", weft.stderr());
}
