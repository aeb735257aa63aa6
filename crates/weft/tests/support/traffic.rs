//! [`Traffic`]: requests flowing through a proxy while a test changes its routing, with the
//! upstream that served each and every failure.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_test::Client;

use super::eventually;

/// How long a routing change may take to show in the traffic.
const PATIENCE: Duration = Duration::from_secs(20);

/// Requests to Host `books` in a loop until stopped: the upstream of each, and every failure.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    served: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// Starts `workers` loops of `GET books /` through `client`.
    pub(crate) fn start(client: Client, workers: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (client, stop) = (client.clone(), stop.clone());
                let (served, failures) = (served.clone(), failures.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        match client.get("books", "/").await {
                            Ok(r) if r.status == 200 => served
                                .lock()
                                .unwrap()
                                .push(r.upstream().unwrap_or("?").to_owned()),
                            Ok(r) => failures.lock().unwrap().push(format!(
                                "{} {:?} {}",
                                r.status,
                                r.proxy_error(),
                                r.text()
                            )),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            served,
            failures,
            tasks,
        }
    }

    /// How many requests were served so far.
    pub(crate) fn count(&self) -> usize {
        self.served.lock().unwrap().len()
    }

    /// The share of `v2` among the next `n` requests served (waits for them).
    pub(crate) async fn v2_share(&self, n: usize) -> f64 {
        let from = self.count();
        let served = self.served.clone();
        eventually(PATIENCE, || {
            let served = served.clone();
            async move { (served.lock().unwrap().len() >= from + n).then_some(()) }
        })
        .await
        .expect("traffic flows");
        let served = self.served.lock().unwrap();
        let batch = &served[from..from + n];
        batch.iter().filter(|u| *u == "v2").count() as f64 / n as f64
    }

    /// Stops the loop and asserts that no request failed.
    pub(crate) async fn finish_without_failures(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
}

/// Waits until a batch of 200 requests has a share of v2 within `range`, then asserts that
/// the next 400 do too.
pub(crate) async fn settles(traffic: &Traffic, range: RangeInclusive<f64>, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let share = traffic.v2_share(200).await;
        if range.contains(&share) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: share of v2 still {share}"
        );
    }
    let share = traffic.v2_share(400).await;
    assert!(
        range.contains(&share),
        "{what}: share of v2 {share} after settling"
    );
}
