//! Bad TLS input against an inbound proxy that requires mesh TLS: refused client certificates
//! (expired, another trust domain), garbage and truncated ClientHellos. Each is refused
//! cleanly, counted as a failed handshake, and hurts no one else: the proxy stays up and a
//! good request through the outbound proxy passes while the bad connection is still open.
//! Also bad CSRs sent to the CA server, `weft identity serve`.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::pki::{
    assert_closed_cleanly, client_hello, handshakes, mesh_get, mesh_sni, CaProcess, Mesh, Pki,
    BOOKS, WEB,
};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft_tls::ca;

/// app (echo) <- inbound <- outbound (identity `web`); the inbound waits `detect` for a
/// ClientHello.
async fn mesh(detect: &str) -> (Mesh, Upstream) {
    let app = Upstream::start("app", Behaviour::new().echo()).await;
    let extra = format!("    detectTimeout: {detect}\n");
    let m = Mesh::start(app.port(), WEB, &extra).await;
    // Refused handshakes are logged at debug: one line per connection.
    m.inbound.set_log_level("info,weft_proxy=debug").await;
    (m, app)
}

async fn handshake_errors(m: &Mesh) -> f64 {
    handshakes(&get_metrics(m.inbound.admin()).await, "error")
}

/// Waits (10 s at most) until the inbound has counted at least `at_least` failed handshakes
/// (`weft_tls_handshakes_total{result="error"}`, whatever its other labels).
async fn assert_handshake_errors(m: &Mesh, at_least: f64) {
    let counted = eventually(Duration::from_secs(10), || async {
        (handshake_errors(m).await >= at_least).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "expected at least {at_least} failed handshakes\n{}\n--- inbound stderr ---\n{}",
        get_metrics(m.inbound.admin()).await,
        m.inbound.stderr()
    );
}

/// A request through the outbound proxy (mesh TLS to the inbound) answers 200 within 5 s, and
/// both proxies are still running.
async fn assert_good_request_passes(m: &mut Mesh) {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        m.outbound.http1("outbound").get("books", "/good"),
    )
    .await
    .expect("a good request answered within 5s")
    .expect("a good request");
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    assert!(m.inbound.is_running(), "the inbound proxy died");
    assert!(m.outbound.is_running(), "the outbound proxy died");
}

/// The inbound's log lines about the connection from `peer` (its `peer=` field).
fn log_lines_about(m: &Mesh, peer: SocketAddr) -> Vec<String> {
    let peer = peer.to_string();
    m.inbound
        .stderr()
        .lines()
        .filter(|l| l.contains(&peer))
        .map(str::to_owned)
        .collect()
}

/// Polls (10 s at most) for a log line about `peer` containing every one of `words`
/// (case-insensitive).
async fn assert_logged(m: &Mesh, peer: SocketAddr, words: &[&str]) {
    let found = eventually(Duration::from_secs(10), || async {
        log_lines_about(m, peer)
            .iter()
            .any(|l| {
                let l = l.to_lowercase();
                words.iter().all(|w| l.contains(&w.to_lowercase()))
            })
            .then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "no log line about {peer} with {words:?}\n--- inbound stderr ---\n{}",
        m.inbound.stderr()
    );
}

/// A client certificate the inbound must refuse: the handshake or the request fails, the app
/// sees nothing, a failed handshake is counted, and a line about the connection is logged
/// with `words`.
async fn assert_refused(
    m: &mut Mesh,
    app: &Upstream,
    cfg: Arc<rustls::ClientConfig>,
    words: &[&str],
) {
    let addr = m.inbound.router("inbound");
    // Control: the same kind of client with the good certificate gets through.
    let (_, good) = mesh_get(addr, m.pki.client_config("client"), "/control").await;
    assert_eq!(good.as_deref(), Ok("HTTP/1.1 200 OK"));
    let before = handshake_errors(m).await;
    let (peer, bad) = mesh_get(addr, cfg, "/bad").await;
    assert!(
        bad.is_err(),
        "the inbound accepted the certificate: {bad:?}"
    );
    assert_eq!(
        app.requests(),
        1,
        "only the control request reached the app"
    );
    assert_handshake_errors(m, before + 1.0).await;
    assert_logged(m, peer.expect("local address"), words).await;
    assert_good_request_passes(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_certificate_is_refused_and_logged() {
    let (mut m, app) = mesh("1s").await;
    m.pki.forge("expired", WEB, 2020, 2021);
    let cfg = m.pki.client_config("expired");
    assert_refused(&mut m, &app, cfg, &["handshake", "expired"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_another_trust_domain_is_refused_and_logged() {
    let (mut m, app) = mesh("1s").await;
    let other = Pki::new("other.test");
    other.issue("stranger", "spiffe://other.test/ns/default/sa/web");
    // The stranger trusts our anchor, so it is the inbound that refuses, not the client.
    let cfg = other.client_config_trusting("stranger", &m.pki.bundle());
    assert_refused(&mut m, &app, cfg, &["handshake", "certificate"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_outside_the_trust_domain_is_refused_even_from_our_issuer() {
    let (mut m, app) = mesh("1s").await;
    m.pki.forge(
        "outsider",
        "spiffe://other.test/ns/default/sa/web",
        2020,
        2100,
    );
    let cfg = m.pki.client_config("outsider");
    assert_refused(&mut m, &app, cfg, &["handshake", "certificate"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_a_tls_record_header_is_refused_cleanly() {
    let (mut m, app) = mesh("1s").await;
    let before = handshake_errors(&m).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut bytes = vec![0x16, 0x03, 0x01, 0x02, 0x00]; // a handshake record of 512 bytes
    bytes.extend((0..512).map(|_| rng.u8(..)));
    let mut s = TcpStream::connect(m.inbound.router("inbound"))
        .await
        .expect("connect");
    s.write_all(&bytes).await.expect("write");
    assert_closed_cleanly(&mut s).await;
    assert_handshake_errors(&m, before + 1.0).await;
    assert_good_request_passes(&mut m).await;
    assert_eq!(app.requests(), 1, "only the good request reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_client_hellos_that_stall_are_dropped_and_block_no_one() {
    const STALLED: usize = 10;
    // A long detection timeout, so the good request surely runs while the others stall.
    let (mut m, _app) = mesh("8s").await;
    let before = handshake_errors(&m).await;
    let hello = client_hello(m.pki.client_config("client"), mesh_sni(BOOKS));
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(m.inbound.router("inbound"))
            .await
            .expect("connect");
        s.write_all(&hello[..hello.len() / 2]).await.expect("write");
        stalled.push(s);
    }
    assert_good_request_passes(&mut m).await;
    for s in &stalled {
        let mut buf = [0u8; 16];
        assert!(
            matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a stalled connection was answered or closed before the good request was done \
             (detectTimeout is 8s), so it did not run during the stall"
        );
    }
    for s in &mut stalled {
        assert_closed_cleanly(s).await;
    }
    assert_handshake_errors(&m, before + STALLED as f64).await;
    assert_good_request_passes(&mut m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_client_hello_then_close_is_refused_cleanly() {
    let (mut m, _app) = mesh("1s").await;
    let before = handshake_errors(&m).await;
    let hello = client_hello(m.pki.client_config("client"), mesh_sni(BOOKS));
    let mut s = TcpStream::connect(m.inbound.router("inbound"))
        .await
        .expect("connect");
    s.write_all(&hello[..hello.len() / 2]).await.expect("write");
    s.shutdown().await.expect("half-close");
    assert_closed_cleanly(&mut s).await;
    assert_handshake_errors(&m, before + 1.0).await;
    assert_good_request_passes(&mut m).await;
}

// === the CA server ===

impl CaProcess {
    /// `POST /v1/certificate` with `body` over HTTPS (trusting `anchor`): status and body.
    async fn post(&self, anchor: &Path, body: String) -> (u16, String) {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(support::pki::leaf(anchor))
            .expect("add the anchor");
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .expect("TLS to the CA");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("http1");
        tokio::spawn(conn);
        let req = http::Request::post("/v1/certificate")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .expect("request");
        let exchange = async {
            let resp = send.send_request(req).await.expect("response");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the CA answered within 10s")
    }
}

fn ask(csr: &str, id: &str) -> String {
    serde_json::json!({"csr": csr, "spiffeId": id, "token": "s3cret"}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_csrs_are_refused_and_the_ca_keeps_serving() {
    let pki = Pki::new(support::pki::TRUST_DOMAIN);
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca_server = CaProcess::start(&pki, tmp.path(), "127.0.0.1:0", &[]).await;
    let anchor = pki.bundle();
    let pem = |b64: &str| {
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n")
    };

    // Over 8 KiB of CSR, in a body under the 16 KiB limit.
    let big = pem(&"QUFB".repeat((ca::MAX_CSR_BYTES + 400) / 4));
    let (status, body) = ca_server.post(&anchor, ask(&big, WEB)).await;
    assert_eq!(
        (status, body.contains("larger than")),
        (400, true),
        "{body}"
    );

    // A real CSR cut short: valid PEM and base64, truncated DER.
    let (_, csr) = ca::csr(WEB).expect("csr");
    let lines: Vec<&str> = csr.lines().collect();
    let cut = pem(&lines[1..lines.len() / 2].join("\n"));
    let (status, body) = ca_server.post(&anchor, ask(&cut, WEB)).await;
    assert_eq!((status, body.contains("bad CSR")), (400, true), "{body}");

    // Not even PEM.
    let (status, body) = ca_server.post(&anchor, ask("garbage", WEB)).await;
    assert_eq!((status, body.contains("bad CSR")), (400, true), "{body}");

    // A body over 16 KiB.
    let huge = pem(&"QUFB".repeat(5000));
    let (status, body) = ca_server.post(&anchor, ask(&huge, WEB)).await;
    assert_eq!(status, 413, "{body}");

    // Still serving: a good request gets a chain that loads as the identity asked for.
    let (key, csr) = ca::csr(WEB).expect("csr");
    let (status, chain) = ca_server.post(&anchor, ask(&csr, WEB)).await;
    assert_eq!(status, 200, "{chain}\n{}", ca_server.stderr());
    let (cert_path, key_path) = (tmp.path().join("web.crt"), tmp.path().join("web.key"));
    std::fs::write(&cert_path, &chain).expect("write chain");
    std::fs::write(&key_path, &key).expect("write key");
    let id = weft_tls::Identity::load(&weft_tls::IdentityConfig {
        cert: cert_path,
        key: key_path,
        trust_bundle: anchor,
        federation: Vec::new(),
    })
    .expect("the issued chain loads");
    assert_eq!(id.spiffe_id(), WEB);

    let refusals = eventually(Duration::from_secs(5), || async {
        let log = ca_server.stderr();
        (log.matches("certificate request refused").count() >= 4).then_some(log)
    })
    .await;
    assert!(
        refusals.is_some(),
        "each refusal is logged:\n{}",
        ca_server.stderr()
    );
}
