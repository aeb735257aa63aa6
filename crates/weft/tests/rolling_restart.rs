//! End to end: a rolling restart of every inbound proxy of a three-instance service, with
//! GETs flowing through an outbound proxy, loses no request (issue 16, item 3).
//!
//! Three apps, each behind its own inbound weft; one outbound weft finds the inbound proxies
//! through the `fs` namer. Each inbound proxy in turn gets SIGTERM, drains, exits and is
//! started again on the same address, twice over, while HTTP/1.1 keep-alive clients and one
//! HTTP/2 client send GETs through the outbound proxy without pause. A variant restarts two
//! instances back to back, waiting only for readiness between them.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::pki::{Pki, BOOKS, TRUST_DOMAIN, WEB};
use support::*;
use weft_test::Signal;

/// HTTP/1.1 keep-alive clients sending through the outbound proxy at once.
const HTTP1_CLIENTS: usize = 4;
/// Requests answered between one restart and the next.
const SETTLE: u64 = 300;
/// Rounds of restarting every inbound proxy.
const ROUNDS: usize = 2;

/// How the inbound proxies are reached.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Plaintext; discovery lists each inbound proxy's own address.
    Plain,
    /// Mesh mTLS; discovery lists hosts and the `port` transformer picks the inbound port.
    MutualTls,
}

/// The port of every inbound router in the mTLS variant (each on its own loopback address).
const MESH_PORT: u16 = 4143;

/// One app instance and the inbound proxy in front of it.
struct Instance {
    app: Upstream,
    /// The inbound router's address, fixed across restarts.
    addr: SocketAddr,
    config: String,
    weft: Weft,
}

/// The config of an inbound proxy on `addr` in front of `app`.
fn inbound_config(transport: Transport, pki: &Pki, addr: SocketAddr, app: &Upstream) -> String {
    let (identity, tls) = match transport {
        Transport::Plain => (String::new(), ""),
        Transport::MutualTls => (
            pki.identity_yaml("books"),
            "    tls: {requireTls: true, authorizedClients: ['spiffe://weft.test/ns/default/sa/web']}\n",
        ),
    };
    format!(
        "{identity}admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         routers:\n  - label: inbound\n    servers: [{{ip: {}, port: {}}}]\n{tls}    dtab: |\n      /svc => /$/inet/127.0.0.1/{};\n",
        addr.ip(),
        addr.port(),
        app.port()
    )
}

/// Starts an inbound proxy for `app`: on an ephemeral port (plain), or on its own loopback
/// address and [`MESH_PORT`] (mTLS). Returns it with the fixed address it keeps.
async fn start_instance(transport: Transport, pki: &Pki, app: Upstream) -> Instance {
    let wanted = match transport {
        Transport::Plain => SocketAddr::from(([127, 0, 0, 1], 0)),
        Transport::MutualTls => SocketAddr::new(private_loopback(), MESH_PORT),
    };
    let weft = Weft::start(bin(), &inbound_config(transport, pki, wanted, &app)).await;
    let addr = weft.router("inbound");
    let config = inbound_config(transport, pki, addr, &app);
    Instance {
        app,
        addr,
        config,
        weft,
    }
}

/// The outbound proxy's config: `/svc => /#/fs`, mesh TLS towards [`BOOKS`] with mTLS.
fn outbound_config(transport: Transport, pki: &Pki, disco: &Disco) -> String {
    let (identity, transformers, client) = match transport {
        Transport::Plain => (String::new(), String::new(), ""),
        Transport::MutualTls => (
            pki.identity_yaml("client"),
            format!(", transformers: [{{kind: port, port: {MESH_PORT}}}]"),
            "    client: {tls: {serverIdentity: 'spiffe://weft.test/ns/default/sa/books'}}\n",
        ),
    };
    format!(
        "{identity}admin: {{ip: 127.0.0.1, port: 0, shutdownGrace: 10s}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}'{transformers}}}\n\
         routers:\n  - label: outbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n{client}    dtab: |\n      /svc => /#/fs;\n",
        disco.path().display()
    )
}

/// What the load saw: requests answered 200, and every failure with its reason.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
}

/// Sends GETs for `books` through `client` until `stop`, counting into `tally`.
async fn load(client: Client, name: &'static str, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    while !stop.load(Ordering::Relaxed) {
        let outcome = match client.get("books", "/r").await {
            Ok(r) if r.status == 200 => None,
            Ok(r) => Some(format!(
                "{name}: {} {:?} {}",
                r.status,
                r.proxy_error(),
                r.text()
            )),
            Err(e) => Some(format!("{name}: {e}")),
        };
        let mut t = tally.lock().unwrap();
        match outcome {
            None => t.ok += 1,
            Some(f) => t.failed.push(f),
        }
    }
}

/// How long the rolling restart waits between two instances.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Until the outbound proxy sends to the restarted instance again and [`SETTLE`] more
    /// requests were answered.
    Settled,
    /// Until [`SETTLE`] more requests were answered, whether or not the outbound proxy sends to
    /// the restarted instance yet: a Kubernetes rolling update goes on once the new proxy is
    /// ready (`/ready` 200), whatever its callers think of it.
    Ready,
}

/// The scenario: start `count` instances, put them under load, restart every inbound proxy in
/// turn [`ROUNDS`] times at `pace`, and check that no request failed.
async fn rolling_restart(transport: Transport, count: usize, pace: Pace) {
    let pki = Pki::new(TRUST_DOMAIN);
    pki.issue("books", BOOKS);
    pki.issue("client", WEB);
    let mut instances = Vec::new();
    for i in 0..count {
        let app = Upstream::ok(&format!("books-{i}")).await;
        instances.push(start_instance(transport, &pki, app).await);
    }
    let disco = Disco::new();
    let lines: String = instances
        .iter()
        .map(|i| match transport {
            Transport::Plain => format!("{} {}\n", i.addr.ip(), i.addr.port()),
            Transport::MutualTls => format!("{} 9999\n", i.addr.ip()),
        })
        .collect();
    disco.write("books", &lines);
    let outbound = Weft::start(bin(), &outbound_config(transport, &pki, &disco)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for _ in 0..HTTP1_CLIENTS {
        let client = outbound.http1("outbound");
        tasks.push(tokio::spawn(load(
            client,
            "http1",
            stop.clone(),
            tally.clone(),
        )));
    }
    tasks.push(tokio::spawn(load(
        outbound.http2("outbound"),
        "http2",
        stop.clone(),
        tally.clone(),
    )));

    // Every instance serves before the first restart.
    let started = tokio::time::Instant::now();
    let all_serving = eventually(Duration::from_secs(10), || async {
        instances.iter().all(|i| i.app.requests() > 0).then_some(())
    })
    .await;
    assert!(
        all_serving.is_some(),
        "the load never reached every instance"
    );

    for _round in 0..ROUNDS {
        for (i, inst) in instances.iter_mut().enumerate() {
            inst.weft.signal(Signal::Term);
            let status = inst.weft.wait_exit(Duration::from_secs(15)).await;
            assert!(
                status.success(),
                "inbound exited with {status}\n{}",
                inst.weft.stderr()
            );
            inst.weft = Weft::start(bin(), &inst.config).await;
            assert_eq!(
                inst.weft.router("inbound"),
                inst.addr,
                "restarted on its address"
            );
            // The outbound proxy sends to the restarted instance again, and the load runs on
            // for a while, before the next one goes down (as an operator's rolling update
            // waits for readiness).
            let before = inst.app.requests();
            let ok_before = tally.lock().unwrap().ok;
            let app = &inst.app;
            let tally_ref = &tally;
            let back = eventually(Duration::from_secs(30), || async move {
                let ok = tally_ref.lock().unwrap().ok;
                let returned = pace == Pace::Ready || app.requests() > before;
                (returned && ok >= ok_before + SETTLE).then_some(())
            })
            .await;
            assert!(
                back.is_some(),
                "the outbound proxy never came back to instance {i}"
            );
        }
    }

    eprintln!("restarts done after {:?}", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let text = get_metrics(outbound.admin()).await;
    let tally = tally.lock().unwrap();
    let counted = |name: &str| metrics::sum(&text, name, &[]);
    eprintln!(
        "rolling restart ({}): {} ok, {} failed; requeues {}, retries {}, ejections {}, revivals {}",
        if transport == Transport::Plain { "plain" } else { "mtls" },
        tally.ok,
        tally.failed.len(),
        counted("weft_requeues_total"),
        counted("weft_retries_total"),
        counted("weft_ejections_total"),
        counted("weft_revivals_total"),
    );
    assert!(tally.ok > 0, "no request succeeded");
    assert!(
        tally.failed.is_empty(),
        "{} of {} requests failed across the rolling restart:\n{}\noutbound:\n{}",
        tally.failed.len(),
        tally.ok + tally.failed.len() as u64,
        tally.failed.join("\n"),
        outbound.stderr()
    );
    assert_eq!(
        counted("weft_ejections_total"),
        0.0,
        "a draining proxy is not a failing one: failure accrual must not eject it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_every_inbound_proxy_fails_no_request() {
    rolling_restart(Transport::Plain, 3, Pace::Settled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_restarts_of_two_instances_fail_no_request() {
    rolling_restart(Transport::Plain, 2, Pace::Ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_over_mutual_tls_fails_no_request() {
    rolling_restart(Transport::MutualTls, 3, Pace::Settled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_restarts_over_mutual_tls_fail_no_request() {
    rolling_restart(Transport::MutualTls, 2, Pace::Ready).await;
}
