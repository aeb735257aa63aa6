//! End to end: the gateway chain of `examples/gateway` (docs/gateway.md), run from the
//! example's own files. Two clusters on loopback, each with its own CA and trust domain; a
//! call from cluster A to a service of cluster B goes internal(A) → gateway(A) → gateway(B) →
//! internal(B) → app, with mutual TLS on every proxy-to-proxy hop, and back the other way.
//! Under load, with a gRPC stream open each way, both gateways are replaced by
//! `weft proxy --upgrade` and renew their certificates from their CA: no request fails.
//!
//! The example lists cluster A on 127.0.1.x and cluster B on 127.0.2.x; each test runs a
//! copy on 127.K.1.x and 127.K.2.x with K random, so tests never share an address.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::grpc::{start_echo_server, ChatClient};
use support::pki::CaProcess;
use support::*;

/// The two clusters of the example, by directory name.
const CLUSTERS: [&str; 2] = ["cluster-a", "cluster-b"];

/// A running copy of the example.
struct Chain {
    dir: tempfile::TempDir,
    /// The CAs of cluster A and B (dropped: stopped).
    _cas: Vec<CaProcess>,
    /// Gateways of cluster A and B.
    gateways: [Weft; 2],
    /// Internal proxies of cluster A and B.
    internals: [Weft; 2],
}

impl Chain {
    /// Copies the example, starts both CAs (certificates of `lifetime`), then the gateways
    /// and internal proxies. `apps` names the applications of each cluster's host and
    /// where they listen: `(cluster index, service, address)`; discovery (`disco/`) and the
    /// host's local apps (`local/`) list them.
    async fn start(lifetime: &str, apps: &[(usize, &str, std::net::SocketAddr)]) -> Chain {
        let net = fastrand::u8(10..250);
        let dir = tempfile::tempdir().unwrap();
        copy_example(&example_dir(), dir.path(), net);
        for (i, service, addr) in apps {
            let cluster = dir.path().join(CLUSTERS[*i]);
            let host = host_ip(net, *i, 1);
            std::fs::write(
                cluster.join("disco").join(service),
                format!("{host} 8080\n"),
            )
            .unwrap();
            std::fs::write(
                cluster.join("local").join(service),
                format!("{} {}\n", addr.ip(), addr.port()),
            )
            .unwrap();
        }
        let mut cas = Vec::new();
        for (i, name) in CLUSTERS.iter().enumerate() {
            let cluster = dir.path().join(name);
            let trust_domain = format!("{}.example", name);
            let ca_dir = cluster.join("ca");
            let init = tokio::process::Command::new(bin())
                .args(["identity", "init", "--trust-domain", &trust_domain, "--dir"])
                .arg(&ca_dir)
                .output()
                .await
                .unwrap();
            assert!(init.status.success(), "{init:?}");
            std::fs::create_dir_all(cluster.join("certs")).unwrap();
            let ca_ip = host_ip(net, i, 200);
            let listen = format!("{ca_ip}:4190");
            let extra = ["--lifetime", lifetime, "--name", &ca_ip];
            cas.push(
                CaProcess::start_at(&ca_dir, &cluster.join("ca-tokens"), &listen, &extra).await,
            );
        }
        let path =
            |i: usize, proxy: &str| dir.path().join(CLUSTERS[i]).join(format!("{proxy}.yaml"));
        let gateways = [
            start_file(&path(0, "gateway"), &[]).await,
            start_file(&path(1, "gateway"), &[]).await,
        ];
        let internals = [
            start_file(&path(0, "internal"), &[]).await,
            start_file(&path(1, "internal"), &[]).await,
        ];
        Chain {
            dir,
            _cas: cas,
            gateways,
            internals,
        }
    }

    /// Where the applications of cluster `i` call their internal proxy.
    fn outbound(&self, i: usize) -> std::net::SocketAddr {
        self.internals[i].router("outbound")
    }

    fn config(&self, i: usize, proxy: &str) -> PathBuf {
        self.dir
            .path()
            .join(CLUSTERS[i])
            .join(format!("{proxy}.yaml"))
    }

    /// Replaces gateway `i` with `weft proxy --upgrade`; returns the old process, which
    /// drains (streams run on it until they end, within its `shutdownGrace`) and exits.
    async fn upgrade_gateway(&mut self, i: usize) -> Weft {
        let next = start_file(&self.config(i, "gateway"), &["--upgrade"]).await;
        std::mem::replace(&mut self.gateways[i], next)
    }

    fn stderr(&self) -> String {
        let mut out = String::new();
        for (i, name) in CLUSTERS.iter().enumerate() {
            for (kind, w) in [
                ("gateway", &self.gateways[i]),
                ("internal", &self.internals[i]),
            ] {
                out.push_str(&format!("--- {name} {kind} ---\n{}\n", w.stderr()));
            }
        }
        out
    }
}

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway")
}

/// `127.<net>.<cluster + 1>.<host>`: the address of a host of cluster `i` in a copy.
fn host_ip(net: u8, i: usize, host: u8) -> String {
    format!("127.{net}.{}.{host}", i + 1)
}

/// Copies the example's files (not what `run.sh` makes) to `to`, moving its addresses from
/// 127.0.1.x and 127.0.2.x to 127.`net`.1.x and 127.`net`.2.x.
fn copy_example(from: &Path, to: &Path, net: u8) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["ca", "certs", "www"].contains(&name.as_str()) || name.ends_with(".sock") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_example(&entry.path(), &target, net);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let moved = text
                .replace("127.0.1.", &format!("127.{net}.1."))
                .replace("127.0.2.", &format!("127.{net}.2."));
            std::fs::write(&target, moved).unwrap();
        }
    }
}

async fn start_file(config: &Path, flags: &[&str]) -> Weft {
    Weft::try_start_file(bin(), flags, config)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_between_clusters_through_both_gateways_with_mutual_tls_on_every_hop() {
    let (books, mut heads) = recording_app().await;
    let web = Upstream::start("web", Behaviour::new().echo()).await;
    let chain = Chain::start("1h", &[(1, "books", books), (0, "web", web.addr())]).await;

    // Cluster A to books in cluster B: the request arrives as its client wrote it (HTTP/1.1,
    // header names spelled as sent), with no `l5d-*` header from cluster A: the gateway of
    // cluster B clears them.
    let req = b"GET /spelled HTTP/1.1\r\nHost: books\r\nX-Blah-Token: abc\r\nx-lower: 1\r\nX-Blah-Token: def\r\nl5d-from-a: steer\r\n\r\n";
    let rsp = raw::exchange(chain.outbound(0), req, Duration::from_secs(10)).await;
    let rsp = String::from_utf8_lossy(&rsp);
    assert!(rsp.starts_with("HTTP/1.1 200"), "{rsp}\n{}", chain.stderr());
    let head = heads.recv().await.expect("books got the request");
    assert!(head.starts_with("GET /spelled HTTP/1.1\r\n"), "{head}");
    assert_spelled_as_sent(&head);
    assert!(!head.to_ascii_lowercase().contains("l5d-"), "{head}");

    // Cluster B to web in cluster A, and web from its own cluster (no gateway on the way).
    let from_b = Client::http1(chain.outbound(1))
        .get("web", "/")
        .await
        .unwrap();
    assert_eq!(
        (from_b.status.as_u16(), from_b.upstream()),
        (200, Some("web"))
    );
    let local = Client::http2(chain.outbound(0))
        .get("web", "/")
        .await
        .unwrap();
    assert_eq!(
        (local.status.as_u16(), local.upstream()),
        (200, Some("web"))
    );

    // Every hop was mutual TLS: each gateway terminated handshakes on both its routers,
    // and a plaintext or anonymous client is refused on each of them.
    for (i, gw) in chain.gateways.iter().enumerate() {
        let text = get_metrics(gw.admin()).await;
        for router in ["outgoing", "incoming"] {
            let ok = metrics::sum(
                &text,
                "weft_tls_handshakes_total",
                &[("router", router), ("result", "ok")],
            );
            assert!(
                ok >= 1.0,
                "gateway {i} router {router}: {ok} handshakes\n{text}"
            );
            let plain = Client::http1(gw.router(router))
                .get("books", "/")
                .await
                .unwrap();
            assert_eq!(
                plain.status.as_u16(),
                403,
                "gateway {i} {router}: {}",
                plain.text()
            );
        }
    }
    // The internal proxy of cluster B only admits its own trust domain: not even cluster A's
    // gateway could reach it directly (the chain above went through gateway B).
    let text = get_metrics(chain.internals[1].admin()).await;
    assert!(
        metrics::sum(
            &text,
            "weft_tls_handshakes_total",
            &[("router", "inbound"), ("result", "ok")]
        ) >= 1.0,
        "{text}"
    );

    // A service neither cluster has: refused at the far gateway, said so, nothing hangs.
    let none = Client::http1(chain.outbound(0))
        .get("nothing", "/")
        .await
        .unwrap();
    assert!(
        none.status.is_client_error() || none.status.is_server_error(),
        "{}",
        none.status
    );
    assert!(none.proxy_error().is_some(), "{:?}", none.headers);
}

/// Sends GETs for `authority` through `entry` until `stop`; counts the 200s and records
/// everything else.
fn load(
    client: Client,
    authority: &'static str,
    stop: Arc<AtomicBool>,
    failures: Failures,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut ok = 0;
        while !stop.load(Ordering::SeqCst) {
            match client.get(authority, "/").await {
                Ok(r) if r.status == 200 => ok += 1,
                Ok(r) => failures.lock().unwrap().push(format!(
                    "{authority}: {} {:?} {}",
                    r.status,
                    r.proxy_error(),
                    r.text()
                )),
                Err(e) => failures.lock().unwrap().push(format!("{authority}: {e}")),
            }
        }
        ok
    })
}

/// When gateway `w`'s certificate expires (its metric), in Unix seconds.
async fn expiry(w: &Weft) -> f64 {
    let text = get_metrics(w.admin()).await;
    metrics::sum(&text, "weft_identity_cert_expiry_timestamp_seconds", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_gateways_upgrade_and_renew_their_certificates_under_load_without_a_failure() {
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let web = Upstream::start("web", Behaviour::new().echo()).await;
    let (_grpc_server, grpc_port) = start_echo_server().await;
    let grpc_addr = std::net::SocketAddr::from(([127, 0, 0, 1], grpc_port));
    let (_grpc_server_a, grpc_port_a) = start_echo_server().await;
    let grpc_addr_a = std::net::SocketAddr::from(([127, 0, 0, 1], grpc_port_a));
    // One-minute certificates (the shortest the CA issues, back-dated a minute): each proxy
    // renews its own 8 to 20 s after it got it.
    let mut chain = Chain::start(
        "1m",
        &[
            (1, "books", books.addr()),
            (0, "web", web.addr()),
            (1, "echo", grpc_addr),
            (0, "chat", grpc_addr_a),
        ],
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Failures = Arc::default();
    let loads = [
        load(
            Client::http1(chain.outbound(0)),
            "books",
            stop.clone(),
            failures.clone(),
        ),
        load(
            Client::http2(chain.outbound(0)),
            "books",
            stop.clone(),
            failures.clone(),
        ),
        load(
            Client::http1(chain.outbound(1)),
            "web",
            stop.clone(),
            failures.clone(),
        ),
    ];
    // A gRPC stream from cluster A to echo in cluster B, and one back from cluster B to chat
    // in cluster A, open across both upgrades: they stay on the old gateways, which exit
    // once they have ended.
    const STREAM_SECS: u64 = 20;
    let streams = [
        (
            "A to B",
            ChatClient::spawn(chain.outbound(0), "echo", STREAM_SECS, 0.5),
        ),
        (
            "B to A",
            ChatClient::spawn(chain.outbound(1), "chat", STREAM_SECS, 0.5),
        ),
    ];

    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = [
        expiry(&chain.gateways[0]).await,
        expiry(&chain.gateways[1]).await,
    ];
    let mut old = vec![chain.upgrade_gateway(0).await];
    tokio::time::sleep(Duration::from_secs(2)).await;
    old.push(chain.upgrade_gateway(1).await);
    let mut reports = Vec::new();
    for (direction, stream) in streams {
        reports.push((direction, stream.report().await));
    }
    for (i, mut w) in old.into_iter().enumerate() {
        let status = w.wait_exit(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "old gateway {i}: {status:?}\n{}",
            w.stderr()
        );
    }

    // The new gateways got certificates of their own at start; wait until the one of
    // cluster A renews it under load.
    let started = expiry(&chain.gateways[0]).await;
    assert!(started >= first[0], "{started} < {}", first[0]);
    let gw = &chain.gateways[0];
    let renewed = eventually(Duration::from_secs(60), || async move {
        (expiry(gw).await > started).then_some(())
    })
    .await;
    assert!(
        renewed.is_some(),
        "gateway A never renewed\n{}",
        chain.stderr()
    );
    assert!(expiry(&chain.gateways[1]).await >= first[1]);

    let (served, failures) = stop_loads(&stop, loads, &failures).await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}\n{}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(5)],
        chain.stderr()
    );
    assert!(served > 100, "only {served} requests served");
    for (direction, report) in &reports {
        assert_eq!(
            report["status"],
            "OK",
            "gRPC stream {direction}: {report}\n{}",
            chain.stderr()
        );
        assert!(
            report["sent"].as_u64().unwrap_or(0) > 0,
            "gRPC stream {direction}: {report}"
        );
        assert_eq!(
            report["received"], report["sent"],
            "gRPC stream {direction}: {report}"
        );
        assert_eq!(
            report["out_of_order"], 0,
            "gRPC stream {direction}: {report}"
        );
        assert!(
            report["elapsed"].as_f64().unwrap_or(0.0) >= STREAM_SECS as f64,
            "gRPC stream {direction}: {report}"
        );
    }
    eprintln!("{served} requests and {STREAM_SECS} s gRPC streams both ways across 2 gateway upgrades and a renewal, none failed");
}
