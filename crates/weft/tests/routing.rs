//! End to end: routing by Host through dtabs and the `fs` namer, live endpoint updates,
//! weighted splits and per-request dtab overrides.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_header_routes_each_service_to_its_own_upstream() {
    let books = Upstream::ok("books").await;
    let authors = Upstream::ok("authors").await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    disco.write("authors", &authors.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http1("outbound");

    for _ in 0..3 {
        for (host, name) in [("books", "books"), ("authors", "authors")] {
            let r = client.get(host, "/").await.expect("request through weft");
            assert_eq!(r.status, 200, "{host}: {}", r.text());
            assert_eq!(r.upstream(), Some(name), "Host {host} went elsewhere");
            assert_eq!(r.text(), format!("hello from {name}\n"));
        }
    }
    assert_eq!((books.requests(), authors.requests()), (3, 3));
}

/// Results of the request loop: (start time, upstream name or error).
type Log = Arc<Mutex<Vec<(Instant, Result<String, String>)>>>;

/// Runs `workers` loops of requests to Host `books` until `stop`, logging every result.
fn request_loop(client: Client, workers: usize, stop: Arc<AtomicBool>, log: Log) {
    for _ in 0..workers {
        let (client, stop, log) = (client.clone(), stop.clone(), log.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let start = Instant::now();
                let res = match client.get("books", "/").await {
                    Ok(r) if r.status == 200 => Ok(r.upstream().unwrap_or("?").to_owned()),
                    Ok(r) => Err(format!("{} {:?} {}", r.status, r.proxy_error(), r.text())),
                    Err(e) => Err(e.to_string()),
                };
                log.lock().unwrap().push((start, res));
            }
        });
    }
}

/// Waits until responses from `to` arrive, then checks that every request started more
/// than `within` after `switched` went to `to`. Returns how long the switch took.
async fn wait_for_switch(log: &Log, switched: Instant, to: &str, within: Duration) -> Duration {
    // Wait until `within` has passed and 20 requests started after it have completed.
    let cutoff = switched + within;
    let enough = eventually(within + Duration::from_secs(5), || async move {
        let log = log.lock().unwrap();
        (log.iter().filter(|(t, _)| *t > cutoff).count() >= 20).then_some(())
    })
    .await;
    let log = log.lock().unwrap();
    assert!(
        enough.is_some(),
        "the request loop stalled: {:?}",
        log.last()
    );
    let late_elsewhere: Vec<_> = log
        .iter()
        .filter(|(t, r)| *t > cutoff && r.as_deref().ok() != Some(to))
        .map(|(_, r)| r.clone())
        .collect();
    assert!(
        late_elsewhere.is_empty(),
        "{} requests started > {within:?} after the file switched still did not reach {to}: {:?}",
        late_elsewhere.len(),
        &late_elsewhere[..late_elsewhere.len().min(5)]
    );
    log.iter()
        .find(|(t, r)| *t > switched && r.as_deref().ok() == Some(to))
        .map(|(t, _)| t.duration_since(switched))
        .expect("some request reached the new upstream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoint_file_edits_move_traffic_without_failing_requests() {
    let a = Upstream::ok("a").await;
    let b = Upstream::ok("b").await;
    let disco = Disco::new();
    disco.write("books", &a.fs_line());
    let weft = start_fs_weft(&disco).await;

    let stop = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    request_loop(weft.http1("outbound"), 8, stop.clone(), log.clone());
    let a_ref = &a;
    let warm = eventually(Duration::from_secs(10), || async move {
        (a_ref.requests() >= 50).then_some(())
    })
    .await;
    assert!(
        warm.is_some(),
        "traffic never reached a: {:?}",
        log.lock().unwrap().last()
    );

    // Atomic replacement (write a temp file, rename over): a -> b.
    let switched = Instant::now();
    disco.write("books", &b.fs_line());
    let took_rename = wait_for_switch(&log, switched, "b", Duration::from_secs(1)).await;

    // In-place rewrite (truncate + two writes): b -> a.
    let switched = Instant::now();
    disco.write_in_place("books", &a.fs_line());
    let took_in_place = wait_for_switch(&log, switched, "a", Duration::from_secs(1)).await;

    stop.store(true, Ordering::SeqCst);
    let log = log.lock().unwrap();
    let failed: Vec<_> = log.iter().filter_map(|(_, r)| r.clone().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during endpoint file edits, e.g. {:?}",
        failed.len(),
        log.len(),
        &failed[..failed.len().min(5)]
    );
    eprintln!(
        "{} requests; switch by rename took {took_rename:?}, in place {took_in_place:?}",
        log.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weighted_union_splits_traffic_nine_to_one() {
    let v1 = Upstream::ok("books-v1").await;
    let v2 = Upstream::ok("books-v2").await;
    let disco = Disco::new();
    disco.write("books-v1", &v1.fs_line());
    disco.write("books-v2", &v2.fs_line());
    let dtab = "/svc => /#/fs;\n/svc/books => 9 * /#/fs/books-v1 & 1 * /#/fs/books-v2;";
    let weft = Weft::start(bin(), &outbound_config(&disco, dtab)).await;
    let client = weft.http1("outbound");

    const N: usize = 1000;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut names = Vec::new();
            for _ in 0..N / 10 {
                let r = client.get("books", "/").await.expect("request");
                assert_eq!(r.status, 200, "{}", r.text());
                names.push(r.upstream().unwrap_or("?").to_owned());
            }
            names
        });
    }
    let mut counts = (0usize, 0usize);
    while let Some(names) = tasks.join_next().await {
        for n in names.expect("worker") {
            match n.as_str() {
                "books-v1" => counts.0 += 1,
                "books-v2" => counts.1 += 1,
                other => panic!("request went to {other}"),
            }
        }
    }
    // Binomial(1000, 0.9): mean 900, sd ~9.5. Six sd either side: a flaky failure is
    // practically impossible, a wrong weighting (e.g. 1:1 or 1:9) fails by far.
    assert_eq!(counts.0 + counts.1, N);
    assert!(
        (843..=957).contains(&counts.0),
        "expected ~900 of {N} to books-v1 (9:1), got v1={} v2={}",
        counts.0,
        counts.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn l5d_dtab_header_overrides_routing_for_one_request_and_is_forwarded_as_ctx() {
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let v3 = Upstream::start("books-v3", Behaviour::new().echo()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    disco.write("books-v3", &v3.fs_line());
    let weft = start_fs_weft(&disco).await;
    let client = weft.http1("outbound");

    let dentry = "/svc/books => /#/fs/books-v3";
    let r = client
        .get_with("books", "/", &[("l5d-dtab", dentry)])
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.echo();
    assert_eq!(
        echo.upstream, "books-v3",
        "l5d-dtab did not override routing"
    );
    let ctx = echo
        .header("l5d-ctx-dtab")
        .expect("upstream received l5d-ctx-dtab");
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        squash(&ctx).contains(&squash(dentry)),
        "l5d-ctx-dtab {ctx:?} does not carry {dentry:?}"
    );
    assert!(
        !echo.has_header("l5d-dtab"),
        "l5d-dtab must not be forwarded as-is (it travels as l5d-ctx-dtab)"
    );

    // The override applied to that request only.
    let r = client.get("books", "/").await.expect("request");
    assert_eq!(r.echo().upstream, "books");
    assert!(!r.echo().has_header("l5d-ctx-dtab"));
}
