//! End to end: a balancer that balances (issue 13). P2C over peak-EWMA
//! (`client.loadBalancer: {kind: ewma, decay}`) must spread requests over identical
//! instances, keep load off a slower one, and give an instance that recovers its share back
//! within `decay`. Shares are counted in requests each instance received, never in time.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::task::JoinSet;

/// weft whose `books` is every instance in `instances`, with `client` YAML keys (may be
/// empty).
async fn weft_over(instances: &[&Upstream], client: &str) -> (Weft, Disco) {
    let disco = Disco::new();
    let lines: String = instances.iter().map(|u| u.fs_line()).collect();
    disco.write("books", &lines);
    let extra: Vec<&str> = [client].into_iter().filter(|c| !c.is_empty()).collect();
    let weft = Weft::start(
        bin(),
        &config(&disco, &[router("outbound", "/svc => /#/fs;", &extra)]),
    )
    .await;
    (weft, disco)
}

/// Requests each instance has received so far.
fn counts(instances: &[&Upstream]) -> Vec<usize> {
    instances.iter().map(|u| u.requests()).collect()
}

/// Asserts a response is a 200 from one of the instances.
fn assert_ok(r: Result<TestResponse, weft_test::ClientError>, what: &str) {
    match r {
        Ok(r) if r.status == 200 && r.upstream().is_some() => {}
        Ok(r) => panic!("{what}: {} {:?} {}", r.status, r.proxy_error(), r.text()),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// `workers` clients sending GETs back to back through weft until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    workers: JoinSet<()>,
}

impl Load {
    fn start(weft: &Weft, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for w in 0..workers {
            let (client, stop) = (weft.http1("outbound"), stop.clone());
            set.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    assert_ok(client.get("books", "/").await, &format!("worker {w}"));
                }
            });
        }
        Load { stop, workers: set }
    }

    /// Stops the workers; panics if any request failed.
    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(done) = self.workers.join_next().await {
            done.expect("a load worker failed");
        }
    }
}

/// `workers` clients sending `per_worker` GETs each, back to back; panics if one fails.
async fn concurrent_gets(weft: &Weft, workers: usize, per_worker: usize) {
    let mut set = JoinSet::new();
    for w in 0..workers {
        let client = weft.http1("outbound");
        set.spawn(async move {
            for i in 0..per_worker {
                assert_ok(
                    client.get("books", "/").await,
                    &format!("worker {w} request {i}"),
                );
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("a worker failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identical_instances_share_sequential_requests() {
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    let (weft, _disco) = weft_over(&[&a, &b], "").await;
    let client = weft.http1("outbound");

    const REQUESTS: usize = 200;
    for i in 0..REQUESTS {
        assert_ok(client.get("books", "/").await, &format!("request {i}"));
    }
    let got = counts(&[&a, &b]);
    println!("a, b: {got:?}");
    assert_eq!(got.iter().sum::<usize>(), REQUESTS);
    assert!(
        got.iter().all(|n| *n * 100 >= REQUESTS * 35),
        "each identical instance should get at least 35% of {REQUESTS} requests: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20ms_slower_instance_gets_under_a_tenth_of_concurrent_load() {
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    let slow = Upstream::start("slow", Behaviour::new().delay(Duration::from_millis(20))).await;
    let instances = [&a, &b, &slow];
    let (weft, _disco) = weft_over(&instances, "").await;

    // From a cold start: no instance has been measured when the load begins.
    const WORKERS: usize = 8;
    const PER_WORKER: usize = 100;
    concurrent_gets(&weft, WORKERS, PER_WORKER).await;
    let got = counts(&instances);
    println!("a, b, slow: {got:?}");
    let total = WORKERS * PER_WORKER;
    assert_eq!(got.iter().sum::<usize>(), total);
    assert!(
        got[2] * 10 < total,
        "the 20 ms slower instance got {} of {total} requests (a, b, slow: {got:?})",
        got[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_recovers_wins_its_share_back_within_decay() {
    // With `decay: 2s`, an estimate not updated for 2 s no longer counts (endpoint/load.rs)
    // and the endpoint costs its peers' average again. `c` is 300 ms slow, far slower than
    // any latency spike of its peers on a loaded machine, so only a lapsed estimate gets it
    // a request: while slow it serves a few requests each time its estimate lapses. Once
    // fast, its last slow estimate lapses at the latest `decay` plus one slow request
    // (2.3 s) after recovery; it is then picked, measured as fast as its peers, and keeps a
    // fair share (about a third) for the rest of the window of 2 × decay: at least about
    // (1/3)·(1.7 s / 4 s), 14% of the window's requests. The test asks for 1/12.
    const DECAY: Duration = Duration::from_secs(2);
    let (a, b) = (Upstream::ok("a").await, Upstream::ok("b").await);
    let c = Upstream::start("c", Behaviour::new().delay(Duration::from_millis(300))).await;
    let instances = [&a, &b, &c];
    let (weft, _disco) = weft_over(
        &instances,
        "client: {loadBalancer: {kind: ewma, decay: 2s}}",
    )
    .await;

    let load = Load::start(&weft, 4);
    // The scenario's pacing: each phase lasts 2 × decay.
    tokio::time::sleep(2 * DECAY).await;
    let slow_phase = counts(&instances);
    c.set_behaviour(Behaviour::new());
    tokio::time::sleep(2 * DECAY).await;
    let recovered = counts(&instances);
    load.stop().await;

    let slow_total: usize = slow_phase.iter().sum();
    let window: Vec<usize> = recovered
        .iter()
        .zip(&slow_phase)
        .map(|(after, before)| after - before)
        .collect();
    let window_total: usize = window.iter().sum();
    println!("slow phase (a, b, c): {slow_phase:?}; recovery window: {window:?}");
    assert!(
        slow_phase[2] * 20 < slow_total,
        "while slow, c should serve under 5% of requests: {slow_phase:?}"
    );
    assert!(
        window[2] * 12 >= window_total,
        "within 2 × decay of recovering, c should serve at least 1/12 of requests: {window:?}"
    );
}
