//! End to end: graceful shutdown on signals.

mod support;

use std::time::Duration;

use support::*;
use weft_test::Signal;

/// Sends a request that the upstream holds for 1.5 s, then `sig`, and checks the drain:
/// `/ready` turns 503, new connections are refused (after the announce window), the request
/// completes with 200, and weft exits 0.
async fn in_flight_request_survives(sig: Signal) {
    let books = Upstream::start("books", Behaviour::new().delay(Duration::from_millis(1500))).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let mut weft = start_fs_weft(&disco).await;
    let router = weft.router("outbound");

    let client = weft.http1("outbound");
    let in_flight = tokio::spawn(async move { client.get("books", "/").await });
    let books_ref = &books;
    let arrived = eventually(Duration::from_secs(5), || async move {
        (books_ref.requests() >= 1).then_some(())
    })
    .await;
    assert!(arrived.is_some(), "the request never reached the upstream");

    weft.signal(sig);

    let weft_ref = &weft;
    let draining = eventually(Duration::from_secs(1), || async move {
        match weft_ref.ready_status().await {
            Some(503) => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(
        draining.is_some(),
        "/ready still 200 one second after {sig:?}"
    );

    // The listener closes after the announce window (`admin.drainAnnounce`, 500 ms by
    // default): allow for it on a busy machine.
    let refused = eventually(Duration::from_secs(5), || async move {
        tokio::net::TcpStream::connect(router).await.err()
    })
    .await;
    assert!(
        refused.is_some(),
        "the router still accepts new connections five seconds after {sig:?}"
    );

    let r = in_flight.await.unwrap().unwrap_or_else(|e| {
        panic!(
            "in-flight request failed across {sig:?}: {e}\n{}",
            weft.stderr()
        )
    });
    assert_eq!(r.status, 200, "{} {:?}", r.text(), r.proxy_error());
    assert_eq!(r.upstream(), Some("books"));

    let status = weft.wait_exit(Duration::from_secs(12)).await;
    assert!(
        status.success(),
        "weft exited with {status} after {sig:?}\n{}",
        weft.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_zero() {
    in_flight_request_survives(Signal::Term).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_like_sigterm() {
    in_flight_request_survives(Signal::Int).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_weft_exits_promptly_on_sigterm() {
    let disco = Disco::new();
    let mut weft = start_fs_weft(&disco).await;
    let start = tokio::time::Instant::now();
    weft.signal(Signal::Term);
    let status = weft.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "exit {status}\n{}", weft.stderr());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "an idle drain took {:?}; nothing was in flight",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_made_while_the_drain_is_announced_are_served_and_told_to_close() {
    let books = Upstream::start("books", Behaviour::new()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    // A long window, so the connection below is surely made within it.
    let config = outbound_config(&disco, "/svc => /#/fs;").replace(
        "shutdownGrace: 10s}",
        "shutdownGrace: 10s, drainAnnounce: 8s}",
    );
    let mut weft = Weft::start(bin(), &config).await;
    let router = weft.router("outbound");

    weft.signal(Signal::Term);
    let weft_ref = &weft;
    let draining = eventually(Duration::from_secs(5), || async move {
        (weft_ref.ready_status().await == Some(503)).then_some(())
    })
    .await;
    assert!(draining.is_some(), "/ready still 200 after SIGTERM");

    // Accepted and served, and told that this response is the connection's last.
    let r = Client::http1(router)
        .get("books", "/")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "a new connection during the announce window: {e}\n{}",
                weft.stderr()
            )
        });
    assert_eq!(r.status, 200, "{} {:?}", r.text(), r.proxy_error());
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);

    let refused = eventually(Duration::from_secs(15), || async move {
        tokio::net::TcpStream::connect(router).await.err()
    })
    .await;
    assert!(refused.is_some(), "the listener never closed");
    let status = weft.wait_exit(Duration::from_secs(12)).await;
    assert!(status.success(), "exit {status}\n{}", weft.stderr());
}
