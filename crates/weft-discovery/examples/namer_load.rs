//! The discovery benchmark (issue 14): the `k8s` namer's CPU and memory while it watches
//! 1,000 services with 10,000 endpoints between them, changing at 100 updates per second.
//!
//! ```sh
//! cargo run --release -p weft-discovery --example namer_load -- [SERVICES] [ENDPOINTS_PER_SERVICE] [UPDATES_PER_SEC] [SECONDS]
//! ```
//!
//! Two processes, so the figures are the namer's alone: this one runs the API server
//! (`weft_test::fake_k8s::FakeKube`, which follows the documented list/watch semantics) and
//! the churn; a child (this binary again, with `--watch URL`) runs the namer with one
//! lookup per service, counts the updates it sees, and reports its own CPU time (from
//! `/proc/self/stat`) and resident memory. Every update modifies one service's
//! EndpointSlice (one endpoint's address changes), so each is a real change to one name.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{json, Value};
use weft_config::{DiscoveryBackoff, K8sApi, K8sConfig};
use weft_discovery::k8s::K8sNamer;
use weft_naming::{Namer, Path, Resolution};
use weft_test::fake_k8s::FakeKube;

const NAMESPACE: &str = "bench";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if args.first().map(String::as_str) == Some("--watch") {
        let url = args.get(1).expect("--watch URL").clone();
        let services: usize = args.get(2).and_then(|s| s.parse().ok()).expect("services");
        rt.block_on(watch(url, services));
    } else {
        let num =
            |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
        let (services, per, rate, secs) = (num(0, 1000), num(1, 10), num(2, 100), num(3, 30));
        rt.block_on(serve(services as usize, per as usize, rate, secs));
    }
}

/// One service's EndpointSlice with `per` ready endpoints; `version` shifts the addresses.
fn slice(i: usize, per: usize, version: u64) -> Value {
    let endpoints: Vec<Value> = (0..per)
        .map(|e| {
            let n = (i * per + e) as u64 + version * 7919;
            json!({
                "addresses": [format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)],
                "conditions": {"ready": true},
                "nodeName": format!("node-{}", n % 50),
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}-x1"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

async fn serve(services: usize, per: usize, rate: u64, secs: u64) {
    let kube = FakeKube::start().await;
    for i in 0..services {
        kube.apply(NAMESPACE, slice(i, per, 0));
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--watch", &kube.url(), &services.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the watcher");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let started = Instant::now();
    let ready = tokio::task::spawn_blocking(move || {
        let first = lines.next();
        (first, lines)
    });
    let (first, mut lines) = ready.await.expect("join");
    println!(
        "{services} services x {per} endpoints bound in {:.2}s: {}",
        started.elapsed().as_secs_f64(),
        first.and_then(Result::ok).unwrap_or_default()
    );
    // Churn: `rate` updates per second, spread evenly, for `secs`.
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "start").expect("tell the watcher");
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    let total = rate * secs;
    let mut version = 0u64;
    for n in 0..total {
        tick.tick().await;
        version += 1;
        kube.apply(NAMESPACE, slice((n as usize * 7) % services, per, version));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    writeln!(stdin, "stop").expect("tell the watcher");
    let report = tokio::task::spawn_blocking(move || lines.next())
        .await
        .expect("join")
        .and_then(Result::ok)
        .unwrap_or_default();
    println!("{total} updates at {rate}/s over {secs}s: {report}");
    let _ = child.wait();
}

/// The child: one lookup per service, counting every change it sees.
async fn watch(url: String, services: usize) {
    let config = K8sConfig {
        api: K8sApi {
            url: Some(url),
            kubeconfig: None,
            context: None,
        },
        label_selector: None,
        backoff: DiscoveryBackoff::default(),
    };
    let prefix = Path::read("/#/k8s").expect("prefix");
    let namer = K8sNamer::new(&config, &prefix).expect("namer");
    let mut rxs: Vec<_> = (0..services)
        .map(|i| namer.lookup(&Path::read(&format!("/{NAMESPACE}/http/svc-{i}")).expect("path")))
        .collect();
    for rx in &mut rxs {
        rx.wait_for(|r| matches!(r, Resolution::Bound(b) if !b.addrs.is_empty()))
            .await
            .expect("bound");
    }
    println!("rss {:.1} MiB after binding", rss_mib());
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            let _ = cmd_tx.send(line);
        }
    });
    let _ = cmd_rx.recv().await; // start
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for mut rx in rxs {
        let seen = seen.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let _ = cmd_rx.recv().await; // stop
    let cpu = cpu_secs() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "namer saw {} updates; CPU {:.2}s over {:.1}s ({:.1}% of one core, {:.0} µs per update); rss {:.1} MiB",
        seen.load(std::sync::atomic::Ordering::Relaxed),
        cpu,
        wall,
        100.0 * cpu / wall,
        1e6 * cpu / seen.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64,
        rss_mib()
    );
}

/// User + system CPU seconds of this process (proc(5), clock ticks of 1/100 s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// Resident memory of this process.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
