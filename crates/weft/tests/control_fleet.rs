//! End to end with every part real: one etcd, two `weft control` processes sharing it, and two
//! proxies binding through both (`interpreter: {kind: control}`) while requests flow to real
//! upstreams; dtab changes are made with `weft dtab update`. The in-process variants of these
//! scenarios (one control, memory store) are in `control_resolve.rs`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::control::{
    control_config, control_status, etcd_storage, fs_namers, proxy_config, wait_state, weft_cli,
};
use support::traffic::{settles, Traffic};
use support::*;
use weft_test::{Etcd, Signal};

/// Two `weft control` processes over one etcd, each with a fixed resolution port (so that a
/// restarted instance comes back where proxies look for it) and ephemeral other ports.
struct Controls {
    configs: [String; 2],
    running: Vec<Weft>,
    dirs: [tempfile::TempDir; 2],
}

impl Controls {
    async fn start(etcd: &Etcd, disco: &Disco) -> Controls {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let storage = etcd_storage(etcd);
        let namers = fs_namers(&disco.path());
        let config = |dir: &Path| {
            let grpc = format!("127.0.0.1:{}", free_port());
            control_config(dir, &storage, &grpc, &namers)
        };
        let configs = [config(dirs[0].path()), config(dirs[1].path())];
        let mut controls = Controls {
            configs,
            running: Vec::new(),
            dirs,
        };
        controls.start_all().await;
        controls
    }

    async fn start_all(&mut self) {
        for config in &self.configs {
            self.running.push(Weft::start_control(bin(), config).await);
        }
    }

    /// Kills every instance (SIGKILL) and waits for them to exit.
    async fn kill_all(&mut self) {
        for mut c in self.running.drain(..) {
            c.signal(Signal::Kill);
            let _ = c.wait_exit(Duration::from_secs(10)).await;
        }
    }

    /// The resolution addresses, for a proxy's `interpreter.addresses`.
    fn grpc(&self) -> Vec<String> {
        self.running
            .iter()
            .map(|c| c.router("grpc").to_string())
            .collect()
    }

    /// Waits until the instances' `/metrics` (summed over them) show both proxies connected
    /// with one resolve stream each (`/svc/books`) and at least `updates` updates sent on
    /// them; asserts that each instance's `/live` answers 200.
    async fn assert_serving_both_proxies(&self, updates: f64) {
        let totals = || async {
            let mut totals = [0.0; 3];
            for c in &self.running {
                let text = get_metrics(c.admin()).await;
                for (total, name) in totals.iter_mut().zip([
                    "weft_control_proxies_connected",
                    "weft_control_resolve_streams",
                    "weft_control_resolve_updates_sent_total",
                ]) {
                    *total += metrics::sum(&text, name, &[]);
                }
            }
            totals
        };
        let seen = eventually(Duration::from_secs(20), || async {
            let [proxies, streams, sent] = totals().await;
            (proxies == 2.0 && streams == 2.0 && sent >= updates).then_some(())
        })
        .await;
        assert!(
            seen.is_some(),
            "proxies connected, resolve streams, updates sent: {:?} (wanted 2, 2, >= {updates})",
            totals().await
        );
        for c in &self.running {
            let live = Client::http1(c.admin())
                .get("admin", "/live")
                .await
                .expect("GET /live");
            assert_eq!(live.status, 200, "{}", live.text());
        }
    }

    /// `weft dtab update default -` with `dtab` on stdin, through instance `i`'s HTTP API.
    async fn update(&self, i: usize, dtab: &str) {
        self.dtab_cli("update", i, dtab).await;
    }

    async fn dtab_cli(&self, verb: &str, i: usize, dtab: &str) {
        let api = self.running[i].router("httpApi").to_string();
        let token = self.dirs[i].path().join("token");
        let token = token.to_str().expect("a UTF-8 path");
        let args = [
            "dtab",
            verb,
            "default",
            "-",
            "--control",
            api.as_str(),
            "--token-file",
            token,
        ];
        let (ok, out, err) = weft_cli(&args, Some(dtab)).await;
        assert!(ok, "weft dtab {verb}: {out}{err}");
    }
}

/// Both proxies' traffic settles at a share of v2 within `range`.
async fn both_settle(traffic: &[Traffic; 2], range: std::ops::RangeInclusive<f64>, what: &str) {
    settles(&traffic[0], range.clone(), &format!("proxy 1, {what}")).await;
    settles(&traffic[1], range, &format!("proxy 2, {what}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_weighted_shift_through_two_controls_on_etcd_reaches_both_proxies_and_survives_their_loss(
) {
    let v1 = Upstream::ok("v1").await;
    let v2 = Upstream::ok("v2").await;
    let disco = Disco::new();
    disco.write("v1", &v1.fs_line());
    disco.write("v2", &v2.fs_line());
    let etcd = Etcd::start().await;
    let mut controls = Controls::start(&etcd, &disco).await;
    controls
        .dtab_cli("create", 0, "/svc/books => 9 * /#/fs/v1 & 1 * /#/fs/v2;")
        .await;

    let states = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let configs = [
        proxy_config(&controls.grpc(), &states[0].path().join("cache")),
        proxy_config(&controls.grpc(), &states[1].path().join("cache")),
    ];
    let p1 = Weft::start(bin(), &configs[0]).await;
    let mut p2 = Weft::start(bin(), &configs[1]).await;
    let mut traffic = [
        Traffic::start(p1.http1("outbound"), 2),
        Traffic::start(p2.http1("outbound"), 2),
    ];

    // The shift, each step through the CLI (alternating instances: one store), visible on
    // both proxies before the next.
    both_settle(&traffic, 0.03..=0.2, "90/10").await;
    controls
        .update(1, "/svc/books => 1 * /#/fs/v1 & 1 * /#/fs/v2;")
        .await;
    both_settle(&traffic, 0.35..=0.65, "50/50").await;
    controls
        .update(0, "/svc/books => 0 * /#/fs/v1 & 1 * /#/fs/v2;")
        .await;
    both_settle(&traffic, 1.0..=1.0, "0/100").await;
    // Each stream got its first state, then the two changes.
    controls.assert_serving_both_proxies(6.0).await;

    // Every control instance goes away while requests flow: nothing fails, nothing moves.
    controls.kill_all().await;
    wait_state(&p1, "stale").await;
    wait_state(&p2, "stale").await;
    for t in &traffic {
        assert_eq!(
            t.v2_share(300).await,
            1.0,
            "routing changed without control"
        );
    }
    assert_eq!(p1.ready_status().await, Some(200));

    // Proxy 2 restarts while control is still down: it routes from its cache file.
    let [t1, t2] = traffic;
    t2.finish_without_failures().await;
    drop(p2);
    p2 = Weft::start(bin(), &configs[1]).await;
    assert_eq!(control_status(&p2).await["state"], "stale");
    traffic = [t1, Traffic::start(p2.http1("outbound"), 2)];
    assert_eq!(traffic[1].v2_share(300).await, 1.0, "not served from cache");

    // The instances come back on the same addresses; a change made then reaches both.
    controls.start_all().await;
    controls.update(1, "/svc/books => /#/fs/v1;").await;
    both_settle(&traffic, 0.0..=0.0, "after control returned").await;
    wait_state(&p1, "ok").await;
    wait_state(&p2, "ok").await;
    // The instances that came back serve both proxies: at least a first state per stream.
    controls.assert_serving_both_proxies(2.0).await;
    for t in traffic {
        t.finish_without_failures().await;
    }
}
