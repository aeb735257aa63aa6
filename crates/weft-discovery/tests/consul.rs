//! The consul namer against [`FakeConsul`], a Consul agent's HTTP API written in Rust that
//! follows Consul's documented API (blocking queries on `X-Consul-Index`, the JSON shapes of
//! `/v1/health/service`, `/v1/catalog/services` and `/v1/agent/self`), because Consul itself
//! cannot be installed where these tests run. Real sockets on 127.0.0.1; every wait is a
//! poll with a generous timeout, never a timing assertion.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use weft_config::{ConsulConfig, ConsulConsistency, DiscoveryBackoff, TagWeight};
use weft_discovery::consul::ConsulNamer;
use weft_naming::{Namer, NamerSnapshot, NamerState, Path, Resolution};
use weft_test::consul::{ConsulFault, FakeConsul, Instance};

/// How long any expected change may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

fn p(s: &str) -> Path {
    Path::read(s).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A config for `consul` with a long `wait`: any change seen within [`PATIENCE`] came
/// through a blocking query's early answer, not a timeout.
fn config(consul: &FakeConsul) -> ConsulConfig {
    ConsulConfig {
        host: "127.0.0.1".into(),
        port: consul.port(),
        include_tag: false,
        health_statuses: vec!["passing".into()],
        prefer_service_address: true,
        set_host: false,
        consul_domain: "consul".into(),
        consistency_mode: ConsulConsistency::Default,
        token: None,
        token_file: None,
        tls: None,
        weights: Vec::new(),
        wait: Duration::from_secs(60),
        backoff: DiscoveryBackoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
    }
}

fn namer(config: &ConsulConfig) -> ConsulNamer {
    ConsulNamer::new(config, &p("/#/consul")).unwrap()
}

fn snapshot(n: &ConsulNamer) -> NamerSnapshot {
    n.status()
        .expect("the consul namer has a status")
        .snapshot()
}

/// Waits until the resolution satisfies `pred`, then returns it.
async fn until(
    rx: &mut watch::Receiver<Resolution>,
    what: &str,
    pred: impl FnMut(&Resolution) -> bool,
) -> Resolution {
    let got = match tokio::time::timeout(PATIENCE, rx.wait_for(pred)).await {
        Ok(Ok(r)) => Some(r.clone()),
        Ok(Err(_)) => panic!("{what}: the namer dropped the name"),
        Err(_) => None,
    };
    got.unwrap_or_else(|| panic!("{what}: still {:?} after {PATIENCE:?}", *rx.borrow()))
}

/// Waits until the name is bound to exactly `ports` (sorted).
async fn until_ports(rx: &mut watch::Receiver<Resolution>, ports: &[u16]) -> Resolution {
    let want: Vec<SocketAddr> = ports.iter().map(|p| addr(*p)).collect();
    until(rx, &format!("bound to {ports:?}"), |r| {
        matches!(r, Resolution::Bound(b) if b.addrs.iter().map(|a| a.addr).collect::<Vec<_>>() == want)
    })
    .await
}

/// Polls `check` until true.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn instances_added_and_removed_arrive_through_blocking_queries() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "web-1", addr(9001)).meta("version", "1"));
    let n = namer(&config(&consul));
    let mut rx = n.lookup(&p("/dc1/web"));
    let r = until_ports(&mut rx, &[9001]).await;
    let Resolution::Bound(b) = r else {
        unreachable!()
    };
    assert_eq!(b.id, p("/#/consul/dc1/web"));
    let meta = b.addrs[0].meta.as_deref().expect("metadata");
    assert_eq!(meta.node.as_deref(), Some("node-web-1"));
    assert_eq!(meta.authority, None);
    assert_eq!(
        meta.labels,
        [("version".into(), "1".into())] as [(Box<str>, Box<str>); 1]
    );

    // A second lookup of the same name joins the same watch.
    let mut rx2 = n.lookup(&p("/dc1/web/extra/labels"));
    until_ports(&mut rx2, &[9001]).await;

    consul.register(Instance::new("web", "web-2", addr(9002)));
    until_ports(&mut rx, &[9001, 9002]).await;
    consul.deregister("web-1");
    until_ports(&mut rx, &[9002]).await;
    until_ports(&mut rx2, &[9002]).await;

    let health: Vec<String> = consul
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("/v1/health/service/web?"))
        .collect();
    assert_eq!(
        health.iter().filter(|r| !r.contains("index=")).count(),
        1,
        "one watch, and only its first query without an index: {health:?}"
    );
    assert!(
        health
            .iter()
            .any(|r| r.starts_with("/v1/health/service/web?dc=dc1&index=")
                && r.ends_with("&wait=60s")),
        "changes came through blocking queries: {health:?}"
    );
    let s = snapshot(&n);
    assert_eq!(
        (s.state, s.errors, s.watched),
        (NamerState::Ok, 0, 1),
        "{s:?}"
    );
    assert!(s.updates >= 3, "{s:?}");

    // Nobody watches any more: the watch stops.
    drop((rx, rx2));
    eventually("the watch stops when unwatched", || {
        snapshot(&n).watched == 0
    })
    .await;
}

#[tokio::test]
async fn unhealthy_instances_get_no_traffic_and_health_statuses_widen_that() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    consul.register(Instance::new("web", "b", addr(9002)).checks(&["passing", "warning"]));
    consul.register(Instance::new("web", "c", addr(9003)).checks(&["passing", "critical"]));
    let strict = namer(&config(&consul));
    let mut rx = strict.lookup(&p("/dc1/web"));
    until_ports(&mut rx, &[9001]).await;

    let mut cfg = config(&consul);
    cfg.health_statuses = vec!["passing".into(), "warning".into()];
    let lenient = namer(&cfg);
    let mut rx2 = lenient.lookup(&p("/dc1/web"));
    until_ports(&mut rx2, &[9001, 9002]).await;

    // The only passing instance fails its check: the service exists with no healthy
    // instance, which is bound and empty, not Neg.
    consul.set_checks("a", &["critical", "passing"]);
    until_ports(&mut rx, &[]).await;
    until_ports(&mut rx2, &[9002]).await;
    consul.set_checks("c", &["passing"]);
    until_ports(&mut rx, &[9003]).await;
}

#[tokio::test]
async fn local_datacenter_and_set_host() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let mut cfg = config(&consul);
    cfg.set_host = true;
    let n = namer(&cfg);
    let mut local = n.lookup(&p("/.local/web"));
    let r = until_ports(&mut local, &[9001]).await;
    let Resolution::Bound(b) = r else {
        unreachable!()
    };
    assert_eq!(b.id, p("/#/consul/.local/web"));
    let authority = |b: &weft_naming::BoundName| {
        b.addrs[0]
            .meta
            .as_ref()
            .and_then(|m| m.authority.as_deref().map(str::to_owned))
    };
    assert_eq!(authority(&b).as_deref(), Some("web.service.dc1.consul"));
    let requests = consul.requests();
    assert!(
        requests.iter().any(|r| r == "/v1/agent/self"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.starts_with("/v1/health/") || r.starts_with("/v1/catalog/"))
            .all(|r| !r.contains("dc=")),
        ".local sends no dc: {requests:?}"
    );

    cfg.consul_domain = "example".into();
    cfg.consistency_mode = ConsulConsistency::Stale;
    let n = namer(&cfg);
    let mut dc1 = n.lookup(&p("/dc1/web"));
    let Resolution::Bound(b) = until_ports(&mut dc1, &[9001]).await else {
        unreachable!()
    };
    assert_eq!(authority(&b).as_deref(), Some("web.service.dc1.example"));
    assert!(consul
        .requests()
        .iter()
        .any(|r| r.starts_with("/v1/health/service/web?dc=dc1&stale&")));
}

#[tokio::test]
async fn include_tag_and_weights() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)).tag("v1"));
    consul.register(
        Instance::new("web", "b", addr(9002))
            .tag("v1")
            .tag("canary"),
    );
    consul.register(Instance::new("web", "c", addr(9003)).tag("v2"));
    let mut cfg = config(&consul);
    cfg.include_tag = true;
    cfg.weights = vec![
        TagWeight {
            tag: "canary".into(),
            weight: 0.25,
        },
        TagWeight {
            tag: "v2".into(),
            weight: 3.0,
        },
    ];
    let n = namer(&cfg);
    let mut v1 = n.lookup(&p("/dc1/v1/web"));
    let Resolution::Bound(b) = until_ports(&mut v1, &[9001, 9002]).await else {
        unreachable!()
    };
    assert_eq!(b.id, p("/#/consul/dc1/v1/web"));
    let weights: Vec<f64> = b.addrs.iter().map(|a| a.weight).collect();
    assert_eq!(weights, [1.0, 0.25]);
    let mut v2 = n.lookup(&p("/dc1/v2/web"));
    let Resolution::Bound(b) = until_ports(&mut v2, &[9003]).await else {
        unreachable!()
    };
    assert_eq!(b.addrs[0].weight, 3.0);
    assert!(consul
        .requests()
        .iter()
        .any(|r| r.starts_with("/v1/health/service/web?tag=v1&dc=dc1")));

    // A tag no instance carries: the name does not exist.
    let mut v3 = n.lookup(&p("/dc1/v3/web"));
    until(&mut v3, "unknown tag is Neg", |r| *r == Resolution::Neg).await;
    // Too few labels for `/<dc>/<tag>/<service>`.
    assert_eq!(*n.lookup(&p("/dc1/web")).borrow(), Resolution::Neg);
}

#[tokio::test]
async fn unknown_service_is_neg_until_registered() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let n = namer(&config(&consul));
    let mut rx = n.lookup(&p("/dc1/books"));
    until(&mut rx, "unknown service is Neg", |r| *r == Resolution::Neg).await;
    consul.register(Instance::new("books", "b", addr(9005)));
    until_ports(&mut rx, &[9005]).await;
    consul.deregister("b");
    until(&mut rx, "deregistered service is Neg again", |r| {
        *r == Resolution::Neg
    })
    .await;

    // An unknown datacenter: Consul answers 500, and with no good answer the name fails.
    let mut other = n.lookup(&p("/dc9/web"));
    let r = until(&mut other, "unknown dc fails", |r| {
        matches!(r, Resolution::Failed(_))
    })
    .await;
    assert!(format!("{r:?}").contains("No path to datacenter"), "{r:?}");
    assert!(snapshot(&n).errors > 0);
    // Too few labels.
    assert_eq!(*n.lookup(&p("/dc1")).borrow(), Resolution::Neg);
}

#[tokio::test]
async fn agent_down_keeps_the_last_good_set_and_recovers() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let n = namer(&config(&consul));
    let mut rx = n.lookup(&p("/dc1/web"));
    until_ports(&mut rx, &[9001]).await;

    consul.stop();
    eventually("errors counted while the agent is down", || {
        let s = snapshot(&n);
        s.state == NamerState::Stale && s.errors >= 2
    })
    .await;
    until_ports(&mut rx, &[9001]).await;
    assert!(snapshot(&n).last_error.is_some());

    // Changes made while the namer could not see them arrive once the agent is back.
    consul.register(Instance::new("web", "b", addr(9002)));
    consul.restart().await;
    until_ports(&mut rx, &[9001, 9002]).await;
    eventually("ok again", || snapshot(&n).state == NamerState::Ok).await;
    consul.deregister("a");
    until_ports(&mut rx, &[9002]).await;
}

/// An agent that comes back with nothing changed answers a blocking query only after `wait`
/// (60 s here): the namer must not stay stale that long.
#[tokio::test]
async fn an_agent_back_with_no_change_is_ok_without_waiting_out_a_blocking_query() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let n = namer(&config(&consul));
    let mut rx = n.lookup(&p("/dc1/web"));
    until_ports(&mut rx, &[9001]).await;
    eventually("ok", || snapshot(&n).state == NamerState::Ok).await;

    consul.stop();
    eventually("stale while the agent is down", || {
        snapshot(&n).state == NamerState::Stale
    })
    .await;
    consul.restart().await;
    eventually("ok again with no change in Consul", || {
        snapshot(&n).state == NamerState::Ok
    })
    .await;
    until_ports(&mut rx, &[9001]).await;
    // And changes flow again.
    consul.register(Instance::new("web", "b", addr(9002)));
    until_ports(&mut rx, &[9001, 9002]).await;
}

#[tokio::test]
async fn malformed_and_error_answers_keep_the_last_good_set() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let n = namer(&config(&consul));
    let mut rx = n.lookup(&p("/dc1/web"));
    until_ports(&mut rx, &[9001]).await;

    consul.set_fault(Some(ConsulFault::Malformed));
    eventually("a malformed answer is counted", || {
        let s = snapshot(&n);
        s.state == NamerState::Stale
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("malformed"))
    })
    .await;
    until_ports(&mut rx, &[9001]).await;

    consul.set_fault(Some(ConsulFault::Status(500)));
    eventually("an error status is counted", || {
        let s = snapshot(&n);
        s.last_error.as_deref().is_some_and(|e| e.contains("500"))
    })
    .await;
    until_ports(&mut rx, &[9001]).await;

    consul.set_fault(None);
    consul.register(Instance::new("web", "b", addr(9002)));
    until_ports(&mut rx, &[9001, 9002]).await;
    eventually("ok again", || snapshot(&n).state == NamerState::Ok).await;
}

#[tokio::test]
async fn bad_ports_skip_instances_and_are_counted() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let mut bad = Instance::new("web", "b", addr(9002));
    bad.port = 70_000;
    consul.register(bad);
    let n = namer(&config(&consul));
    let mut rx = n.lookup(&p("/dc1/web"));
    until_ports(&mut rx, &[9001]).await;
    let s = snapshot(&n);
    assert!(s.errors >= 1, "{s:?}");
    assert_eq!(s.state, NamerState::Ok, "the answer itself was good: {s:?}");
}

#[tokio::test]
async fn an_agent_that_never_answers_times_out_and_is_counted() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let mut cfg = config(&consul);
    // The blocking query's timeout is wait + wait/16 + 5 s.
    cfg.wait = Duration::from_secs(1);
    let n = namer(&cfg);
    let mut rx = n.lookup(&p("/dc1/web"));
    until_ports(&mut rx, &[9001]).await;

    consul.set_fault(Some(ConsulFault::Hang));
    eventually("a request with no answer times out", || {
        snapshot(&n)
            .last_error
            .is_some_and(|e| e.contains("timed out"))
    })
    .await;
    assert_eq!(snapshot(&n).state, NamerState::Stale);
    until_ports(&mut rx, &[9001]).await;

    consul.set_fault(None);
    consul.register(Instance::new("web", "b", addr(9002)));
    until_ports(&mut rx, &[9001, 9002]).await;
}

#[tokio::test]
async fn an_index_that_goes_backwards_restarts_the_blocking_loop() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let mut cfg = config(&consul);
    cfg.wait = Duration::from_secs(1);
    let n = namer(&cfg);
    let mut rx = n.lookup(&p("/dc1/web"));
    until_ports(&mut rx, &[9001]).await;

    // As after Consul restores an older snapshot: the index drops below the namer's.
    consul.set_index(3);
    eventually("the namer queries again without an index", || {
        consul
            .requests()
            .iter()
            .filter(|r| r.starts_with("/v1/health/service/web?") && !r.contains("index="))
            .count()
            >= 2
    })
    .await;
    consul.register(Instance::new("web", "b", addr(9002)));
    until_ports(&mut rx, &[9001, 9002]).await;
    eventually("the namer blocks on the new index", || {
        consul
            .requests()
            .iter()
            .any(|r| r.starts_with("/v1/health/service/web?dc=dc1&index=4&"))
    })
    .await;
}

#[tokio::test]
async fn token_file_is_read_for_each_request() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "secret-1\n").unwrap();
    let mut cfg = config(&consul);
    cfg.token_file = Some(file.clone());
    let n = namer(&cfg);
    let mut rx = n.lookup(&p("/dc1/web"));
    until_ports(&mut rx, &[9001]).await;
    assert!(consul.tokens().iter().all(|t| t == "secret-1"));
    std::fs::write(&file, "secret-2").unwrap();
    consul.register(Instance::new("web", "b", addr(9002)));
    until_ports(&mut rx, &[9001, 9002]).await;
    eventually("the rotated token is sent", || {
        consul.tokens().last().is_some_and(|t| t == "secret-2")
    })
    .await;
}

#[tokio::test]
async fn an_agent_never_reached_fails_the_name_with_the_error() {
    let consul = FakeConsul::start().await;
    let mut cfg = config(&consul);
    cfg.port = weft_test::closed_port();
    let n = namer(&cfg);
    assert_eq!(snapshot(&n).state, NamerState::Pending);
    let mut rx = n.lookup(&p("/dc1/web"));
    let r = until(&mut rx, "no agent: failed", |r| {
        matches!(r, Resolution::Failed(_))
    })
    .await;
    assert!(
        format!("{r:?}").contains("GET /v1/health/service/web?dc=dc1"),
        "{r:?}"
    );
    let s = snapshot(&n);
    assert_eq!(s.state, NamerState::Error, "{s:?}");
    assert!(s.errors >= 1 && s.updates == 0, "{s:?}");
}

#[tokio::test]
async fn one_catalog_watch_per_datacenter() {
    let consul = FakeConsul::start().await;
    consul.register(Instance::new("web", "a", addr(9001)));
    consul.register(Instance::new("db", "d", addr(9004)));
    let n = namer(&config(&consul));
    let mut web = n.lookup(&p("/dc1/web"));
    let mut db = n.lookup(&p("/dc1/db"));
    let mut nope = n.lookup(&p("/dc1/nope"));
    until_ports(&mut web, &[9001]).await;
    until_ports(&mut db, &[9004]).await;
    until(&mut nope, "unknown service is Neg", |r| {
        *r == Resolution::Neg
    })
    .await;
    let first_catalog_queries = consul
        .requests()
        .iter()
        .filter(|r| r.starts_with("/v1/catalog/services?") && !r.contains("index="))
        .count();
    assert_eq!(first_catalog_queries, 1, "{:?}", consul.requests());
    assert_eq!(snapshot(&n).watched, 3);
}
