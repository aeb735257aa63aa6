//! End to end: the keep-alive race with an application's idle timeout fails no request
//! (issue 13, "Errors drive behaviour").
//!
//! The application closes a keep-alive connection exactly 1 s after its last response ended
//! unless the next request has started being read, as Node's `keepAliveTimeout` and Go's
//! `IdleTimeout` do; weft keeps idle connections for 3 s (`poolIdleTimeout`), so it reuses
//! connections the application is closing. A GET caught in the race never reached the
//! application, so weft sends it again on a fresh connection (a requeue) instead of
//! answering 502. Pollers call once every 0.9 s, 1.0 s and 1.1 s for two minutes, each with
//! its own application and weft, all at once.

mod support;

use std::time::Duration;

use support::*;
use tokio::time::{Instant, MissedTickBehavior};
use weft_test::Http1App;

/// The application's idle timeout.
const APP_IDLE: Duration = Duration::from_secs(1);
/// How long each poller runs.
const RUN: Duration = Duration::from_secs(120);

/// What one poller saw.
struct Polled {
    period: Duration,
    requests: usize,
    failures: Vec<String>,
    /// Requests the application answered.
    answered: usize,
    /// Connections the application closed for idleness, and those it closed with a request
    /// waiting unread (each one a request caught in the race).
    idle_closes: usize,
    unread_closes: usize,
    /// `weft_requeues_total`.
    requeues: f64,
}

/// Runs one application, one weft and a poller calling it every `period` for [`RUN`].
async fn poll_every(period: Duration) -> Polled {
    let app = Http1App::with_idle_timeout("books", APP_IDLE).await;
    let disco = Disco::new();
    disco.write("books", &app.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http1("outbound");

    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = Instant::now() + RUN;
    let (mut requests, mut failures) = (0, Vec::new());
    while Instant::now() < end {
        // The scenario's pacing, not a readiness wait.
        ticks.tick().await;
        requests += 1;
        match client.get("books", "/").await {
            Ok(r) if r.status == 200 && r.upstream() == Some("books") => {}
            Ok(r) => failures.push(format!(
                "request {requests}: {} {:?} {}",
                r.status,
                r.proxy_error(),
                r.text().trim()
            )),
            Err(e) => failures.push(format!("request {requests}: {e}")),
        }
    }
    let text = get_metrics(weft.admin()).await;
    Polled {
        period,
        requests,
        failures,
        answered: app.requests(),
        idle_closes: app.idle_closes(),
        unread_closes: app.unread_closes(),
        requeues: metrics::sum(&text, "weft_requeues_total", &[]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_race_with_an_apps_idle_timeout_fails_no_request() {
    let (a, b, c) = tokio::join!(
        poll_every(Duration::from_millis(900)),
        poll_every(Duration::from_millis(1000)),
        poll_every(Duration::from_millis(1100)),
    );
    let polled = [a, b, c];

    for p in &polled {
        println!(
            "every {:?}: {} requests, {} failed, {} answered by the app, {} idle closes \
             ({} with a request unread), {} requeues",
            p.period,
            p.requests,
            p.failures.len(),
            p.answered,
            p.idle_closes,
            p.unread_closes,
            p.requeues
        );
    }
    for p in &polled {
        assert!(
            p.failures.is_empty(),
            "polling every {:?}, {} of {} requests failed:\n{}",
            p.period,
            p.failures.len(),
            p.requests,
            p.failures.join("\n")
        );
        assert_eq!(
            p.answered, p.requests,
            "polling every {:?}: each request reached the app exactly once",
            p.period
        );
    }
    let races: usize = polled.iter().map(|p| p.unread_closes).sum();
    let requeues: f64 = polled.iter().map(|p| p.requeues).sum();
    assert!(
        races >= 1 && requeues >= 1.0,
        "the race never happened ({races} closes with a request unread, {requeues} requeues): \
         this run proves nothing"
    );
}
