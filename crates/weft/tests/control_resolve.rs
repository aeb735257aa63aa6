//! End to end: a `weft` proxy binding names through the control plane's resolution service
//! (`interpreter: {kind: control}`), with the service run in this test process
//! ([`weft_test::ControlStub`]) and real upstreams.

mod support;

use std::path::Path as FsPath;
use std::process::Stdio;
use std::time::Duration;

use support::control::{control_status, proxy_config, wait_state};
use support::traffic::{settles, Traffic};
use support::*;
use weft_test::ControlStub;

const PATIENCE: Duration = Duration::from_secs(20);

/// A proxy config: router `outbound` binding through control at `control` (namespace
/// `default`), keeping its cache in `cache`.
fn control_config(control: std::net::SocketAddr, cache: &FsPath) -> String {
    proxy_config(&[control.to_string()], cache)
}

/// Upstreams `v1` and `v2` listed in a discovery directory for the stub's fs namer.
async fn upstreams() -> (Upstream, Upstream, Disco) {
    let v1 = Upstream::ok("v1").await;
    let v2 = Upstream::ok("v2").await;
    let disco = Disco::new();
    disco.write("v1", &v1.fs_line());
    disco.write("v2", &v2.fs_line());
    (v1, v2, disco)
}

/// Upstreams v1 and v2, a control stub whose namespace `default` has a dtab, and a proxy
/// binding through it with its cache file in a temporary directory.
struct Setup {
    _parts: (Upstream, Upstream, Disco),
    state: tempfile::TempDir,
    control: ControlStub,
    weft: Weft,
}

impl Setup {
    async fn start(dtab: &str) -> Setup {
        let (v1, v2, disco) = upstreams().await;
        let control = ControlStub::start(&disco.path()).await;
        control.set_dtab("default", dtab);
        let state = tempfile::tempdir().unwrap();
        let cache = state.path().join("outbound.control-cache");
        let weft = Weft::start(bin(), &control_config(control.addr(), &cache)).await;
        Setup {
            _parts: (v1, v2, disco),
            state,
            control,
            weft,
        }
    }
}

/// One request to Host `books`: 200 from `upstream`.
async fn assert_books_reach(weft: &Weft, upstream: &str) {
    let r = weft
        .http1("outbound")
        .get("books", "/")
        .await
        .expect("request");
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, Some(upstream)),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weighted_shift_through_control_with_traffic_flowing() {
    let Setup {
        _parts,
        control,
        weft,
        ..
    } = Setup::start("/svc/books => 9 * /#/fs/v1 & 1 * /#/fs/v2").await;

    let traffic = Traffic::start(weft.http1("outbound"), 4);
    settles(&traffic, 0.03..=0.2, "90/10").await;
    control.set_dtab("default", "/svc/books => 1 * /#/fs/v1 & 1 * /#/fs/v2");
    settles(&traffic, 0.35..=0.65, "50/50").await;
    control.set_dtab("default", "/svc/books => 0 * /#/fs/v1 & 1 * /#/fs/v2");
    settles(&traffic, 1.0..=1.0, "0/100").await;
    traffic.finish_without_failures().await;

    let watched = control.service().watched();
    assert_eq!(watched.len(), 1, "{watched:?}");
    assert_eq!(watched[0].path.to_string(), "/svc/books");
    wait_state(&weft, "ok").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_stopping_while_traffic_flows_fails_nothing_then_a_change_after_it_returns_applies()
{
    let Setup {
        _parts,
        mut control,
        weft,
        ..
    } = Setup::start("/svc/books => /#/fs/v1").await;
    let traffic = Traffic::start(weft.http1("outbound"), 4);
    assert_eq!(traffic.v2_share(100).await, 0.0);

    control.stop().await;
    wait_state(&weft, "stale").await;
    // Routing continues, unchanged, on the last state received.
    assert_eq!(traffic.v2_share(300).await, 0.0);
    traffic.finish_without_failures().await;
    assert_eq!(weft.ready_status().await, Some(200));

    let metrics = get_metrics(weft.admin()).await;
    assert!(
        metrics.contains("weft_namer_seconds_since_last_update{namer=\"/$/control/outbound\""),
        "{metrics}"
    );

    let out = tokio::process::Command::new(bin())
        .args(["check", "--admin", &weft.admin().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run weft check");
    // A warning: listed with its hint, but the check passes.
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("WARN namer")
            && text.contains("/$/control/outbound: control plane")
            && text.contains("unreachable for")
            && text.contains("routing on the last state since")
            && text.contains("(1 warning)"),
        "{text}"
    );

    // Control comes back; a dtab change made then reaches the proxy.
    control.restart().await;
    control.set_dtab("default", "/svc/books => /#/fs/v2");
    let traffic = Traffic::start(weft.http1("outbound"), 2);
    settles(&traffic, 1.0..=1.0, "moved to v2").await;
    traffic.finish_without_failures().await;
    wait_state(&weft, "ok").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_restarted_while_control_is_down_serves_from_its_cache() {
    let Setup {
        _parts,
        state,
        mut control,
        weft,
    } = Setup::start("/svc/books => /#/fs/v2").await;
    let cache = state.path().join("outbound.control-cache");
    let config = control_config(control.addr(), &cache);
    assert_books_reach(&weft, "v2").await;
    let written = eventually(PATIENCE, || async { cache.exists().then_some(()) }).await;
    assert!(written.is_some(), "no cache file at {}", cache.display());
    drop(weft);
    control.stop().await;

    let weft = Weft::start(bin(), &config).await;
    for _ in 0..20 {
        assert_books_reach(&weft, "v2").await;
    }
    assert_eq!(control_status(&weft).await["state"], "stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_router_dtab_and_l5d_dtab_apply_after_the_namespace_dtab() {
    let (v1, v2, disco) = upstreams().await;
    let v3 = Upstream::ok("v3").await;
    disco.write("v3", &v3.fs_line());
    let control = ControlStub::start(&disco.path()).await;
    control.set_dtab("default", "/svc => /#/fs; /svc/books => /#/fs/v1");
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "{}    dtab: |\n      /svc/authors => /#/fs/v2;\n",
        control_config(control.addr(), &state.path().join("c"))
    );
    let weft = Weft::start(bin(), &config).await;
    let client = weft.http1("outbound");
    assert_books_reach(&weft, "v1").await;
    let r = client.get("authors", "/").await.expect("request");
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, Some("v2")),
        "{}",
        r.text()
    );
    let r = client
        .get_with("books", "/", &[("l5d-dtab", "/svc/books => /#/fs/v3")])
        .await
        .expect("request");
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, Some("v3")),
        "{}",
        r.text()
    );
    let local: Vec<String> = control
        .service()
        .watched()
        .iter()
        .map(|w| format!("{} [{}]", w.path, w.local_dtab))
        .collect();
    assert!(
        local.contains(&"/svc/books [/svc/authors => /#/fs/v2; /svc/books => /#/fs/v3]".to_owned()),
        "{local:?}"
    );
    drop((v1, v2));
}
