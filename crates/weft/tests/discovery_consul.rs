//! End to end: the built `weft` routes through the `consul` namer, and traffic follows
//! instances as they are registered and deregistered, with no failed request.
//!
//! Consul itself cannot be installed where these tests run, so the agent is
//! `weft_test::consul::FakeConsul`, a Rust server that follows Consul's documented HTTP API
//! (blocking queries on `X-Consul-Index`, the JSON of `/v1/health/service`,
//! `/v1/catalog/services` and `/v1/agent/self`).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::task::JoinSet;
use weft_test::consul::{FakeConsul, Instance};

const PATIENCE: Duration = Duration::from_secs(20);

/// Asserts a response is a 200 from one of the instances.
fn assert_ok(r: &Result<TestResponse, weft_test::ClientError>, what: &str) {
    match r {
        Ok(r) if r.status == 200 && r.upstream().is_some() => {}
        Ok(r) => panic!("{what}: {} {:?} {}", r.status, r.proxy_error(), r.text()),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Clients sending GETs for `web` back to back through weft until stopped; every response
/// must be a 200 from an instance.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    workers: JoinSet<()>,
}

impl Load {
    fn start(weft: &Weft, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for w in 0..workers {
            let (client, stop, sent) = (weft.http1("outbound"), stop.clone(), sent.clone());
            set.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    assert_ok(&client.get("web", "/").await, &format!("worker {w}"));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Load {
            stop,
            sent,
            workers: set,
        }
    }

    /// Stops the workers; panics if any request failed.
    async fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(done) = self.workers.join_next().await {
            done.expect("a load worker saw a failed request");
        }
        self.sent.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_consul_registrations_without_failed_requests() {
    let consul = FakeConsul::start().await;
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    consul.register(Instance::new("web", "web-a", a.addr()));
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: consul, prefix: /#/consul, host: 127.0.0.1, port: {}}}\n\
         routers:\n{}",
        consul.port(),
        router("outbound", "/svc => /#/consul/.local;", &[])
    );
    let weft = Weft::start(bin(), &config).await;
    let client = weft.http1("outbound");

    let first = client.get("web", "/").await;
    assert_ok(&first, "first request");
    assert_eq!(first.as_ref().ok().and_then(|r| r.upstream()), Some("a"));

    let load = Load::start(&weft, 2);
    consul.register(Instance::new("web", "web-b", b.addr()));
    let b_served = eventually(PATIENCE, || async { (b.requests() > 0).then_some(()) }).await;
    assert!(
        b_served.is_some(),
        "b never got traffic after it was registered"
    );

    consul.deregister("web-a");
    // Traffic follows: soon every response comes from b.
    let in_a_row = AtomicUsize::new(0);
    let moved = eventually(PATIENCE, || {
        let (client, in_a_row) = (&client, &in_a_row);
        async move {
            let r = client.get("web", "/").await;
            assert_ok(&r, "request after deregistering a");
            if r.as_ref().ok().and_then(|r| r.upstream()) == Some("b") {
                (in_a_row.fetch_add(1, Ordering::Relaxed) >= 30).then_some(())
            } else {
                in_a_row.store(0, Ordering::Relaxed);
                None
            }
        }
    })
    .await;
    assert!(
        moved.is_some(),
        "traffic still reaches a after it was deregistered"
    );
    let sent = load.stop().await;
    let a_after = a.requests();
    for i in 0..20 {
        let r = client.get("web", "/").await;
        assert_ok(&r, &format!("request {i} at the end"));
        assert_eq!(r.as_ref().ok().and_then(|r| r.upstream()), Some("b"));
    }
    assert_eq!(
        a.requests(),
        a_after,
        "a got requests after traffic moved to b"
    );
    assert!(sent > 0);
    assert!(
        consul
            .requests()
            .iter()
            .any(|r| r.starts_with("/v1/health/service/web?index=")),
        "weft watched with blocking queries: {:?}",
        consul.requests()
    );
}

/// `setHost: true`: requests reach the instance with `Host: <service>.service.<dc>.consul`
/// (the agent's datacenter for `.local`), as Linkerd 1 did, over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_host_gives_the_endpoints_the_consul_authority() {
    let consul = FakeConsul::start().await;
    let app = Upstream::start("a", Behaviour::new().echo()).await;
    consul.register(Instance::new("web", "web-a", app.addr()));
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: consul, prefix: /#/consul, host: 127.0.0.1, port: {}, setHost: true}}\n\
         routers:\n{}",
        consul.port(),
        router("outbound", "/svc => /#/consul/.local;", &[])
    );
    let weft = Weft::start(bin(), &config).await;
    for client in [weft.http1("outbound"), weft.http2("outbound")] {
        let r = client.get("web", "/").await.expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        let echo = r.echo();
        let host = echo
            .headers
            .get("host")
            .map(|v| v[0].clone())
            .or_else(|| echo.authority.clone());
        assert_eq!(
            host.as_deref(),
            Some("web.service.dc1.consul"),
            "{} {:?}",
            echo.version,
            echo.headers
        );
    }
}

/// The agent goes away while requests flow: none fails (routing continues on the last set),
/// `/namers.json` says stale and `weft check` fails naming the agent; once the agent is back
/// the namer is ok, the check passes, and registrations reach the traffic again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consul_outage_keeps_routing_and_check_names_the_agent() {
    let consul = FakeConsul::start().await;
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    consul.register(Instance::new("web", "web-a", a.addr()));
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: consul, prefix: /#/consul, host: 127.0.0.1, port: {}, \
         backoff: {{min: 100ms, max: 500ms}}}}\n\
         routers:\n{}",
        consul.port(),
        router("outbound", "/svc => /#/consul/.local;", &[])
    );
    let weft = Weft::start(bin(), &config).await;
    assert_ok(
        &weft.http1("outbound").get("web", "/").await,
        "first request",
    );
    namers::namer_in_state(&weft, "/#/consul", "ok", PATIENCE).await;
    namers::assert_check_passes(&weft, "/#/consul").await;

    let load = Load::start(&weft, 2);
    consul.stop();
    let stale = namers::namer_in_state(&weft, "/#/consul", "stale", PATIENCE).await;
    assert!(stale["errors"].as_u64() >= Some(1), "{stale:#}");
    let backend = format!("http://127.0.0.1:{}", consul.port());
    namers::assert_check_names_backend(&weft, "/#/consul", "consul", &backend).await;
    let during = a.requests();
    let flowing = eventually(PATIENCE, || async {
        (a.requests() >= during + 20).then_some(())
    })
    .await;
    assert!(flowing.is_some(), "traffic stopped during the outage");

    consul.restart().await;
    namers::namer_in_state(&weft, "/#/consul", "ok", PATIENCE).await;
    namers::assert_check_passes(&weft, "/#/consul").await;
    // Changes flow again.
    consul.register(Instance::new("web", "web-b", b.addr()));
    let b_served = eventually(PATIENCE, || async { (b.requests() > 0).then_some(()) }).await;
    assert!(
        b_served.is_some(),
        "b got no traffic after the agent came back"
    );
    assert!(load.stop().await > 0);
}
