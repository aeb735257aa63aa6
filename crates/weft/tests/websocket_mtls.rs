//! WebSocket and CONNECT connect to endpoints the way every request does (issue 13): through
//! a two-proxy mesh whose inbound requires mutual TLS, the upgraded connection between the
//! proxies is mTLS; towards a TLS server the proxy cannot trust, the upgrade fails as
//! `upstream-tls`, not in plaintext.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::pki::{handshakes, Mesh, WEB};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft_test::tunnel;

/// Sends a WebSocket handshake for `host` to the proxy at `addr`; returns the connection and
/// the response head (lowercased), `None` if the connection closed first.
async fn ws_handshake(addr: SocketAddr, host: &str) -> (TcpStream, Option<String>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut s))
        .await
        .expect("a response head within 10s")
        .map(|h| String::from_utf8_lossy(&h).to_ascii_lowercase());
    (s, head)
}

/// The inbound's successful and failed TLS handshakes so far.
async fn inbound_handshakes(mesh: &Mesh) -> (f64, f64) {
    let text = get_metrics(mesh.inbound.admin()).await;
    (handshakes(&text, "ok"), handshakes(&text, "error"))
}

/// Both proxies' logs, for a failure message.
fn logs(mesh: &Mesh) -> String {
    format!(
        "--- outbound stderr ---\n{}\n--- inbound stderr ---\n{}",
        mesh.outbound.stderr(),
        mesh.inbound.stderr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_the_mesh_is_mutual_tls_to_a_require_tls_inbound() {
    let app = upgrade_echo().await;
    // The mesh's inbound (`start_inbound`) has `tls: {requireTls: true}` and authorizes only
    // WEB: a plaintext upgrade would be refused (403 unauthorized).
    let mesh = Mesh::start(app.port(), WEB, "").await;
    let (ok_before, failed_before) = inbound_handshakes(&mesh).await;

    let (mut s, head) = ws_handshake(mesh.outbound.router("outbound"), "books").await;
    let head = head.unwrap_or_default();
    assert!(
        head.starts_with("http/1.1 101") && head.contains("upgrade: websocket"),
        "the upgrade went through both proxies: {head:?}\n{}",
        logs(&mesh)
    );
    for msg in [b"hello".as_slice(), b"again, over mTLS"] {
        assert_ws_echo(&mut s, msg).await;
    }

    let (ok, failed) = inbound_handshakes(&mesh).await;
    assert!(
        ok > ok_before,
        "the inbound completed a TLS handshake for the tunnel ({ok_before} -> {ok})"
    );
    assert_eq!(failed, failed_before, "no TLS handshake failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_through_the_mesh_is_mutual_tls_to_a_require_tls_inbound() {
    let app = tunnel::connect_echo().await;
    let mesh = Mesh::start(app.port(), WEB, "").await;
    let (ok_before, failed_before) = inbound_handshakes(&mesh).await;

    // Routed by Host (`books`); the CONNECT target goes upstream as it came.
    let (mut s, head) = tunnel::open(mesh.outbound.router("outbound"), "books:443", "books").await;
    let head = head.unwrap_or_default();
    assert!(
        head.starts_with("http/1.1 200"),
        "the CONNECT went through both proxies: {head:?}\n{}",
        logs(&mesh)
    );
    for msg in [b"hello".as_slice(), b"again, over mTLS"] {
        tunnel::assert_echo(&mut s, msg).await;
    }

    let (ok, failed) = inbound_handshakes(&mesh).await;
    assert!(
        ok > ok_before,
        "the inbound completed a TLS handshake for the tunnel ({ok_before} -> {ok})"
    );
    assert_eq!(failed, failed_before, "no TLS handshake failed");
}

// === TLS to a server the proxy does not trust ===

/// A self-signed certificate for `name`, written as `<name>.crt` and `<name>.key` in `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("certificate");
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (crt, key)
}

/// A TLS server on an ephemeral loopback port presenting `cert`; it completes handshakes
/// and then answers nothing (no client that checks the certificate gets that far).
async fn tls_server(cert: &Path, key: &Path) -> SocketAddr {
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .expect("read cert")
        .collect::<Result<_, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server cert");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    serve_each(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tokio::io::copy(&mut tls, &mut tokio::io::sink()).await;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_to_an_endpoint_whose_tls_handshake_fails_gets_502_upstream_tls() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(certs.path(), "ws.test");
    // The only root weft trusts: it did not sign the server's certificate.
    let (other_ca, _) = self_signed(certs.path(), "someone-else.test");
    let server = tls_server(&cert, &key).await;
    let app = upgrade_echo().await;
    let disco = Disco::new();
    let tls = format!(
        "client: {{tls: {{serverName: ws.test, trustRoots: ['{}']}}, failureAccrual: {{kind: none}}}}",
        other_ca.display()
    );
    let cfg = config(
        &disco,
        &[
            router(
                "outbound",
                &format!("/svc => /$/inet/127.0.0.1/{};", server.port()),
                &[&tls],
            ),
            router(
                "plain",
                &format!("/svc => /$/inet/127.0.0.1/{};", app.port()),
                &[],
            ),
        ],
    );
    let weft = Weft::start(bin(), &cfg).await;

    let req = b"GET /ws HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    for _ in 0..2 {
        let got = raw::exchange(weft.router("outbound"), req, Duration::from_secs(10)).await;
        assert_eq!(
            (
                raw::status(&got),
                raw::header(&got, "l5d-proxy-error").as_deref()
            ),
            (Some(502), Some("upstream-tls")),
            "{:?}\n{}",
            String::from_utf8_lossy(&got),
            weft.stderr()
        );
    }
    let text = get_metrics(weft.admin()).await;
    assert_eq!(
        metrics::sum(
            &text,
            "weft_responses_total",
            &[
                ("router", "outbound"),
                ("status_code", "502"),
                ("error", "upstream-tls"),
                ("fault", "upstream")
            ]
        ),
        2.0,
        "{text}"
    );

    // weft keeps serving: an upgrade on its other router works.
    let (mut s, head) = ws_handshake(weft.router("plain"), "chat").await;
    let head = head.unwrap_or_default();
    assert!(head.starts_with("http/1.1 101"), "{head:?}");
    assert_ws_echo(&mut s, b"still here").await;
}
