//! End to end: a proxy with `identity.issuer` gets its certificate from `weft identity serve`
//! at start, renews it under load with no failed request, keeps serving while the CA is down,
//! and renews again once the CA is back (docs/identity.md).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::pki::{start_inbound_as, CaProcess, Mesh, Pki, BOOKS, TRUST_DOMAIN, WEB};
use support::*;

/// When the inbound proxy's current certificate expires (its metric), in Unix seconds.
async fn expiry(weft: &Weft) -> f64 {
    let text = get_metrics(weft.admin()).await;
    metrics::sum(&text, "weft_identity_cert_expiry_timestamp_seconds", &[])
}

/// Waits (up to `within`) until the certificate's expiry moves past `after`; returns it.
async fn renewed_after(weft: &Weft, after: f64, within: Duration) -> Option<f64> {
    eventually(within, || async move {
        let now = expiry(weft).await;
        (now > after).then_some(now)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_gets_and_renews_its_certificate_from_the_ca_under_load() {
    let pki = Pki::new(TRUST_DOMAIN);
    let dir = tempfile::tempdir().unwrap();
    // A fixed address, so the CA can come back where the proxy looks for it.
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    // One-minute certificates (the shortest the CA issues; back-dated a minute): renewed
    // 8 to 20 s after each issue.
    let ca = CaProcess::start(&pki, dir.path(), &listen, &["--lifetime", "1m"]).await;
    let (cert, key) = pki.files("books");
    let identity = format!(
        "identity:\n  cert: '{}'\n  key: '{}'\n  trustBundle: '{}'\n  issuer: {{address: '{listen}', tokenFile: '{}', spiffeId: '{BOOKS}'}}\n",
        cert.display(),
        key.display(),
        pki.bundle().display(),
        dir.path().join("tokens").display(),
    );
    assert!(!cert.exists(), "the proxy writes the certificate itself");
    let app = Upstream::ok("books").await;
    let inbound = start_inbound_as(&identity, app.port(), "").await;
    assert!(
        cert.exists(),
        "the certificate was obtained before the proxy listened"
    );
    let mesh = Mesh::around(pki, inbound, WEB).await;

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Failures = Arc::default();
    let load = {
        let router = mesh.outbound.router("outbound");
        get_loop(
            move || Client::http1(router),
            false,
            stop.clone(),
            failures.clone(),
        )
    };

    let first = expiry(&mesh.inbound).await;
    assert!(first > 0.0, "no certificate expiry reported");
    let second = renewed_after(&mesh.inbound, first, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("no renewal within 30 s\n{}", mesh.inbound.stderr()));

    // The CA goes away: renewals fail, the proxy keeps serving with what it has.
    drop(ca);
    let inbound = &mesh.inbound;
    let noticed = eventually(Duration::from_secs(30), || async move {
        inbound
            .stderr()
            .contains("certificate renewal failed")
            .then_some(())
    })
    .await;
    assert!(noticed.is_some(), "{}", mesh.inbound.stderr());

    // It comes back: the next attempt renews.
    let ca = CaProcess::start(&mesh.pki, dir.path(), &listen, &["--lifetime", "1m"]).await;
    let third = renewed_after(&mesh.inbound, second, Duration::from_secs(40)).await;
    assert!(
        third.is_some(),
        "no renewal after the CA came back\n{}\n--- CA ---\n{}",
        mesh.inbound.stderr(),
        ca.stderr()
    );

    stop.store(true, Ordering::SeqCst);
    let served = load.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across renewals and a CA outage, e.g. {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served > 50, "only {served} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_with_an_unreachable_issuer_and_no_certificate_does_not_start() {
    let pki = Pki::new(TRUST_DOMAIN);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), "s3cret\n").unwrap();
    let (cert, key) = pki.files("books");
    let config = format!(
        "identity:\n  cert: '{}'\n  key: '{}'\n  trustBundle: '{}'\n  issuer: {{address: '127.0.0.1:{}', tokenFile: '{}', spiffeId: '{BOOKS}'}}\n\
         routers:\n  - label: inbound\n    servers: [{{ip: 127.0.0.1, port: 0}}]\n    dtab: /svc => /$/inet/127.0.0.1/9;\n",
        cert.display(),
        key.display(),
        pki.bundle().display(),
        closed_port(),
        dir.path().join("tokens").display(),
    );
    let exited = Weft::run_to_exit(bin(), &["proxy", "-c"], &config, Duration::from_secs(60)).await;
    assert!(!exited.status.success());
    assert!(
        exited.stderr.contains("identity") && exited.stderr.contains("connect"),
        "{}",
        exited.stderr
    );
}
