//! The `k8s` namer and the `k8s.daemonset` / `k8s.localnode` transformers against
//! [`FakeKube`], a fake Kubernetes API server written in Rust: the real API server cannot be
//! installed here, so the fake follows the documented list/watch semantics (list with a
//! `resourceVersion`, watch from it with bookmarks, `ERROR` 410 Gone for a compacted version)
//! and answers EndpointSlices shaped like the API reference's. The namer reaches it with
//! `url: http://127.0.0.1:<port>`, through kube-rs's real client and watcher.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use weft_config::{DaemonsetConfig, DiscoveryBackoff, K8sApi, K8sConfig, LocalnodeConfig};
use weft_discovery::k8s::{self, K8sNamer};
use weft_naming::{Namer, NamerState, NamerStatus, Path, Resolution};
use weft_test::fake_k8s::{endpoint_slice, FakeKube};

/// Generous: a wait that takes this long is a failure, never a timing assertion.
const WAIT: Duration = Duration::from_secs(20);

fn p(s: &str) -> Path {
    Path::read(s).unwrap()
}

fn api(fake: &FakeKube) -> K8sApi {
    K8sApi {
        url: Some(fake.url()),
        ..K8sApi::default()
    }
}

fn namer(fake: &FakeKube) -> K8sNamer {
    let config = K8sConfig {
        api: api(fake),
        label_selector: None,
        backoff: DiscoveryBackoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
    };
    K8sNamer::new(&config, &p("/#/k8s")).unwrap()
}

/// A slice of `web` in `default` on port `http` 8080 with ready endpoints on node `n1`.
fn web(name: &str, ips: &[&str]) -> serde_json::Value {
    let eps: Vec<(&str, bool, bool, &str)> =
        ips.iter().map(|ip| (*ip, true, false, "n1")).collect();
    endpoint_slice(name, "web", "http", 8080, &eps)
}

/// Waits until the resolution satisfies `pred`, and returns it.
async fn wait_for(
    rx: &mut watch::Receiver<Resolution>,
    what: &str,
    pred: impl Fn(&Resolution) -> bool,
) -> Resolution {
    let found = tokio::time::timeout(WAIT, rx.wait_for(|r| pred(r)))
        .await
        .map(|r| r.map(|r| r.clone()));
    match found {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => panic!("{what}: the namer stopped updating"),
        Err(_) => panic!("{what}: still {:?}", *rx.borrow()),
    }
}

/// The sorted `ip:port` of a bound resolution; `None` for anything else.
fn addrs(r: &Resolution) -> Option<Vec<String>> {
    match r {
        Resolution::Bound(b) => Some(b.addrs.iter().map(|a| a.addr.to_string()).collect()),
        _ => None,
    }
}

async fn wait_addrs(rx: &mut watch::Receiver<Resolution>, want: &[&str]) -> Resolution {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    wait_for(rx, &format!("addresses {want:?}"), |r| {
        addrs(r).as_ref() == Some(&want)
    })
    .await
}

/// Waits until the fake has `n` live watches (a namer lists first, then watches).
async fn wait_watches(fake: &FakeKube, n: usize) {
    let poll = async {
        while fake.watches() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(WAIT, poll).await.is_err() {
        panic!(
            "{} live watches, not {n}: {:?}",
            fake.watches(),
            fake.requests()
        );
    }
}

async fn wait_status(status: &NamerStatus, what: &str, pred: impl Fn(&NamerStatus) -> bool) {
    let poll = async {
        while !pred(status) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(WAIT, poll).await.is_err() {
        panic!("{what}: status {status:?}");
    }
}

#[tokio::test]
async fn endpoints_added_and_removed_by_watch_events() {
    let fake = FakeKube::start().await;
    fake.apply("default", web("web-a", &["10.0.0.1"]));
    let namer = namer(&fake);
    let mut rx = namer.lookup(&p("/default/http/web"));
    let r = wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
    let Resolution::Bound(b) = r else {
        unreachable!()
    };
    assert_eq!(b.id, p("/#/k8s/default/http/web"));
    let meta = b.addrs[0].meta.as_deref().expect("meta");
    assert_eq!(meta.node.as_deref(), Some("n1"));
    assert!(meta
        .labels
        .iter()
        .any(|(k, v)| &**k == "zone" && &**v == "zone-a"));

    fake.apply("default", web("web-b", &["10.0.0.2"]));
    wait_addrs(&mut rx, &["10.0.0.1:8080", "10.0.0.2:8080"]).await;
    fake.delete("default", "web-a");
    wait_addrs(&mut rx, &["10.0.0.2:8080"]).await;
    // The changes came on the watch: one list only.
    assert_eq!(fake.lists(), 1, "{:?}", fake.requests());
    let status = namer.status().unwrap();
    assert_eq!(status.state(), NamerState::Ok);
    assert!(status.snapshot().updates >= 3, "{status:?}");
    assert_eq!(status.snapshot().errors, 0, "{status:?}");

    // No slice left: the service is gone (Neg), as is one that never existed.
    fake.delete("default", "web-b");
    wait_for(&mut rx, "Neg after the last slice", |r| {
        *r == Resolution::Neg
    })
    .await;
    let mut absent = namer.lookup(&p("/default/http/absent"));
    wait_for(&mut absent, "absent service", |r| *r == Resolution::Neg).await;
    assert_eq!(*namer.lookup(&p("/default/http")).borrow(), Resolution::Neg);
    assert_eq!(
        *namer.lookup(&p("/default/http/Not_A_Name")).borrow(),
        Resolution::Neg
    );
}

#[tokio::test]
async fn not_ready_and_terminating_endpoints_get_no_traffic() {
    let fake = FakeKube::start().await;
    let eps = [
        ("10.0.0.1", true, false, "n1"),
        ("10.0.0.2", false, false, "n1"),
        ("10.0.0.3", true, true, "n1"),
    ];
    fake.apply(
        "default",
        endpoint_slice("web-a", "web", "http", 8080, &eps),
    );
    let namer = namer(&fake);
    let mut rx = namer.lookup(&p("/default/http/web"));
    wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
    // The last ready one starts terminating: the service exists with nothing ready.
    let eps = [
        ("10.0.0.1", false, true, "n1"),
        ("10.0.0.2", false, false, "n1"),
    ];
    fake.apply(
        "default",
        endpoint_slice("web-a", "web", "http", 8080, &eps),
    );
    wait_addrs(&mut rx, &[]).await;
}

#[tokio::test]
async fn named_port_is_resolved_per_slice() {
    let fake = FakeKube::start().await;
    let ready = |ip| [(ip, true, false, "n1")];
    fake.apply(
        "default",
        endpoint_slice("web-a", "web", "http", 8080, &ready("10.0.0.1")),
    );
    fake.apply(
        "default",
        endpoint_slice("web-b", "web", "http", 9090, &ready("10.0.0.2")),
    );
    let namer = namer(&fake);
    let mut by_name = namer.lookup(&p("/default/http/web"));
    let mut by_number = namer.lookup(&p("/default/9090/web"));
    let mut other = namer.lookup(&p("/default/admin/web"));
    wait_addrs(&mut by_name, &["10.0.0.1:8080", "10.0.0.2:9090"]).await;
    let r = wait_addrs(&mut by_number, &["10.0.0.2:9090"]).await;
    assert!(matches!(r, Resolution::Bound(b) if b.id == p("/#/k8s/default/9090/web")));
    wait_addrs(&mut other, &[]).await;
    // Three ports of one service share one watch.
    assert_eq!(namer.status().unwrap().snapshot().watched, 1);
    wait_watches(&fake, 1).await;
    drop((by_name, by_number, other));
    let status = namer.status().unwrap();
    wait_status(&status, "watch stopped", |s| s.snapshot().watched == 0).await;
}

#[tokio::test]
async fn gone_relists_and_stays_correct() {
    let fake = FakeKube::start().await;
    fake.apply("default", web("web-a", &["10.0.0.1"]));
    let namer = namer(&fake);
    let mut rx = namer.lookup(&p("/default/http/web"));
    wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
    // Changes the watch never delivers, then the history is compacted: 410 Gone.
    fake.set_announce(false);
    fake.apply("default", web("web-b", &["10.0.0.2"]));
    fake.delete("default", "web-a");
    fake.set_announce(true);
    fake.expire_watches();
    wait_addrs(&mut rx, &["10.0.0.2:8080"]).await;
    assert!(fake.lists() >= 2, "{:?}", fake.requests());
    // And the watch after the new list delivers changes again.
    fake.apply("default", web("web-c", &["10.0.0.3"]));
    wait_addrs(&mut rx, &["10.0.0.2:8080", "10.0.0.3:8080"]).await;
}

#[tokio::test]
async fn gone_answered_to_a_watch_request_relists() {
    let fake = FakeKube::start().await;
    fake.set_gone_as_http(true);
    fake.apply("default", web("web-a", &["10.0.0.1"]));
    let namer = namer(&fake);
    let mut rx = namer.lookup(&p("/default/http/web"));
    wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
    wait_watches(&fake, 1).await;
    fake.set_announce(false);
    fake.apply("default", web("web-b", &["10.0.0.2"]));
    fake.set_announce(true);
    // The watch ends; watching again from the old version is answered 410 Gone.
    fake.compact_and_end_watches();
    wait_addrs(&mut rx, &["10.0.0.1:8080", "10.0.0.2:8080"]).await;
    assert!(fake.lists() >= 2, "{:?}", fake.requests());
    fake.delete("default", "web-a");
    wait_addrs(&mut rx, &["10.0.0.2:8080"]).await;
}

#[tokio::test]
async fn bookmark_sets_the_resume_point() {
    let fake = FakeKube::start().await;
    fake.apply("default", web("web-a", &["10.0.0.1"]));
    let namer = namer(&fake);
    let mut rx = namer.lookup(&p("/default/http/web"));
    wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
    fake.apply("default", endpoint_slice("db-a", "db", "pg", 5432, &[]));
    fake.bookmark(); // resourceVersion 2
                     // A bookmark yields nothing to observe; poll the resume point through watch restarts.
    let poll = async {
        loop {
            fake.end_watches();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let watches: Vec<String> = fake
                .requests()
                .into_iter()
                .filter(|r| r.contains("watch=true"))
                .collect();
            // Without the bookmark the watch would resume from the list's version, 1.
            if watches
                .iter()
                .any(|r| r.contains("resourceVersion=2&") || r.ends_with("resourceVersion=2"))
            {
                return;
            }
            fake.bookmark();
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("a watch resumed from the bookmark");
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.contains("allowWatchBookmarks=true")));
    assert_eq!(fake.lists(), 1, "{:?}", fake.requests());
    fake.apply("default", web("web-b", &["10.0.0.2"]));
    wait_addrs(&mut rx, &["10.0.0.1:8080", "10.0.0.2:8080"]).await;
}

#[tokio::test]
async fn api_server_down_keeps_last_good_then_recovers() {
    let fake = FakeKube::start().await;
    fake.apply("default", web("web-a", &["10.0.0.1"]));
    let namer = namer(&fake);
    let status = namer.status().unwrap();
    let mut rx = namer.lookup(&p("/default/http/web"));
    wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
    assert_eq!(status.state(), NamerState::Ok);

    fake.stop();
    wait_status(&status, "stale", |s| {
        s.state() == NamerState::Stale && s.snapshot().errors >= 2
    })
    .await;
    assert!(status.snapshot().last_error.is_some());
    assert_eq!(addrs(&rx.borrow()), Some(vec!["10.0.0.1:8080".to_string()]));
    // A new lookup of the same name gets the last good set too.
    let again = namer.lookup(&p("/default/http/web"));
    assert_eq!(
        addrs(&again.borrow()),
        Some(vec!["10.0.0.1:8080".to_string()])
    );

    fake.apply("default", web("web-b", &["10.0.0.2"]));
    fake.restart().await;
    wait_addrs(&mut rx, &["10.0.0.1:8080", "10.0.0.2:8080"]).await;
    wait_status(&status, "ok again", |s| s.state() == NamerState::Ok).await;
    fake.delete("default", "web-a");
    wait_addrs(&mut rx, &["10.0.0.2:8080"]).await;
}

#[tokio::test]
async fn unreachable_api_before_any_answer_fails_the_name() {
    let fake = FakeKube::start().await;
    fake.stop();
    let namer = namer(&fake);
    let mut rx = namer.lookup(&p("/default/http/web"));
    wait_for(&mut rx, "failed", |r| matches!(r, Resolution::Failed(_))).await;
    assert_eq!(namer.status().unwrap().state(), NamerState::Error);
    fake.apply("default", web("web-a", &["10.0.0.1"]));
    fake.restart().await;
    wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
}

#[tokio::test]
async fn malformed_events_keep_last_good() {
    let fake = FakeKube::start().await;
    fake.apply("default", web("web-a", &["10.0.0.1"]));
    let namer = namer(&fake);
    let status = namer.status().unwrap();
    let mut rx = namer.lookup(&p("/default/http/web"));
    wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
    wait_watches(&fake, 1).await;

    // Wrong JSON types.
    fake.send_raw(
        &json!({"type": "MODIFIED", "object": {
            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": "web-a", "resourceVersion": "1"},
            "addressType": "IPv4", "endpoints": "oops"}})
        .to_string(),
    );
    wait_status(&status, "error counted", |s| s.snapshot().errors >= 1).await;
    // Not JSON at all.
    fake.send_raw("{not json");
    wait_status(&status, "error counted", |s| s.snapshot().errors >= 2).await;
    // Well-typed, but a port out of range.
    let mut bad = web("web-a", &["10.0.0.9"]);
    bad["ports"][0]["port"] = json!(70000);
    fake.apply("default", bad);
    wait_status(&status, "error counted", |s| s.snapshot().errors >= 3).await;
    assert_eq!(status.state(), NamerState::Stale);
    assert_eq!(addrs(&rx.borrow()), Some(vec!["10.0.0.1:8080".to_string()]));

    fake.apply("default", web("web-b", &["10.0.0.2"]));
    wait_addrs(&mut rx, &["10.0.0.1:8080", "10.0.0.2:8080"]).await;
    assert_eq!(status.state(), NamerState::Ok);
}

#[tokio::test]
async fn label_selector_narrows_the_slices() {
    let fake = FakeKube::start().await;
    let mut a = web("web-a", &["10.0.0.1"]);
    a["metadata"]["labels"]["tier"] = json!("gold");
    fake.apply("default", a);
    fake.apply("default", web("web-b", &["10.0.0.2"]));
    let config = K8sConfig {
        api: api(&fake),
        label_selector: Some("tier=gold".into()),
        backoff: DiscoveryBackoff::default(),
    };
    let namer = K8sNamer::new(&config, &p("/#/k8s")).unwrap();
    let mut rx = namer.lookup(&p("/default/http/web"));
    wait_addrs(&mut rx, &["10.0.0.1:8080"]).await;
}

#[test]
fn configuration_errors_name_what_was_tried() {
    let bad_url = K8sConfig {
        api: K8sApi {
            url: Some("127.0.0.1:8001".into()),
            ..K8sApi::default()
        },
        label_selector: None,
        backoff: DiscoveryBackoff::default(),
    };
    let e = K8sNamer::new(&bad_url, &p("/#/k8s")).err().unwrap();
    assert_eq!(e.prefix, "/#/k8s");
    assert!(e.message.contains("127.0.0.1:8001"), "{e}");
    let missing = K8sConfig {
        api: K8sApi {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..K8sApi::default()
        },
        ..bad_url
    };
    let e = K8sNamer::new(&missing, &p("/#/k8s")).err().unwrap();
    assert!(e.message.contains("/nonexistent/kubeconfig"), "{e}");
}

fn daemonset_config(fake: &FakeKube, host_network: bool) -> DaemonsetConfig {
    DaemonsetConfig {
        namespace: "linkerd".into(),
        service: "l5d".into(),
        port: "incoming".into(),
        host_network,
        api: api(fake),
    }
}

#[tokio::test]
async fn daemonset_maps_endpoints_by_node_name_and_by_subnet() {
    let fake = FakeKube::start().await;
    let app = [
        ("10.1.1.5", true, false, "n1"),
        ("10.1.2.5", true, false, "n2"),
    ];
    fake.apply(
        "default",
        endpoint_slice("web-a", "web", "http", 8080, &app),
    );
    let ds = [("10.1.1.2", true, false, "n1")];
    fake.apply(
        "linkerd",
        endpoint_slice("l5d-a", "l5d", "incoming", 4141, &ds),
    );
    let inner: Arc<dyn Namer> = Arc::new(namer(&fake));
    let by_node = k8s::daemonset(
        inner.clone(),
        &daemonset_config(&fake, true),
        &api(&fake),
        &p("/#/k8s"),
    )
    .unwrap();
    let by_ip = k8s::daemonset(
        inner,
        &daemonset_config(&fake, false),
        &api(&fake),
        &p("/#/k8s"),
    )
    .unwrap();
    let mut rx = by_node.lookup(&p("/default/http/web"));
    let mut rx_ip = by_ip.lookup(&p("/default/http/web"));
    let r = wait_addrs(&mut rx, &["10.1.1.2:4141"]).await;
    let Resolution::Bound(b) = r else {
        unreachable!()
    };
    assert_eq!(
        b.id,
        p("/%/k8s.daemonset/linkerd/incoming/l5d/#/k8s/default/http/web")
    );
    wait_addrs(&mut rx_ip, &["10.1.1.2:4141"]).await;

    // A DaemonSet pod on n2 comes up, reported on a node name that does not match, but in
    // n2's /24: only the subnet mapping finds it.
    let ds = [
        ("10.1.1.2", true, false, "n1"),
        ("10.1.2.2", true, false, "other"),
    ];
    fake.apply(
        "linkerd",
        endpoint_slice("l5d-a", "l5d", "incoming", 4141, &ds),
    );
    wait_addrs(&mut rx_ip, &["10.1.1.2:4141", "10.1.2.2:4141"]).await;
    let ds = [
        ("10.1.1.2", true, false, "n1"),
        ("10.1.2.2", true, false, "n2"),
    ];
    fake.apply(
        "linkerd",
        endpoint_slice("l5d-a", "l5d", "incoming", 4141, &ds),
    );
    wait_addrs(&mut rx, &["10.1.1.2:4141", "10.1.2.2:4141"]).await;
    // The application leaves n1: its DaemonSet pod gets nothing.
    let app = [("10.1.2.5", true, false, "n2")];
    fake.apply(
        "default",
        endpoint_slice("web-a", "web", "http", 8080, &app),
    );
    wait_addrs(&mut rx, &["10.1.2.2:4141"]).await;
    // No DaemonSet pod where the application runs: Neg.
    fake.delete("linkerd", "l5d-a");
    wait_for(&mut rx, "Neg", |r| *r == Resolution::Neg).await;
}

#[tokio::test]
async fn localnode_keeps_endpoints_of_this_node() {
    let fake = FakeKube::start().await;
    let app = [
        ("10.1.1.5", true, false, "n1"),
        ("10.1.2.5", true, false, "n2"),
    ];
    fake.apply(
        "default",
        endpoint_slice("web-a", "web", "http", 8080, &app),
    );
    // Only this test in this process reads or sets NODE_NAME.
    std::env::set_var("NODE_NAME", "n2");
    let local = k8s::localnode(
        Arc::new(namer(&fake)),
        &LocalnodeConfig { host_network: true },
        &p("/#/k8s"),
    )
    .unwrap();
    let mut rx = local.lookup(&p("/default/http/web"));
    let r = wait_addrs(&mut rx, &["10.1.2.5:8080"]).await;
    assert!(
        matches!(r, Resolution::Bound(b) if b.id == p("/%/k8s.localnode/#/k8s/default/http/web"))
    );
    // Live: a second endpoint on n2 appears, then none is left on n2 (Neg).
    let app = [
        ("10.1.2.5", true, false, "n2"),
        ("10.1.2.6", true, false, "n2"),
    ];
    fake.apply(
        "default",
        endpoint_slice("web-a", "web", "http", 8080, &app),
    );
    wait_addrs(&mut rx, &["10.1.2.5:8080", "10.1.2.6:8080"]).await;
    let app = [("10.1.1.5", true, false, "n1")];
    fake.apply(
        "default",
        endpoint_slice("web-a", "web", "http", 8080, &app),
    );
    wait_for(&mut rx, "Neg", |r| *r == Resolution::Neg).await;
}
