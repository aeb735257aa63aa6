//! End to end: a proxy with `identity.issuer` gets its certificate from `weft identity serve`
//! at start, renews it under load with no failed request, keeps serving while the CA is down,
//! and renews again once the CA is back (docs/identity.md).

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::pki::{mesh_get, start_inbound_as, CaProcess, Mesh, Pki, BOOKS, TRUST_DOMAIN, WEB};
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

/// The `identity:` config of [`BOOKS`] with its files at `files` (cert, key), trusting
/// `bundle`, asking the CA at `listen` with the token `dir/tokens`.
fn issuer_identity(files: &(PathBuf, PathBuf), bundle: &Path, listen: &str, dir: &Path) -> String {
    format!(
        "identity:\n  cert: '{}'\n  key: '{}'\n  trustBundle: '{}'\n  issuer: {{address: '{listen}', tokenFile: '{}', spiffeId: '{BOOKS}'}}\n",
        files.0.display(),
        files.1.display(),
        bundle.display(),
        dir.join("tokens").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_gets_and_renews_its_certificate_from_the_ca_under_load() {
    let pki = Pki::new(TRUST_DOMAIN);
    let dir = tempfile::tempdir().unwrap();
    // A fixed address, so the CA can come back where the proxy looks for it.
    let listen = format!("127.0.0.1:{}", free_port());
    // One-minute certificates (the shortest the CA issues; back-dated a minute): renewed
    // 8 to 20 s after each issue.
    let ca = CaProcess::start(&pki, dir.path(), &listen, &["--lifetime", "1m"]).await;
    let (cert, _) = pki.files("books");
    let identity = issuer_identity(&pki.files("books"), &pki.bundle(), &listen, dir.path());
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

/// How many times `weft`'s identity material was reloaded (its metric).
async fn reloads(weft: &Weft) -> f64 {
    let text = get_metrics(weft.admin()).await;
    metrics::sum(&text, "weft_identity_reloads_total", &[])
}

/// Writes `anchors` (PEM files, concatenated) as the trust bundle at `bundle`, atomically,
/// and waits until each of `proxies` has reloaded its identity.
async fn install_bundle(
    bundle: &std::path::Path,
    anchors: &[std::path::PathBuf],
    proxies: &[&Weft],
) {
    let mut before = Vec::new();
    for w in proxies {
        before.push(reloads(w).await);
    }
    let pem: Vec<u8> = anchors
        .iter()
        .flat_map(|a| std::fs::read(a).unwrap())
        .collect();
    weft_tls::ca::write_file(bundle, &pem, false).unwrap();
    for (w, before) in proxies.iter().zip(before) {
        let reloaded = eventually(Duration::from_secs(15), || async move {
            (reloads(w).await > before).then_some(())
        })
        .await;
        assert!(
            reloaded.is_some(),
            "no reload of the bundle\n{}",
            w.stderr()
        );
    }
}

/// docs/identity.md, "Rotating the trust anchor" with `identity.issuer`: both anchors are
/// trusted during the overlap, the proxy moves to a certificate of the new CA at its next
/// renewal, and the old anchor is dropped; requests flow throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_trust_anchor_rotates_under_load_with_a_proxy_renewing_from_the_ca() {
    let old = Pki::new(TRUST_DOMAIN);
    let new = Pki::new(TRUST_DOMAIN);
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    // Both proxies read their bundle from the old CA's anchor file, rewritten below.
    let bundle = old.bundle();
    let old_anchor = dir.path().join("old-anchor.crt");
    std::fs::copy(&bundle, &old_anchor).unwrap();
    let new_anchor = new.bundle();

    let ca = CaProcess::start(&old, dir.path(), &listen, &["--lifetime", "1m"]).await;
    let identity = issuer_identity(&old.files("books"), &bundle, &listen, dir.path());
    let app = Upstream::ok("books").await;
    let inbound = start_inbound_as(&identity, app.port(), "").await;
    let mesh = Mesh::around(old, inbound, WEB).await;
    let proxies = [&mesh.inbound, &mesh.outbound];

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Failures = Arc::default();
    let load = {
        let router = mesh.outbound.router("outbound");
        get_loop(
            move || Client::http1(router),
            true,
            stop.clone(),
            failures.clone(),
        )
    };

    // 2. Every proxy trusts both anchors.
    install_bundle(&bundle, &[old_anchor.clone(), new_anchor.clone()], &proxies).await;
    // 3. The new CA takes the old one's place; the proxy renews from it, and the outbound
    //    proxy's certificate is re-issued by it too.
    let issued_by_old = expiry(&mesh.inbound).await;
    drop(ca);
    let new_ca = CaProcess::start(&new, dir.path(), &listen, &["--lifetime", "1m"]).await;
    let renewed = renewed_after(&mesh.inbound, issued_by_old, Duration::from_secs(45)).await;
    assert!(
        renewed.is_some(),
        "no renewal from the new CA\n{}\n--- CA ---\n{}",
        mesh.inbound.stderr(),
        new_ca.stderr()
    );
    let before = reloads(&mesh.outbound).await;
    let (chain, client_key) = new.issue("client", WEB);
    let (cert_path, key_path) = mesh.pki.files("client");
    weft_tls::ca::write_file(&key_path, &std::fs::read(client_key).unwrap(), true).unwrap();
    weft_tls::ca::write_file(&cert_path, &std::fs::read(chain).unwrap(), false).unwrap();
    let outbound = &mesh.outbound;
    let moved = eventually(Duration::from_secs(15), || async move {
        (reloads(outbound).await > before).then_some(())
    })
    .await;
    assert!(moved.is_some(), "{}", mesh.outbound.stderr());
    // 4. The old anchor goes: both proxies present certificates of the new CA only.
    install_bundle(&bundle, std::slice::from_ref(&new_anchor), &proxies).await;
    // A new connection: the inbound proxy presents a certificate of the new CA (a client
    // trusting only the old anchor cannot verify it) and admits a client of the new CA.
    let inbound_addr = mesh.inbound.router("inbound");
    let (_, r) = mesh_get(
        inbound_addr,
        new.client_config_trusting("client", &new_anchor),
        "/",
    )
    .await;
    assert_eq!(
        r.as_deref(),
        Ok("HTTP/1.1 200 OK"),
        "{}",
        mesh.inbound.stderr()
    );
    let (_, r) = mesh_get(
        inbound_addr,
        new.client_config_trusting("client", &old_anchor),
        "/",
    )
    .await;
    assert!(r.is_err(), "{r:?}");

    let (served, failures) = stop_loads(&stop, [load], &failures).await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across the anchor rotation, e.g. {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served > 50, "only {served} requests");
}
