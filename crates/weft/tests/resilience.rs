//! End to end: resilience scenarios (issue 3) with the built binary and real upstreams: idle
//! keep-alive races, rolling restarts, truncated and empty responses, a flaky instance,
//! retry budgets, and which POSTs may be sent twice.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::task::JoinSet;
use tokio::time::Instant;
use weft_test::scripted::{Script, ScriptedUpstream, SCRIPTED_BODY_LEN};

/// The bound client of the `books` service in these configs.
const BOOKS_CLIENT: &str = "/#/fs/books";
/// The logical name of the `books` service.
const BOOKS: &str = "/svc/books";

/// One router `outbound` over the `fs` namer with these extra keys (see `support::router`).
fn outbound_with(disco: &Disco, extra: &[&str]) -> String {
    config(disco, &[router("outbound", "/svc => /#/fs;", extra)])
}

/// The sum of the samples of `name` with `labels`, read from weft's `/metrics` now.
async fn metric(weft: &Weft, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics::sum(&get_metrics(weft.admin()).await, name, labels)
}

/// Polls `/metrics` until `name{labels}` satisfies `ok` (10 s at most); returns the last
/// value and whether it did.
async fn wait_metric(
    weft: &Weft,
    name: &str,
    labels: &[(&str, &str)],
    ok: impl Fn(f64) -> bool,
) -> (f64, bool) {
    let last = Arc::new(Mutex::new(0.0));
    let got = eventually(Duration::from_secs(10), || {
        let last = last.clone();
        let ok = &ok;
        async move {
            let v = metric(weft, name, labels).await;
            *last.lock().unwrap() = v;
            ok(v).then_some(())
        }
    })
    .await;
    let v = *last.lock().unwrap();
    (v, got.is_some())
}

/// The request, retry, requeue, accrual and response lines of weft's `/metrics`, for failure
/// messages.
async fn resilience_metrics(weft: &Weft) -> String {
    get_metrics(weft.admin())
        .await
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && [
                    "weft_endpoint_requests_total",
                    "weft_requeues_total",
                    "weft_retries_total",
                    "weft_budget_exhausted_total",
                    "weft_ejections_total",
                    "weft_endpoints_ejected",
                    "weft_responses_total",
                ]
                .iter()
                .any(|m| l.starts_with(m))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `n` lines of weft's stderr, for failure messages.
fn stderr_tail(weft: &Weft, n: usize) -> String {
    let all = weft.stderr();
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A one-line description of an outcome that is not a 200 from an upstream.
fn describe(r: &Result<TestResponse, weft_test::ClientError>) -> String {
    match r {
        Ok(r) => describe_rsp(r),
        Err(e) => format!("client error: {e}"),
    }
}

/// A one-line description of a response.
fn describe_rsp(r: &TestResponse) -> String {
    format!(
        "{} l5d-proxy-error={:?} x-upstream={:?} body {:?}",
        r.status,
        r.proxy_error(),
        r.upstream(),
        r.text().chars().take(120).collect::<String>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_race_with_upstream_idle_close_fails_no_request() {
    // The app closes keep-alive connections idle for 1 s (checked every 250 ms, so a
    // connection goes between 1 s and 1.25 s of idleness); weft pools connections for 3 s by
    // default, so it keeps reusing connections the app is about to close. Requests come about
    // once a second, at intervals that sweep across the app's closing window.
    let books = Upstream::start("books", Behaviour::new().idle_close(Duration::from_secs(1))).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http1("outbound");

    const REQUESTS: usize = 64;
    let intervals_ms = [900u64, 950, 1000, 1050, 1100, 1150, 1200, 1250];
    let mut failures = Vec::new();
    for i in 0..REQUESTS {
        let r = client.get("books", "/").await;
        match &r {
            Ok(rsp) if rsp.status == 200 && rsp.upstream() == Some("books") => {}
            _ => failures.push(format!("request {i}: {}", describe(&r))),
        }
        // The scenario's pacing, not a readiness wait.
        tokio::time::sleep(Duration::from_millis(intervals_ms[i % intervals_ms.len()])).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} requests failed while the upstream closed idle connections:\n{}\n\
         --- weft stderr (tail) ---\n{}",
        failures.len(),
        failures.join("\n"),
        stderr_tail(&weft, 40)
    );
    assert_eq!(
        books.requests(),
        REQUESTS,
        "every request reached the app once"
    );
    // The race was really run: the app closed connections under weft many times.
    assert!(
        books.connections() >= REQUESTS / 4,
        "only {} upstream connections for {REQUESTS} requests: the idle close did not happen",
        books.connections()
    );
}

/// Results of a load loop.
#[derive(Default)]
struct Tally {
    ok: usize,
    failures: Vec<String>,
}

/// Starts `workers` loops of `GET books /` (every other one over HTTP/2) until `stop`.
fn steady_load(
    weft: &Weft,
    workers: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let client = if w % 2 == 0 {
            weft.http1("outbound")
        } else {
            weft.http2("outbound")
        };
        let (stop, tally) = (stop.clone(), tally.clone());
        tasks.spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let r = client.get("books", "/").await;
                let ok = matches!(&r, Ok(rsp) if rsp.status == 200
                    && rsp.body.len() == SCRIPTED_BODY_LEN);
                {
                    let mut t = tally.lock().unwrap();
                    if ok {
                        t.ok += 1;
                    } else {
                        t.failures
                            .push(format!("worker {w} request {i}: {}", describe(&r)));
                    }
                }
                i += 1;
                // Steady, not flat out: about 100 requests per second per worker.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_instances_fails_no_idempotent_request() {
    let instances = [
        ScriptedUpstream::start("books-0", Script::Ok).await,
        ScriptedUpstream::start("books-1", Script::Ok).await,
        ScriptedUpstream::start("books-2", Script::Ok).await,
    ];
    let lines = |skip: Option<usize>| -> String {
        instances
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, u)| u.fs_line())
            .collect()
    };
    let disco = Disco::new();
    disco.write("books", &lines(None));
    let weft = start_fs_weft(&disco).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut load = steady_load(&weft, 4, stop.clone(), tally.clone());
    let endpoints = [("client", BOOKS_CLIENT)];

    let (n, ok) = wait_metric(&weft, "weft_endpoints", &endpoints, |v| v == 3.0).await;
    assert!(ok, "weft never saw 3 endpoints (last {n})");
    for (i, up) in instances.iter().enumerate() {
        // Out of discovery first, and wait until weft has applied it.
        disco.write("books", &lines(Some(i)));
        let (n, ok) = wait_metric(&weft, "weft_endpoints", &endpoints, |v| v == 2.0).await;
        assert!(ok, "weft did not drop {} (endpoints {n})", up.name());
        // Then a graceful stop (requests in progress finish, idle connections close) and a
        // start on the same port, as a process manager restarts an instance.
        up.stop(Duration::from_secs(5)).await;
        up.restart().await;
        let before = up.requests();
        disco.write("books", &lines(None));
        let (n, ok) = wait_metric(&weft, "weft_endpoints", &endpoints, |v| v == 3.0).await;
        assert!(ok, "weft did not take {} back (endpoints {n})", up.name());
        let back = eventually(Duration::from_secs(10), || async {
            (up.requests() > before + 50).then_some(())
        })
        .await;
        assert!(
            back.is_some(),
            "{} got fewer than 50 requests within 10s after its restart",
            up.name()
        );
    }
    stop.store(true, Ordering::SeqCst);
    while let Some(r) = load.join_next().await {
        r.expect("load worker");
    }

    let tally = tally.lock().unwrap();
    assert!(
        tally.failures.is_empty(),
        "{} of {} requests failed during the rolling restart:\n{}\n--- weft stderr (tail) ---\n{}",
        tally.failures.len(),
        tally.ok + tally.failures.len(),
        tally.failures.join("\n"),
        stderr_tail(&weft, 40)
    );
    assert!(
        tally.ok >= 200,
        "too little load to judge: {} requests",
        tally.ok
    );
}

/// Runs curl against weft's `outbound` router for Host `books`; returns (exit code, http
/// code, bytes downloaded, stderr).
fn curl_books(router: std::net::SocketAddr, http2: bool) -> (Option<i32>, String, u64, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{size_download}"])
        .arg("--connect-to")
        .arg(format!("books:80:{}:{}", router.ip(), router.port()));
    if http2 {
        cmd.arg("--http2-prior-knowledge");
    }
    let out = cmd
        .arg("http://books/")
        .output()
        .expect("run curl (is it installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = stdout.split_whitespace();
    let code = parts.next().unwrap_or_default().to_owned();
    let size = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (
        out.status.code(),
        code,
        size,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_reaches_clients_as_incomplete_and_counts_as_failure() {
    // Headers announcing 32 KiB and the first 16 KiB, flushed; 300 ms later a TCP reset
    // (HTTP/1) or RST_STREAM (HTTP/2). The head and first bytes go downstream long before.
    let books = ScriptedUpstream::start("books", Script::HalfThenReset).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;
    let router = weft.router("outbound");
    let half = (SCRIPTED_BODY_LEN / 2) as u64;

    for http2 in [false, true] {
        let proto = if http2 { "HTTP/2" } else { "HTTP/1.1" };
        let (exit, code, size, err) = curl_books(router, http2);
        assert_eq!(
            code, "200",
            "{proto}: the head should have gone downstream before the reset (curl: {err})"
        );
        assert!(
            exit != Some(0),
            "{proto}: curl took a cut-off body ({size} of {SCRIPTED_BODY_LEN} bytes) as complete"
        );
        assert!(
            (1..SCRIPTED_BODY_LEN as u64).contains(&size),
            "{proto}: curl got {size} bytes; expected part of the body (exit {exit:?}: {err})"
        );
        assert!(
            size >= half,
            "{proto}: the first half did not arrive: {size}"
        );
    }

    // An HTTP/2 client of our own sees the stream reset, not an end of stream.
    let r = weft.http2("outbound").get("books", "/").await;
    let err = match r {
        Err(e) => e.to_string(),
        Ok(r) => panic!(
            "HTTP/2 client got a cut-off body as complete: {} {} bytes",
            r.status,
            r.body.len()
        ),
    };
    assert!(
        err.contains("stream error") || err.contains("reset"),
        "the HTTP/2 failure should be a stream reset: {err}"
    );
    assert_eq!(
        books.requests(),
        3,
        "a failure after bytes went out is never retried"
    );

    let failed = [
        ("service", BOOKS),
        ("status_code", "200"),
        ("classification", "failure"),
        ("error", "upstream-reset"),
    ];
    let (n, ok) = wait_metric(&weft, "weft_responses_total", &failed, |v| v >= 3.0).await;
    assert!(
        ok,
        "weft_responses_total{{classification=\"failure\",error=\"upstream-reset\"}} is {n}, \
         want 3\n{}",
        get_metrics(weft.admin()).await
    );
    let success = metric(
        &weft,
        "weft_responses_total",
        &[("service", BOOKS), ("classification", "success")],
    )
    .await;
    assert_eq!(
        success, 0.0,
        "a truncated response was counted as a success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_200_from_upstream_becomes_502_upstream_reset() {
    let books = ScriptedUpstream::start("books", Script::EmptyOk).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;

    for client in [weft.http1("outbound"), weft.http2("outbound")] {
        let r = client.get("books", "/").await.expect("request");
        assert_proxy_error(&r, 502, "upstream-reset");
        assert!(
            r.header("l5d-retryable").is_none(),
            "the request reached the app: it must not be marked retryable"
        );
    }
    assert_eq!(books.requests(), 2, "not retried by the default classifier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_200_is_retried_on_a_healthy_instance_with_retryable_classifier() {
    let broken = ScriptedUpstream::start("broken", Script::EmptyOk).await;
    let healthy = ScriptedUpstream::start("healthy", Script::Ok).await;
    let disco = Disco::new();
    disco.write(
        "books",
        &format!("{}{}", broken.fs_line(), healthy.fs_line()),
    );
    let weft = Weft::start(
        bin(),
        &outbound_with(&disco, &["service: {responseClassifier: retryableRead5XX}"]),
    )
    .await;

    const REQUESTS: usize = 30;
    let mut failures = Vec::new();
    for (i, client) in [weft.http1("outbound"), weft.http2("outbound")]
        .iter()
        .cycle()
        .take(REQUESTS)
        .enumerate()
    {
        let r = client.get("books", "/").await;
        match &r {
            Ok(rsp)
                if rsp.status == 200
                    && rsp.upstream() == Some("healthy")
                    && rsp.body == *healthy.body() => {}
            _ => failures.push(format!("request {i}: {}", describe(&r))),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} GETs did not get the whole body from the healthy instance \
         (broken got {} requests):\n{}\n--- weft stderr (tail) ---\n{}",
        failures.len(),
        broken.requests(),
        failures.join("\n"),
        stderr_tail(&weft, 40)
    );
    assert!(
        broken.requests() >= 1,
        "the broken instance was never tried"
    );
    let retries = metric(&weft, "weft_retries_total", &[("service", BOOKS)]).await;
    assert!(
        retries >= broken.requests() as f64,
        "every empty 200 should have been retried: {retries} retries, {} broken",
        broken.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_failing_half_its_requests_is_retried_and_ejected() {
    let good = [
        ScriptedUpstream::start("good-0", Script::Ok).await,
        ScriptedUpstream::start("good-1", Script::Ok).await,
    ];
    let bad = ScriptedUpstream::start("bad", Script::FailEveryOther).await;
    let disco = Disco::new();
    disco.write(
        "books",
        &format!(
            "{}{}{}",
            good[0].fs_line(),
            good[1].fs_line(),
            bad.fs_line()
        ),
    );
    let weft = Weft::start(
        bin(),
        &outbound_with(
            &disco,
            &[
                "service: {responseClassifier: retryableRead5XX}",
                "client: {failureAccrual: {kind: successRate, successRate: 0.9, requests: 20, \
                 backoff: {min: 30s, max: 60s}}}",
            ],
        ),
    )
    .await;

    const WORKERS: usize = 8;
    const PER_WORKER: usize = 150;
    let mut tasks = JoinSet::new();
    for w in 0..WORKERS {
        let client = weft.http1("outbound");
        tasks.spawn(async move {
            let mut failures = Vec::new();
            for i in 0..PER_WORKER {
                let r = client.get("books", "/").await;
                if !matches!(&r, Ok(rsp) if rsp.status == 200
                    && rsp.body.len() == SCRIPTED_BODY_LEN)
                {
                    failures.push(format!("worker {w} request {i}: {}", describe(&r)));
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(f) = tasks.join_next().await {
        failures.extend(f.expect("worker"));
    }
    let total = WORKERS * PER_WORKER;
    let succeeded = total - failures.len();
    assert!(
        succeeded as f64 >= 0.999 * total as f64,
        "{succeeded} of {total} requests succeeded (< 99.9%):\n{}\n--- weft stderr (tail) ---\n{}",
        failures.join("\n"),
        stderr_tail(&weft, 40)
    );
    assert!(bad.requests() > 0, "the bad instance got no traffic");

    let client = [("client", BOOKS_CLIENT)];
    let ejections = metric(&weft, "weft_ejections_total", &client).await;
    assert!(
        ejections >= 1.0,
        "failure accrual never ejected the instance failing half its requests \
         ({} requests to it)\n{}",
        bad.requests(),
        get_metrics(weft.admin()).await
    );
    let retries = metric(&weft, "weft_retries_total", &[("service", BOOKS)]).await;
    assert!(retries >= 1.0, "the 500s were not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_when_every_instance_fails_stay_within_the_budget() {
    // tower's TpsBudget, which weft uses: each request deposits 1 token; a retry withdraws
    // floor(1 / percentCanRetry) tokens (5 for 0.2) if the balance allows; the balance starts
    // with a reserve of minRetriesPerSec * ttl(s) * 5 tokens, and every deposit and withdrawal
    // expires after `ttl`. So within one ttl window:
    //     retries <= floor((requests + minRetriesPerSec * ttl * 5) / 5)
    //             =  requests * percentCanRetry + minRetriesPerSec * ttl.
    // The test runs well inside one 30 s window, so nothing expires and the bound is exact.
    const REQUESTS: usize = 300;
    const PERCENT: f64 = 0.2;
    const MIN_PER_SEC: usize = 2;
    const TTL_SECS: usize = 30;
    let a = Upstream::start("a", Behaviour::new().status(500)).await;
    let b = Upstream::start("b", Behaviour::new().status(500)).await;
    let disco = Disco::new();
    disco.write("books", &format!("{}{}", a.fs_line(), b.fs_line()));
    let weft = Weft::start(
        bin(),
        &outbound_with(
            &disco,
            &[
                &format!(
                    "service: {{responseClassifier: retryableRead5XX, retries: {{budget: \
                     {{percentCanRetry: {PERCENT}, minRetriesPerSec: {MIN_PER_SEC}, ttl: \
                     {TTL_SECS}s}}, backoff: {{kind: constant, delay: 0ms}}}}}}"
                ),
                // Keep both instances in the balancer: this test is about the budget.
                "client: {failureAccrual: {kind: none}}",
            ],
        ),
    )
    .await;

    let start = Instant::now();
    let client = weft.http1("outbound");
    for i in 0..REQUESTS {
        let r = client.get("books", "/").await.expect("request");
        assert!(
            r.status == 500 && r.upstream().is_some(),
            "request {i}: the last failed response should go downstream as is: {}",
            describe_rsp(&r)
        );
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(TTL_SECS as u64 / 2),
        "the test must run within one budget window; took {elapsed:?}"
    );

    let sent = a.requests() + b.requests();
    let retries = sent - REQUESTS;
    let budget = (REQUESTS as f64 * PERCENT) as usize + MIN_PER_SEC * TTL_SECS;
    assert!(
        retries <= budget,
        "{retries} retries for {REQUESTS} requests exceed the budget of {budget} \
         ({PERCENT} of requests + {MIN_PER_SEC}/s * {TTL_SECS}s)"
    );
    // Every request failed and each may be tried 5 times, so retries stop only when the
    // budget does: it must have been used up, not merely respected.
    assert!(
        retries + 2 >= budget,
        "only {retries} retries of a budget of {budget}: retries are not being made"
    );
    let counted = metric(&weft, "weft_retries_total", &[("service", BOOKS)]).await;
    assert_eq!(
        counted as usize, retries,
        "weft_retries_total vs requests seen upstream"
    );
    let exhausted = metric(
        &weft,
        "weft_budget_exhausted_total",
        &[("service", BOOKS), ("kind", "retry")],
    )
    .await;
    assert!(
        exhausted >= 1.0,
        "weft_budget_exhausted_total{{kind=\"retry\"}} not counted"
    );
}

/// A POST to Host `books` with `body`.
async fn post(client: &Client, body: &str) -> Result<TestResponse, weft_test::ClientError> {
    let req = Client::request("books", "/charge")
        .method("POST")
        .header("content-type", "text/plain")
        .body(TestBody::from_bytes(body.to_owned()))
        .expect("request");
    client.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_that_got_a_500_is_not_retried() {
    let a = Upstream::start("a", Behaviour::new().status(500).echo()).await;
    let b = Upstream::start("b", Behaviour::new().status(500).echo()).await;
    let disco = Disco::new();
    disco.write("books", &format!("{}{}", a.fs_line(), b.fs_line()));
    let no_accrual = "client: {failureAccrual: {kind: none}}";
    // The default classifier, and the ones that retry reads and idempotent methods: a POST
    // is neither, so none may send it twice.
    let routers = [
        router("default", "/svc => /#/fs;", &[no_accrual]),
        router(
            "reads",
            "/svc => /#/fs;",
            &[
                no_accrual,
                "service: {responseClassifier: retryableRead5XX}",
            ],
        ),
        router(
            "idempotent",
            "/svc => /#/fs;",
            &[
                no_accrual,
                "service: {responseClassifier: retryableIdempotent5XX}",
            ],
        ),
    ];
    let weft = Weft::start(bin(), &config(&disco, &routers)).await;

    let mut sent = 0;
    for label in ["default", "reads", "idempotent"] {
        for http2 in [false, true] {
            let client = if http2 {
                weft.http2(label)
            } else {
                weft.http1(label)
            };
            let body = format!("charge card 42 via {label} h2={http2}");
            let r = post(&client, &body).await.expect("request");
            sent += 1;
            assert_eq!(r.status, 500, "{label}: {}", describe_rsp(&r));
            assert_eq!(r.echo().body, body);
            assert_eq!(
                a.requests() + b.requests(),
                sent,
                "router {label} (h2 {http2}): a POST that got a 500 was sent again"
            );
        }
    }
    let retries = metric(&weft, "weft_retries_total", &[]).await;
    assert_eq!(retries, 0.0, "weft_retries_total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_whose_connection_failed_before_it_was_written_is_requeued() {
    let live = Upstream::start("live", Behaviour::new().echo()).await;
    let dead = closed_port();
    let disco = Disco::new();
    disco.write("books", &format!("127.0.0.1 {dead}\n{}", live.fs_line()));
    // Failure accrual off, so the dead endpoint stays in the balancer and keeps being picked.
    let weft = Weft::start(
        bin(),
        &outbound_with(&disco, &["client: {failureAccrual: {kind: none}}"]),
    )
    .await;

    const REQUESTS: usize = 40;
    for (i, client) in [weft.http1("outbound"), weft.http2("outbound")]
        .iter()
        .cycle()
        .take(REQUESTS)
        .enumerate()
    {
        let body = format!("order {i}");
        let r = post(client, &body).await;
        match &r {
            Ok(rsp) if rsp.status == 200 => assert_eq!(rsp.echo().body, body),
            _ => panic!(
                "POST {i} failed: {}\n--- weft metrics ---\n{}\n--- weft stderr (tail) ---\n{}",
                describe(&r),
                resilience_metrics(&weft).await,
                stderr_tail(&weft, 40)
            ),
        }
    }
    assert_eq!(
        live.requests(),
        REQUESTS,
        "each POST reached the app exactly once"
    );
    let to_dead = metric(
        &weft,
        "weft_endpoint_requests_total",
        &[("endpoint", &format!("127.0.0.1:{dead}"))],
    )
    .await;
    let requeues = metric(&weft, "weft_requeues_total", &[("service", BOOKS)]).await;
    assert!(
        to_dead >= 1.0,
        "the closed port was never picked in {REQUESTS} requests"
    );
    assert_eq!(
        requeues, to_dead,
        "every attempt on the closed port should have been requeued"
    );
}
