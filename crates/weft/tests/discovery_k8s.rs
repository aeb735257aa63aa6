//! End to end: the `k8s` namer in the built binary. weft routes `/svc => /#/k8s/default/http`
//! over EndpointSlices served by [`FakeKube`], a fake Kubernetes API server written in Rust
//! (the real one cannot be installed here; the fake follows the documented list/watch
//! semantics and answers EndpointSlices shaped like the API reference's). Requests keep
//! flowing while a second endpoint is added and the first removed: none fails, and the
//! traffic follows the endpoints.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::task::JoinSet;
use weft_test::fake_k8s::{endpoint_slice, FakeKube, Value};

/// Generous bound on each wait; the test polls, it never times anything.
const WAIT: Duration = Duration::from_secs(30);

/// A slice of service `web` on port name `http` with one ready endpoint: the upstream.
fn slice(name: &str, upstream: &Upstream) -> Value {
    endpoint_slice(
        name,
        "web",
        "http",
        upstream.port(),
        &[("127.0.0.1", true, false, "node-1")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_endpoint_slices_without_failures() {
    let first = Upstream::ok("first").await;
    let second = Upstream::ok("second").await;
    let fake = FakeKube::start().await;
    fake.apply("default", slice("web-1", &first));

    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: k8s, prefix: /#/k8s, url: '{}'}}\n\
         routers:\n{}",
        fake.url(),
        router("outbound", "/svc => /#/k8s/default/http;", &[])
    );
    let weft = Weft::start(bin(), &config).await;
    let client = weft.http1("outbound");
    let first_ok = eventually(WAIT, || async {
        match client.get("web", "/").await {
            Ok(r) if r.status == 200 => Some(r.upstream().map(str::to_owned)),
            _ => None,
        }
    })
    .await;
    assert_eq!(
        first_ok,
        Some(Some("first".to_owned())),
        "weft never routed to the slice"
    );

    // Load: every request must succeed, whatever the namer is doing.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for w in 0..2 {
        let (client, stop, sent) = (weft.http1("outbound"), stop.clone(), sent.clone());
        workers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get("web", "/").await {
                    Ok(r) if r.status == 200 && r.upstream().is_some() => {}
                    Ok(r) => panic!(
                        "worker {w}: {} {:?} {}",
                        r.status,
                        r.proxy_error(),
                        r.text()
                    ),
                    Err(e) => panic!("worker {w}: {e}"),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    // A second endpoint (its own slice, same port name, its own port number) gets traffic.
    fake.apply("default", slice("web-2", &second));
    let reached = eventually(WAIT, || async { (second.requests() >= 20).then_some(()) }).await;
    assert!(reached.is_some(), "the added endpoint got no traffic");

    // The first goes away: all traffic moves to the second.
    fake.delete("default", "web-1");
    let moved = eventually(WAIT, || async {
        let before = (first.requests(), second.requests());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = (first.requests(), second.requests());
        (after.0 == before.0 && after.1 >= before.1 + 20).then_some(())
    })
    .await;
    assert!(
        moved.is_some(),
        "traffic still reaches the removed endpoint"
    );

    stop.store(true, Ordering::Relaxed);
    while let Some(done) = workers.join_next().await {
        done.expect("a request failed while the endpoints changed");
    }
    assert!(sent.load(Ordering::Relaxed) > 40);
}

/// The API server goes away while requests flow: none fails (routing continues on the last
/// set), `/namers.json` says stale and `weft check` fails naming the API server; once it is
/// back the namer is ok (with no change to the service: a resumed watch is enough), the check
/// passes, and changes reach the traffic again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_outage_keeps_routing_and_check_names_it() {
    let first = Upstream::ok("first").await;
    let second = Upstream::ok("second").await;
    let fake = FakeKube::start().await;
    fake.apply("default", slice("web-1", &first));
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: k8s, prefix: /#/k8s, url: '{}', backoff: {{min: 100ms, max: 500ms}}}}\n\
         routers:\n{}",
        fake.url(),
        router("outbound", "/svc => /#/k8s/default/http;", &[])
    );
    let weft = Weft::start(bin(), &config).await;
    let client = weft.http1("outbound");
    let routed = eventually(WAIT, || async {
        let r = client.get("web", "/").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(routed.is_some(), "weft never routed to the slice");
    namers::namer_in_state(&weft, "/#/k8s", "ok", WAIT).await;
    namers::assert_check_passes(&weft, "/#/k8s").await;

    fake.stop();
    let stale = namers::namer_in_state(&weft, "/#/k8s", "stale", WAIT).await;
    assert!(stale["errors"].as_u64() >= Some(1), "{stale:#}");
    namers::assert_check_names_backend(&weft, "/#/k8s", "k8s", &fake.url()).await;
    for i in 0..20 {
        let r = client
            .get("web", "/")
            .await
            .expect("request during the outage");
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, Some("first")),
            "request {i} during the outage"
        );
    }

    fake.restart().await;
    namers::namer_in_state(&weft, "/#/k8s", "ok", WAIT).await;
    namers::assert_check_passes(&weft, "/#/k8s").await;
    fake.apply("default", slice("web-2", &second));
    let reached = eventually(WAIT, || async {
        client.get("web", "/").await.ok()?;
        (second.requests() > 0).then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "changes did not flow after the API server came back"
    );
}
