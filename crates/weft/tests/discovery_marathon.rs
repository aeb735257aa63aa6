//! End to end: the `marathon` namer routes to an app's running tasks and follows them as they
//! come and go, with no failed request. Marathon cannot be installed here, so the backend is
//! `weft_test::marathon::FakeMarathon`, which follows Marathon's documented REST API
//! (`/v2/apps?embed=apps.tasks` and the `/v2/events` server-sent event stream).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::task::JoinSet;
use weft_test::marathon::{FakeMarathon, FakeTask};

/// `workers` clients sending `GET /` with Host `web` back to back until stopped; each
/// request must be a 200 from an upstream.
struct Load {
    stop: Arc<AtomicBool>,
    workers: JoinSet<usize>,
}

impl Load {
    fn start(weft: &Weft, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for w in 0..workers {
            let (client, stop) = (weft.http1("outbound"), stop.clone());
            set.spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    match client.get("web", "/").await {
                        Ok(r) if r.status == 200 && r.upstream().is_some() => sent += 1,
                        Ok(r) => panic!(
                            "worker {w}: {} {:?} {}",
                            r.status,
                            r.proxy_error(),
                            r.text()
                        ),
                        Err(e) => panic!("worker {w}: {e}"),
                    }
                }
                sent
            });
        }
        Load { stop, workers: set }
    }

    /// Stops the workers; panics if any request failed. Returns the requests sent.
    async fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        while let Some(done) = self.workers.join_next().await {
            sent += done.expect("a load worker failed");
        }
        sent
    }
}

/// Polls until `n` consecutive requests are answered by `upstream` alone.
async fn only(weft: &Weft, upstream: &str, n: usize) -> bool {
    let client = weft.http1("outbound");
    eventually(Duration::from_secs(20), || async {
        for _ in 0..n {
            let r = client.get("web", "/").await.ok()?;
            (r.status == 200 && r.upstream() == Some(upstream)).then_some(())?;
        }
        Some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_marathon_tasks_with_no_failed_request() {
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    let marathon = FakeMarathon::start().await;
    marathon.set_app("/web", false, vec![FakeTask::at("web.a", a.addr())]);
    // A full read only every minute: task changes reach weft through the event stream.
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: marathon, prefix: /#/marathon, host: 127.0.0.1, port: {}, ttl: 60s}}\n\
         routers:\n{}",
        marathon.port(),
        router("outbound", "/svc => /#/marathon;", &[])
    );
    let weft = Weft::start(bin(), &config).await;
    assert!(only(&weft, "a", 10).await, "app /web routes to its task a");

    let load = Load::start(&weft, 4);
    marathon.set_app(
        "/web",
        false,
        vec![
            FakeTask::at("web.a", a.addr()),
            FakeTask::at("web.b", b.addr()),
        ],
    );
    let added = eventually(Duration::from_secs(20), || async {
        (b.requests() > 0).then_some(())
    })
    .await;
    assert!(added.is_some(), "traffic reaches the added task b");
    marathon.set_app("/web", false, vec![FakeTask::at("web.b", b.addr())]);
    assert!(
        only(&weft, "b", 20).await,
        "traffic leaves the removed task a"
    );
    let sent = load.stop().await;
    assert!(sent > 0, "the load sent requests");
    assert!(
        marathon.event_connections() >= 1,
        "weft follows the event stream"
    );

    // The namer's health is on the admin server.
    let namer = namers::namer_json(&weft, "/#/marathon").await;
    assert_eq!(
        (namer["kind"].as_str(), namer["state"].as_str()),
        (Some("marathon"), Some("ok")),
        "{namer:#}"
    );
    assert_eq!(
        namer["backend"].as_str(),
        Some(format!("http://127.0.0.1:{}", marathon.port()).as_str())
    );

    // Marathon goes away: the namer turns stale and weft keeps routing to the last good task.
    marathon.stop();
    let stale = eventually(Duration::from_secs(20), || async {
        let n = namers::namer_json(&weft, "/#/marathon").await;
        (n["state"] == "stale").then_some(n)
    })
    .await
    .expect("the namer turns stale without waiting for the ttl");
    assert!(stale["errors"].as_u64() >= Some(1), "{stale:#}");
    for _ in 0..10 {
        let r = weft.http1("outbound").get("web", "/").await.unwrap();
        assert_eq!((r.status.as_u16(), r.upstream()), (200, Some("b")));
    }
    let backend = format!("http://127.0.0.1:{}", marathon.port());
    namers::assert_check_names_backend(&weft, "/#/marathon", "marathon", &backend).await;
    marathon.restart().await;
    let back = eventually(Duration::from_secs(20), || async {
        (namers::namer_json(&weft, "/#/marathon").await["state"] == "ok").then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "the namer is ok again once Marathon is back"
    );
    namers::assert_check_passes(&weft, "/#/marathon").await;

    // The app goes away: the name is Neg, and weft answers with its own error.
    marathon.remove_app("/web");
    let gone = eventually(Duration::from_secs(20), || async {
        let r = weft.http1("outbound").get("web", "/").await.ok()?;
        r.proxy_error().is_some().then_some(r)
    })
    .await
    .expect("a removed app stops routing");
    assert!(
        gone.status.is_client_error() || gone.status.is_server_error(),
        "{}",
        gone.status
    );
}
