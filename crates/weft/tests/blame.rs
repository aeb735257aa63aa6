//! End to end: a client that breaks its own request body is at fault, not the service it
//! called (issue 13, "Errors drive behaviour"). Aborted uploads and malformed chunked bodies
//! against one healthy endpoint must not count as the endpoint's failures: no ejection by
//! failure accrual, no `fault="upstream"` in the metrics, and the next ordinary requests all
//! reach the application.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;
use weft_test::broken::{AbandonedUpload, H2Upload, MalformedChunked};

/// Broken uploads of each kind: four times what the default failure accrual
/// (`consecutiveFailures`, 5) needs to eject the only endpoint if they were blamed on it.
const BROKEN: usize = 20;

/// weft (default client settings) in front of one healthy application `books`.
async fn healthy_books() -> (Weft, Upstream, Disco) {
    let books = Upstream::ok("books").await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let weft = start_fs_weft(&disco).await;
    (weft, books, disco)
}

/// Waits until `books` has received `n` requests: the latest upload is under way upstream,
/// so breaking it now breaks an exchange in progress.
async fn until_app_saw(weft: &Weft, books: &Upstream, n: usize) {
    let seen = eventually(Duration::from_secs(10), || async {
        (books.requests() >= n).then_some(())
    })
    .await;
    if seen.is_none() {
        panic!(
            "the app saw {} requests, expected {n}; weft's view:\n{}",
            books.requests(),
            blame_metrics(weft).await
        );
    }
}

/// The response and ejection lines of weft's metrics, for failure messages.
async fn blame_metrics(weft: &Weft) -> String {
    get_metrics(weft.admin())
        .await
        .lines()
        .filter(|l| l.starts_with("weft_responses_total") || l.starts_with("weft_ejections_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `BROKEN` ordinary GETs through `client`: every one a 200 from the application.
async fn ordinary_gets_all_succeed(client: &Client) {
    for i in 0..BROKEN {
        let r = client.get("books", "/").await.expect("GET through weft");
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, Some("books")),
            "GET {i} after the broken uploads: {} {:?} {}",
            r.status,
            r.headers,
            r.text()
        );
    }
}

/// The `error` labels of `weft_responses_total{fault="downstream"}` with their counts, once
/// they add up to `n` (polled: an exchange is recorded as it ends, 10 s at most).
async fn downstream_errors(weft: &Weft, n: usize) -> BTreeMap<String, f64> {
    let mut last = BTreeMap::new();
    for _ in 0..500 {
        let text = get_metrics(weft.admin()).await;
        last = BTreeMap::new();
        for s in metrics::matching(&text, "weft_responses_total", &[("fault", "downstream")]) {
            let error = s.label("error").unwrap_or("").to_owned();
            *last.entry(error).or_insert(0.0) += s.value;
        }
        if last.values().sum::<f64>() >= n as f64 {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("weft_responses_total{{fault=\"downstream\"}} never reached {n}: {last:?}");
}

/// Failure accrual ejected nothing and no response was blamed on the upstream.
async fn assert_service_not_blamed(weft: &Weft) {
    let text = get_metrics(weft.admin()).await;
    assert_eq!(
        metrics::sum(&text, "weft_ejections_total", &[]),
        0.0,
        "the healthy endpoint was ejected"
    );
    let blamed: Vec<_> = metrics::matching(&text, "weft_responses_total", &[])
        .into_iter()
        .filter(|s| s.label("fault") == Some("upstream"))
        .collect();
    assert!(
        blamed.is_empty(),
        "responses blamed on the upstream: {blamed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_uploads_and_malformed_chunks_never_take_a_healthy_service_down() {
    let (weft, books, _disco) = healthy_books().await;
    let addr = weft.router("outbound");

    for i in 0..BROKEN {
        let upload = AbandonedUpload::start(addr, "books").await;
        until_app_saw(&weft, &books, i + 1).await;
        upload.abandon();
    }
    for i in 0..BROKEN {
        let upload = MalformedChunked::start(addr, "books").await;
        until_app_saw(&weft, &books, BROKEN + i + 1).await;
        let got = upload.send_bad_chunk().await;
        assert_eq!(
            (
                raw::status(&got),
                raw::header(&got, "l5d-proxy-error").as_deref()
            ),
            (Some(400), Some("bad-request-body")),
            "malformed chunk {i}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    ordinary_gets_all_succeed(&weft.http1("outbound")).await;

    // An abandoned upload's client is gone, but weft learns of it through the request body
    // it is still streaming upstream, and the exchange fails as the client's broken body.
    let errors = downstream_errors(&weft, 2 * BROKEN).await;
    assert_eq!(
        errors,
        BTreeMap::from([("bad-request-body".to_owned(), (2 * BROKEN) as f64)]),
        "the 40 broken uploads, by error label"
    );
    assert_service_not_blamed(&weft).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_uploads_the_client_resets_never_take_a_healthy_service_down() {
    let (weft, books, _disco) = healthy_books().await;
    let addr = weft.router("outbound");

    for i in 0..BROKEN {
        let upload = H2Upload::start(addr, "books").await;
        until_app_saw(&weft, &books, i + 1).await;
        // The client reset its own stream: it expects no answer, and gets none or a 400.
        if let Ok(status) = upload.fail().await {
            assert_eq!(status, 400, "upload {i}");
        }
    }
    ordinary_gets_all_succeed(&weft.http2("outbound")).await;

    // The reset reaches weft both as a failed request body and as the end of the stream.
    // hyper drops the request's handling as soon as it sees the reset, so the exchange ends
    // `cancelled` (every run so far); the failed body could win that race in principle, and
    // either is the client's doing.
    let errors = downstream_errors(&weft, BROKEN).await;
    println!("the broken HTTP/2 uploads, by error label: {errors:?}");
    assert!(
        errors
            .keys()
            .all(|e| e == "bad-request-body" || e == "cancelled"),
        "error labels of the broken uploads: {errors:?}"
    );
    assert_eq!(errors.values().sum::<f64>(), BROKEN as f64, "{errors:?}");
    assert_service_not_blamed(&weft).await;
}
