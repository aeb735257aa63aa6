//! Certificate rotation on an inbound proxy, seen by a rustls client of the test's own: new
//! connections present the new certificate, connections opened before keep working, the
//! expiry gauge follows, and a broken file is rejected while the last good certificate stays.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use support::pki::{connect, leaf, start_inbound, Pki, BOOKS, TRUST_DOMAIN, WEB};
use support::*;
use weft_tls::{Identity, IdentityConfig};

/// The leaf certificate the inbound proxy presents on a new connection.
async fn presented(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> CertificateDer<'static> {
    let tls = connect(addr, cfg).await.expect("mesh TLS handshake");
    let certs = tls.get_ref().1.peer_certificates().expect("server certs");
    certs[0].clone().into_owned()
}

/// The expiry (Unix seconds) of the identity in `cert` and `key`, as the proxy computes it.
fn not_after(pki: &Pki, cert: &Path, key: &Path) -> i64 {
    Identity::load(&IdentityConfig {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        trust_bundle: pki.bundle(),
        federation: Vec::new(),
    })
    .expect("valid identity")
    .not_after_unix()
}

fn expiry_gauge(text: &str) -> f64 {
    metrics::sum(text, "weft_identity_cert_expiry_timestamp_seconds", &[])
}

/// Polls the metrics until the expiry gauge is `want` (10 s at most); the last text if not.
async fn expiry_becomes(weft: &Weft, want: i64) -> Result<(), String> {
    let seen = eventually(Duration::from_secs(10), || async {
        let text = get_metrics(weft.admin()).await;
        (expiry_gauge(&text) == want as f64).then_some(())
    })
    .await;
    match seen {
        Some(()) => Ok(()),
        None => Err(get_metrics(weft.admin()).await),
    }
}

/// One `GET /after` over an HTTP/1.1 connection that is already open: the status.
async fn get_on(send: &mut hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>) -> u16 {
    let req = http::Request::get("/after")
        .header("host", "books")
        .body(Empty::new())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("an answer within 10s")
        .expect("response on the old connection");
    let status = resp.status().as_u16();
    resp.into_body().collect().await.expect("body");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_present_the_rotated_certificate_and_old_ones_keep_working() {
    let app = Upstream::start("app", Behaviour::new().echo()).await;
    let pki = Pki::new(TRUST_DOMAIN);
    let (cert, key) = pki.issue("books", BOOKS);
    pki.issue("client", WEB);
    let inbound = start_inbound(&pki, app.port(), "").await;
    let addr = inbound.router("inbound");
    let client = pki.client_config("client");

    // Certificate A: presented, and its expiry is the gauge's.
    let a = leaf(&cert);
    let a_not_after = not_after(&pki, &cert, &key);
    assert_eq!(presented(addr, client.clone()).await, a);
    expiry_becomes(&inbound, a_not_after)
        .await
        .unwrap_or_else(|text| panic!("the expiry gauge never showed A's {a_not_after}: {text}"));

    // A connection opened before the rotation, with one request on it.
    let old = connect(addr, client.clone()).await.expect("handshake");
    assert_eq!(old.get_ref().1.peer_certificates().expect("certs")[0], a);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    assert_eq!(get_on(&mut send).await, 200);

    // Certificate B: same CA, a new key and serial, a later expiry (whole seconds differ).
    pki.issue_for("books", BOOKS, Duration::from_secs(7200));
    let b = leaf(&cert);
    let b_not_after = not_after(&pki, &cert, &key);
    assert_ne!(a, b);
    assert!(b_not_after > a_not_after);
    let rotated = eventually(Duration::from_secs(10), || async {
        (presented(addr, client.clone()).await == b).then_some(())
    })
    .await;
    assert!(
        rotated.is_some(),
        "new connections still present A 10s after the rotation\n{}",
        inbound.stderr()
    );
    assert_eq!(
        get_on(&mut send).await,
        200,
        "the old connection still works"
    );
    expiry_becomes(&inbound, b_not_after)
        .await
        .unwrap_or_else(|text| panic!("the expiry gauge never showed B's {b_not_after}: {text}"));

    // A broken certificate file is rejected and logged; B stays in use.
    let text = get_metrics(inbound.admin()).await;
    let rejected = metrics::sum(&text, "weft_identity_rejected_reloads_total", &[]);
    weft_tls::ca::write_file(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        false,
    )
    .expect("write a broken cert");
    let counted = eventually(Duration::from_secs(10), || async {
        let text = get_metrics(inbound.admin()).await;
        (metrics::sum(&text, "weft_identity_rejected_reloads_total", &[]) > rejected).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "the broken certificate was not counted as a rejected reload\n{}",
        inbound.stderr()
    );
    let stderr = inbound.stderr();
    let cert_name = cert.display().to_string();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("rejected") && l.contains(&cert_name)),
        "no log line rejecting {cert_name}:\n{stderr}"
    );
    assert_eq!(presented(addr, client.clone()).await, b);
    assert_eq!(get_on(&mut send).await, 200);
    let text = get_metrics(inbound.admin()).await;
    assert_eq!(expiry_gauge(&text), b_not_after as f64, "{text}");
}
